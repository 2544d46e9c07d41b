"""Time to the first update of a first and a second ``iterate()`` call with new numbers.

The first call compiles the update step; the second, with other values for
the same schedules and hyperparameters, only sets shared variables and reuses
it (issue 4: the second call must start in under a tenth of the first's time).
Each call is timed from ``iterate()`` to its first yielded iteration, with
``quick_start=False`` so that the first call includes the whole compile::

    python -m benchmarks.second_call               # PyTensor's default mode (Numba)
    python -m benchmarks.second_call --mode FAST_COMPILE

Run it in a fresh process: a warm compile cache makes the first call faster
(it is still a compile), so the script reports whether the cache was empty.
"""

import argparse
import time

import numpy as np


def problem(seed=0):
    """A small two-layer regression: (loss, inputs, data)."""
    import pytensor
    import pytensor.tensor as pt
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(64, 20))
    Y = X @ rng.normal(size=(20, 5))
    x, y = pt.matrix('x'), pt.matrix('y')
    w = pytensor.shared(np.zeros((20, 10)), name='w')
    v = pytensor.shared(rng.normal(size=(10, 5)) * 0.1, name='v')
    loss = pt.sqr(pt.tanh(x.dot(w)).dot(v) - y).mean()
    return loss, [x, y], [X, Y], (w, v)


def time_to_first_update(opt, data, **hyper):
    began = time.perf_counter()
    it = opt.iterate([data], max_updates=3, **hyper)
    next(it)
    elapsed = time.perf_counter() - began
    list(it)
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--mode', default=None, help='PyTensor mode (default: the configured one)')
    args = parser.parse_args(argv)
    import pytensor
    import downhill
    from downhill import prox, schedules
    loss, inputs, data, (w, v) = problem()
    opt = downhill.build('adam', loss, inputs=inputs, mode=args.mode, quick_start=False,
                         constraints={w: prox.l1(1e-3), v: prox.max_norm(2.0, 0)})
    first = time_to_first_update(opt, data, learning_rate=0.01 * schedules.cosine(1000, warmup=50),
                                 momentum=0.5, weight_decay=1e-4)
    second = time_to_first_update(opt, data, learning_rate=0.05 * schedules.cosine(300, warmup=10),
                                  momentum=0.8, weight_decay=1e-3, beta1_halflife=3)
    mode = args.mode or f'default (linker {pytensor.config.linker})'
    print(f'pytensor {pytensor.__version__}, mode {mode}: first call {first:.3f} s to its first '
          f'update, second call {second:.4f} s; ratio {second / first:.4f} '
          f'({len(opt._step_fns)} step compiled)')
    return first, second


if __name__ == '__main__':
    main()
