"""What the algorithms take, read from the code, and the ``--set`` and ``--algo`` options read against it."""

import re

import click

from ...core import hyperparams
from ...optimizer import registry
from ...optimizer import hyperparameters as schema
from ...optimizer.base import Optimizer
from ...optimizer.hyperparameters import hyperparameters, valid_keywords  # noqa: F401 -- the schema
from ...optimizer.registry import algorithms as registered_algorithms

__all__ = ['hyperparameters', 'loop_keywords', 'valid_keywords', 'parse_value', 'parse_settings']


# ----------------------------------------------------------- introspection

def loop_keywords():
    """The keywords of :meth:`downhill.Optimizer.iterate` itself (``patience``, ...) with defaults."""
    return schema.loop_keywords(Optimizer)


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
            algo = _algorithm_key(algo, "'--set'", prefix=f'{item!r}: ')
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


def _check_algos(names):
    """The registry keys of the ``--algo`` names (repeated, or comma-separated), in order, once each.

    No names is every algorithm. An unknown name is a usage error that
    suggests the closest names (:func:`downhill.optimizer.registry.lookup`).
    """
    algos = registered_algorithms()
    if not names:
        return list(algos)
    out = []
    for name in names:
        for part in name.split(','):
            key = _algorithm_key(part.strip(), "'--algo'")
            if key not in out:
                out.append(key)
    return out


def _algorithm_key(name, param_hint, prefix=''):
    """The registry key of the algorithm ``name``; an unknown one is a click error naming the closest."""
    try:
        registry.lookup(name)
    except ValueError as err:
        raise click.BadParameter(f'{prefix}{err}', param_hint=param_hint) from None
    return registry.key(name)
