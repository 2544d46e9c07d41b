"""PyTensor reproducer: ``Function.__call__`` costs more than the Numba kernel it calls.

    python -m benchmarks.repro_lean_call [--calls 50000] [--windows 7]

A 2-parameter Adam step (Rosenbrock's function, the parameter and Adam's
state in shared variables, no explicit input) compiled by PyTensor 3's Numba
backend is one kernel, ``fn.vm.jit_fn``. Calling it through
``Function.__call__`` adds the input/output storage round trip, the profiling
and clean-up checks and the update loop; ``trust_input = True`` only skips the
input checks. This script times, in one process and alternating windows
(median thread CPU time per call):

- ``stock``: ``fn()``, as ``pytensor.function`` returns it;
- ``trust_input``: the same with ``fn.trust_input = True``;
- ``kernel``: the kernel called on the shared values, the updated values
  stored back: what ``Function.__call__`` does, written out for this function
  (downhill's ``downhill._compat.lean_caller`` generates it for any such
  function);
- ``downhill``: ``downhill._compat.lean_caller(fn, 0)``, the same generated;

checks that all three make the same updates, and prints the ratios to stock.
"""

import argparse
import statistics
import time

import numpy as np
import pytensor
import pytensor.tensor as pt


def adam_step():
    x = pytensor.shared(np.array([-1.2, 1.0]), name='x')
    t = pytensor.shared(np.float64(0.0), name='t')
    m = pytensor.shared(np.zeros(2), name='m')
    v = pytensor.shared(np.zeros(2), name='v')
    loss = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
    g = pytensor.grad(loss, x)
    t1, m1, v1 = t + 1, 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * pt.sqr(g)
    step = 1e-3 * (m1 / (1 - 0.9 ** t1)) / (pt.sqrt(v1 / (1 - 0.999 ** t1)) + 1e-8)
    fn = pytensor.function([], loss, updates=[(t, t1), (m, m1), (v, v1), (x, x - step)], mode='NUMBA')
    return fn, (x, t, m, v)


def kernel_call(fn):
    """``fn()`` without ``Function.__call__``: the kernel on the cells' values, updates stored."""
    jit, cells = fn.vm.jit_fn, fn.vm.inputs
    n_out = fn._n_returned_outputs
    updated = [(k, container.storage) for k, container in fn._update_input_storage]

    def call():
        out = jit(*[c[0] for c in cells])
        for k, cell in updated:
            cell[0] = out[k]
        return out[:n_out]
    return call


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.repro_lean_call')
    p.add_argument('--calls', type=int, default=50000, help='calls per window')
    p.add_argument('--windows', type=int, default=7)
    args = p.parse_args(argv)
    print(f'pytensor {pytensor.__version__}, numpy {np.__version__}')

    variants, shared = {}, {}
    for name in ('stock', 'trust_input', 'kernel', 'downhill'):
        fn, shared[name] = adam_step()
        fn()  # Numba compiles (or loads) the kernel at the first call
        if name != 'stock':
            fn.trust_input = True
        if name == 'downhill':
            from downhill._compat import lean_caller
            variants[name] = lean_caller(fn, 0)
            assert variants[name] is not None, 'lean_caller declined this function'
        else:
            variants[name] = kernel_call(fn) if name == 'kernel' else fn

    for name, fn in variants.items():  # same updates from the same start, 100 steps
        for s in shared[name]:
            s.set_value(np.zeros_like(s.get_value()) if s.name != 'x' else np.array([-1.2, 1.0]))
        for _ in range(100):
            fn()
    ref = shared['stock'][0].get_value()
    for name in variants:
        assert np.array_equal(shared[name][0].get_value(), ref), name

    def window(fn):
        t0 = time.thread_time()
        for _ in range(args.calls):
            fn()
        return (time.thread_time() - t0) / args.calls * 1e6

    times = {name: [] for name in variants}
    for _ in range(args.windows):
        for name, fn in variants.items():
            times[name].append(window(fn))
    base = statistics.median(times['stock'])
    for name in variants:
        med = statistics.median(times[name])
        print(f'  {name:12s} {med:6.2f} us per call  (stock / this: {base / med:4.2f}x)')


if __name__ == '__main__':
    main()
