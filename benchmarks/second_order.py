"""Second-order methods against scipy.optimize.minimize on the same compiled loss.

    python -m benchmarks.second_order [--mode FAST_COMPILE] [--json out.json]
                                      [--plot docs/_static/second_order_rosenbrock.png]

1. Rosenbrock in 2, 10 and 100 dimensions from (-1.2, 1, -1.2, 1, ...), to
   loss < 1e-10: the function+gradient evaluations (one pass each) and
   Hessian-vector products each method needs, counted up to the first
   evaluated loss below 1e-10. SciPy's methods get the loss and gradient
   (and Hv) from downhill's own compiled functions
   (:class:`downhill.objective.FlatObjective`), so both sides evaluate the
   very same code. Wall times are printed for information only (shared
   machine).
2. Ackley from (25, 20): what each method reaches, then
   :func:`downhill.multistart` from seeded random starts.

Counts are deterministic for a given backend (Numba's fused kernels round
differently from FAST_COMPILE's Python ones, so the paths differ a little).
"""

import argparse
import json
import logging
import sys
import time

import numpy as np

TOL = 1e-10


def scipy_run(objective, x0, method):
    """Run scipy.optimize.minimize; evaluations until the first loss < TOL."""
    import scipy.optimize
    events = []

    def fun(x):
        monitors, grad = objective(x)
        events.append(monitors[0])
        return monitors[0], grad

    def hessp(x, v):
        events.append(None)
        return objective.hessian_vector(x, v)

    options = {'L-BFGS-B': dict(ftol=0, gtol=0, maxiter=20000),
               'BFGS': dict(gtol=1e-14, maxiter=20000),
               'trust-ncg': dict(gtol=1e-14, maxiter=20000),
               'Newton-CG': dict(xtol=1e-14, maxiter=20000)}[method]
    started = time.perf_counter()
    result = scipy.optimize.minimize(fun, x0, jac=True, method=method,
                                     hessp=hessp if method in ('trust-ncg', 'Newton-CG') else None,
                                     options=options)
    seconds = time.perf_counter() - started
    fg = hv = 0
    reached = False
    for value in events:
        if value is None:
            hv += 1
            continue
        fg += 1
        if value < TOL:
            reached = True
            break
    return dict(method=f'scipy {method}', fg=fg, hv=hv, reached=reached, iterations=result.nit,
                final_loss=float(result.fun), x_error=float(np.abs(result.x - 1).max()),
                seconds=seconds)


def downhill_run(problem, algo, mode, max_updates=20000, **hypers):
    """Run a downhill algorithm until the loss < TOL; evaluations, iterations and the trace."""
    import downhill
    problem.param.set_value(problem.start.copy())
    opt = downhill.build(algo, problem.loss, params=[problem.param], mode=mode)
    loop = dict(validate_every=10 ** 9, max_updates=max_updates)
    if algo in ('lbfgs', 'bfgs', 'newton-cg'):
        loop.update(gtol=0, ftol=0)
    trace = [float(np.sum(problem.numpy(problem.start)))]
    started = time.perf_counter()
    reached = False
    x = problem.start
    for train, _ in opt.iterate(None, **loop, **hypers):
        trace.append(train['loss'])
        x = problem.param.get_value()  # (the loop restores its best validated point at the end)
        if train['loss'] < TOL:
            reached = True
            break
    seconds = time.perf_counter() - started
    counts = getattr(opt, 'evaluations', {'fg': len(trace) - 1, 'hv': 0})
    return dict(method=f'downhill {algo}', fg=counts['fg'], hv=counts['hv'], reached=reached,
                iterations=len(trace) - 1, final_loss=trace[-1],
                x_error=float(np.abs(x - 1).max()), seconds=seconds, trace=trace)


def rosenbrock_table(dims, mode):
    import downhill
    from downhill import landscapes
    rows = []
    for d in dims:
        problem = landscapes.rosenbrock(d)
        objective = downhill.build('newton-cg', problem.loss, mode=mode)._compiled_step()
        objective.use([[]])
        for method in ('L-BFGS-B', 'trust-ncg', 'BFGS', 'Newton-CG'):
            rows.append(dict(d=d, **scipy_run(objective, problem.start.copy(), method)))
        for algo in ('lbfgs', 'newton-cg', 'bfgs'):
            rows.append(dict(d=d, **downhill_run(problem, algo, mode)))
        rows.append(dict(d=d, **downhill_run(problem, 'adam', mode, max_updates=10000,
                                             learning_rate=0.002)))
    return rows


