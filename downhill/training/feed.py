"""Feeding batches to compiled functions: checking each array, running a pass, naming the culprit.

A batch is a list of arrays, one per input of the loss. :func:`feeder`
checks and converts each (dtype, ndim, static shape, empty arrays refused)
once per distinct type, so that the compiled functions can skip PyTensor's
own per-call checks; :func:`pass_runner` runs a function on every batch of
one pass and averages its outputs (the monitors); when a compiled function
fails on a batch, :mod:`downhill.training.diagnose` names the input.
"""

import collections
import functools

import numpy as np

from ..core import graph
from . import diagnose
from .dataset import Batches, Passes


def feeder(inputs, outputs, where):
    """A function that checks and converts one batch of ``where`` for functions of ``inputs``.

    Its ``explain(err, values)`` is the error naming the input of ``values``
    behind ``err`` (an error of a function from ``inputs`` to ``outputs``), or None.
    """
    names = ', '.join(graph.describe(v) for v in inputs) or 'none'
    converters = [_converter(var, i, where) for i, var in enumerate(inputs)]
    n = len(inputs)

    def feed(batch):
        if len(batch) != n:
            raise ValueError(f'a batch of {where} holds {len(batch)} arrays but the loss has '
                             f'{n} inputs ({names})')
        return [conv(x) for conv, x in zip(converters, batch)] if n else ()

    def explain(err, values):
        return diagnose.explain(inputs, outputs, values, where, err)
    feed.explain = explain
    return feed


def pass_runner(fn, feed, data, names):
    """A function of no arguments that runs one pass of ``fn`` over ``data``.

    A fixed list of batches (``Batches``: ``None``, ``[[...], ...]``) is checked
    and converted once, here, instead of at every step; a single batch (the
    full-batch case, one update per iteration) gets a pass without a loop.
    While ``fn`` is still compiling in the background (a
    :class:`downhill.backend.compile.Background`, known by its ``settled()``),
    each call runs the version its count of calls says; once the final one
    runs, the runner made for it takes over.
    """
    settled = getattr(fn, 'settled', None)
    if settled is not None:
        final = settled()
        if final is None:
            return _switching_runner(fn, feed, data, names)
        fn = final
    monitors = _monitor_maker(tuple(names))
    explain = getattr(feed, 'explain', None)
    if isinstance(data, Batches):
        batches = _NamedList((feed(batch) for batch in data), data.name)
        if len(batches) == 1:
            args = batches[0]

            def one_batch():
                try:
                    return monitors(fn(*args))
                except Exception as err:
                    _raise_explained(err, _as_given, args, explain)
            return one_batch
        return functools.partial(_run_pass, fn, _as_given, batches, batches.name, monitors, explain)
    if isinstance(data, Passes):  # one frame less per pass: iterate what the user gave
        return functools.partial(_run_pass, fn, feed, data.iterable, data.name, monitors, explain)
    return functools.partial(_run_pass, fn, feed, data, data.name, monitors, explain)


@functools.lru_cache(maxsize=64)
def _monitor_maker(names):
    """``monitors(outputs)``: an OrderedDict from ``names`` (a tuple) to the outputs as floats.

    The function is written out for these names, one item assignment each:
    ``OrderedDict(zip(names, map(float, outputs)))`` costs ~0.3 us more,
    at every update.
    """
    scope = {f'k{i}': name for i, name in enumerate(names)}
    scope.update(OrderedDict=collections.OrderedDict, float=float)
    body = ''.join(f'    d[k{i}] = float(out[{i}])\n' for i in range(len(names)))
    source = f'def monitors(out):\n    d = OrderedDict()\n{body}    return d\n'
    exec(compile(source, '<downhill monitors>', 'exec'), scope)
    return scope['monitors']


def _switching_runner(pending, feed, data, names):
    """A pass runner for a function compiling in the background (see :func:`pass_runner`).

    Its ``settled()`` returns the runner it made for the final function, once
    a pass found the switch made (None before), for a caller that can replace this one.
    """
    # ``pending`` switches between two calls (within a multi-batch pass); once
    # it has, the next pass runs a runner made for the final function.
    meanwhile = pass_runner(lambda *args: pending(*args), feed, data, names)
    runner = None

    def run():
        nonlocal runner
        if runner is None:
            final = pending.settled()
            if final is None:
                return meanwhile()
            runner = pass_runner(final, feed, data, names)
        return runner()
    run.settled = lambda: runner
    return run


def _single_batch(data):
    return isinstance(data, Batches) and len(data) == 1


def _as_given(batch):
    return batch


class _NamedList(list):
    """Batches already checked and converted, with the data's ``name`` for messages."""

    def __init__(self, items, name):
        super().__init__(items)
        self.name = name


