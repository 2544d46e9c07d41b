"""PyTensor reproducer: the Python linker runs ``second``/``cast``/``clip`` one Python call per element.

    python -m benchmarks.repro_quick_start [--calls 5]

A function that is ready at once is PyTensor's Python linker with few or no
rewrites (``FAST_COMPILE``, or ``Mode(linker='py')`` with none): NumPy runs
the graph op by op. But ``Elemwise.perform`` runs a scalar op with no
``nfunc_spec`` (``Second``, the fill in the gradient of a mean; ``Cast``;
``Clip``; ``Identity``) through ``numpy.frompyfunc``: one Python call per
element. downhill's quick start (``downhill.quick.quick_mode``) is the Python
linker with one rewrite that gives those four a NumPy implementation
(``downhill.quick.NumpyElemwise``); it runs the first updates while the
final (Numba) step compiles in a background thread.

The loss ``mean((X - u v)^2)`` and its gradients, 2000 x 256 float64, rank 16,
compiled four ways: ``py, no rewrites`` (stock), ``FAST_COMPILE`` (stock),
``quick_mode`` (downhill) and ``NUMBA`` (stock, the final step; its compile
includes the first call, when Numba compiles the kernel). Prints the seconds
to compile, the milliseconds per call (median of ``--calls``), checks that
they agree and prints the ratios. BLAS runs on one thread (unless
``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` say otherwise): on a shared
2-core machine a second BLAS thread made the products up to 30x slower.
"""

import argparse
import os
import statistics
import time

for _name in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_name, '1')  # before NumPy loads BLAS

import numpy as np  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402
from pytensor.compile.mode import Mode  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.repro_quick_start')
    p.add_argument('--calls', type=int, default=5)
    args = p.parse_args(argv)
    from downhill.quick import quick_mode
    print(f'pytensor {pytensor.__version__}, numpy {np.__version__}')

    rng = np.random.default_rng(0)
    data = [rng.standard_normal(s) for s in ((2000, 16), (16, 256), (2000, 256))]
    modes = {'py, no rewrites': Mode(linker='py', optimizer=None), 'FAST_COMPILE': 'FAST_COMPILE',
             'quick_mode': quick_mode(), 'NUMBA': 'NUMBA'}
    rows, results = {}, {}
    for name, mode in modes.items():
        u, v, X = pt.matrix('u'), pt.matrix('v'), pt.matrix('X')
        loss = pt.sqr(X - pt.dot(u, v)).mean()
        outputs = [loss, *pytensor.grad(loss, [u, v])]
        t0 = time.perf_counter()
        fn = pytensor.function([u, v, X], outputs, mode=mode)
        if name == 'NUMBA':
            fn(*data)
        compiled = time.perf_counter() - t0
        calls = []
        for _ in range(args.calls):
            t0 = time.perf_counter()
            results[name] = fn(*data)
            calls.append(time.perf_counter() - t0)
        per_element = sorted({str(n.op) for n in fn.maker.fgraph.apply_nodes
                              if getattr(n.op, 'nfunc_spec', 0) is None
                              and getattr(n.op, 'scalar_op', None) is not None
                              and name != 'NUMBA'})
        rows[name] = compiled, statistics.median(calls)
        print(f'  {name:16s} compile {compiled:6.2f} s, call {rows[name][1] * 1e3:8.1f} ms'
              + (f'; Elemwise without nfunc_spec: {", ".join(per_element)}' if per_element else ''))
    for name, outs in results.items():
        for a, b in zip(outs, results['NUMBA']):
            np.testing.assert_allclose(a, b, rtol=1e-10, err_msg=name)
    stock, quick, numba = rows['py, no rewrites'], rows['quick_mode'], rows['NUMBA']
    print(f'  per call, py with no rewrites / quick_mode: {stock[1] / quick[1]:.1f}x; '
          f'FAST_COMPILE / quick_mode: {rows["FAST_COMPILE"][1] / quick[1]:.1f}x')
    print(f'  first result, NUMBA / quick_mode (compile + one call): '
          f'{numba[0] / (quick[0] + quick[1]):.1f}x')


if __name__ == '__main__':
    main()