def ackley_table(mode, starts, seed):
    import downhill
    from downhill import landscapes
    out = {'single': [], 'multistart': []}
    problem = landscapes.ackley()
    for algo in ('lbfgs', 'newton-cg', 'bfgs'):
        problem.param.set_value(problem.start.copy())
        opt = downhill.build(algo, problem.loss, mode=mode)
        opt.minimize(None, max_updates=1000)
        out['single'].append(dict(method=algo, final_loss=opt.evaluate(None)['loss'],
                                  x=problem.param.get_value().tolist(),
                                  evaluations=opt.evaluations))
    for algo in ('lbfgs', 'newton-cg'):
        for half_width in (5.0, 32.768):
            started = time.perf_counter()
            result = downhill.multistart(problem, starts, algo=algo, bounds=(-half_width, half_width),
                                         seed=seed, mode=mode)
            out['multistart'].append(dict(
                method=algo, bounds=half_width, starts=starts, seed=seed,
                best_loss=result.best.loss, best_x=result.best.x.tolist(),
                global_hits=int(np.sum(result.losses < 1e-6)),
                seconds=time.perf_counter() - started))
    return out


def print_tables(rows, ackley):
    print(f'Rosenbrock from (-1.2, 1, ...) to loss < {TOL:g}')
    print(f'{"d":>4}  {"method":<20} {"f+g evals":>9} {"Hv":>6} {"iters":>6} {"final loss":>11} '
          f'{"max|x-1|":>9} {"reached":>7} {"s":>6}')
    for r in rows:
        print(f'{r["d"]:>4}  {r["method"]:<20} {r["fg"]:>9} {r["hv"]:>6} {r["iterations"]:>6} '
              f'{r["final_loss"]:>11.3g} {r["x_error"]:>9.2g} {str(r["reached"]):>7} '
              f'{r["seconds"]:>6.2f}')
    for d in sorted({r['d'] for r in rows}):
        by = {r['method']: r for r in rows if r['d'] == d}
        print(f'd={d}: lbfgs/L-BFGS-B f+g = {by["downhill lbfgs"]["fg"] / by["scipy L-BFGS-B"]["fg"]:.3f}, '
              f'newton-cg/trust-ncg Hv = {by["downhill newton-cg"]["hv"] / by["scipy trust-ncg"]["hv"]:.3f}')
    print('\nAckley from (25, 20)')
    for r in ackley['single']:
        print(f'  {r["method"]:<10} final loss {r["final_loss"]:.6g} at {np.round(r["x"], 4)} '
              f'({r["evaluations"]})')
    for r in ackley['multistart']:
        print(f'  multistart {r["method"]:<10} {r["starts"]} starts in [-{r["bounds"]}, {r["bounds"]}]^2 '
              f'(seed {r["seed"]}): best loss {r["best_loss"]:.3g} at {np.round(r["best_x"], 6)}, '
              f'{r["global_hits"]} runs reach the global minimum, {r["seconds"]:.1f} s')


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    dims = sorted({r['d'] for r in rows})
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 3.6), squeeze=False)
    for ax, d in zip(axes[0], dims):
        for r in rows:
            if r['d'] != d or 'trace' not in r:
                continue
            trace = np.maximum(np.asarray(r['trace']), 1e-16)
            ax.semilogy(np.arange(len(trace)), trace, label=f'{r["method"].split()[1]} '
                        f'({r["iterations"]} it.)')
        ax.axhline(TOL, color='0.6', lw=0.8, ls=':')
        ax.set_xscale('symlog', linthresh=10)
        ax.set_xlim(left=0)
        ax.set_title(f'Rosenbrock, d = {d}')
        ax.set_xlabel('iteration')
        ax.set_ylabel('loss')
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f'wrote {path}')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mode', default=None, help='PyTensor mode (default: the configured one)')
    parser.add_argument('--dims', default='2,10,100')
    parser.add_argument('--starts', type=int, default=100)
    parser.add_argument('--seed', type=int, default=2)
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--plot', help='write the iterations-to-tolerance figure here')
    args = parser.parse_args(argv)
    logging.getLogger('downhill').setLevel(logging.WARNING)
    rows = rosenbrock_table([int(d) for d in args.dims.split(',')], args.mode)
    ackley = ackley_table(args.mode, args.starts, args.seed)
    print_tables(rows, ackley)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'rosenbrock': rows, 'ackley': ackley}, f, indent=1)
    if args.plot:
        plot(rows, args.plot)


if __name__ == '__main__':
    sys.exit(main())
