r"""Run an optimizer from many starting points and keep the best.

A local method (L-BFGS, Newton-CG, Adam...) finds the minimum of the basin
it starts in. On a landscape with many basins (Ackley's function, a sum of
Gaussian wells) the global minimum is found by starting in many places:
:func:`multistart` runs the same optimization from each starting point
(given, or drawn uniformly in a box with a seed) and returns every run and
the best one.

How the runs are made:

* **vectorized**, when the loss allows it: for a first-order algorithm
  (one whose update is elementwise, so points do not interact) on a loss of
  one parameter, the loss is rewritten for a stack of points with
  :func:`pytensor.graph.replace.vectorize_graph` and all the points move in
  one compiled step (``vectorize=True``; the default ``'auto'`` does this
  whenever it applies). The points then share one loop: the same number of
  iterations, and early stopping on the sum of their losses.
* **one after the other**, in this process (the default for full-batch
  methods, whose line searches differ from point to point): the optimizer
  is built and compiled once and restarted from each point.
* **on an executor**: any :class:`concurrent.futures.Executor`
  (``executor=ThreadPoolExecutor(2)``, ``ProcessPoolExecutor(2)``...). Each
  task gets its own copy of the problem: the loss graph is pickled (PyTensor
  graphs and shared variables pickle), or, when ``problem`` is a function,
  that function is sent by reference and called in the task to build the
  graph there (it must then be defined at module level for a process pool).
  Each task compiles its own functions.

Results are in the order of the starting points whatever the executor.
"""

import dataclasses
import logging
import math
import pickle

import numpy as np

from ..core import graph
from ..optimizer import registry
from ..training.logs import quiet

log = logging.getLogger('downhill')

__all__ = ['multistart', 'MultistartResult', 'Run']


@dataclasses.dataclass(eq=False)
class Run:
    """One optimization from one starting point.

    Attributes
    ----------
    start : numpy.ndarray
        The starting point, flat (every parameter, in order).
    x : numpy.ndarray
        The final (best) point, flat.
    params : list of numpy.ndarray
        The final values of the parameters, in their shapes.
    loss : float
        The loss at ``x`` (over ``train``, averaged over its batches).
    iterations : int
        Iterations made.
    monitors : dict
        The training monitors of the last iteration (empty if none ran).
    """

    start: np.ndarray
    x: np.ndarray
    params: list
    loss: float
    iterations: int
    monitors: dict


@dataclasses.dataclass(eq=False)
class MultistartResult:
    """What :func:`multistart` returns.

    Attributes
    ----------
    best : Run
        The run with the lowest final loss (NaN losses never win).
    runs : list of Run
        Every run, in the order of the starting points.
    """

    best: Run
    runs: list

    @property
    def points(self):
        """The final points, one flat row per run."""
        return np.array([r.x for r in self.runs])

    @property
    def losses(self):
        """The final losses, one per run."""
        return np.array([r.loss for r in self.runs])


