"""Two OpenBLAS threads make the matrix-factorization step slower than one.

    python -m benchmarks.repro_blas_threads [--calls 200]

Times, in wall-clock milliseconds per call on this machine, the three matrix
products of one 2000x256 rank-16 matrix-factorization step (``u @ v``,
``R @ v.T``, ``u.T @ R``) with NumPy, and the whole step compiled by
PyTensor's default (Numba) backend, once with BLAS limited to one thread and
once to two (threadpoolctl, which ``iterate(blas_threads=...)`` uses). The
products are memory-bound; between them the step's elementwise loops run on
one core.
"""

import argparse
import time

import numpy as np


def per_call(fn, calls):
    fn()
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(prog='python -m benchmarks.repro_blas_threads')
    ap.add_argument('--calls', type=int, default=200)
    args = ap.parse_args(argv)
    import pytensor
    from threadpoolctl import threadpool_limits

    from . import problems

    loss, params, inputs = problems.symbolic('matfact')
    grads = pytensor.grad(loss, params)
    step = pytensor.function(inputs, loss, updates=problems.raw_updates('matfact', params, grads))
    step.trust_input = True
    X = problems.make('matfact')['batches'][0][0]
    u, v = (p.get_value() for p in params)
    R = X - u @ v
    cases = {
        'numpy u @ v': lambda: u @ v,
        'numpy R @ v.T': lambda: R @ v.T,
        'numpy u.T @ R': lambda: u.T @ R,
        'pytensor step (Numba)': lambda: step(X),
    }
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api='blas'):
            for name, fn in cases.items():
                print(f'{threads} BLAS thread(s)  {name:24s} {per_call(fn, args.calls):7.3f} ms')


if __name__ == '__main__':
    main()
