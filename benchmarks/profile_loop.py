"""Where ``Optimizer.iterate()`` spends its time on a small problem (issue 8 item 2).

    python -m benchmarks.profile_loop [--problem rosenbrock-2d] [--steps 50000] [--cprofile]

Times, in one process and alternating window by window (median of several
windows, microseconds per update):

- ``raw``: the raw compiled function with the same updates, called in a loop;
- ``raw+trust``: the same with ``trust_input = True``;
- ``step``: downhill's own compiled step, as ``iterate()`` calls it (the lean
  call of :func:`downhill._compat.lean_caller` when the backend is Numba),
  called directly in a loop: what the compiled graph costs, without the loop
  around it;
- ``step Function``: the ``pytensor`` ``Function`` behind it, called the
  usual way (``trust_input`` as downhill set it);
- ``iterate``: ``next()`` on ``Optimizer.iterate()`` (the whole loop).

The timing starts after downhill's background compilation finished
(``Optimizer.wait_compiled``).

Times are the thread's CPU time by default (``--wall`` for wall-clock time):
on a shared machine a neighbour's load then mostly drops out.

The differences split the gap between downhill and raw into "a different
compiled function" and "Python work in the loop". ``--cprofile`` also prints
the functions of the loop ranked by their own time. Pass ``--downhill-path``
to measure a patched copy of downhill.
"""

import argparse
import cProfile
import io
import logging
import pstats
import statistics
import sys
import time


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.profile_loop')
    p.add_argument('--problem', default='rosenbrock-2d')
    p.add_argument('--steps', type=int, default=20000, help='updates per window')
    p.add_argument('--windows', type=int, default=7)
    p.add_argument('--mode', default=None)
    p.add_argument('--cprofile', action='store_true')
    p.add_argument('--stat', choices=('median', 'min'), default='median',
                   help='summary of the windows (min: the least disturbed window)')
    p.add_argument('--wall', action='store_true',
                   help='time with the wall clock (default: this thread\'s CPU time, which a busy '
                        'neighbour on a shared machine disturbs much less)')
    p.add_argument('--downhill-path', default=None)
    args = p.parse_args(argv)
    if args.downhill_path:
        sys.path.insert(0, args.downhill_path)

    import pytensor
    import downhill
    from . import problems as P
    logging.getLogger('downhill').setLevel(logging.WARNING)
    print(f'downhill from {downhill.__file__}; pytensor {pytensor.__version__}, '
          f'mode {args.mode or pytensor.config.mode}')

    problem = args.problem
    algo, _ = P.PROBLEMS[problem]
    batches = P.make(problem)['batches']
    if len(batches) != 1:
        raise SystemExit('profile_loop is for the full-batch problems (one update per pass)')
    batch = list(batches[0])

    loss, params, inputs = P.symbolic(problem)
    fn = pytensor.function(inputs, loss, mode=args.mode,
                           updates=P.raw_updates(problem, params, pytensor.grad(loss, params)))
    loss2, params2, inputs2 = P.symbolic(problem)
    opt = downhill.build(algo, loss=loss2, params=params2, inputs=inputs2, mode=args.mode)
    it = opt.iterate([batch] if batch else None, validate_every=10 ** 9, patience=10 ** 9,
                     **P.downhill_kwargs(problem))
    next(it)
    opt.wait_compiled()
    from downhill import compile as compiling
    step = compiling.current(opt._compiled_step())
    function = getattr(step, 'function', step)

    n = args.steps

    def raw(trust):
        fn.trust_input = trust
        for _ in range(n):
            fn(*batch)

    def direct(fn):
        for _ in range(n):
            fn(*batch)

    def loop():
        for _ in range(n):
            next(it)

    cases = {'raw': lambda: raw(False), 'raw+trust': lambda: raw(True),
             'step': lambda: direct(step), 'step Function': lambda: direct(function),
             'iterate': loop}
    for f in cases.values():  # warm-up
        f()
    clock = time.perf_counter if args.wall else time.thread_time
    times = {k: [] for k in cases}
    for _ in range(args.windows):
        for k, f in cases.items():
            t0 = clock()
            f()
            times[k].append((clock() - t0) / n * 1e6)
    summary = statistics.median if args.stat == 'median' else min
    med = {k: summary(v) for k, v in times.items()}
    print(f'{problem} ({algo}): microseconds per update ({"wall" if args.wall else "thread CPU"} time), '
          f'{args.stat} of {args.windows} windows of {n}')
    for k, v in med.items():
        print(f'  {k:14s} {v:7.2f} us   {1e6 / v / 1000:7.1f}k upd/s   ratio vs raw {med["raw"] / v:.2f}')
    print(f'  loop overhead (iterate - step): {med["iterate"] - med["step"]:.2f} us; '
          f'graph difference (step - raw): {med["step"] - med["raw"]:.2f} us')

    if args.cprofile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            next(it)
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats('tottime').print_stats(25)
        print(s.getvalue())


if __name__ == '__main__':
    main()
