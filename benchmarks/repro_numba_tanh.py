"""Numba's elementwise tanh (and exp) are several times slower than NumPy's.

    python -m benchmarks.repro_numba_tanh [--dtype float32] [--size 128]

Times, in thread CPU time (microseconds per call on a size x size array),
``numpy.tanh`` / ``numpy.exp`` against one-op PyTensor functions compiled by
the default (Numba) backend, and an expm1-based tanh. NumPy's float32 and
float64 tanh/exp are SIMD-vectorized; Numba's loops call the scalar libm
functions. This is most of what separates PyTensor from hand-written NumPy on
the MLP benchmark (one tanh of 128 x 128 per update). downhill's
``fast_tanh.rational_tanh`` (multiplications and one division) is vectorized,
unless the fused loop also broadcasts an input (``x + b`` with a bias
vector ``b``): then Numba's loop is not vectorized and takes 3x longer than the
two loops apart; the last three cases show it. For float64 the last case is
downhill's ``fast_tanh.exp_tanh`` (a rational function or one ``exp``).
The last line gives the ratios of Numba's ``tanh`` to downhill's and to NumPy's.
"""

import argparse
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.repro_numba_tanh')
    p.add_argument('--dtype', default='float32')
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--calls', type=int, default=2000)
    args = p.parse_args(argv)
    import pytensor
    import pytensor.tensor as pt

    x = np.random.default_rng(0).standard_normal((args.size, args.size)).astype(args.dtype)
    X = pt.matrix('X', dtype=args.dtype)
    e = pt.expm1(2 * X)
    B = pt.vector('B', dtype=args.dtype)
    b = np.linspace(-1, 1, args.size).astype(args.dtype)
    from downhill.fast_tanh import exp_tanh, rational_tanh
    cases = {
        'numpy tanh': np.tanh,
        'numba tanh': pytensor.function([X], pt.tanh(X)),
        'numpy exp': np.exp,
        'numba exp': pytensor.function([X], pt.exp(X)),
        'numba expm1(2x) / (expm1(2x) + 2)': pytensor.function([X], e / (e + 2)),
        'numba x * 1.5 + 1 (no libm call)': pytensor.function([X], X * 1.5 + 1),
        'numba x + b alone': pytensor.function([X, B], X + B),
    }
    if args.dtype == 'float32':
        cases['rational tanh(x + b), fused in one loop'] = pytensor.function(
            [X, B], rational_tanh(X + B, flat=False))
        cases['rational tanh(x + b), two loops (downhill)'] = pytensor.function(
            [X, B], rational_tanh(X + B))
    elif args.dtype == 'float64':
        cases['exp_tanh(x) (downhill)'] = pytensor.function([X], exp_tanh(X))
    times = {}
    for name, fn in cases.items():
        if hasattr(fn, 'trust_input'):
            fn.trust_input = True
        call_args = (x, b) if len(getattr(fn, 'input_storage', ())) == 2 else (x,)
        fn(*call_args)
        t = time.thread_time()
        for _ in range(args.calls):
            fn(*call_args)
        times[name] = (time.thread_time() - t) / args.calls * 1e6
        print(f'{name:42s} {times[name]:8.1f} us')
    for name in (n for n in times if n.endswith('(downhill)')):
        print(f'numba tanh / {name}: {times["numba tanh"] / times[name]:.2f}x; '
              f'numba tanh / numpy tanh: {times["numba tanh"] / times["numpy tanh"]:.2f}x')


if __name__ == '__main__':
    main()
