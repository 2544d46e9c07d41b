"""What summing in the residual's loop (``downhill.fused_sums``) saves, in one process.

    python -m benchmarks.fused_sums [--problem matfact] [--size full] [--steps 300] [--windows 9]

Compiles the problem's raw step (its loss, the gradients and the update formulas
of :mod:`benchmarks.problems`) twice in PyTensor's Numba mode with downhill's
rewrites (:func:`downhill.fusion.mode_with_fusion`), once with and once without
the tag ``downhill_sums``; runs both the same number of steps from the same
start and checks that they agree; then times them in alternating windows
(wall clock, microseconds per step) and reports the minor page faults per step.
Set glibc's ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` (or not) in
the environment to see the page faults' share: downhill itself asks glibc to
keep freed memory (``downhill.compile.keep_freed_memory``).
"""

import argparse
import resource
import statistics
import time


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.fused_sums')
    p.add_argument('--problem', default='matfact')
    p.add_argument('--size', choices=('full', 'tiny'), default='full')
    p.add_argument('--steps', type=int, default=300, help='steps per window')
    p.add_argument('--windows', type=int, default=9)
    args = p.parse_args(argv)

    import numpy as np
    import pytensor
    from pytensor.compile.mode import get_mode

    from downhill.fusion import mode_with_fusion
    from downhill.fused_sums import TAG

    from . import problems as P

    batch = list(P.make(args.problem, args.size)['batches'][0])
    variants = {}
    for name, mode in (('with fused sums', mode_with_fusion('NUMBA')),
                       ('without', mode_with_fusion(get_mode('NUMBA').excluding(TAG)))):
        loss, params, inputs = P.symbolic(args.problem, args.size)
        updates = P.raw_updates(args.problem, params, pytensor.grad(loss, params))
        fn = pytensor.function(inputs, loss, mode=mode, updates=updates)
        losses = [float(fn(*batch)) for _ in range(P.CHECK_STEPS[args.problem])]
        variants[name] = (fn, losses, [p.get_value() for p in params])
    (_, losses_a, params_a), (_, losses_b, params_b) = variants.values()
    diff = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(params_a, params_b))
    print(f'{args.problem}: after {len(losses_a)} steps, loss {losses_a[-1]!r} vs {losses_b[-1]!r}, '
          f'parameters differ by {diff:.1e} (max relative)')

    def window(fn):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn(*batch)
        return (time.perf_counter() - t0) / args.steps * 1e6

    times = {name: [] for name in variants}
    for _ in range(args.windows):
        for name, (fn, _, _) in variants.items():
            times[name].append(window(fn))
    for name, (fn, _, _) in variants.items():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        window(fn)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / args.steps
        print(f'  {name:16s} median {statistics.median(times[name]):8.0f} us, '
              f'min {min(times[name]):8.0f} us, {faults:7.1f} page faults per step')


if __name__ == '__main__':
    main()
