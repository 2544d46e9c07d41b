"""Hyperparameter sweeps: one optimization per point of a grid, on any executor.

A sweep sends each run to an executor with the ``concurrent.futures``
protocol (``submit(fn, *args)`` returning a future with ``result()``): a
``ProcessPoolExecutor`` on one machine, a dask.distributed ``Client`` (or
``client.get_executor()``) or Ray's executor across many. Without one, the
runs go one after the other in this process.

What travels to a worker is the problem, pickled once: either a module-level
function that builds it (called in the worker, so the data may be opened
there: an HDF5 file, a memmap) or a dict holding the PyTensor graph and the
data (PyTensor graphs with their shared variables pickle; every run unpickles
its own copy). Either way, every run starts from the same parameter values,
and the caller's shared variables are never changed.
"""

import inspect
import itertools
import pickle
import time

from ..optimizer import base, hyperparameters as schema
from ..core import hyperparams
from ..training.logs import quiet
from .minimize import _wrap

#: Keywords of :func:`downhill.build` (``algo`` included).
BUILD_KEYWORDS = tuple(inspect.signature(base.build).parameters)
#: Keywords that say what the data is, as in :func:`downhill.tools.minimize`.
DATA_KEYWORDS = ('train', 'valid', 'batch_size', 'train_batches', 'valid_batches')
#: What only the problem (``build_args``) may give, not the grid.
PROBLEM_ONLY = ('loss', 'params', 'inputs', 'updates', 'train', 'valid')
#: :func:`downhill.tools.minimize`'s default algorithm.
DEFAULT_ALGO = 'rmsprop'


class Run:
    """The outcome of one point of a sweep.

    Attributes
    ----------
    point : dict
        The grid point: the keywords that differ between runs.
    train : list of OrderedDict
        The training monitors of every iteration (``'loss'`` first).
    valid : list of OrderedDict
        The validation monitors yielded with each iteration (those of the
        latest validation, repeated between validations).
    params : list of numpy.ndarray
        The parameters at the end (the best ones found, as
        :meth:`~downhill.Optimizer.iterate` restores them), in the
        optimizer's order.
    param_names : list of str
        The parameters' names (``None`` for an unnamed one).
    seconds : float
        Wall time of the run in its worker, from building the optimizer on.
    """

    def __init__(self, point, train, valid, params, param_names, seconds):
        self.point = point
        self.train = train
        self.valid = valid
        self.params = params
        self.param_names = param_names
        self.seconds = seconds

    @property
    def best_loss(self):
        """The lowest validation loss seen (``None`` if the run made no iteration)."""
        losses = [v['loss'] for v in self.valid if v is not None]
        return min(losses) if losses else None

    def __repr__(self):
        return (f'Run({self.point!r}, iterations={len(self.train)}, best_loss={self.best_loss!r}, '
                f'seconds={self.seconds:.3g})')


def sweep(build_args, grid, executor=None, **kwargs):
    """Run one optimization per point of a hyperparameter grid.

    Parameters
    ----------
    build_args : dict or callable
        The problem: a dict of the arguments of :func:`downhill.tools.minimize`
        (``loss`` required; ``train``, ``valid``, ``params``, ``inputs``,
        ``monitors``, ``algo``, ``batch_size``...), or a function of no
        arguments that returns such a dict. With an executor it is pickled
        once and sent to every run: a function must then be defined at module
        level (it is sent by name and called in the worker, which is where
        large data should be opened); a dict is pickled whole, graph and data.
    grid : dict of lists, or list of dicts
        A dict maps keywords to the values to try, and the sweep runs the
        cartesian product (the last key varies fastest); a list gives the
        points themselves. Keys are hyperparameters and loop settings of
        :meth:`~downhill.Optimizer.iterate` (``learning_rate``,
        ``momentum``, ``max_updates``...), ``algo``, ``batch_size``, or
        keywords of :func:`downhill.build` such as ``monitor_gradients``.
    executor : concurrent.futures.Executor, optional
        Anything with ``submit(fn, *args)`` returning a future with
        ``result()``: ``ProcessPoolExecutor``, a ``dask.distributed.Client``
        or its ``get_executor()``, Ray's executor. Default: run the points one
        after the other in this process.
    **kwargs
        Settings shared by every run (e.g. ``max_updates=100``,
        ``mode='FAST_COMPILE'``); a key may not be both here and in ``grid``.

    Returns
    -------
    list of Run
        One per point, in grid order, each with the point, the monitors of
        every iteration and the final parameters.

    Raises
    ------
    TypeError, ValueError
        Before any run starts, for a malformed grid, an unknown keyword, or
        (with an executor) a ``build_args`` that does not pickle. An error in
        a run is raised here as it was raised in the worker, with a note
        naming the point; the runs not yet started are cancelled.
    """
    points = grid_points(grid)
    _check_keywords(build_args, points, kwargs)
    if executor is None:
        results = (lambda p=point: _run_local(build_args, p, kwargs) for point in points)
        return _collect(results, points)
    if not callable(getattr(executor, 'submit', None)):
        raise TypeError(f'executor must have a submit(fn, *args) method (a concurrent.futures.'
                        f'Executor or a dask Client), got {type(executor).__name__}')
    payload = _pickled(build_args)
    futures = [executor.submit(_run_remote, payload, point, kwargs) for point in points]
    try:
        return _collect((future.result for future in futures), points)
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _collect(results, points):
    """Call each of ``results`` (functions returning a Run) in order; name the point that failed."""
    runs = []
    for i, result in enumerate(results):
        try:
            runs.append(result())
        except Exception as err:
            _add_note(err, f'downhill.sweep: raised by run {i}, point {points[i]!r}')
            raise
    return runs


