"""The base of the full-batch methods: a flat vector, every batch, explicit stopping reasons."""

import collections
import logging
import math

import inspect

import numpy as np
import pytensor
import pytensor.tensor as pt

from ...core import graph, hyperparams, nonfinite
from ...optimizer import registry
from ...optimizer.base import CLIP_SYNONYMS, Optimizer
from ...core.stopping import StopTraining
from ..objective import FlatObjective

log = logging.getLogger('downhill')

__all__ = ['FullBatchOptimizer', 'check_arrays']

#: Hyperparameters of the stochastic methods that mean nothing here.
UNUSED = ('learning_rate', 'momentum', 'nesterov', 'max_gradient_norm', 'max_gradient_elem',
          'weight_decay') + CLIP_SYNONYMS

#: The constraints that are simple bounds (``downhill.prox`` operator names).
BOUNDS = ('box', 'nonnegative')


class FullBatchOptimizer(Optimizer, abstract=True):
    """Base of the full-batch methods: flat vector, all batches, stopping reasons.

    A subclass implements :meth:`_step` (one iteration from ``self._x``) and,
    if it keeps curvature information, :meth:`_forget`.
    """

    #: Whether the method needs Hessian-vector products.
    _hessian = False
    takes_all_batches = True
    #: Whether simple bounds (box, nonnegative) are supported.
    _bounded = True

    def __init__(self, loss, updates=(), **kwargs):
        name = registry.key(type(self).__name__)
        if updates:
            raise TypeError(
                f'{name}: updates= (state changed at every step) is not supported by full-batch '
                'methods, whose line search or trust region evaluates the loss several times '
                'per iteration')
        super().__init__(loss, updates=updates, **kwargs)
        self._check_bounds(name)
        if graph.random_updates([loss]):
            log.warning('%s: the loss draws random numbers; a full-batch method keeps the draws '
                        'fixed (the same numbers at every evaluation)', name)
        self._objective = None
        self._forget()

    def _check_bounds(self, name):
        for param, ops in self._constraints.items():
            for op in ops:
                label = getattr(op, 'name', None)
                if label in BOUNDS and self._bounded:
                    continue
                what = f'{op!r} on {graph.describe(param)}'
                if not self._bounded:
                    raise ValueError(f'{name} does not support constraints (got {what}); use '
                                     "'lbfgs' or 'bfgs' for simple bounds (downhill.prox.box, "
                                     'downhill.prox.nonnegative)')
                raise ValueError(f'{name} supports only simple bounds as constraints '
                                 '(downhill.prox.box, downhill.prox.nonnegative), handled by '
                                 f'projection; got {what}')

    # ------------------------------------------------------------ hyperparameters

    def _prepare(self, gtol=1e-5, ftol=2.2e-9, **kwargs):
        """Read the stopping tolerances.

        ``gtol``: stop when the largest element of the (projected) gradient
        is at most this. ``ftol``: stop when an iteration lowers the loss by
        at most ``ftol * max(|f|, |f_new|, 1)`` (SciPy's L-BFGS-B defaults).
        """
        name = registry.key(type(self).__name__)
        for key in UNUSED:
            if key in kwargs:
                raise TypeError(f'{name} does not use {key}: its step is chosen by a line '
                                'search or trust region, on the full-batch gradient')
        super()._prepare(**kwargs)
        self.gtol = hyperparams.number('gtol', gtol, low=0)
        self.ftol = hyperparams.number('ftol', ftol, low=0)

    def iterate(self, train=None, valid=None, max_updates=None, patience=5, validate_every=1,
                batch_size=32, **kwargs):
        """Optimize, yielding monitors after each iteration; see :meth:`Optimizer.iterate`.

        ``train`` is turned into the full list of its batches first (every
        batch of a Dataset of arrays; one pass of a callable), which every
        iteration uses; ``valid`` defaults to that same list, so validation
        computes the same full-batch loss. ``validate_every`` defaults to 1:
        each iteration is a full pass (or several), and validating after each
        one makes the best parameters restored at the end those of the last
        validated iteration.
        """
        return super().iterate(train, valid, max_updates=max_updates,
                               patience=patience, validate_every=validate_every,
                               batch_size=batch_size, **kwargs)

    def _log_hyperparameters(self, given):
        names = ['patience', 'validate_every', 'min_improvement']
        for klass in type(self).__mro__[:type(self).__mro__.index(Optimizer)]:
            prepare = klass.__dict__.get('_prepare')
            if prepare is not None:
                names += [p.name for p in inspect.signature(prepare).parameters.values()
                          if p.default is not p.empty and p.name not in names]
        shown = ' '.join(f'{n}={given.get(n, getattr(self, n, None))}' for n in names)
        log.info('%s: %s', type(self).__name__, shown)

    def get_updates(self, **kwargs):
        raise TypeError(f'{registry.key(type(self).__name__)} is a full-batch method with a '
                        'line search or trust region: it has no per-step update pairs to compile; '
                        'use iterate() or minimize()')

    def _build_updates(self):
        return self.get_updates()

    # ----------------------------------------------------------------- state

    @property
    def evaluations(self):
        """Full passes made so far: ``{'fg': loss and gradient, 'hv': Hessian-vector products}``."""
        if self._objective is None:
            return {'fg': 0, 'hv': 0}
        return dict(self._objective.evaluations)

    def reset_state(self):
        super().reset_state()
        self._forget()

    def _forget(self):
        """Drop the point and any curvature information (the next iteration starts afresh)."""
        self._x = None
        self._stop = None
        self._saved_point = None

    # ------------------------------------------------------------ checkpoints

    def _host_state(self):
        """The point the next iteration starts from, and the curvature memory, for checkpoints.

        ``x`` is the float64 point (the parameters hold it rounded to their
        dtypes), ``loss`` and ``grad`` its loss and gradient, ``stop`` the
        reason to stop found by the last iteration (``''``: none),
        ``evaluations`` the counts of full passes; then what
        :meth:`_curvature_state` adds. Empty before the first iteration.
        """
        if self._x is None:
            return {}
        counts = self.evaluations
        state = {'x': self._x, 'loss': np.float64(self._f), 'grad': self._g,
                 'stop': np.str_(self._stop or ''),
                 'evaluations': np.array([counts['fg'], counts['hv']], dtype=np.int64)}
        state.update(self._curvature_state())
        return state

    def _check_host_state(self, arrays):
        """Raise a ValueError naming the first host array that does not fit this optimizer.

        Called by :func:`downhill.training.checkpoint.check` before anything changes.
        No arrays (a checkpoint written before the first iteration, or by an
        older downhill) is fine: the curvature memory then starts afresh.
        """
        if not arrays:
            return
        n = sum(int(np.prod(p.get_value(borrow=True).shape, dtype=np.int64)) for p in self._params)
        layout = {'x': ((n,), 'float64'), 'loss': ((), 'float64'), 'grad': ((n,), 'float64'),
                  'stop': ((), 'str'), 'evaluations': ((2,), 'int64')}
        layout.update(self._curvature_layout(n, arrays))
        check_arrays(type(self).__name__, arrays, layout)

    def _restore_host_state(self, arrays):
        """Take back the point and the curvature memory that :meth:`_host_state` saved."""
        self._check_host_state(arrays)
        self._forget()
        if not arrays:
            log.info('%s: the checkpoint holds no curvature memory; it starts afresh',
                     type(self).__name__)
            return
        self._saved_point = SavedPoint(arrays['x'], float(arrays['loss']), arrays['grad'],
                                       str(arrays['stop']) or None,
                                       [int(c) for c in arrays['evaluations']])
        self._restore_curvature(arrays)

    def _curvature_state(self):
        """The curvature memory as a dict of arrays (none by default)."""
        return {}

    def _curvature_layout(self, n, arrays):
        """``{name: (shape, dtype)}`` expected of the curvature arrays, for ``n`` parameters.

        ``arrays`` (what the checkpoint holds) tells the sizes that may vary,
        such as the number of L-BFGS pairs, and which optional entries are
        there; every name returned must be present (:func:`check_arrays`).
        """
        return {}

    def _restore_curvature(self, arrays):
        """Take back what :meth:`_curvature_state` returned."""

    # ---------------------------------------------------------------- running

    def _compiled_step(self):
        if self._objective is None:
            self._objective = FlatObjective(self._params, self._loss, self._monitor_exprs,
                                            self._grads, self._inputs, self._prepared,
                                            hessian=self._hessian)
        return self._objective

    def _bounds(self, objective):
        """Lower and upper bound vectors (None when unbounded), from the constraints."""
        if not self._constraints:
            return None
        lower = np.full(objective.size, -np.inf)
        upper = np.full(objective.size, np.inf)
        for param, shape, a, b in zip(objective.params, objective.shapes,
                                      objective.offsets[:-1], objective.offsets[1:]):
            ops = self._constraints.get(param)
            if not ops:
                continue
            lo = pt.constant(np.full(shape, -np.inf, dtype=param.dtype))
            hi = pt.constant(np.full(shape, np.inf, dtype=param.dtype))
            for op in ops:
                lo, hi = op(lo, None), op(hi, None)
            lo, hi = pytensor.function([], [lo, hi], mode='FAST_COMPILE')()
            lower[a:b] = np.broadcast_to(lo, shape).ravel()
            upper[a:b] = np.broadcast_to(hi, shape).ravel()
        if np.any(lower > upper):
            raise ValueError('constraints: a lower bound is above its upper bound')
        return lower, upper

    def _train_runner(self, step, feed, train, names):
        objective = step
        batches = [feed(batch) for batch in train]  # every batch (takes_all_batches)
        objective.use(batches)
        bounds = self._bounds(objective)
        self._lower, self._upper = bounds if bounds is not None else (None, None)
        saved, self._saved_point = self._saved_point, None
        x = self._resume_point(objective, saved)
        if bounds is not None:
            inside = np.clip(x, *bounds)
            if not np.array_equal(inside, x):
                log.info('%s: the starting point is outside the bounds; projected onto them',
                         type(self).__name__)
                x = inside
                objective.set(x)
        # Curvature pairs (and the trust radius) stay valid near here: they are kept, even if
        # the parameters were set in between, until reset=True.
        self._stop = None if saved is None else saved.stop
        if saved is not None:
            objective.evaluations['fg'], objective.evaluations['hv'] = saved.evaluations
        try:  # the point is taken only once it is evaluated
            monitors, grad = objective(x)
        except Exception as err:
            explain = getattr(feed, 'explain', None)
            for found in (explain(err, batch) for batch in batches) if explain else ():
                if found is not None:  # the first batch that does not fit the loss
                    raise found from err
            raise
        self._x, self._monitors, self._g, self._f = x, monitors, grad, monitors[0]
        if saved is not None:
            self._compare_saved(saved)
        start = None
        if not math.isfinite(self._f):
            # the loop's on_nonfinite='stop' policy, as for a per-batch step: stop, keep the start
            self._x = None  # no point to save or start from: the next run evaluates afresh
            start = nonfinite.reason('training', names[0], self._f, self.update_count.get_value())
        OrderedDict = collections.OrderedDict

        def run():
            reason = start or self._converged() or self._stop
            if reason:
                raise StopTraining(reason)
            f = self._f
            point = self._step(objective)
            if point is None:
                raise StopTraining(self._stop or 'no progress: no acceptable step was found')
            if point.x is not self._x:
                self._x, self._f, self._g = point.x, point.monitors[0], point.grad
                self._monitors = point.monitors
                objective.set(self._x)
                decrease = f - self._f
                if decrease <= self.ftol * max(abs(f), abs(self._f), 1.0):
                    self._stop = (f'no progress: the loss fell by {decrease:.3g} '
                                  f'(ftol={self.ftol:g})')
            return OrderedDict(zip(names, point.monitors))
        return run

    def _resume_point(self, objective, saved):
        """The point to start from: the checkpoint's float64 point, if the parameters still hold it.

        The parameters hold the point rounded to their dtypes; continuing
        from the exact float64 vector is what makes a resumed run bit for
        bit. If the parameters were set after the checkpoint was loaded, they
        are the start (the curvature memory is kept, as between two calls of
        :meth:`iterate`).
        """
        x = objective.get()
        if saved is None:
            return x
        held = all(np.array_equal(part, p.get_value(borrow=True))
                   for part, p in zip(objective.split(saved.x), objective.params))
        if held:
            return saved.x
        log.info('%s: the parameters were set after the checkpoint was loaded; starting from '
                 'them', type(self).__name__)
        return x

    def _compare_saved(self, saved):
        """Say so if the loss or gradient at the resumed point is not the checkpoint's."""
        if saved.loss == self._f and np.array_equal(saved.grad, self._g):
            return
        if not np.array_equal(saved.x, self._x):
            return  # another point (the parameters were set): nothing to compare
        gap = float(np.max(np.abs(saved.grad - self._g))) if self._g.size else 0.0
        close = math.isclose(saved.loss, self._f, rel_tol=1e-6) and np.allclose(
            saved.grad, self._g, rtol=1e-6, atol=1e-12)
        log.log(logging.INFO if close else logging.WARNING,
                '%s: at the checkpoint\'s point the loss is %r (the checkpoint says %r) and the '
                'gradient differs by up to %.3g: the loss, the data or the compile mode differ '
                'from the run that wrote it, so this run does not continue it bit for bit',
                type(self).__name__, self._f, saved.loss, gap)

    def _projected_gradient(self):
        """The gradient, with the elements that push against an active bound set to zero."""
        g = self._g
        if self._lower is None:
            return g
        return np.clip(self._x - g, self._lower, self._upper) - self._x

    def _converged(self):
        pg = self._projected_gradient()
        largest = float(np.max(np.abs(pg))) if pg.size else 0.0
        if largest <= self.gtol:
            return f'gradient tolerance: max |gradient| = {largest:.3g} <= gtol={self.gtol:g}'
        if not np.all(np.isfinite(self._g)):
            return 'no progress: the gradient is not finite'
        return None

    def _free(self):
        """1 for the elements free to move, 0 for those held at an active bound (None: no bounds)."""
        if self._lower is None:
            return None
        x, g = self._x, self._g
        held = ((x <= self._lower) & (g > 0)) | ((x >= self._upper) & (g < 0))
        return (~held).astype(np.float64)

    def _project(self, x):
        return np.clip(x, self._lower, self._upper)

    def _step(self, objective):
        """Make one iteration from ``self._x``; return the new :class:`~downhill.algorithms.linesearch.Point`."""
        raise NotImplementedError


