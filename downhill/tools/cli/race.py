"""``downhill race``: algorithms side by side on a test landscape, from the same start."""

import difflib
import inspect
import json
import math
import time

import click
import numpy as np

from .. import landscapes as landscapes_module
from ...optimizer import base, registry
from ...optimizer.registry import algorithms as registered_algorithms
from ...training.logs import StatusLine
from .group import main
from .keywords import _check_algos, _fmt_default, _settings_for, parse_settings, valid_keywords
from .terminal import _MODE_HELP, _fmt, _level, _logging, _mode, _table, _verbosity

__all__ = ['RACE_DEFAULTS', 'race_defaults', 'race_steps', 'run_race']


#: Per-landscape race settings for the built-in algorithms: the number of
#: updates, and the hyperparameters that make each algorithm do something
#: sensible there. (These are tuned starting points for the pictures, not
#: recommendations for real models.) ``'*'`` applies to every landscape.
RACE_DEFAULTS = {
    '*': {
        'steps': 500,
        'sgd': dict(learning_rate=1e-3, momentum=0.9),
        'nag': dict(learning_rate=1e-3, momentum=0.9),
        'rprop': dict(learning_rate=1e-2, rprop_increase=1.2, rprop_decrease=0.5),
        'rmsprop': dict(learning_rate=3e-3),
        'adagrad': dict(learning_rate=1.0),
        'adadelta': dict(rms_regularizer=1e-6),
        'esgd': dict(learning_rate=0.3),
        'adam': dict(learning_rate=0.03),
        'adamw': dict(learning_rate=0.03),
        'adamax': dict(learning_rate=0.03),
        'nadam': dict(learning_rate=0.03),
        # full-batch methods: a line search or trust region picks every step
        'lbfgs': {}, 'bfgs': {}, 'newtoncg': {},
        '*': dict(learning_rate=1e-3),
    },
    'rosenbrock': {
        'steps': 1000,
        'esgd': dict(learning_rate=1.0),
    },
    # From the plateau of Ackley's function small steps stop in the first bump;
    # these large ones get out (most of the others stay: that is the lesson).
    'ackley': {
        'adagrad': dict(learning_rate=3.0),
        'rmsprop': dict(learning_rate=1.0),
        'nag': dict(learning_rate=0.1, momentum=0.9),
    },
    # The start lies on a gentle slope, where steps of 1e-3 barely move.
    'gaussian_wells': {
        'sgd': dict(learning_rate=0.03, momentum=0.9),
        'nag': dict(learning_rate=0.03, momentum=0.9),
    },
}


def race_defaults(landscape, algo):
    """The race hyperparameters of ``algo`` on the landscape named ``landscape``.

    An algorithm without an entry of its own takes those of its nearest
    ancestor class that has one (so a subclass of Adam races like Adam).
    """
    table = RACE_DEFAULTS.get(landscape, {})
    generic = RACE_DEFAULTS['*']
    cls = registered_algorithms().get(algo)
    keys = [algo] + [registry.key(k.__name__) for k in (cls.__mro__[1:] if cls else ())]
    for key in keys:
        if key in table:
            return dict(table[key])
        if key in generic:
            return dict(generic[key])
    return dict(table.get('*', generic['*']))


def race_steps(landscape):
    return RACE_DEFAULTS.get(landscape, {}).get('steps', RACE_DEFAULTS['*']['steps'])


def _distance(problem, x):
    """Distance from ``x`` to the nearest global minimum."""
    minima = problem.metadata.get('all_minima')
    candidates = np.asarray(minima if minima is not None else [problem.minimum], dtype=float)
    x = np.asarray(x, dtype=float)
    candidates = candidates.reshape((-1,) + x.shape)
    return float(min(np.linalg.norm(x - m) for m in candidates))


