"""Turning worker results into rows, a Markdown table and a report."""

import numpy as np

from . import problems as P

LABEL = {('raw', 'base'): 'raw pytensor.function', ('raw', 'trust'): 'raw + trust_input',
         ('downhill', 'base'): 'downhill iterate()', ('downhill', 'trust'): 'downhill iterate() + trust_input*',
         ('numpy', 'base'): 'NumPy by hand', ('torch', 'base'): 'torch.optim eager', ('jax', 'base'): 'jax.jit + optax'}
ORDER = ['raw', 'downhill', 'numpy', 'torch', 'jax']


def _fmt_rate(x):
    if x is None:
        return '-'
    if x >= 100000:
        return f'{x / 1000:.0f}k'
    if x >= 10000:
        return f'{x / 1000:.1f}k'
    if x >= 1000:
        return f'{x / 1000:.2f}k'
    return f'{x:.1f}'


def _fmt(x, spec, none='-'):
    return none if x is None else format(x, spec)


def progress_line(r):
    head = f'{r.get("problem")} {r.get("impl")} {r.get("phase")}'
    if 'skipped' in r:
        return f'{head}: skipped ({r["skipped"]})'
    if 'error' in r:
        return f'{head}: ERROR {r["error"]}'
    parts = [f'first {r["first_s"]:.2f}s', f'import {r["import_s"]:.2f}s']
    for v, m in r.get('median', {}).items():
        parts.append(f'{v} {_fmt_rate(m)}/s')
    if 'other_cores' in r:
        parts.append(f'other cores {r["other_cores"]:.2f}')
    return f'{head}: ' + ', '.join(parts)


def rows(results):
    """One row per problem x impl x variant, every round's windows pooled."""
    out = []
    for problem in P.PROBLEMS:
        mine = [r for r in results if r.get('problem') == problem]
        if not mine:
            continue
        raw_rate = raw_cpu = None
        for impl in ORDER:
            runs = [r for r in mine if r.get('impl') == impl]
            if not runs:
                continue
            skipped = next((r['skipped'] for r in runs if 'skipped' in r), None)
            errors = [r['error'] for r in runs if 'error' in r]
            cold = [r['first_s'] for r in runs if r.get('phase') == 'first' and 'first_s' in r]
            ready = [r['ready_s'] for r in runs if r.get('phase') == 'first' and 'ready_s' in r]
            full = [r for r in runs if r.get('phase') == 'full' and 'rates' in r]
            variants = []
            for r in full:
                for v in r['rates']:
                    if v not in variants:
                        variants.append(v)
            if not variants:
                variants = ['base']
            for v in variants:
                rates = [x for r in full for x in r['rates'].get(v, [])]
                row = dict(problem=problem, algo=P.PROBLEMS[problem][0], dtype=P.PROBLEMS[problem][1],
                           impl=impl, variant=v, label=LABEL.get((impl, v), f'{impl} {v}'))
                if skipped:
                    row['skipped'] = skipped
                if errors:
                    row['error'] = errors[0]
                cpu = [r['cpu_rates'][v] for r in full if v in r.get('cpu_rates', {})]
                if cpu:
                    row['cpu_ups'] = _across_processes(cpu)
                if rates:
                    row['ups'] = _across_processes([r['rates'][v] for r in full if v in r['rates']])
                    row['ups_min'], row['ups_max'] = float(min(rates)), float(max(rates))
                    row['windows'] = len(rates)
                    row['steps_per_window'] = full[0]['steps_per_window']
                    row['round_medians'] = [float(np.median(r['rates'][v])) for r in full if v in r['rates']]
                    if impl == 'raw' and v == 'base':
                        raw_rate = row['ups']
                        raw_cpu = row.get('cpu_ups')
                if v == 'base':
                    row['first_cold_s'] = min(cold) if cold else None
                    row['ready_cold_s'] = min(ready) if ready else None
                    warm = [r['first_s'] for r in full]
                    row['first_warm_s'] = min(warm) if warm else None
                    imports = [r['import_s'] for r in runs if 'import_s' in r]
                    row['import_s'] = min(imports) if imports else None
                    peaks = [r['rss_peak_mb'] for r in full if 'rss_peak_mb' in r]
                    base = [r['rss_import_mb'] for r in full if 'rss_import_mb' in r]
                    row['rss_peak_mb'] = max(peaks) if peaks else None
                    row['rss_import_mb'] = max(base) if base else None
                    checks = [r for r in full if 'check_rel' in r]
                    if checks:
                        row['check_rel'] = max(r['check_rel'] for r in checks)
                        row['check_ok'] = all(r['check_ok'] for r in checks)
                        row['check_steps'] = checks[0]['check_steps']
                    losses = [r['final_loss'] for r in full if 'final_loss' in r]
                    row['final_loss'] = losses[0] if losses else None
                others = [r['other_cores'] for r in full if 'other_cores' in r]
                row['other_cores'] = max(others) if others else None
                out.append(row)
        for row in out:
            if row['problem'] == problem and raw_rate and row.get('ups'):
                row['ratio'] = row['ups'] / raw_rate
            if row['problem'] == problem and raw_cpu and row.get('cpu_ups'):
                row['cpu_ratio'] = row['cpu_ups'] / raw_cpu
    return out


