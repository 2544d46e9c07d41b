"""The orchestrator behind ``python -m benchmarks``.

For every problem and implementation it starts worker processes
(:mod:`benchmarks.worker`):

1. ``first`` with an empty compile cache (``PYTENSOR_FLAGS=base_compiledir=``
   a fresh temporary directory, which also holds PyTensor's Numba cache):
   the cold time to the first update;
2. ``full`` on that same, now warm, directory: the warm time to the first
   update, the check steps, warm-up and the timed windows (``--rounds`` times,
   the order of the implementations rotated each round). In round ``r`` the
   worker's main thread is pinned to CPU ``r`` mod (number of CPUs) once its
   thread pools exist, for the warm-up and the windows: on a VM one CPU can
   run at half the speed of another, and the default two rounds then give
   every implementation one process on each (``--no-pin`` leaves it to the
   scheduler).

Between processes it sleeps briefly (an idle OpenBLAS pool spins ~0.1 s after
its last call). For each process it records how many cores OTHER processes
kept busy meanwhile (from /proc/stat minus the worker's own CPU time), since
the machine may be shared.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import problems as P
from . import report

IMPLS = ('raw', 'downhill', 'numpy', 'torch', 'jax')
DEFAULT_IMPLS = ('raw', 'downhill', 'numpy', 'torch', 'jax')
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _cpu_busy():
    """(busy jiffies, total jiffies) of the whole machine, or None."""
    try:
        with open('/proc/stat') as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _loadavg():
    try:
        with open('/proc/loadavg') as f:
            return f.read().split()[:3]
    except OSError:
        return None


def _comma(value, valid, name):
    if value in (None, 'all'):
        return list(valid)
    items = [v.strip() for v in value.split(',') if v.strip()]
    bad = [v for v in items if v not in valid]
    if bad:
        raise SystemExit(f'unknown {name}: {", ".join(bad)}; valid: {", ".join(valid)}')
    return items


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='python -m benchmarks',
        description="Updates per second of downhill's iterate() against one raw compiled "
                    'pytensor.function with the same updates (and torch / JAX+optax when '
                    'installed), each in its own process.')
    p.add_argument('--problem', default='all',
                   help=f'comma list of {", ".join(P.PROBLEMS)} (default all)')
    p.add_argument('--impl', default=','.join(DEFAULT_IMPLS),
                   help='comma list of raw,downhill,numpy,torch,jax (default all; numpy: the '
                        'hand-written NumPy updates of mlp and matfact; peers are skipped when '
                        'not importable)')
    p.add_argument('--quick', action='store_true',
                   help='one round, 3 short windows, no cold-cache runs (shares one warm '
                        'compile cache): ~1 min when the cache is warm')
    p.add_argument('--size', default='full', choices=sorted(P.SIZES),
                   help="problem sizes ('tiny' is for the tests)")
    p.add_argument('--mode', default=None,
                   help='PyTensor compile mode for raw and downhill (default: PyTensor\'s own, '
                        'i.e. NUMBA on PyTensor 3); e.g. FAST_COMPILE, FAST_RUN, CVM')
    p.add_argument('--threads', type=int, default=2,
                   help='OMP/OpenBLAS/MKL/Numba threads in the workers (default 2)')
    p.add_argument('--rounds', type=int, default=None, help='timed processes per impl (default 2; quick 1)')
    p.add_argument('--windows', type=int, default=None, help='timed windows per process (default 7; quick 3)')
    p.add_argument('--target-s', type=float, default=None,
                   help='seconds per timed window (default 0.2; quick 0.05)')
    p.add_argument('--check-steps', type=int, default=None,
                   help='updates before the parameters are compared (default per problem)')
    p.add_argument('--no-cold', action='store_true', help='skip the cold-cache runs')
    p.add_argument('--malloc-keep', action='store_true',
                   help='run the workers with glibc malloc told to keep freed memory '
                        '(MALLOC_MMAP_THRESHOLD_=32 MiB, MALLOC_TRIM_THRESHOLD_=256 MiB): '
                        'see benchmarks/repro_numba_multioutput.py')
    p.add_argument('--no-quick-start', action='store_true',
                   help="build downhill with quick_start=False (compile the final step before the "
                        'first update, as the raw function does)')
    p.add_argument('--no-pin', action='store_true',
                   help='do not pin the main thread of round r\'s workers to CPU r mod (number of '
                        'CPUs) for their warm-up and timed windows')
    p.add_argument('--no-trust', action='store_true',
                   help='do not time the trust_input=True variants')
    p.add_argument('--compiledir', default=None,
                   help='use this compile cache for every run instead of fresh temporary ones '
                        '(no cold times then)')
    p.add_argument('--peer-python', default=None,
                   help='interpreter for the torch/jax workers (a venv that has them); '
                        'default: this one')
    p.add_argument('--downhill-path', default=None,
                   help='import downhill from this directory instead (another checkout)')
    p.add_argument('--json', default=None, metavar='OUT', help='write every result to OUT')
    p.add_argument('--md', default=None, metavar='OUT', help='write the Markdown report to OUT')
    p.add_argument('--keep', action='store_true', help='keep the temporary compile caches')
    p.add_argument('--timeout', type=float, default=600, help='seconds per worker process')
    p.add_argument('-v', '--verbose', action='store_true')
    args = p.parse_args(argv)
    args.problems = _comma(args.problem, tuple(P.PROBLEMS), 'problem')
    args.impls = _comma(args.impl, IMPLS, 'impl')
    if args.quick:
        args.no_cold = True
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.windows = args.windows or (3 if args.quick else 7)
    args.target_s = args.target_s or (0.05 if args.quick else 0.2)
    return args


class Orchestrator:

    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix='downhill-bench-')
        self.results = []
        self.log = (lambda *a: print(*a, file=sys.stderr, flush=True))

    def env(self, compiledir):
        env = dict(os.environ)
        n = str(self.args.threads)
        for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS', 'NUMBA_NUM_THREADS'):
            env[var] = n
        flags = [f for f in env.get('PYTENSOR_FLAGS', '').split(',') if f and not f.startswith('base_compiledir=')]
        if compiledir:
            flags.append(f'base_compiledir={compiledir}')
        env['PYTENSOR_FLAGS'] = ','.join(flags)
        if self.args.malloc_keep:
            env['MALLOC_MMAP_THRESHOLD_'] = str(32 << 20)
            env['MALLOC_TRIM_THRESHOLD_'] = str(256 << 20)
        env['PYTHONPATH'] = ROOT + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
        return env

    def worker(self, cfg, compiledir):
        """Run one worker process; return its result dict with the load it saw."""
        out = os.path.join(self.tmp, f'{cfg["impl"]}-{cfg["problem"]}-{cfg["phase"]}-{len(self.results)}.json')
        cfg = dict(cfg, out=out)
        python = sys.executable
        if cfg['impl'] in ('torch', 'jax') and self.args.peer_python:
            python = self.args.peer_python
        time.sleep(0.15)
        before_cpu, before_child = _cpu_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
        load = _loadavg()
        started = time.perf_counter()
        try:
            proc = subprocess.run([python, '-m', 'benchmarks.worker', json.dumps(cfg)], cwd=ROOT,
                                  env=self.env(compiledir), capture_output=True, text=True,
                                  timeout=self.args.timeout)
            stderr, rc = proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as err:
            stderr, rc = f'timed out after {err.timeout} s', -1
        wall = time.perf_counter() - started
        after_cpu, after_child = _cpu_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            with open(out) as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = {'impl': cfg['impl'], 'problem': cfg['problem'], 'phase': cfg['phase'],
                      'error': f'worker exited with {rc}: {stderr.strip()[-2000:]}'}
        result['wall_s'] = wall
        result['loadavg_before'] = load
        if before_cpu and after_cpu:
            hz = os.sysconf('SC_CLK_TCK')
            busy = (after_cpu[0] - before_cpu[0]) / hz
            own = ((after_child.ru_utime - before_child.ru_utime)
                   + (after_child.ru_stime - before_child.ru_stime))
            result['other_cores'] = max(0.0, (busy - own) / wall)
        if self.args.verbose and stderr.strip():
            self.log(stderr.strip()[-3000:])
        result['config'] = {k: v for k, v in cfg.items() if k != 'out'}
        self.results.append(result)
        return result

    def base_cfg(self, impl, problem, phase):
        a = self.args
        return dict(impl=impl, problem=problem, phase=phase, size=a.size, mode=a.mode,
                    target_s=a.target_s, windows=a.windows, warmup_s=min(0.3, 3 * a.target_s),
                    check_steps=a.check_steps, downhill_path=a.downhill_path,
                    variants=[] if a.no_trust else ['trust'],
                    quick_start=False if a.no_quick_start else None)

    def run(self):
        a = self.args
        started = time.perf_counter()
        for pi, problem in enumerate(a.problems):
            dirs = {}
            for impl in a.impls:
                if a.compiledir:
                    dirs[impl] = a.compiledir
                elif a.no_cold:
                    dirs[impl] = ''  # PyTensor's own (persistent) compile cache
                else:
                    dirs[impl] = os.path.join(self.tmp, f'cache-{problem}-{impl}')
                    r = self.worker(self.base_cfg(impl, problem, 'first'), dirs[impl])
                    self.log(report.progress_line(r))
                    if 'skipped' in r:
                        dirs[impl] = None
            for rnd in range(a.rounds):
                order = a.impls[(pi + rnd) % len(a.impls):] + a.impls[:(pi + rnd) % len(a.impls)]
                for impl in order:
                    if dirs[impl] is None:  # skipped (not importable)
                        continue
                    cfg = self.base_cfg(impl, problem, 'full')
                    cfg['round'] = rnd
                    if not a.no_pin and hasattr(os, 'sched_setaffinity'):
                        cpus = sorted(os.sched_getaffinity(0))
                        cfg['pin_cpu'] = cpus[rnd % len(cpus)]
                    cfg['params_out'] = os.path.join(self.tmp, f'params-{problem}-{impl}-{rnd}.npz')
                    r = self.worker(cfg, dirs[impl])
                    self.log(report.progress_line(r))
                    if 'skipped' in r:
                        dirs[impl] = None
        self.check()
        meta = self.metadata(time.perf_counter() - started)
        if not a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return meta, self.results

    def check(self):
        """Compare each run's parameters after the check steps with the raw function's."""
        for r in self.results:
            cfg = r.get('config', {})
            if r.get('phase') != 'full' or 'error' in r or 'skipped' in r:
                continue
            ref = os.path.join(self.tmp, f'params-{r["problem"]}-raw-{cfg.get("round", 0)}.npz')
            mine = cfg.get('params_out')
            if not (os.path.exists(ref) and mine and os.path.exists(mine)):
                continue
            with np.load(ref) as a, np.load(mine) as b:
                rel = 0.0
                for k in a.files:
                    x, y = b[k].astype(np.float64), a[k].astype(np.float64)
                    scale = max(np.max(np.abs(y)), 1e-300)
                    rel = max(rel, float(np.max(np.abs(x - y)) / scale))
            dtype = P.PROBLEMS[r['problem']][1]
            tol = P.RTOL[dtype] if r['impl'] in ('raw', 'downhill') else 1e-3
            r['check_rel'] = rel
            r['check_tol'] = tol
            r['check_ok'] = bool(rel <= tol)

    def metadata(self, elapsed):
        a = self.args
        cpu = '?'
        try:
            with open('/proc/cpuinfo') as f:
                for line in f:
                    if line.startswith('model name'):
                        cpu = line.split(':', 1)[1].strip()
                        break
        except OSError:
            pass
        commit = dirty = None
        try:
            commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip() or None
            status = subprocess.run(['git', 'status', '--porcelain', '--', 'downhill'], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip()
            dirty = bool(status)
        except OSError:
            pass
        versions = {}
        for r in self.results:
            if r.get('impl') in ('raw', 'downhill') and r.get('versions'):
                versions.update(r['versions'])
        for r in self.results:
            if r.get('impl') in ('torch', 'jax') and r.get('versions'):
                for k in ('torch', 'jax', 'optax'):
                    if k in r['versions']:
                        versions[k] = r['versions'][k]
        versions.pop('base_compiledir', None)
        dl = next((r['downhill'] for r in self.results if r.get('downhill')), None)
        return dict(
            date=datetime.datetime.now().isoformat(timespec='seconds'),
            command='python -m benchmarks ' + ' '.join(sys.argv[1:]),
            nproc=os.cpu_count(), cpu=cpu, platform=platform.platform(),
            loadavg_end=_loadavg(), loadavg_range=report.loadavg_range(self.results), elapsed_s=elapsed, threads=a.threads, mode=a.mode,
            size=a.size, malloc_keep=a.malloc_keep, pinned=not a.no_pin and hasattr(os, 'sched_setaffinity'), quick_start=not a.no_quick_start, rounds=a.rounds, windows=a.windows, target_s=a.target_s,
            cold=not a.no_cold and not a.compiledir, git_commit=commit, downhill_dirty=dirty,
            downhill=dl, versions=versions)


def main(argv=None):
    args = parse_args(argv)
    orch = Orchestrator(args)
    meta, results = orch.run()
    rows = report.rows(results)
    table = report.markdown_table(rows)
    print(table)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'meta': meta, 'rows': rows, 'results': results}, f, indent=1, default=str)
    if args.md:
        with open(args.md, 'w') as f:
            f.write(report.markdown(meta, rows))
    failed = [r for r in rows if r.get('check_ok') is False or r.get('error')]
    return 1 if failed else 0
