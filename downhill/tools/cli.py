"""The ``downhill`` command: list algorithms, race them on test landscapes, fit a model.

::

    downhill algorithms                    # every algorithm, its hyperparameters and defaults
    downhill landscapes                    # the test landscapes
    downhill race rosenbrock --plot race.png
    downhill fit model.py:problem --algo adam --set learning_rate=0.01 --save params.npz

Exit codes: 0 success, 1 failure, 2 usage error (bad option, unknown name).
"""

import contextlib
import difflib
import importlib.util
import inspect
import json
import logging
import math
import os
import re
import sys
import time
import traceback

import click
import numpy as np

from .. import __version__
from ..core import hyperparams
from ..optimizer import base, registry
from . import landscapes as landscapes_module
from ..optimizer.base import Optimizer, algorithms as registered_algorithms
from ..training.logs import StatusLine
from ..algorithms.second_order import FullBatchOptimizer

log = logging.getLogger('downhill')

__all__ = ['main', 'hyperparameters', 'loop_keywords', 'valid_keywords', 'parse_settings',
           'run_race', 'RACE_DEFAULTS']


# ----------------------------------------------------------- introspection

def _plain(text):
    """Reading text for a terminal: RST roles and literals unwrapped."""
    text = re.sub(r':[\w:]+:`([^`]*)`', r'\1', text)
    return text.replace('``', '')


def _first_line(obj):
    doc = inspect.getdoc(obj) or ''
    for line in doc.splitlines():
        if line.strip():
            return _plain(line.strip())
    return ''


def _prepare_parameters(klass):
    """(name, default) of the keywords of ``klass._prepare`` as defined in ``klass`` itself."""
    prepare = klass.__dict__.get('_prepare')
    if prepare is None:
        return []
    out = []
    for p in inspect.signature(prepare).parameters.values():
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != 'self':
            out.append((p.name, p.default))
    return out


def hyperparameters(cls, common=True):
    """The hyperparameters of an algorithm class, read from its ``_prepare`` methods.

    Walks the class's MRO and reads the signature of every ``_prepare``
    defined along it, most derived first (so a subclass's default wins).

    Parameters
    ----------
    cls : Optimizer subclass
    common : bool
        Include those that :class:`downhill.Optimizer` itself defines
        (``learning_rate``, ``momentum``, ...). Default True.

    Returns
    -------
    dict
        Keyword name to default value, the algorithm's own first.
    """
    own, shared = {}, {}
    for klass in cls.__mro__:
        for name, default in _prepare_parameters(klass):
            target = shared if klass is Optimizer else own
            if name not in own and name not in shared:
                target[name] = default
    if not common:
        return own
    return {**own, **shared}


def loop_keywords():
    """The keywords of :meth:`downhill.Optimizer.iterate` itself (``patience``, ...) with defaults."""
    out = {}
    for p in inspect.signature(Optimizer.iterate).parameters.values():
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ('self', 'train', 'valid'):
            out[p.name] = p.default
    return out


def valid_keywords(cls):
    """Every keyword that ``iterate()`` accepts for an algorithm class."""
    return set(hyperparameters(cls)) | set(loop_keywords()) | set(base.CLIP_SYNONYMS)


def _all_keywords():
    names = set()
    for cls in registered_algorithms().values():
        names |= valid_keywords(cls)
    return names


def _fmt_default(value):
    if isinstance(value, float):
        return f'{value:g}'
    return repr(value) if isinstance(value, str) else str(value)


# ------------------------------------------------------------ settings

_INT = re.compile(r'^[+-]?\d+$')
_FLOAT = re.compile(r'^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)$',
                    re.IGNORECASE)