def _across_processes(rates):
    """The geometric mean of each process's median rate.

    Not the median of all windows: the windows of one process agree, but two
    processes can differ twofold (on a VM one CPU can run at half the speed
    of another, and each round runs on another CPU), and the median of such
    a bimodal set lands on either mode or between them by chance.
    """
    medians = [float(np.median(r)) for r in rates if len(r)]
    return float(np.exp(np.mean(np.log(medians))))


COLUMNS = ['problem', 'implementation', 'upd/s', 'min..max', 'ratio vs raw',
           'upd per CPU-s (ratio)',
           'first update cold / warm (s)', 'cold: final step ready (s)', 'import (s)', 'peak RSS MB (after imports)',
           'check: max rel diff vs raw', 'other cores busy']


def markdown_table(rows):
    lines = ['| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
    for r in rows:
        name = f'{r["problem"]} ({r["algo"]}, {r["dtype"]})'
        if r.get('skipped'):
            lines.append(f'| {name} | {r["label"]} | skipped: {r["skipped"]} |' + ' |' * (len(COLUMNS) - 3))
            continue
        if r.get('error') and not r.get('ups'):
            err = r['error'].replace('|', '/').splitlines()[0][:120]
            lines.append(f'| {name} | {r["label"]} | ERROR: {err} |' + ' |' * (len(COLUMNS) - 3))
            continue
        spread = f'{_fmt_rate(r.get("ups_min"))}..{_fmt_rate(r.get("ups_max"))}' if r.get('ups') else '-'
        if r['variant'] == 'base':
            first = f'{_fmt(r.get("first_cold_s"), ".2f")} / {_fmt(r.get("first_warm_s"), ".2f")}'
            imp = _fmt(r.get('import_s'), '.2f')
            mem = (f'{r["rss_peak_mb"]:.0f} ({r["rss_import_mb"]:.0f})'
                   if r.get('rss_peak_mb') is not None else '-')
            ready = _fmt(r.get('ready_cold_s'), '.2f')
        else:
            first = imp = mem = ready = '(same process)'
        if 'check_rel' in r:
            check = f'{r["check_rel"]:.1e} {"ok" if r["check_ok"] else "MISMATCH"}'
            if r['impl'] == 'raw':
                check = 'reference'
        else:
            check = '-'
        lines.append('| ' + ' | '.join([
            name, r['label'], _fmt_rate(r.get('ups')), spread, _fmt(r.get('ratio'), '.2f'),
            f'{_fmt_rate(r.get("cpu_ups"))} ({_fmt(r.get("cpu_ratio"), ".2f")})', first, ready, imp, mem, check, _fmt(r.get('other_cores'), '.2f')]) + ' |')
    return '\n'.join(lines)


def markdown(meta, rows):
    v = meta.get('versions', {})
    vers = ', '.join(f'{k} {v[k]}' for k in ('python', 'numpy', 'pytensor', 'numba', 'torch', 'jax', 'optax')
                     if k in v)
    dl = meta.get('downhill') or {}
    lines = [
        f'Run of {meta["date"]}: `{meta["command"]}` ({meta["elapsed_s"]:.0f} s)',
        '',
        f'- machine: {meta["nproc"]} CPUs ({meta["cpu"]}), {meta["platform"]}',
        f'- versions: {vers}; downhill {dl.get("version", "?")} from `{dl.get("location", "?")}` '
        f'(git {meta.get("git_commit")}{", downhill/ has uncommitted changes" if meta.get("downhill_dirty") else ""})',
        f'- PyTensor mode: {meta.get("mode") or v.get("pytensor_mode", "default")} '
        f'(linker {v.get("pytensor_linker", "?")}), blas__ldflags `{v.get("blas__ldflags", "?")}`; '
        f'{meta["threads"]} threads per worker'
        + ('; workers run with MALLOC_MMAP_THRESHOLD_=32 MiB, MALLOC_TRIM_THRESHOLD_=256 MiB'
           if meta.get('malloc_keep') else ''),
        f'- {meta["rounds"]} timed process(es) per implementation x {meta["windows"]} windows of '
        f'~{meta["target_s"]} s'
        + ('; the main thread of round r\'s processes pinned to CPU r mod (CPUs) for its warm-up '
           'and windows' if meta.get('pinned') else '')
        + '; upd/s is the geometric mean of the processes\' median rates (wall clock); '
        '"upd per CPU-s" divides by the CPU time of the worker process instead (all its threads), '
        'which a busy neighbour disturbs much less',
        f'- load average (1 min) before the workers: {meta.get("loadavg_range", "?")}; at the end: '
        f'{" ".join(meta.get("loadavg_end") or [])}; "other cores busy" = cores used by OTHER '
        'processes during the worst timed process of that row (the machine is shared: these '
        'numbers come from a noisy machine)',
        '',
        markdown_table(rows),
        '',
    ]
    return '\n'.join(lines)


def loadavg_range(results):
    loads = [float(r['loadavg_before'][0]) for r in results if r.get('loadavg_before')]
    return f'{min(loads):.2f}..{max(loads):.2f}' if loads else '?'


def main(argv=None):
    """``python -m benchmarks.report RUN.json [OUT.md]``: the Markdown report of a saved run."""
    import json
    import sys
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        data = json.load(f)
    meta = dict(data['meta'])
    meta.setdefault('loadavg_range', loadavg_range(data['results']))
    text = markdown(meta, rows(data['results']))
    if len(argv) > 1:
        with open(argv[1], 'w') as f:
            f.write(text)
    else:
        print(text)


if __name__ == '__main__':
    main()