def run_race(problem, algo, steps, hypers=None, start=None, tol=1e-3, mode=None, progress=None):
    """Run one algorithm on a landscape and record its path.

    Parameters
    ----------
    problem : downhill.tools.landscapes.Landscape
    algo : str
        The algorithm's name.
    steps : int
        Number of updates.
    hypers : dict, optional
        Keywords for :meth:`downhill.Optimizer.iterate`.
    start : array, optional
        The starting point (default: the landscape's).
    tol : float
        ``updates_to_tol`` counts the updates until ``loss - minimum <= tol``.
    mode : PyTensor mode, optional
    progress : callable, optional
        Called as ``progress(update)`` after every update.

    Returns
    -------
    dict
        ``algo``, ``hyperparameters``, ``path`` (array, ``steps + 1``
        points or fewer if it diverged), ``losses`` (the loss at each point,
        computed in float64), ``final_loss``, ``final_point``,
        ``distance`` (to the nearest global minimum), ``updates_to_tol``
        (None if never reached), ``diverged``, ``seconds`` (the updates) and
        ``compile_seconds``.
    """
    hypers = dict(hypers or {})
    start = np.array(problem.start if start is None else start, dtype=problem.dtype)
    param = problem.param
    param.set_value(start.copy())
    t0 = time.perf_counter()
    opt = base.build(algo, problem.loss, params=[param], mode=mode)
    loop = dict(max_updates=steps, validate_every=steps + 1, patience=steps)
    loop.update({k: v for k, v in hypers.items() if k in loop})
    rest = {k: v for k, v in hypers.items() if k not in loop}
    iterator = opt.iterate(None, **loop, **rest)
    t1 = time.perf_counter()
    path = [start.copy()]
    diverged = False
    try:
        for i, _ in enumerate(iterator, 1):
            x = param.get_value()
            path.append(x)
            if not np.all(np.isfinite(x)):
                diverged = True
                break
            if progress is not None:
                progress(i)
    finally:
        iterator.close()
    t2 = time.perf_counter()
    path = np.asarray(path, dtype=float)
    with np.errstate(all='ignore'):
        values = np.asarray([float(np.sum(problem.numpy(x))) for x in path])
    gap = values - problem.minimum_value
    hits = np.nonzero(gap <= tol)[0]
    final = values[-1]
    if not np.isfinite(final):
        diverged = True
    param.set_value(start.copy())
    return {
        'algo': registry.spelling(algo) if isinstance(algo, str) else algo,
        'hyperparameters': hypers,
        'path': path,
        'losses': values,
        'final_loss': float(final),
        'final_point': path[-1],
        'distance': _distance(problem, path[-1]) if np.all(np.isfinite(path[-1])) else math.inf,
        'updates_to_tol': int(hits[0]) if hits.size else None,
        'diverged': bool(diverged),
        'seconds': t2 - t1,
        'compile_seconds': t1 - t0,
    }


def _parse_point(text, d):
    try:
        values = [float(v) for v in text.replace(' ', '').split(',') if v != '']
    except ValueError:
        raise click.BadParameter(f'{text!r} is not a comma-separated list of numbers, e.g. -1.2,1',
                                 param_hint="'--start'") from None
    if len(values) != d:
        raise click.BadParameter(f'{text!r} has {len(values)} coordinates but the landscape has '
                                 f'{d} dimensions', param_hint="'--start'")
    return np.asarray(values)


def _load_landscape(name, dim):
    key = str(name).strip().lower().replace('-', '_')
    factory = landscapes_module.LANDSCAPES.get(key)
    if factory is None:
        close = difflib.get_close_matches(key, list(landscapes_module.LANDSCAPES), n=1)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        raise click.BadParameter(f'unknown landscape {name!r}{hint}; valid names: '
                                 f'{", ".join(landscapes_module.LANDSCAPES)}',
                                 param_hint="'LANDSCAPE'")
    kwargs = {}
    if dim is not None:
        if 'd' not in inspect.signature(factory).parameters:
            raise click.BadParameter(f'{key} is two-dimensional only', param_hint="'--dim'")
        kwargs['d'] = dim
    try:
        return key, factory(**kwargs)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--dim'") from None


@main.command('race')
@click.argument('landscape', metavar='LANDSCAPE')
@click.option('--algo', '-a', 'algos', multiple=True, metavar='NAME',
              help='An algorithm to race (repeat, or separate with commas). Default: all.')
@click.option('--steps', '-n', type=click.IntRange(min=1), default=None,
              help='Number of updates per algorithm (default: per landscape, usually 500).')
@click.option('--start', metavar='X,Y', default=None,
              help="Starting point, comma-separated (default: the landscape's).")
@click.option('--dim', '-d', type=click.IntRange(min=1), default=None,
              help='Number of dimensions, for the landscapes that take one (plots show the first two).')
@click.option('--set', '-s', 'settings', multiple=True, metavar='KEY=VALUE',
              help='A hyperparameter for every algorithm that takes it (repeatable), or '
                   'ALGO.KEY=VALUE for one algorithm; replaces the race defaults.')
@click.option('--tol', type=click.FloatRange(min=0), default=1e-3, show_default=True,
              help='Count the updates until loss - minimum <= TOL.')
@click.option('--plot', 'plot_path', type=click.Path(dir_okay=False, writable=True), default=None,
              help='Draw trajectories and loss curves to this image file (e.g. race.png).')