def parse_value(text):
    """A ``--set`` value: an int, a float, True/False, None, or else the text itself."""
    text = text.strip()
    low = text.lower()
    if low in ('true', 'yes', 'on'):
        return True
    if low in ('false', 'no', 'off'):
        return False
    if low == 'none':
        return None
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def parse_settings(items, algos=None):
    """Parse ``--set`` items into common and per-algorithm keywords.

    Each item is ``KEY=VALUE``, or ``ALGO.KEY=VALUE`` for one algorithm only
    (e.g. ``adam.learning_rate=0.1``).

    Returns
    -------
    (dict, dict)
        The keywords for every algorithm, and ``{algo: {key: value}}``.

    Raises
    ------
    click.BadParameter
        For an item without ``=``, an unknown algorithm, or a key that no
        algorithm (or not the one named) accepts, naming the nearest keys.
    """
    common, per_algo = {}, {}
    known_algos = registered_algorithms()
    for item in items:
        if '=' not in item:
            raise click.BadParameter(f'{item!r} is not KEY=VALUE (e.g. learning_rate=0.01)',
                                     param_hint="'--set'")
        key, value = item.split('=', 1)
        key = key.strip()
        algo = None
        if '.' in key:
            algo, key = key.split('.', 1)
            algo = registry.key(algo)
            if algo not in known_algos:
                raise click.BadParameter(f'{item!r}: unknown algorithm {algo!r}; valid names: '
                                         f'{", ".join(known_algos)}', param_hint="'--set'")
        valid = valid_keywords(known_algos[algo]) if algo else _all_keywords()
        if key not in valid:
            where = f'{algo}' if algo else 'any algorithm'
            try:
                hyperparams.reject_unknown(where, {key: None}, valid)
            except TypeError as err:
                first = str(err).splitlines()[0]
                raise click.BadParameter(f'{item!r}: {first}', param_hint="'--set'") from None
        parsed = parse_value(value)
        if algo:
            per_algo.setdefault(algo, {})[key] = parsed
        else:
            common[key] = parsed
    if algos is not None:
        for key in common:
            users = [a for a in algos if key in valid_keywords(known_algos[a])]
            if not users:
                owners = [a for a, c in known_algos.items() if key in valid_keywords(c)]
                raise click.BadParameter(
                    f'{key!r} is not used by {", ".join(algos)}; it is a hyperparameter of '
                    f'{", ".join(owners)}', param_hint="'--set'")
        for algo in per_algo:
            if algo not in algos:
                raise click.BadParameter(f'settings for {algo!r}, which is not racing '
                                         f'(racing: {", ".join(algos)})', param_hint="'--set'")
    return common, per_algo


def _settings_for(cls, common, per_algo, name):
    valid = valid_keywords(cls)
    out = {k: v for k, v in common.items() if k in valid}
    out.update(per_algo.get(name, {}))
    return out


# ------------------------------------------------------------- terminal

