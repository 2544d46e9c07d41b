"""PyTensor reproducer: ``pytensor.function`` (Numba) returns before the machine code exists.

    python -m benchmarks.repro_precompile            # a fresh, empty compile cache
    python -m benchmarks.repro_precompile --warm     # PyTensor's configured cache

PyTensor 3's Numba backend compiles the kernel (or loads it from its on-disk
cache) at the function's first call, for the types of that call's values, not
in ``pytensor.function``. Compiling in a background thread while other work
goes on (downhill's quick start) therefore leaves the expensive part to the
first call in the caller's thread, which blocks there. downhill's
``downhill._compat.precompile`` runs the kernel once in the compiling thread,
on the explicit inputs and on copies of the shared variables' values, and
throws the results away.

Two Adam steps of the same structure (different constants, so neither finds
the other's kernel in the cache) are compiled in a thread while the main
thread waits: ``stock`` with ``pytensor.function`` alone, ``precompiled``
followed by ``precompile``. Then the main thread times its first call of each.
A third step is compiled and called first and not reported: the first Numba
compile of a process (or of an empty cache) also compiles helpers that every
later one reuses. Each step is compiled twice: the second time the disk
cache is warm. Prints the times and the ratio of the first calls; checks that
precompiling updated no shared variable.
"""

import atexit
import os
import shutil
import sys
import tempfile
import threading
import time

if '--warm' not in sys.argv[1:]:  # before PyTensor reads its flags
    _CACHE = tempfile.mkdtemp(prefix='repro_precompile_')
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
    os.environ['PYTENSOR_FLAGS'] = ','.join(
        f for f in (os.environ.get('PYTENSOR_FLAGS', ''), f'base_compiledir={_CACHE}') if f)

import numpy as np  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402


def adam_step(a):
    x = pytensor.shared(np.array([-1.2, 1.0]), name='x')
    t, m, v = (pytensor.shared(np.zeros(s), name=n) for s, n in (((), 't'), (2, 'm'), (2, 'v')))
    loss = (a * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
    g = pytensor.grad(loss, x)
    t1, m1, v1 = t + 1, 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * pt.sqr(g)
    step = 1e-3 * (m1 / (1 - 0.9 ** t1)) / (pt.sqrt(v1 / (1 - 0.999 ** t1)) + 1e-8)
    return ([], loss), dict(updates=[(t, t1), (m, m1), (v, v1), (x, x - step)], mode='NUMBA'), x


def precompile(fn):
    """Run ``fn``'s kernel on copies of its (here: only shared) inputs' values."""
    fn.vm.jit_fn(*[np.copy(cell[0]) for cell in fn.vm.inputs])


def compile_in_thread(a, warm_up):
    (inputs, outputs), kwargs, x = adam_step(a)
    out = {}

    def work():
        t0 = time.perf_counter()
        out['fn'] = pytensor.function(inputs, outputs, **kwargs)
        if warm_up:
            precompile(out['fn'])
        out['compile'] = time.perf_counter() - t0

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    before = x.get_value()
    t0 = time.perf_counter()
    out['fn']()
    first = time.perf_counter() - t0
    assert np.array_equal(before, [-1.2, 1.0]), 'precompiling updated a shared variable'
    t0 = time.perf_counter()
    out['fn']()
    return out['compile'], first, time.perf_counter() - t0


def main():
    print(f'pytensor {pytensor.__version__}, compiledir {pytensor.config.compiledir}')
    t0 = time.perf_counter()
    compile_in_thread(99.0, False)
    print(f'the first step of the process (not reported): {time.perf_counter() - t0:.1f} s')
    for cache in ('first compile', 'again (cache warm)'):
        rows = {name: compile_in_thread(a, name == 'precompiled')
                for name, a in (('stock', 100.0), ('precompiled', 101.0))}
        print(f'{cache}:')
        for name, (compiled, first, second) in rows.items():
            print(f'  {name:12s} in the thread {compiled:6.2f} s | first call in the main thread '
                  f'{first * 1e3:9.2f} ms | second call {second * 1e6:6.1f} us')
        ratio = rows['stock'][1] / rows['precompiled'][1]
        print(f'  the main thread blocks {ratio:,.0f}x longer at the first call without precompiling')


if __name__ == '__main__':
    main()