@click.option('--json', 'json_path', type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write every run's settings, path and losses to this JSON file ('-' for stdout).")
@click.option('--mode', default='python', show_default=True, help=_MODE_HELP)
@_verbosity
def race_command(landscape, algos, steps, start, dim, settings, tol, plot_path, json_path, mode,
                 verbose, quiet):
    """Race algorithms on a test landscape from the same start.

    Prints a table with each algorithm's final loss, its distance to the
    nearest global minimum, the updates it took to get within TOL of the
    minimum loss, and its wall time. Every algorithm starts from defaults
    tuned to do something sensible on each landscape (`downhill race
    LANDSCAPE --help` does not list them; `--json` records them); `--set`
    overrides them.

    LANDSCAPE is one of: {landscapes} (`downhill landscapes` describes
    them).

    \b
    Examples:
      downhill race rosenbrock --plot race.png
      downhill race beale --algo adam --algo nag --set nag.momentum=0.95
      downhill race quadratic --dim 10 --steps 2000 --json out.json
    """
    key, problem = _load_landscape(landscape, dim)
    names = _check_algos(algos)
    common, per_algo = parse_settings(settings, names)
    start_point = None if start is None else _start_point(start, problem)
    steps = steps or race_steps(key)
    if plot_path is not None:
        _require_matplotlib()
    results = _race_each(problem, key, names, steps, common, per_algo, start_point, tol, mode,
                         _level(verbose, quiet))
    # with --json -, stdout carries the JSON alone: the table goes to stderr
    to_stderr = json_path == '-'
    if not quiet:
        _print_results(problem, key, steps, tol, results, verbose, to_stderr)
    if plot_path is not None:
        _save_plot(problem, results, plot_path, steps)
        if not quiet:
            click.echo(f'wrote {plot_path}', err=to_stderr)
    if json_path is not None:
        _write_json(json_path, problem, key, steps, tol, results, quiet)


race_command.help = race_command.help.replace(
    '{landscapes}', ', '.join(landscapes_module.LANDSCAPES))


def _start_point(text, problem):
    """The --start point, in the shape of the landscape's parameter."""
    return _parse_point(text, problem.start.size).reshape(problem.start.shape)


def _race_hypers(landscape, name, common, per_algo):
    """The race defaults of ``name`` on ``landscape`` that it takes, updated with its --set values."""
    cls = registered_algorithms()[name]
    hypers = race_defaults(landscape, name)
    hypers = {k: v for k, v in hypers.items() if k in valid_keywords(cls)}
    hypers.update(_settings_for(cls, common, per_algo, name))
    return hypers


def _race_each(problem, key, names, steps, common, per_algo, start_point, tol, mode, level):
    """Run each algorithm in turn, showing its progress on the status line; return the results."""
    status = StatusLine()
    results = []
    with _logging(level, status):
        for index, name in enumerate(names):
            hypers = _race_hypers(key, name, common, per_algo)
            label = f'race {key}: {name} ({index + 1}/{len(names)})'
            status(f'{label} compiling', force=True)
            try:
                result = run_race(problem, name, steps, hypers, start=start_point, tol=tol,
                                  mode=_mode(mode),
                                  progress=lambda i: status(f'{label} update {i}/{steps}'))
            except (TypeError, ValueError) as err:
                status.clear()
                raise click.UsageError(f'{name}: {err}') from None
            finally:
                status.clear()
            results.append(result)
    return results


def _print_results(problem, key, steps, tol, results, verbose, to_stderr):
    """The race's table (and with -v the settings of each run), to stdout or stderr."""
    rows = []
    for r in results:
        rows.append([r['algo'], _fmt(r['final_loss']), _fmt(r['distance']),
                     _fmt(r['updates_to_tol'], 'd') if r['updates_to_tol'] is not None else '-',
                     f"{r['seconds']:.2f}", 'diverged' if r['diverged'] else ''])
    point = ','.join(f'{v:g}' for v in np.ravel(results[0]['path'][0]))
    click.echo(f'{key}: {steps} updates from ({point}); minimum {problem.minimum_value:g}',
               err=to_stderr)
    click.echo(_table(rows, ['algorithm', 'final loss', 'distance', f'updates to {tol:g}',
                             'time (s)', ''], ['<', '>', '>', '>', '>', '<']), err=to_stderr)
    if verbose:
        click.echo('settings:', err=to_stderr)
        for r in results:
            click.echo(f"  {r['algo']}: " + (' '.join(
                f'{k}={_fmt_default(v)}' for k, v in r['hyperparameters'].items()) or '(defaults)'),
                err=to_stderr)


def _write_json(json_path, problem, key, steps, tol, results, quiet):
    """Every run's settings, path and losses, as JSON to ``json_path`` ('-': stdout)."""
    payload = {
        'landscape': key, 'd': int(problem.d), 'steps': steps, 'tol': tol,
        'start': results[0]['path'][0].tolist(), 'minimum': np.asarray(problem.minimum).tolist(),
        'minimum_value': problem.minimum_value,
        'results': [_jsonable(r) for r in results],
    }
    text = json.dumps(payload, indent=1)
    if json_path == '-':
        click.echo(text)
    else:
        with open(json_path, 'w') as f:
            f.write(text + '\n')
        if not quiet:
            click.echo(f'wrote {json_path}')


def _jsonable(result):
    def clean(v):
        if isinstance(v, np.ndarray):
            return clean(v.tolist())
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (float, np.floating)):
            v = float(v)
            return v if math.isfinite(v) else str(v)
        if isinstance(v, np.integer):
            return int(v)
        return v
    return clean(result)


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.UsageError('--plot needs matplotlib, which is not installed; install it '
                               'with "pip install matplotlib"') from None


def _save_plot(problem, results, path, steps):
    from .. import plot
    paths = {r['algo']: r['path'] for r in results}
    losses = {r['algo']: r['losses'] for r in results}
    start = ','.join(f'{v:.3g}' for v in np.ravel(results[0]['path'][0]))
    title = f'{problem.name}: {steps} updates from ({start})'
    try:
        plot.race(problem, paths, losses, path=path, title=title)
    except (OSError, ValueError) as err:
        raise click.ClickException(f'cannot write {path}: {err}') from None