class _EchoHandler(logging.Handler):
    """Log records through click.echo to the stderr of the moment (works under CliRunner)."""

    def __init__(self, status=None):
        super().__init__()
        self.status = status
        self.setFormatter(logging.Formatter('%(asctime)s downhill %(message)s', '%H:%M:%S'))

    def emit(self, record):
        try:
            if self.status is not None:
                self.status.clear()
            click.echo(self.format(record), err=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@contextlib.contextmanager
def _logging(level, status=None):
    """Route the ``downhill`` logger through click at ``level`` for one command."""
    saved = (list(log.handlers), log.level, log.propagate)
    handler = _EchoHandler(status)
    for h in saved[0]:
        log.removeHandler(h)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        for h in saved[0]:
            log.addHandler(h)
        log.setLevel(saved[1])
        log.propagate = saved[2]


def _level(verbose, quiet, default=logging.WARNING):
    if quiet:
        return logging.ERROR
    if verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return min(default, logging.INFO)
    return default


def _verbosity(f):
    f = click.option('-q', '--quiet', is_flag=True, help='Only print errors.')(f)
    f = click.option('-v', '--verbose', count=True,
                     help="Log the library's progress (INFO); -vv for every iteration (DEBUG).")(f)
    return f


def _mode(name):
    """A PyTensor compile mode from the --mode option."""
    if name is None or name == 'default':
        return None
    if name.lower() == 'python':
        from pytensor.compile.mode import Mode
        return Mode(linker='py', optimizer='fast_run')
    return name


_MODE_HELP = ("PyTensor compile mode: 'python' (graph rewrites, Python linker: no compiler, "
              "quick to start), 'default' (PyTensor's configured mode), or any PyTensor mode "
              "name such as FAST_RUN, NUMBA, C or FAST_COMPILE.")


# --------------------------------------------------------------- the group

@click.group(context_settings={'help_option_names': ['-h', '--help'], 'max_content_width': 100})
@click.version_option(__version__, '--version', prog_name='downhill', message='%(prog)s %(version)s')
def main():
    """Minimize PyTensor losses: list the algorithms, race them on test landscapes, fit a model.

    Run `downhill COMMAND --help` for the options of each command.
    """


# ---------------------------------------------------------- `algorithms`

@main.command('algorithms')
@click.argument('name', required=False)
def algorithms_command(name):
    """List every algorithm with its hyperparameters and defaults.

    With NAME, print that algorithm's full description instead.
    """
    algos = registered_algorithms()
    if name is not None:
        cls = algos.get(registry.key(name))
        if cls is None:
            raise click.BadParameter(f'unknown algorithm {name!r}; valid names: '
                                     f'{", ".join(registry.algorithm_names())}', param_hint="'NAME'")
        own = hyperparameters(cls, common=False)
        key = registry.key(name)
        click.echo(f'{registry.spelling(key)}  ({cls.__module__}.{cls.__qualname__})\n')
        click.echo(inspect.getdoc(cls) or '(no description)')
        click.echo('\nHyperparameters: ' + (', '.join(f'{k}={_fmt_default(v)}' for k, v in own.items())
                                             or '(only the common ones)'))
        return
    width = max(len(k) for k in registry.algorithm_names())
    for key, cls in algos.items():
        shown = registry.spelling(key)
        click.echo(f'{click.style(shown.ljust(width), bold=True)}  {_first_line(cls)}')
        own = hyperparameters(cls, common=False)
        if own:
            click.echo(' ' * (width + 2) + '  '.join(f'{k}={_fmt_default(v)}' for k, v in own.items()))
    common = {n: d for n, d in _prepare_parameters(Optimizer)}
    full = [registry.spelling(k) for k, c in algos.items() if issubclass(c, FullBatchOptimizer)]
    click.echo('\nEvery algorithm' + (f' except the full-batch ones ({", ".join(full)})' if full else '')
               + ' also takes: ' + ', '.join(f'{k}={_fmt_default(v)}' for k, v in common.items()))
    loop = loop_keywords()
    click.echo('and the training loop takes: '
               + ', '.join(f'{k}={_fmt_default(v)}' for k, v in loop.items()))
    click.echo('Run `downhill algorithms NAME` for the equations and references of one.')


# ---------------------------------------------------------- `landscapes`

@main.command('landscapes')
def landscapes_command():
    """List the test landscapes that `downhill race` can run on."""
    width = max(len(k) for k in landscapes_module.LANDSCAPES)
    for key, factory in landscapes_module.LANDSCAPES.items():
        problem = factory()
        click.echo(f'{click.style(key.ljust(width), bold=True)}  {_first_line(factory)}')
        start = ','.join(f'{v:g}' for v in np.ravel(problem.start))
        best = ','.join(f'{v:g}' for v in np.ravel(problem.minimum))
        click.echo(' ' * (width + 2) + f'start ({start})  minimum {problem.minimum_value:g} at ({best})')


# ----------------------------------------------------------------- race

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
    problem : downhill.landscapes.Landscape
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


def _fmt(value, spec='.4g'):
    if value is None:
        return '-'
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _table(rows, headers, align):
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    def line(items):
        return '  '.join(s.ljust(w) if a == '<' else s.rjust(w)
                         for s, w, a in zip(items, widths, align)).rstrip()
    out = [line(headers), line(['-' * w for w in widths])]
    out.extend(line(r) for r in cells)
    return '\n'.join(out)


def _check_algos(names):
    algos = registered_algorithms()
    if not names:
        return list(algos)
    out = []
    for name in names:
        for part in name.split(','):
            key = registry.key(part.strip())
            if key not in algos:
                close = difflib.get_close_matches(key, list(algos), n=1)
                hint = f' (did you mean {close[0]!r}?)' if close else ''
                raise click.BadParameter(f'unknown algorithm {part!r}{hint}; valid names: '
                                         f'{", ".join(registry.algorithm_names())}', param_hint="'--algo'")
            if key not in out:
                out.append(key)
    return out


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
    start_point = None
    if start is not None:
        start_point = _parse_point(start, problem.start.size)
        start_point = start_point.reshape(problem.start.shape)
    steps = steps or race_steps(key)
    if plot_path is not None:
        _require_matplotlib()
    status = StatusLine()
    level = _level(verbose, quiet)
    results = []
    with _logging(level, status):
        for index, name in enumerate(names):
            cls = registered_algorithms()[name]
            hypers = race_defaults(key, name)
            hypers = {k: v for k, v in hypers.items() if k in valid_keywords(cls)}
            hypers.update(_settings_for(cls, common, per_algo, name))
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
    rows = []
    for r in results:
        rows.append([r['algo'], _fmt(r['final_loss']), _fmt(r['distance']),
                     _fmt(r['updates_to_tol'], 'd') if r['updates_to_tol'] is not None else '-',
                     f"{r['seconds']:.2f}", 'diverged' if r['diverged'] else ''])
    # with --json -, stdout carries the JSON alone: the table goes to stderr
    to_stderr = json_path == '-'
    if not quiet:
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
    if plot_path is not None:
        _save_plot(problem, results, plot_path, steps)
        if not quiet:
            click.echo(f'wrote {plot_path}', err=to_stderr)
    if json_path is not None:
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


race_command.help = race_command.help.replace(
    '{landscapes}', ', '.join(landscapes_module.LANDSCAPES))


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
    from . import plot
    paths = {r['algo']: r['path'] for r in results}
    losses = {r['algo']: r['losses'] for r in results}
    start = ','.join(f'{v:.3g}' for v in np.ravel(results[0]['path'][0]))
    title = f'{problem.name}: {steps} updates from ({start})'
    try:
        plot.race(problem, paths, losses, path=path, title=title)
    except (OSError, ValueError) as err:
        raise click.ClickException(f'cannot write {path}: {err}') from None


# ------------------------------------------------------------------ fit

_FIT_KEYS = ('loss', 'params', 'inputs', 'train', 'valid', 'monitors', 'updates')
_FIT_EXPECTED = ("a dict with 'loss' (a scalar PyTensor expression) and optionally 'params', "
                 "'inputs', 'train', 'valid', 'monitors' and 'updates'")


def _load_function(spec):
    """Import SCRIPT.py and return (function, description) for SCRIPT.py:FUNCTION."""
    script, sep, name = spec.rpartition(':')
    if not sep or not script or not name:
        raise click.BadParameter(f'{spec!r} is not SCRIPT.py:FUNCTION (e.g. model.py:problem)',
                                 param_hint="'SCRIPT:FUNCTION'")
    if not name.isidentifier():
        raise click.BadParameter(f'{name!r} is not a Python function name', param_hint="'SCRIPT:FUNCTION'")
    if not os.path.isfile(script):
        raise click.BadParameter(f'{script!r}: no such file; expected the path of a Python '
                                 'script, as in SCRIPT.py:FUNCTION', param_hint="'SCRIPT:FUNCTION'")
    module_name = '_downhill_fit_' + re.sub(r'\W', '_', os.path.splitext(os.path.basename(script))[0])
    folder = os.path.dirname(os.path.abspath(script))
    spec_obj = importlib.util.spec_from_file_location(module_name, script)
    if spec_obj is None or spec_obj.loader is None:
        raise click.BadParameter(f'{script!r} cannot be imported as a Python script',
                                 param_hint="'SCRIPT:FUNCTION'")
    module = importlib.util.module_from_spec(spec_obj)
    sys.path.insert(0, folder)
    try:
        spec_obj.loader.exec_module(module)
    except Exception:
        raise _UserCodeError(f'running {script} failed') from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    func = getattr(module, name, None)
    if func is None:
        found = [k for k, v in vars(module).items()
                 if callable(v) and not k.startswith('_') and getattr(v, '__module__', None) == module_name]
        raise click.BadParameter(f'{script} has no function {name!r}'
                                 + (f'; it defines {", ".join(found)}' if found else ''),
                                 param_hint="'SCRIPT:FUNCTION'")
    if not callable(func):
        raise click.BadParameter(f'{script}:{name} is a {type(func).__name__}, not a function',
                                 param_hint="'SCRIPT:FUNCTION'")
    return func, f'{script}:{name}'


class _UserCodeError(click.ClickException):
    """An exception in the user's script: show its traceback, exit 1."""

    def __init__(self, message):
        etype, value, tb = sys.exc_info()
        # Drop the frames of this module: the user's frames are what matter.
        frames = traceback.extract_tb(tb)
        frames = [f for f in frames if os.path.abspath(f.filename) != os.path.abspath(__file__)]
        text = ''.join(traceback.format_list(frames)) + ''.join(
            traceback.format_exception_only(etype, value))
        super().__init__(f'{message}:\n{text.rstrip()}')


def _check_problem(result, where):
    from pytensor.graph.basic import Variable
    if not isinstance(result, dict):
        raise click.ClickException(f'{where} returned {type(result).__name__}; expected {_FIT_EXPECTED}')
    unknown = [k for k in result if k not in _FIT_KEYS]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), _FIT_KEYS, n=1)
            hints.append(f'{k!r}' + (f' (did you mean {close[0]!r}?)' if close else ''))
        raise click.ClickException(f'{where} returned unknown keys {", ".join(hints)}; expected '
                                   f'{_FIT_EXPECTED}')
    if 'loss' not in result:
        raise click.ClickException(f"{where} returned a dict without 'loss'; expected {_FIT_EXPECTED}")
    loss = result['loss']
    if not isinstance(loss, Variable) or getattr(loss.type, 'ndim', None) != 0:
        shape = f' with {loss.type.ndim} dimensions' if isinstance(loss, Variable) and hasattr(
            loss.type, 'ndim') else ''
        raise click.ClickException(f"{where}: 'loss' is a {type(loss).__name__}{shape}; expected a "
                                   "scalar PyTensor expression, e.g. ((x - 1) ** 2).sum() for a "
                                   "shared variable x")
    return result