def multistart(problem, starts=10, algo='lbfgs', params=None, inputs=None, train=None,
               valid=None, bounds=None, seed=0, executor=None, vectorize='auto', mode=None,
               constraints=None, **kwargs):
    """Minimize from several starting points; return every run and the best.

    Parameters
    ----------
    problem : loss expression, Landscape, or callable
        A scalar PyTensor loss; a :class:`downhill.tools.landscapes.Landscape`
        (its ``loss`` and ``param``); or a function of no arguments
        returning either of these, or a ``(loss, params)`` pair, called
        once here and once in each executor task.
    starts : int or array of shape (n, size)
        The starting points, flat (``size`` is the total number of
        parameter elements, in the order of ``params``), or how many to
        draw uniformly inside ``bounds`` with ``seed``.
    algo : str
        The algorithm (default ``'lbfgs'``).
    params, inputs, mode, constraints
        As for :func:`downhill.build`.
    train, valid
        The data, as for :meth:`~downhill.Optimizer.iterate` (None: the loss
        has no inputs).
    bounds : (low, high), optional
        The box to draw starting points from: numbers or arrays of ``size``
        elements. Default for a two-dimensional Landscape: its plotting
        bounds.
    seed : int
        Seed for drawing the starting points.
    executor : concurrent.futures.Executor, optional
        Where to run the starts (default: in this process, one after the
        other, or vectorized).
    vectorize : 'auto', True or False
        Move all points in one compiled step (see the module's
        description). ``True`` raises if the problem does not allow it.
    **kwargs
        Hyperparameters and loop settings for
        :meth:`~downhill.Optimizer.iterate` (``max_updates``, ``gtol``...).

    Returns
    -------
    MultistartResult
    """
    cls = registry.lookup(algo)
    loss, params = _resolve(problem, params)
    size = sum(int(np.prod(p.get_value(borrow=True).shape)) for p in params)
    start_points = _starting_points(starts, size, bounds, seed, problem)
    if vectorize not in ('auto', True, False):
        raise ValueError(f"vectorize must be 'auto', True or False, got {vectorize!r}")
    why_not = _why_not_vectorized(cls, loss, params, executor, constraints, kwargs)
    if vectorize is True and why_not:
        raise ValueError(f'multistart cannot vectorize this problem: {why_not}')
    spec = dict(algo=algo, inputs=inputs, train=train, valid=valid, mode=mode, kwargs=kwargs)
    if vectorize == 'auto' and not why_not and len(start_points) > 1:
        runs = _vectorized(loss, params[0], start_points, spec)
    elif executor is None:
        runs = _sequential(loss, params, start_points, spec, constraints)
    else:
        runs = _on_executor(executor, problem, loss, params, start_points, spec, constraints)
    finite = [r for r in runs if math.isfinite(r.loss)]
    best = min(finite, key=lambda r: r.loss) if finite else runs[0]
    log.info('multistart: %d runs of %s, best loss %.6g (run %d)', len(runs), algo, best.loss,
             runs.index(best))
    return MultistartResult(best, runs)


def _resolve(problem, params):
    """``(loss, params)`` from a loss, a Landscape, a builder's result or a (loss, params) pair."""
    if callable(problem) and not hasattr(problem, 'owner'):
        problem = problem()
    if isinstance(problem, tuple) and len(problem) == 2:
        problem, params = problem
    elif hasattr(problem, 'loss') and hasattr(problem, 'param'):
        problem, params = problem.loss, [problem.param] if params is None else params
    graph.check_loss(problem)
    if params is None:
        params = graph.find_params(problem)
    elif not isinstance(params, (list, tuple)):
        params = [params]
    if not params:
        raise ValueError('multistart: the loss depends on no shared variables to optimize')
    return problem, list(params)


def _starting_points(starts, size, bounds, seed, problem):
    if isinstance(starts, (int, np.integer)) and not isinstance(starts, bool):
        if starts < 1:
            raise ValueError(f'starts must be >= 1 (or an array of points), got {starts}')
        if bounds is None:
            plot = getattr(problem, 'bounds', None)
            if plot is None:
                raise ValueError('multistart needs bounds=(low, high) to draw starting points '
                                 '(or give the points themselves as starts=)')
            low, high = np.resize([b[0] for b in plot], size), np.resize([b[1] for b in plot], size)
        else:
            try:
                low, high = bounds
            except (TypeError, ValueError):
                raise ValueError(f'bounds must be a (low, high) pair, got {bounds!r}') from None
        low = np.broadcast_to(np.asarray(low, dtype=float), (size,))
        high = np.broadcast_to(np.asarray(high, dtype=float), (size,))
        if np.any(~np.isfinite(low)) or np.any(~np.isfinite(high)) or np.any(low > high):
            raise ValueError(f'bounds must be finite with low <= high, got {bounds!r}')
        return np.random.default_rng(seed).uniform(low, high, size=(int(starts), size))
    points = np.asarray(starts, dtype=float)
    if points.ndim == 1 and size == 1:
        points = points[:, None]
    if points.ndim != 2 or points.shape[1] != size or len(points) == 0:
        raise ValueError(f'starts must be a number of points or an array of shape (n, {size}) '
                         f'(one flat row per start), got shape {points.shape}')
    return points


