"""Saying which input a batch failed on, when a compiled function raises on it.

A compiled step fails on data that does not fit the loss (a matrix with one
column too many, arrays of different lengths in one batch, a label past the
last class) with the backend's message: ``shapes (5,4) and (3,1) not
aligned``, naming no input. Only then, on the error path, the graph is run
again on the same values one node at a time
(:func:`downhill._compat.failing_node`); the inputs the failing node depends
on are the culprits the message names, each with its shape (and, for
integer inputs, the range of its values).
"""

import numpy as np

from .. import _compat
from ..core.graph import describe


class DataError(ValueError):
    """A batch does not fit the loss; the message names the inputs and their shapes."""


def explain(inputs, outputs, values, where, err):
    """A :class:`DataError` saying which of ``inputs`` made ``err``, or None.

    ``values`` are the arrays the compiled function got for ``inputs``;
    ``where`` names the data (``'train'``, ``'valid'``...). None when the
    graph runs on them without an error (then ``err`` did not come from the
    data: the caller re-raises it as it is).
    """
    inputs = list(inputs)
    found = _compat.failing_node(inputs, outputs, values)
    if found is None:  # cannot tell which node: every input, with the backend's message
        found = err, inputs
    error, culprits = found
    if error is None:
        return None
    given = {id(var): value for var, value in zip(inputs, values)}
    fed = [_described(var, given[id(var)]) for var in culprits if id(var) in given]
    if not fed:  # the failing node reads no input: name them all
        fed = [_described(var, value) for var, value in zip(inputs, values)]
    held = [_described(var, var.get_value(borrow=True)) for var in culprits if id(var) not in given]
    lengths = {np.shape(given[id(v)])[0] for v in culprits if id(v) in given and np.ndim(given[id(v)])}
    text = str(error).strip().splitlines()
    return DataError(
        f'{where}: a batch does not fit the loss: {"input" if len(fed) == 1 else "inputs"} '
        f'{" and ".join(fed)}{"; their lengths differ" if len(lengths) > 1 else ""}'
        f'{" (with " + ", ".join(held) + ")" if held else ""}: '
        f'{type(error).__name__}: {text[0] if text else ""}')


def _described(var, value):
    value = np.asarray(value)
    text = f'{describe(var)} of shape {value.shape}'
    if value.dtype.kind in 'iu' and value.size:
        text += f' (values {value.min()} to {value.max()})'
    return text


__all__ = ['DataError', 'explain']
