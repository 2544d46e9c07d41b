"""PyTensor reproducer: one Op without a Numba cache key makes the whole function uncacheable.

    python -m benchmarks.repro_generated_loops

PyTensor 3's Numba backend caches a compiled function on disk under a key made
of its ops' keys. An op registered the way PyTensor's guide to extending the
Numba backend shows (``@numba_funcify.register(MyOp)``) has no key, so the
function graph holding it gets none either: it is compiled again in every new
process, cache or no cache, and nothing says so (only
``compiler_verbose=True`` prints it). An op registered with
``register_funcify_and_cache_key`` (in ``pytensor.link.numba.dispatch.basic``)
and its source compiled by ``pytensor.link.numba.cache.compile_numba_function_src``
is cached like PyTensor's own: that is how downhill registers its generated
loops (``downhill._compat.with_generated_loops``, keys from
``downhill.generated_loops.generated_cache_key``).

The same op (``y = 2 x`` as a generated loop) is registered both ways and put
beside a 2-parameter Adam step; each variant is compiled and called in two
fresh processes sharing one new compile cache. Prints each process's seconds
from ``pytensor.function`` to the first result (imports apart) and the ratio
of the second processes'.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

SOURCE = '''
def twice(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = 2 * x[i]
    return out
'''


def child(variant):
    import numpy as np
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.numba.cache import compile_numba_function_src
    from pytensor.link.numba.dispatch.basic import (numba_funcify, numba_njit,
                                                    register_funcify_and_cache_key)

    class Twice(Op):
        __props__ = ()

        def make_node(self, x):
            return Apply(self, [x], [x.type()])

        def perform(self, node, inputs, outputs):
            outputs[0][0] = 2 * inputs[0]

    def loop():
        return numba_njit(compile_numba_function_src(SOURCE, 'twice', {'np': np}, write_to_disk=True))

    if variant == 'no key':
        numba_funcify.register(Twice)(lambda op, node=None, **kwargs: loop())
    else:
        register_funcify_and_cache_key(Twice)(
            lambda op, node=None, **kwargs: (loop(), 'repro_generated_loops.Twice.v1'))

    t0 = time.perf_counter()
    x = pytensor.shared(np.array([-1.2, 1.0]), name='x')
    t, m, v = (pytensor.shared(np.zeros(s), name=n) for s, n in (((), 't'), (2, 'm'), (2, 'v')))
    loss = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
    g = pytensor.grad(loss, x)
    t1, m1, v1 = t + 1, 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * pt.sqr(g)
    step = 1e-3 * (m1 / (1 - 0.9 ** t1)) / (pt.sqrt(v1 / (1 - 0.999 ** t1)) + 1e-8)
    fn = pytensor.function([], [loss, Twice()(x)], updates=[(t, t1), (m, m1), (v, v1), (x, x - step)],
                           mode='NUMBA')
    _, doubled = fn()
    assert np.array_equal(doubled, [-2.4, 2.0]), doubled
    print(time.perf_counter() - t0)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == '--child':
        return child(sys.argv[2])
    import pytensor
    print(f'pytensor {pytensor.__version__}: seconds from a fresh process to the first result')
    seconds = {}
    for variant in ('no key', 'cache key'):
        cache = tempfile.mkdtemp(prefix='repro_generated_loops_')
        env = dict(os.environ, PYTENSOR_FLAGS=','.join(
            f for f in (os.environ.get('PYTENSOR_FLAGS', ''), f'base_compiledir={cache}') if f))
        seconds[variant] = [float(subprocess.run(
            [sys.executable, '-m', 'benchmarks.repro_generated_loops', '--child', variant], env=env,
            check=True, capture_output=True, text=True).stdout.split()[-1]) for _ in range(2)]
        shutil.rmtree(cache, ignore_errors=True)
        first, second = seconds[variant]
        print(f'  {variant:9s} first process (empty cache) {first:5.1f} s, second {second:5.1f} s')
    print(f'  second process, no key / cache key: {seconds["no key"][1] / seconds["cache key"][1]:.1f}x')


if __name__ == '__main__':
    main()