def _why_not_vectorized(cls, loss, params, executor, constraints, kwargs):
    from ..algorithms.second_order import FullBatchOptimizer
    if issubclass(cls, FullBatchOptimizer):
        return 'a full-batch method searches a line per point'
    if len(params) != 1:
        return 'the loss has several parameters'
    if executor is not None:
        return 'an executor was given'
    if constraints:
        return 'constraints were given'
    if graph.find_inputs(loss):
        return 'the loss has data inputs'
    if kwargs.get('max_gradient_norm'):
        return 'max_gradient_norm rescales the gradient of all points together'
    return None


def _flat_values(params):
    return np.concatenate([np.asarray(p.get_value(), dtype=float).ravel() for p in params])


def _set_flat(params, x):
    offset = 0
    for p in params:
        old = p.get_value(borrow=True)
        n = old.size
        p.set_value(np.asarray(x[offset:offset + n], dtype=old.dtype).reshape(old.shape))
        offset += n


def _run(opt, params, start, spec):
    """Optimize from ``start`` with ``opt`` (whose parameters are ``params``)."""
    _set_flat(params, start)
    count, last = 0, {}
    with quiet():  # one line per run of many would be a flood: the summary says how they went
        for train_monitors, _ in opt.iterate(spec['train'], spec['valid'], reset=True,
                                             **spec['kwargs']):
            count += 1
            last = dict(train_monitors)
        final = opt.evaluate(spec['train'])['loss']
    log.debug('multistart: a run of %d iterations ended at loss %.6g', count, final)
    return Run(np.array(start), _flat_values(params), [p.get_value() for p in params],
               float(final), count, last)


def _build(loss, params, spec, constraints):
    from ..optimizer.base import build
    return build(spec['algo'], loss, params=params, inputs=spec['inputs'], mode=spec['mode'],
                 constraints=constraints)


def _sequential(loss, params, start_points, spec, constraints):
    saved = [p.get_value() for p in params]
    try:
        opt = _build(loss, params, spec, constraints)
        return [_run(opt, params, start, spec) for start in start_points]
    finally:
        for p, value in zip(params, saved):
            p.set_value(value)


def _task(blob, builder, params_given, start, spec, constraints):
    """One run in an executor: build a private copy of the problem, then optimize."""
    if builder is not None:
        loss, params = _resolve(builder, params_given)
    else:
        loss, params, constraints = pickle.loads(blob)
    opt = _build(loss, params, spec, constraints)
    return _run(opt, params, start, spec)


def _on_executor(executor, problem, loss, params, start_points, spec, constraints):
    if callable(problem) and not hasattr(problem, 'owner') and not hasattr(problem, 'loss'):
        blob, builder = None, problem
        if constraints:
            raise ValueError('multistart: constraints refer to the parameters of this process, '
                             'not to those a builder function makes in each task; pass the loss '
                             'itself (it is pickled with its parameters and constraints)')
    else:
        blob, builder = pickle.dumps((loss, params, constraints)), None
    futures = [executor.submit(_task, blob, builder, None, start, spec,
                               None if builder is None else constraints)
               for start in start_points]
    return [f.result() for f in futures]


def _vectorized(loss, param, start_points, spec):
    """All points in one optimizer: the loss summed over a stack of copies of ``param``."""
    import pytensor
    from pytensor.graph.replace import vectorize_graph
    from ..optimizer.base import build
    value = param.get_value(borrow=True)
    stack = np.asarray(start_points, dtype=value.dtype).reshape((len(start_points),) + value.shape)
    points = pytensor.shared(stack, name=f'{param.name or "param"}_starts')
    each = vectorize_graph(loss, {param: points})
    opt = build(spec['algo'], each.sum(), params=[points], inputs=spec['inputs'],
                mode=spec['mode'])
    count, last = 0, {}
    for train_monitors, _ in opt.iterate(spec['train'], spec['valid'], **spec['kwargs']):
        count += 1
        last = dict(train_monitors)
    final = np.asarray(pytensor.function([], each, mode=spec['mode'])())
    xs = points.get_value()
    return [Run(np.array(s), xs[i].ravel().astype(float), [xs[i].copy()], float(final[i]),
                count, last) for i, s in enumerate(start_points)]
