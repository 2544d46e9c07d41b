"""Wall time to the MAP: downhill.pymc.find_map against pm.find_MAP (issue 9).

Run from the repository root, in a venv that has PyMC::

    python benchmarks/pymc_map.py                 # writes benchmarks/RESULTS_pymc.md
    python benchmarks/pymc_map.py --groups 2000   # a smaller model, to try it out

The model is a wide linear model: ``y ~ Normal(intercept + a[group] + X @ b,
sigma)`` with ``--groups`` one-hot group effects ``a`` (10,000 by default),
``--features`` dense slopes ``b`` and a HalfNormal ``sigma``: about 10k free
parameters, fitted to ``--rows`` rows of seeded synthetic data.

Every measurement runs in a fresh Python process, in PyTensor's default mode.
"cold" points ``PYTENSOR_FLAGS=base_compiledir`` at an empty directory, so
every kernel is compiled; "warm" reuses a directory that a previous process
of the same method has filled. The time measured is that of the call alone
(``find_map(...)`` or ``pm.find_MAP(...)``: compiling, optimizing and
mapping back), not the imports or the model's construction. Accuracy is
measured against the MAP that pm.find_MAP reaches with tight tolerances
(``ftol=1e-15, gtol=1e-9``), which is timed as a method of its own: that is
L-BFGS-B's wall time to the MAP, while its defaults stop early.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

METHODS = {
    'find_map(adam)': dict(kind='downhill', algo='adam'),
    'find_map(rprop)': dict(kind='downhill', algo='rprop'),
    'pm.find_MAP (L-BFGS-B)': dict(kind='pymc'),
    'pm.find_MAP (L-BFGS-B, tight)': dict(kind='reference'),
}
#: The method whose cold run is the reference point.
REFERENCE = 'pm.find_MAP (L-BFGS-B, tight)'


def build_model(rows, groups, features, seed=0):
    import numpy as np
    import pymc as pm

    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, size=rows)
    X = rng.normal(size=(rows, features))
    a_true = rng.normal(scale=0.5, size=groups)
    b_true = rng.normal(size=features)
    y = 1.0 + a_true[group] + X @ b_true + rng.normal(scale=0.8, size=rows)
    with pm.Model() as model:
        intercept = pm.Normal('intercept', 0, 5)
        a = pm.Normal('a', 0, 0.5, shape=groups)
        b = pm.Normal('b', 0, 2, shape=features)
        sigma = pm.HalfNormal('sigma', 2)
        pm.Normal('y', intercept + a[group] + pm.math.dot(X, b), sigma, observed=y)
    return model


def worker(args):
    """One measurement, in this process; prints one JSON line."""
    import logging
    import warnings

    warnings.filterwarnings('ignore')
    import numpy as np
    import pymc as pm
    import pytensor

    from downhill.pymc import find_map

    logging.getLogger('downhill').setLevel(logging.WARNING)
    method = METHODS[args.worker]
    model = build_model(args.rows, args.groups, args.features)
    started = time.perf_counter()
    extra = {}
    if method['kind'] == 'downhill':
        point, history = find_map(model=model, algo=method['algo'], return_monitors=True,
                                  progressbar=False)
        extra['updates'] = len(history)
    elif method['kind'] == 'pymc':
        point, raw = pm.find_MAP(model=model, progressbar=False, return_raw=True)
        extra['evaluations'] = int(raw.nfev)
    else:
        point, raw = pm.find_MAP(model=model, progressbar=False, return_raw=True, maxeval=100000,
                                 options=dict(ftol=1e-15, gtol=1e-9, maxiter=100000))
        extra['evaluations'] = int(raw.nfev)
    elapsed = time.perf_counter() - started
    logp = model.compile_logp(jacobian=False)
    value = float(logp({v.name: point[v.name] for v in model.value_vars}))
    out = dict(method=args.worker, seconds=elapsed, neg_logp=-value,
               pytensor=pytensor.__version__, pymc=pm.__version__,
               mode=str(pytensor.config.mode), linker=str(pytensor.config.linker), **extra)
    if args.save:
        np.savez(args.save, **{k: np.asarray(v) for k, v in point.items()})
    print(json.dumps(out), flush=True)


def run_one(method, compiledir, args, save=None):
    env = dict(os.environ, PYTENSOR_FLAGS=f'base_compiledir={compiledir}',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', method, '--rows', str(args.rows),
           '--groups', str(args.groups), '--features', str(args.features)]
    if save:
        cmd += ['--save', save]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{method} failed:\n{proc.stderr[-3000:]}')
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result['process_seconds'] = time.perf_counter() - started
    return result


def error(path, reference):
    import numpy as np

    ours = dict(np.load(path))
    worst = 0.0
    for name in ('intercept', 'a', 'b', 'sigma'):
        worst = max(worst, float(np.max(np.abs(ours[name] - reference[name]))))
    return worst


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', type=int, default=100_000)
    parser.add_argument('--groups', type=int, default=10_000)
    parser.add_argument('--features', type=int, default=20)
    parser.add_argument('--repeat', type=int, default=2, help='warm runs per method (best kept)')
    parser.add_argument('--out', default=os.path.join(HERE, 'RESULTS_pymc.md'))
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--save', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import numpy as np

    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix='pymc_map_') as tmp:
        ref_path = os.path.join(tmp, 'reference.npz')
        order = [REFERENCE] + [m for m in METHODS if m != REFERENCE]
        for method in order:
            cache = os.path.join(tmp, f'cache{order.index(method)}')
            path = ref_path if method == REFERENCE else os.path.join(tmp, 'point.npz')
            cold = run_one(method, cache, args, save=path)
            if method == REFERENCE:
                ref = cold
                reference = dict(np.load(ref_path))
                path = os.path.join(tmp, 'point.npz')
            cold['error'] = error(ref_path if method == REFERENCE else path, reference)
            warm = None
            for _ in range(args.repeat):
                result = run_one(method, cache, args, save=path)
                result['error'] = error(path, reference)
                if warm is None or result['seconds'] < warm['seconds']:
                    warm = result
            for label, r in (('cold', cold), ('warm', warm)):
                rows.append((method, label, r))
                print(f"{method:32s} {label}: {r['seconds']:7.2f} s  "
                      f"-logp gap {r['neg_logp'] - ref['neg_logp']:.2e}  max|err| {r['error']:.1e}",
                      flush=True)
    load_after = os.getloadavg()
    n_free = 1 + args.groups + args.features + 1
    lines = [
        '# find_map vs pm.find_MAP: wall time to the MAP',
        '',
        f'Written by `python benchmarks/pymc_map.py` on {time.strftime("%Y-%m-%d")}.',
        '',
        f'- Machine: {machine()}',
        f'- PyMC {ref["pymc"]}, PyTensor {ref["pytensor"]}, NumPy {np.__version__}; '
        f'PyTensor\'s default mode (linker `{ref["linker"]}`)',
        f'- Model: `y ~ Normal(intercept + a[group] + X @ b, sigma)`, {args.rows:,} rows, '
        f'{args.groups:,} one-hot group effects, {args.features} dense slopes: '
        f'**{n_free:,} free parameters**',
        f'- Reference MAP: the cold run of {REFERENCE} (`ftol=1e-15, gtol=1e-9`), '
        f'-logp = {ref["neg_logp"]:.6f}; errors are against it (a negative -logp gap is a point '
        'better than the reference)',
        f'- Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after: the machine '
        'is shared, so compare within a run and expect noise of tens of percent',
        '- *seconds*: the call alone (compile + optimize + map back), in a fresh process; '
        '*cold*: empty compile cache (`PYTENSOR_FLAGS=base_compiledir=<new dir>`); *warm*: '
        f'the cache filled by an earlier process (best of {args.repeat}). *process*: the whole '
        'process, imports and data included. Defaults of each method, nothing tuned.',
        '',
        '| method | cache | seconds | process s | steps | -logp - reference | max abs error |',
        '|---|---|---:|---:|---:|---:|---:|',
    ]
    for method, label, r in rows:
        steps = r.get('updates', r.get('evaluations'))
        unit = 'updates' if 'updates' in r else 'evals'
        lines.append(f"| {method} | {label} | {r['seconds']:.2f} | {r['process_seconds']:.1f} | "
                     f"{steps} {unit} | {r['neg_logp'] - ref['neg_logp']:.2e} | {r['error']:.1e} |")
    lines.append('')
    with open(args.out, 'w') as f:
        f.write('\n'.join(lines))
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
