"""``downhill fit``: minimize the loss that a function in the user's script builds."""

import contextlib
import difflib
import importlib.util
import logging
import math
import os
import re
import sys
import time
import traceback

import click
import numpy as np

from ...optimizer import base
from ...optimizer.registry import algorithms as registered_algorithms
from ...training.logs import StatusLine
from .group import main
from .keywords import _check_algos, _settings_for, parse_settings, valid_keywords
from .terminal import _MODE_HELP, _level, _logging, _mode, _verbosity

log = logging.getLogger('downhill')


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
    from ...training.dataset import as_dataset
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
    name, kwargs = _fit_settings(algo, settings)
    func, where = _load_function(target)
    status = StatusLine()
    default_level = logging.WARNING if status.enabled else logging.INFO
    with _logging(_level(verbose, quiet, default_level), status):
        problem = _call_user_function(func, where)
        opt = _build_optimizer(name, problem, where, mode)
        train, valid, per_iteration = _fit_data(problem, where, kwargs.get('batch_size', 32))
        iterator = _start_iterating(opt, train, valid, kwargs, where)
        summary = _run_fit(iterator, opt, status, per_iteration)
        if opt.best_loss is not None and math.isfinite(opt.best_loss):
            # the loop's own best: it includes the validation after the last update,
            # which no iteration yields
            summary['best_valid'] = opt.best_loss
    if not quiet:
        _print_summary(name, summary)
    if save_path is not None:
        _save_params(opt._params, save_path, quiet)


def _fit_settings(algo, settings):
    """The algorithm's registry key and its keywords from --set; a key it does not take is an error."""
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
    return name, kwargs


def _call_user_function(func, where):
    """The problem dict that the user's function returns, checked."""
    try:
        result = func()
    except Exception:
        raise _UserCodeError(f'{where}() raised an exception') from None
    return _check_problem(result, f'{where}()')


def _build_optimizer(name, problem, where, mode):
    """The optimizer for the problem; what build() refuses is an error naming the function."""
    try:
        return base.build(name, problem['loss'], params=problem.get('params'),
                          inputs=problem.get('inputs'), updates=problem.get('updates') or (),
                          monitors=problem.get('monitors') or (), mode=_mode(mode))
    except (TypeError, ValueError) as err:
        raise click.ClickException(f'{where}(): {err}') from None


def _fit_data(problem, where, batch_size):
    """``(train, valid, batches per iteration)`` from the problem's data (None: unknown)."""
    try:
        train, per_iteration = _batches(problem.get('train'), 'train', batch_size)
        valid = problem.get('valid')
        valid = None if valid is None else _batches(valid, 'valid', batch_size)[0]
    except (TypeError, ValueError) as err:
        raise click.ClickException(f'{where}(): {err}') from None
    return train, valid, per_iteration


def _start_iterating(opt, train, valid, kwargs, where):
    """``opt.iterate(...)``: a refused --set keyword is a usage error, anything else the function's."""
    try:
        return opt.iterate(train, valid, **kwargs)
    except (TypeError, ValueError) as err:
        message = str(err)
        if any(message.startswith(k) or f'{k}=' in message for k in kwargs):
            raise click.UsageError(f'--set: {message}') from None
        raise click.ClickException(f'{where}(): {message}') from None


def _print_summary(name, summary):
    """What the run did: iterations, updates, time, the last training monitors, the best loss."""
    best = summary['best_valid']
    click.echo(f"{name}: {summary['iterations']} iterations "
               f"({summary['updates']} updates) in {summary['seconds']:.2f} s"
               + (', interrupted' if summary['interrupted'] else ''))
    if summary['train'] is not None:
        click.echo('last training monitors: ' + _monitors(summary['train']))
    if best is not None:
        click.echo(f'best validation loss: {best:.6g} (parameters restored to it)')


def _save_params(params, save_path, quiet):
    """Write the parameters, by name, to the --save .npz file."""
    names = _param_names(params)
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