#: A point read from a checkpoint, used by the next :meth:`iterate`.
SavedPoint = collections.namedtuple('SavedPoint', 'x loss grad stop evaluations')


def check_arrays(owner, arrays, layout):
    """Raise a ValueError naming the first of ``arrays`` that does not fit ``layout``.

    Parameters
    ----------
    owner : str
        Who expects them (the algorithm's name), for the message.
    arrays : dict
        name -> array, as read from a checkpoint's ``host/`` entries.
    layout : dict
        name -> ``(shape, dtype)``; every name must be present and nothing
        else. The dtype ``'str'`` means any unicode string.
    """
    unknown = sorted(set(arrays) - set(layout))
    if unknown:
        raise ValueError(f'the checkpoint holds host state {", ".join("host/" + k for k in unknown)} '
                         f'that {owner} does not keep')
    for name, (shape, dtype) in layout.items():
        if name not in arrays:
            raise ValueError(f'the checkpoint has no host/{name}, which {owner} needs '
                             f'(expected shape {shape}, dtype {dtype}; corrupted?)')
        value = arrays[name]
        kind = 'str' if value.dtype.kind == 'U' else str(value.dtype)
        if tuple(value.shape) != tuple(shape) or kind != dtype:
            raise ValueError(f'host/{name} has shape {tuple(value.shape)} and dtype {kind} in the '
                             f'checkpoint, but {owner} expects shape {tuple(shape)} and dtype '
                             f'{dtype} here')