_NO_BATCH = object()


def _run_pass(fn, feed, data, name, monitors, explain=None):
    """Call ``fn`` on every batch of one pass over ``data`` (named ``name``); average each output.

    ``monitors`` (from :func:`_monitor_maker`) names the averages; ``explain``
    (the feeder's) turns an error of ``fn`` on a batch into one naming the input.
    """
    # the first batch apart: a pass of one batch (the full-batch case) pays
    # for no loop and no division
    batches = iter(data)
    batch = next(batches, _NO_BATCH)
    if batch is _NO_BATCH:
        raise ValueError(f'{name} produced no batches')
    try:  # costs nothing until it catches
        out = fn(*feed(batch))
        batch = next(batches, _NO_BATCH)
        if batch is _NO_BATCH:
            return monitors(out)
        totals = list(map(float, out))
        count = 1
        while batch is not _NO_BATCH:
            for i, v in enumerate(fn(*feed(batch))):
                totals[i] += float(v)
            count += 1
            batch = next(batches, _NO_BATCH)
    except Exception as err:
        _raise_explained(err, feed, batch, explain)
    return monitors([v / count for v in totals])


def _raise_explained(err, feed, batch, explain):
    """Raise the error naming the input of ``batch`` behind ``err`` if there is one, else ``err``.

    An error of the data's own (the feeder's checks, a generator that
    raised) is raised as it is: feeding the batch again raises it again, or
    the graph runs on the batch without an error.
    """
    if explain is None or batch is _NO_BATCH:
        raise err
    try:
        values = feed(batch)
    except Exception:  # noqa: BLE001 -- the feeder's own error is the one to report: ``err``
        raise err from None
    found = explain(err, values)
    if found is None:
        raise err
    raise found from err


def _converter(var, index, where):
    """Check and convert the array fed to input ``var``, the slow checks only once per type."""
    label = f'input {index} ({graph.describe(var)})'
    dtype = np.dtype(var.dtype)
    ndim = getattr(var.type, 'ndim', None)
    sparse = 'sparse' in type(var.type).__module__
    static = tuple(getattr(var.type, 'shape', None) or ())

    if any(s is not None for s in static):
        def convert(x):  # with trust_input the static shape is checked here
            if (type(x) is np.ndarray and x.dtype == dtype and x.ndim == ndim and x.size
                    and all(w is None or w == g for w, g in zip(static, x.shape))):
                return x
            return _coerce(x)
    else:
        def convert(x):
            if type(x) is np.ndarray and x.dtype == dtype and x.ndim == ndim and x.size:
                return x
            return _coerce(x)

    def _coerce(x):
        if sparse:
            if not hasattr(x, 'tocsr'):
                raise TypeError(f'{where}: {label} is sparse, got {type(x).__name__}')
            if x.dtype != dtype:
                if not np.can_cast(x.dtype, dtype, casting='same_kind'):
                    raise TypeError(f'{where}: {label} expects {dtype}, got {x.dtype} data')
                x = x.astype(dtype)
            return x
        if hasattr(x, 'to_numpy') and not isinstance(x, np.ndarray):
            x = x.to_numpy()
        if hasattr(x, 'toarray') and not isinstance(x, np.ndarray):
            raise TypeError(f'{where}: {label} is dense but got a {type(x).__name__}; '
                            'use a sparse input variable or convert with .toarray()')
        try:
            arr = np.asarray(x)
        except Exception as err:
            raise TypeError(f'{where}: {label}: cannot convert {type(x).__name__} to an array: {err}') from err
        if arr.dtype == object:
            raise TypeError(f'{where}: {label}: got {type(x).__name__} of Python objects, expected numbers')
        if arr.ndim != ndim:
            raise ValueError(f'{where}: {label} expects an array with {ndim} dimensions, '
                             f'got shape {arr.shape}')
        if arr.dtype != dtype:
            if not np.can_cast(arr.dtype, dtype, casting='same_kind'):
                raise TypeError(f'{where}: {label} expects {dtype}, got {arr.dtype} data; casting '
                                f'{arr.dtype} to {dtype} would lose information, so convert it yourself')
            arr = arr.astype(dtype)
        if arr.size == 0:
            # the loss of no rows is a mean over nothing: a NaN monitor, not a result
            raise ValueError(f'{where}: {label} got an empty array (shape {arr.shape}); '
                             'every batch needs at least one element per input')
        for axis, (want, got) in enumerate(zip(var.type.shape, arr.shape)):
            if want is not None and want != got:
                raise ValueError(f'{where}: {label} expects length {want} along axis {axis}, '
                                 f'got shape {arr.shape}')
        return arr

    return convert