def grid_points(grid):
    """The list of points (dicts) of a grid: a dict of lists (cartesian product) or a list of dicts."""
    if isinstance(grid, dict):
        for key, values in grid.items():
            if not isinstance(key, str):
                raise TypeError(f'grid keys must be keyword names (str), got {key!r}')
            if isinstance(values, (str, bytes, dict)) or not hasattr(values, '__iter__'):
                raise TypeError(f'grid[{key!r}] must be a list of values to try, got {values!r}')
            if len(list(values)) == 0:
                raise ValueError(f'grid[{key!r}] is empty: the sweep would have no points')
        keys = list(grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[k]) for k in keys))]
    if isinstance(grid, (list, tuple)):
        if not grid:
            raise ValueError('grid is an empty list: the sweep would have no points')
        for i, point in enumerate(grid):
            if not isinstance(point, dict):
                raise TypeError(f'grid[{i}] must be a dict of keywords, got {point!r}')
        return [dict(point) for point in grid]
    raise TypeError(f'grid must be a dict of lists or a list of dicts, got {type(grid).__name__}')


def _check_keywords(build_args, points, fixed):
    if not (isinstance(build_args, dict) or callable(build_args)):
        raise TypeError('build_args must be a dict of the arguments of downhill.minimize or a '
                        f'function returning one, got {type(build_args).__name__}')
    if isinstance(build_args, dict) and 'loss' not in build_args:
        raise ValueError('build_args has no "loss"')
    for i, point in enumerate(points):
        both = sorted(set(point) & set(fixed))
        if both:
            raise ValueError(f'grid point {i} sets {", ".join(both)}, also given as keyword '
                             'arguments of sweep(); give each in one place')
        given = sorted(set(point) & set(PROBLEM_ONLY))
        if given:
            raise ValueError(f'grid point {i} sets {", ".join(given)}; the graph and data belong '
                             'in build_args')
        algo = point.get('algo', fixed.get('algo'))
        if algo is None and isinstance(build_args, dict):
            algo = build_args.get('algo', DEFAULT_ALGO)
        hyperparams.reject_unknown(f'downhill.sweep (grid point {i})',
                                   (set(point) | set(fixed)) - _known_keywords(algo),
                                   _known_keywords(algo))


def _known_keywords(algo):
    """Every keyword a run accepts for algorithm ``algo`` (for ``None``: any algorithm)."""
    classes = list(base.algorithms().values())
    if isinstance(algo, str):
        classes = [base.lookup(algo)]
    elif isinstance(algo, type) and issubclass(algo, base.Optimizer):
        classes = [algo]
    names = set(BUILD_KEYWORDS) | set(DATA_KEYWORDS) | {'train', 'valid'}
    for cls in classes:
        names |= schema.valid_keywords(cls)
    return names


def _pickled(build_args):
    try:
        return pickle.dumps(build_args, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as err:
        what = ('a function defined at module level (not a lambda or a nested function)'
                if callable(build_args) else 'a dict of picklable values')
        raise TypeError(f'build_args must pickle to be sent to the executor\'s workers: {err}; '
                        f'pass {what}') from err


def _run_remote(payload, point, fixed):
    """What a worker runs: unpickle the problem and optimize one point."""
    return _run_local(pickle.loads(payload), point, fixed, fresh=False)


def _run_local(build_args, point, fixed, fresh=True):
    """Optimize one point; ``fresh`` copies a dict problem so each run starts the same."""
    if callable(build_args):
        args = build_args()
        if not isinstance(args, dict):
            raise TypeError(f'build_args() must return a dict of the arguments of '
                            f'downhill.minimize, got {type(args).__name__}')
    elif fresh:
        args = pickle.loads(_pickled(build_args))
    else:
        args = build_args
    args = dict(args)
    args.update(fixed)
    args.update(point)
    return _optimize(point, args)


def _optimize(point, args):
    started = time.perf_counter()
    built = {k: args.pop(k) for k in BUILD_KEYWORDS if k in args}
    built.setdefault('algo', DEFAULT_ALGO)
    batch_size = args.pop('batch_size', 32)
    train = _wrap(args.pop('train', None), 'train', batch_size, args.pop('train_batches', None))
    valid = args.pop('valid', None)
    valid_batches = args.pop('valid_batches', None)
    if valid is not None:
        valid = _wrap(valid, 'valid', batch_size, valid_batches)
    opt = base.build(**built)
    train_history, valid_history = [], []
    with quiet():  # a line per point of the grid (below), not each run's own log
        for train_monitors, valid_monitors in opt.iterate(train, valid, batch_size=batch_size, **args):
            train_history.append(train_monitors)
            valid_history.append(valid_monitors)
    params = [p.get_value() for p in opt._params]
    return Run(point, train_history, valid_history, params, [p.name for p in opt._params],
               time.perf_counter() - started)


def _add_note(err, note):
    if hasattr(err, 'add_note'):  # Python 3.11+
        err.add_note(note)


__all__ = ['Run', 'grid_points', 'sweep']
