"""``downhill algorithms`` and ``downhill landscapes``: what there is to run, read from the code."""

import inspect
import re

import click
import numpy as np

from .. import landscapes as landscapes_module
from ...algorithms.second_order import FullBatchOptimizer
from ...optimizer import registry
from ...optimizer.registry import algorithms as registered_algorithms
from .group import main
from ...optimizer.hyperparameters import common_hyperparameters
from .keywords import _algorithm_key, _fmt_default, hyperparameters, loop_keywords


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


# ---------------------------------------------------------- `algorithms`

@main.command('algorithms')
@click.argument('name', required=False)
def algorithms_command(name):
    """List every algorithm with its hyperparameters and defaults.

    With NAME, print that algorithm's full description instead.
    """
    algos = registered_algorithms()
    if name is not None:
        key = _algorithm_key(name, "'NAME'")
        cls = algos[key]
        own = hyperparameters(cls, common=False)
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
    common = common_hyperparameters()
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