def _param_names(params):
    names, used = [], set()
    for i, p in enumerate(params):
        name = p.name or f'param{i}'
        base_name, k = name, 1
        while name in used:
            name = f'{base_name}_{k}'
            k += 1
        used.add(name)
        names.append(name)
    return names


def _batches(data, name, batch_size):
    from ..training.dataset import as_dataset
    wrapped = as_dataset(data, name, batch_size)
    try:
        return wrapped, max(1, len(wrapped))
    except TypeError:
        return wrapped, None


@main.command('fit')
@click.argument('target', metavar='SCRIPT.py:FUNCTION')
@click.option('--algo', '-a', default='rmsprop', show_default=True, metavar='NAME',
              help='The algorithm (`downhill algorithms` lists them).')
@click.option('--set', '-s', 'settings', multiple=True, metavar='KEY=VALUE',
              help='Any keyword of iterate(): a hyperparameter (learning_rate=0.01), or a loop '
                   'setting (max_updates=1000, patience=10, validate_every=5, batch_size=64). '
                   'Repeatable.')
@click.option('--save', 'save_path', type=click.Path(dir_okay=False, writable=True), default=None,
              help='Save the best parameters, by name, to this .npz file.')
@click.option('--mode', default='default', show_default=True, help=_MODE_HELP)
@_verbosity
def fit_command(target, algo, settings, save_path, mode, verbose, quiet):
    """Minimize the loss that FUNCTION in SCRIPT.py builds.

    FUNCTION is called with no arguments and must return a dict with
    'loss', a scalar PyTensor expression, and optionally 'params' (the
    shared variables to optimize; default: all that the loss uses),
    'inputs' (the symbolic inputs, in the order the data gives them),
    'train' and 'valid' (data in any form that iterate() accepts: a list
    of arrays, a downhill.Dataset, a callable, ...; default: none, for a
    loss without inputs), 'monitors' (a dict of name to scalar
    expression) and 'updates'.

    Shows a status line (iteration, loss, best validation loss, updates/s)
    when stderr is a terminal, else logs progress. At the end the best
    parameters are kept and, with --save, written to an .npz file by name
    (load with numpy.load).

    \b
    Example:
      downhill fit model.py:problem --algo adam --set learning_rate=0.01 \\
          --set max_updates=500 --save params.npz
    """
    name = _check_algos([algo])[0]
    cls = registered_algorithms()[name]
    common, per_algo = parse_settings(settings)
    kwargs = _settings_for(cls, common, per_algo, name)
    unused = sorted(set(common) - set(kwargs))
    if unused:
        owners = {k: [a for a, c in registered_algorithms().items() if k in valid_keywords(c)]
                  for k in unused}
        raise click.BadParameter('; '.join(f'{k!r} is not a hyperparameter of {name} (it is one of '
                                           f'{", ".join(owners[k])})' for k in unused),
                                 param_hint="'--set'")
    func, where = _load_function(target)
    status = StatusLine()
    default_level = logging.WARNING if status.enabled else logging.INFO
    with _logging(_level(verbose, quiet, default_level), status):
        try:
            result = func()
        except Exception:
            raise _UserCodeError(f'{where}() raised an exception') from None
        problem = _check_problem(result, f'{where}()')
        try:
            opt = base.build(name, problem['loss'], params=problem.get('params'),
                             inputs=problem.get('inputs'), updates=problem.get('updates') or (),
                             monitors=problem.get('monitors') or (), mode=_mode(mode))
        except (TypeError, ValueError) as err:
            raise click.ClickException(f'{where}(): {err}') from None
        batch_size = kwargs.get('batch_size', 32)
        try:
            train, per_iteration = _batches(problem.get('train'), 'train', batch_size)
            valid = problem.get('valid')
            valid = None if valid is None else _batches(valid, 'valid', batch_size)[0]
        except (TypeError, ValueError) as err:
            raise click.ClickException(f'{where}(): {err}') from None
        try:
            iterator = opt.iterate(train, valid, **kwargs)
        except (TypeError, ValueError) as err:
            message = str(err)
            if any(message.startswith(k) or f'{k}=' in message for k in kwargs):
                raise click.UsageError(f'--set: {message}') from None
            raise click.ClickException(f'{where}(): {message}') from None
        summary = _run_fit(iterator, opt, status, per_iteration)
        if opt.best_loss is not None and math.isfinite(opt.best_loss):
            # the loop's own best: it includes the validation after the last update,
            # which no iteration yields
            summary['best_valid'] = opt.best_loss
    params = opt._params
    names = _param_names(params)
    if not quiet:
        best = summary['best_valid']
        click.echo(f"{name}: {summary['iterations']} iterations "
                   f"({summary['updates']} updates) in {summary['seconds']:.2f} s"
                   + (', interrupted' if summary['interrupted'] else ''))
        if summary['train'] is not None:
            click.echo('last training monitors: ' + _monitors(summary['train']))
        if best is not None:
            click.echo(f'best validation loss: {best:.6g} (parameters restored to it)')
    if save_path is not None:
        arrays = {n: p.get_value() for n, p in zip(names, params)}
        try:
            np.savez(save_path, **arrays)
        except OSError as err:
            raise click.ClickException(f'cannot write {save_path}: {err}') from None
        if not quiet:
            click.echo(f'saved {len(arrays)} parameters ({", ".join(names)}) to {save_path}')


def _monitors(values):
    return '  '.join(f'{k}={v:.6g}' for k, v in values.items())


def _run_fit(iterator, opt, status, per_iteration):
    started = time.perf_counter()
    iterations, best, train, interrupted = 0, None, None, False
    try:
        for train, valid in iterator:
            iterations += 1
            if valid is not None and math.isfinite(valid['loss']):
                best = valid['loss'] if best is None else min(best, valid['loss'])
            if status.enabled:
                elapsed = max(time.perf_counter() - started, 1e-9)
                rate = iterations * (per_iteration or 1) / elapsed
                status(f'iteration {iterations}  loss {train["loss"]:.6g}  best valid '
                       f'{"-" if best is None else format(best, ".6g")}  {rate:,.0f} updates/s')
    except KeyboardInterrupt:
        interrupted = True
        iterator.close()
        opt.set_params('best')
        log.info('interrupted; restored the best parameters')
    finally:
        status.clear()
    return {
        'iterations': iterations,
        'updates': iterations * (per_iteration or 1),
        'best_valid': best,
        'train': train,
        'seconds': time.perf_counter() - started,
        'interrupted': interrupted,
    }


if __name__ == '__main__':  # pragma: no cover
    main()
