"""How many threads BLAS may use while the loop computes: ``iterate(blas_threads=N)``.

OpenBLAS (NumPy's, and SciPy's, which PyTensor's Numba backend calls for
``dot``) splits a matrix product over every core once it is large enough.
Products that are large but memory-bound, between elementwise loops that run
on one core, can lose more to that than they gain: on the 2000x256 rank-16
matrix-factorization benchmark one step took 3.0 ms with one BLAS thread and
5.6 ms with two, on two cores. ``iterate(..., blas_threads=1)`` limits the
pool while downhill computes and lifts the limit before each yield, so code
between iterations sees the process's own setting. It needs threadpoolctl
(``pip install threadpoolctl``), which knows every BLAS and OpenMP runtime.
Large products (hidden layers of thousands of units) do gain from threads:
measure before setting it.
"""

from . import hyperparams


def limiter(threads):
    """None for ``threads=None``; else a function returning a context manager that limits BLAS.

    Checks ``threads`` and imports threadpoolctl at once, so a bad value or a
    missing package is an error before any work.
    """
    if threads is None:
        return None
    threads = hyperparams.number('blas_threads', threads, low=1, integer=True)
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError as err:
        raise ImportError('blas_threads= needs the threadpoolctl package: '
                          'pip install threadpoolctl') from err
    controller = ThreadpoolController()
    return lambda: controller.limit(limits=threads, user_api='blas')


def limit_between_yields(loop, limit):
    """Run the generator ``loop`` under ``limit()``, lifted while its items are with the caller."""
    try:
        while True:
            with limit():
                try:
                    item = next(loop)
                except StopIteration:
                    return
            yield item
    finally:
        loop.close()  # the loop's own clean-up (best parameters, checkpoint) when the caller stops
