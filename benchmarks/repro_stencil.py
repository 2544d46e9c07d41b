"""PyTensor reproducer: slices, sums and increments of neighbour terms are separate passes.

    python -m benchmarks.repro_stencil [--n 1000000] [--steps 20] [--windows 7]

The Adam step of Rosenbrock's function ``sum(100 (x[1:] - x[:-1]^2)^2 +
(1 - x[:-1])^2)`` on ``n`` float64 parameters, compiled by PyTensor 3's
Numba backend. PyTensor fuses the elementwise arithmetic, but the slices,
the loss's sum, the ``IncSubtensor`` of zeros that assembles the gradient and
Adam's update are separate operations: each term and the gradient is a
fresh parameter-sized array, stored and read again, at every step.

``stock`` is ``pytensor.function(..., mode='NUMBA')``; ``stencil`` is the same
graph in ``downhill.fusion.mode_with_fusion('NUMBA')``, whose rewrite
(``downhill.stencil``) computes the terms, the sum, the increments and the
update in one loop. The script checks that the two agree after ``--steps``
steps, then times them in alternating windows (wall clock, median per step)
and counts minor page faults per step, first with glibc's default ``malloc``,
then after asking it (``mallopt``) to keep freed memory, as downhill does.
Prints the ratios.
"""

import argparse
import ctypes
import resource
import statistics
import sys
import time

import numpy as np
import pytensor
import pytensor.tensor as pt


def adam_step(n, mode):
    x0 = np.tile([-1.1, 0.0], n // 2)
    x = pytensor.shared(x0, name='x')
    t = pytensor.shared(np.float64(0.0), name='t')
    m, v = pytensor.shared(np.zeros(n), name='m'), pytensor.shared(np.zeros(n), name='v')
    loss = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
    g = pytensor.grad(loss, x)
    t1, m1, v1 = t + 1, 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * pt.sqr(g)
    step = 1e-3 * (m1 / (1 - 0.9 ** t1)) / (pt.sqrt(v1 / (1 - 0.999 ** t1)) + 1e-8)
    fn = pytensor.function([], loss, updates=[(t, t1), (m, m1), (v, v1), (x, x - step)], mode=mode)
    return fn, x


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(variants, steps, windows):
    def window(fn):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - t0) / steps * 1e3

    times = {name: [] for name in variants}
    for _ in range(windows):
        for name, fn in variants.items():
            times[name].append(window(fn))
    out = {}
    for name, fn in variants.items():
        before = faults()
        window(fn)
        out[name] = statistics.median(times[name]), (faults() - before) / steps
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.repro_stencil')
    p.add_argument('--n', type=int, default=10 ** 6)
    p.add_argument('--steps', type=int, default=20, help='steps per window (and checked)')
    p.add_argument('--windows', type=int, default=7)
    args = p.parse_args(argv)
    from downhill.fusion import mode_with_fusion
    print(f'pytensor {pytensor.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}; '
          f'Adam on Rosenbrock, n = {args.n:,} float64')

    variants, params = {}, {}
    for name, mode in (('stock', 'NUMBA'), ('stencil', mode_with_fusion('NUMBA'))):
        t0 = time.perf_counter()
        fn, params[name] = adam_step(args.n, mode)
        fn()
        print(f'  {name:8s} compiled and first call in {time.perf_counter() - t0:5.1f} s, '
              f'{len(fn.maker.fgraph.apply_nodes)} nodes')
        variants[name] = fn
    for fn in variants.values():
        for _ in range(args.steps - 1):
            fn()
    a, b = (params[name].get_value() for name in variants)
    print(f'  after {args.steps} steps the parameters differ by '
          f'{np.abs(a - b).max() / np.abs(a).max():.1e} (max relative)')

    for allocator in ('glibc default malloc', 'malloc keeping freed memory (mallopt)'):
        if allocator.startswith('malloc'):
            libc = ctypes.CDLL(None)
            libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD
            libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
        res = measure(variants, args.steps, args.windows)
        print(f'{allocator}:')
        for name, (ms, pf) in res.items():
            print(f'  {name:8s} {ms:8.2f} ms per step, {pf:8.0f} page faults per step')
        print(f'  stock / stencil: {res["stock"][0] / res["stencil"][0]:.2f}x')


if __name__ == '__main__':
    main()
