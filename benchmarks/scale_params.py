"""Scale in the parameter count: Rosenbrock from 10 to 10^7 dimensions.

    python -m benchmarks.scale_params                      # 10 .. 10^7, Adam, float64
    python -m benchmarks.scale_params --sizes 10,1e5 --algo rmsprop --md out.md

Each (size, implementation) runs in its own process: ``downhill`` (``iterate()``
with default settings: a validation every 10 updates, the best parameters
copied at each improvement; the first updates run through the quick start's
Python-linker step, the timed ones through the final step),
``downhill-compiled`` (the same with ``quick_start=False``) and ``raw`` (one ``pytensor.function`` with the
same update formulas, :func:`benchmarks.problems.raw_updates`). A process
reports updates/s (best of ``--windows`` timed windows after a warm-up) and
its peak resident memory (``VmHWM`` in ``/proc/self/status``) above its
resident memory just before the parameters were made (``base``). The
parameter's own size is ``8 n`` bytes (float64); ``copies`` is the peak above
``base``, less the fixed cost (the smallest such figure among the sizes under
10^5: compiled code, caches), divided by ``8 n``: how many parameter-sized arrays were alive at the peak.
Adam keeps 2 of its own (``m``, ``v``), RMSProp 2 (``f``, ``G``).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from . import problems as P
from .memory import status, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: The benchmark problem whose hyperparameters (and raw update formulas) each algorithm uses.
ALGO_PROBLEM = {'adam': 'rosenbrock-2d', 'rmsprop': 'rosenbrock-1000d'}
DEFAULT_SIZES = '10,100,1000,10000,100000,1000000,10000000'


def rosenbrock(n):
    import pytensor
    x0 = np.tile(np.array([-1.1, 0.0]), max(n // 2, 1))[:n].copy()
    x = pytensor.shared(x0, name='x')
    loss = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
    return x, loss


def worker(n, algo, impl, seconds, windows, mode):
    """Run one size in this process; return a dict of figures."""
    import pytensor
    import downhill
    if mode:
        pytensor.config.mode = mode
    problem = ALGO_PROBLEM[algo]
    base = status('VmRSS')
    x, loss = rosenbrock(n)
    if impl == 'raw':
        fn = pytensor.function([], loss, updates=P.raw_updates(problem, [x], pytensor.grad(loss, [x])))
        fn.trust_input = True

        def run(k):
            for _ in range(k):
                fn()
    else:
        opt = downhill.build(algo, loss, quick_start=impl == 'downhill')
        steps = opt.iterate(None, patience=10 ** 9, **P.downhill_kwargs(problem))

        def run(k):
            for _ in range(k):
                next(steps)
    started = time.perf_counter()
    run(1)
    first = time.perf_counter() - started
    if impl != 'raw':
        opt.wait_compiled()  # time the final step (the peak includes the quick updates)
    k = 1
    while True:  # warm up, and find a count that takes about seconds / windows
        started = time.perf_counter()
        run(k)
        took = time.perf_counter() - started
        if took > 0.2 * seconds / windows or k >= 10 ** 7:
            break
        k *= 4
    count = max(1, int(k * (seconds / windows) / max(took, 1e-9)))
    rates = []
    for _ in range(windows):
        started = time.perf_counter()
        run(count)
        rates.append(count / (time.perf_counter() - started))
    value = float(loss.eval()) if impl == 'raw' else float(opt.evaluate(None)['loss'])
    return dict(n=n, algo=algo, impl=impl, ups=max(rates), ups_all=rates, first_s=first,
                base_bytes=base, peak_bytes=status('VmHWM'), param_bytes=8 * n, loss=value,
                mode=str(mode or pytensor.config.mode))


def run_all(sizes, algos, impls, seconds, windows, mode, python=sys.executable):
    rows = []
    for algo in algos:
        for n in sizes:
            for impl in impls:
                cmd = [python, '-m', 'benchmarks.scale_params', '--worker', str(n), '--algo', algo,
                       '--impl', impl, '--seconds', str(seconds), '--windows', str(windows)]
                if mode:
                    cmd += ['--mode', mode]
                env = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1',
                           PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    raise SystemExit(f'worker failed: {" ".join(cmd)}\n{proc.stderr[-3000:]}')
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(_line(row), flush=True)
    _add_copies(rows)
    return rows


def _add_copies(rows):
    """Parameter-sized arrays alive at the peak, less the fixed cost (compiled code, caches).

    The fixed cost is the smallest peak above base among the sizes under
    10^5 (or the smallest size), so a compiler's one-off spike at one small
    size does not count against the large ones.
    """
    for row in rows:
        same = [r for r in rows if r['algo'] == row['algo'] and r['impl'] == row['impl']]
        small = [r for r in same if r['n'] < 10 ** 5] or [min(same, key=lambda r: r['n'])]
        fixed = min(r['peak_bytes'] - r['base_bytes'] for r in small)
        above = row['peak_bytes'] - row['base_bytes'] - fixed
        row['above_base_bytes'] = row['peak_bytes'] - row['base_bytes']
        row['copies'] = above / row['param_bytes'] if row['n'] >= 10 ** 5 else None


def _line(row):
    return (f"{row['algo']:8s} n={row['n']:>9d} {row['impl']:9s} {row['ups']:10.1f} updates/s "
            f"peak {row['peak_bytes'] / 2**20:8.1f} MiB (base {row['base_bytes'] / 2**20:.1f})")


def markdown(rows):
    lines = ['| algo | n | impl | updates/s | updates/s x n (M/s) | peak RSS MiB | above base MiB '
             '| parameter MiB | parameter-sized arrays at peak |',
             '|---|---:|---|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        copies = '' if r.get('copies') is None else f"{r['copies']:.2f}"
        lines.append(f"| {r['algo']} | {r['n']:,} | {r['impl']} | {r['ups']:,.1f} | "
                     f"{r['ups'] * r['n'] / 1e6:,.1f} | {r['peak_bytes'] / 2**20:,.1f} | "
                     f"{r['above_base_bytes'] / 2**20:,.1f} | {r['param_bytes'] / 2**20:,.2f} | {copies} |")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.scale_params', description=__doc__.split('\n')[0])
    p.add_argument('--sizes', default=DEFAULT_SIZES, help=f'comma list (default {DEFAULT_SIZES})')
    p.add_argument('--algo', default='adam', help='comma list of adam,rmsprop (default adam)')
    p.add_argument('--impl', default='raw,downhill',
                   help='comma list of raw, downhill, downhill-compiled (quick_start=False)')
    p.add_argument('--seconds', type=float, default=3.0, help='timed seconds per size (default 3)')
    p.add_argument('--windows', type=int, default=3, help='timed windows per size (default 3)')
    p.add_argument('--mode', default=None, help="PyTensor mode (default: PyTensor's default, Numba)")
    p.add_argument('--json', default=None, help='write the rows here')
    p.add_argument('--md', default=None, help='write a Markdown table here')
    p.add_argument('--worker', type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.algo, args.impl, args.seconds, args.windows,
                                args.mode)))
        return 0
    sizes = [int(float(s)) for s in args.sizes.split(',')]
    rows = run_all(sizes, args.algo.split(','), args.impl.split(','), args.seconds, args.windows,
                   args.mode)
    write_results(rows, markdown(rows), args.json, args.md)
    return 0


if __name__ == '__main__':
    sys.exit(main())
