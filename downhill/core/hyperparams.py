"""Checking keyword arguments: unknown names and values out of range.

Values that can only be mistakes (a string or NaN where a number belongs, a
negative learning rate, a half-life that is not positive) raise before any
work is done. Values that are legal but almost surely unwise (momentum of 1 or
more, a minimum RProp step above the maximum) log a warning and run, because
code written for the old downhill sets some of them on purpose.
"""

import difflib
import logging
import math
import numbers

import numpy as np

log = logging.getLogger('downhill')


def reject_unknown(where, unknown, valid):
    """Raise a TypeError naming each unknown keyword and the nearest valid names."""
    if not unknown:
        return
    valid = sorted(set(valid))
    lines = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ''
        lines.append(f'{where} got an unknown keyword argument {name!r}{hint}')
    raise TypeError('\n'.join(lines) + f"\nvalid keywords: {', '.join(valid)}")


def number(name, value, *, low=None, low_open=False, integer=False, finite=False):
    """Return ``value`` as a float (or int), raising if it is not a usable number.

    ``low`` is the smallest legal value (excluded when ``low_open``); with
    ``finite``, infinities are refused too. Strings, booleans, NaN and
    arrays with more than one element are always refused.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name} must be a number, got {value!r} ({type(value).__name__})')
    if integer:
        if not isinstance(value, numbers.Integral):
            # any other real (np.float32, Fraction, Decimal...) must be a whole number exactly:
            # int() would truncate 0.01 to 0
            if not math.isfinite(float(value)):
                raise ValueError(f'{name} must be finite, got {value!r}')
            if value != int(value):
                raise ValueError(f'{name} must be a whole number, got {value!r}')
        value = int(value)
    else:
        try:
            value = float(value)
        except OverflowError:
            raise ValueError(f'{name} must be a number a float can hold, got {value!r}') from None
        if math.isnan(value):
            raise ValueError(f'{name} must be a number, got NaN')
        if finite and math.isinf(value):
            raise ValueError(f'{name} must be finite, got {value!r}')
    if low is not None:
        bad = value <= low if low_open else value < low
        if bad:
            op = '>' if low_open else '>='
            raise ValueError(f'{name} must be {op} {low}, got {value!r}')
    return value


def halflife(name, value):
    """A finite half-life h > 0, returned as the EWMA weight exp(-ln 2 / h)."""
    value = number(name, value, low=0, low_open=True, finite=True)
    return float(np.exp(-np.log(2) / value))


def flag(name, value):
    """A boolean flag (bools, 0/1 and numpy bools accepted)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    # ``value in (0, 1)`` only for plain numbers: an array would make it ambiguous
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise TypeError(f'{name} must be True or False, got {shown(value)}')


def choice(name, value, options):
    """``value`` if it is one of ``options`` (strings), else a ValueError naming ``name``."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f'{name} must be one of {", ".join(map(repr, options))}, got {shown(value)}')
    return value


def shown(value):
    """``value`` for a message: its repr, shortened, and its type unless that is plain."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + '...'
    return text if type(value) in (bool, str, int, float) else f'{text} ({type(value).__name__})'


def warn_if(condition, message, *args):
    if condition:
        log.warning(message, *args)
