r"""Full-batch second-order methods: L-BFGS, BFGS and Newton-CG.

These optimizers run through the same :meth:`~downhill.Optimizer.iterate`
and :func:`downhill.minimize` loop as the stochastic ones (one yield per
iteration, validation, patience, ``max_updates``, best parameters
restored), but an *iteration* is different:

* **full batch**: the loss, the gradient and every Hessian-vector product
  of an iteration are averaged over *all* of ``train``'s batches (every
  batch of a :class:`~downhill.Dataset` of arrays, whatever its
  ``iteration_size``; one pass, drawn when :meth:`iterate` starts, for a
  callable), with the parameters held fixed; ``valid`` defaults to the same
  batches;
* **one step per iteration**, chosen by a line search (L-BFGS, BFGS) or a
  trust region (Newton-CG), which evaluates the loss and gradient as often
  as it needs (``opt.evaluations`` counts these passes);
* **a stopping test of its own**: the loop ends with a logged reason when
  the gradient is small (``gtol``), when an iteration no longer lowers the
  loss (``ftol``, or a failed line search / collapsed trust region), or at
  ``max_updates``.

All parameters (of any shapes and float dtypes) are packed into one float64
vector internally (:class:`~downhill.objective.FlatObjective`) and written
back to the shared variables after every iteration. Simple bounds given as
``constraints=`` (:func:`downhill.prox.box`, :func:`downhill.prox.nonnegative`)
are handled by the quasi-Newton methods with a projected, L-BFGS-B-like
active-set step; any other constraint is refused.

Checkpoints (:meth:`~downhill.Optimizer.save`, ``iterate(checkpoint=...)``)
keep what the iteration continues from, so that a resumed run is bit for bit
the uninterrupted one: the current point as the float64 vector (not only the
parameters rounded to their dtypes), its loss and gradient, a pending stop,
the evaluation counts and the curvature memory (the L-BFGS pairs, the BFGS
matrix, the Newton-CG trust radius).
"""

import collections
import logging
import math

import inspect

import numpy as np
import pytensor
import pytensor.tensor as pt

from ..core import graph, hyperparams, nonfinite
from . import linesearch
from ..optimizer import registry
from ..optimizer.base import CLIP_SYNONYMS, Optimizer
from ..training.loop import StopTraining
from ..training.dataset import as_dataset
from .objective import FlatObjective, all_batches

log = logging.getLogger('downhill')

__all__ = ['FullBatchOptimizer', 'LBFGS', 'BFGS', 'NewtonCG']

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
        train = all_batches(as_dataset(train, 'train', batch_size))
        return super().iterate(train, train if valid is None else valid, max_updates=max_updates,
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

        Called by :func:`downhill.checkpoint.check` before anything changes.
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
        batches = [feed(batch) for batch in all_batches(train)]
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
        """Make one iteration from ``self._x``; return the new :class:`~downhill.linesearch.Point`."""
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


class _QuasiNewton(FullBatchOptimizer, abstract=True):
    """A quasi-Newton iteration: direction from an inverse-Hessian approximation, then a line search."""

    def _prepare(self, max_linesearch=20, **kwargs):
        super()._prepare(**kwargs)
        self.max_linesearch = hyperparams.number('max_linesearch', max_linesearch, low=1,
                                                 integer=True)

    def _step(self, objective):
        x, f, g = self._x, self._f, self._g
        free = self._free()
        masked = g if free is None else g * free
        fresh = self._fresh()
        d = -self._inverse_hessian_times(masked)
        if free is not None:
            d *= free
        if not float(g @ d) < 0:  # the approximation lost positive definiteness: restart
            log.info('%s: not a descent direction; restarting from the gradient',
                     type(self).__name__)
            self._forget_curvature()
            d, fresh = -masked, True
        # The first step (no curvature yet) has length 1 at most, as in L-BFGS-B.
        first = min(1.0, 1.0 / float(np.linalg.norm(d))) if fresh else 1.0
        if free is None:
            point = linesearch.strong_wolfe(objective, x, f, g, d, first_step=first,
                                            max_evals=self.max_linesearch)
        else:
            point = linesearch.projected_backtracking(objective, x, f, g, d, self._project,
                                                      first_step=first,
                                                      max_evals=self.max_linesearch)
        if point is None:
            self._stop = (f'no progress: the line search found no acceptable step in '
                          f'{self.max_linesearch} evaluations')
            return None
        s, y = point.x - x, point.grad - g
        sy = float(s @ y)
        if sy > np.finfo(float).eps * float(y @ y):
            self._remember(s, y, sy)
        return point

    def _forget(self):
        super()._forget()
        self._forget_curvature()


class LBFGS(_QuasiNewton):
    r"""Limited-memory BFGS: a quasi-Newton method for smooth full-batch problems.

    The direction is :math:`d_k = -H_k g_k`, where :math:`H_k` is the BFGS
    inverse-Hessian approximation built from the last :math:`m` pairs
    :math:`s_i = x_{i+1} - x_i`, :math:`y_i = g_{i+1} - g_i` on top of
    :math:`H^0_k = \frac{s^\top y}{y^\top y} I` (the latest pair), applied
    without forming it by the two-loop recursion ([Noce80]_, [Liu89]_;
    [Noce06]_ algorithm 7.4):

    .. math::
        \begin{aligned}
        q &\leftarrow g_k; \quad a_i = \rho_i s_i^\top q,\;
            q \leftarrow q - a_i y_i \quad (i = k-1, \ldots, k-m) \\
        r &\leftarrow H^0_k q; \quad b = \rho_i y_i^\top r,\;
            r \leftarrow r + (a_i - b) s_i \quad (i = k-m, \ldots, k-1)
        \end{aligned}

    with :math:`\rho_i = 1 / y_i^\top s_i`, and :math:`d_k = -r`. The step
    :math:`x_{k+1} = x_k + \alpha d_k` meets the strong Wolfe conditions
    (:func:`downhill.linesearch.strong_wolfe`, :math:`c_1 = 10^{-4}`,
    :math:`c_2 = 0.9`), trying :math:`\alpha = 1` first (and a step of
    length 1 at most on the first iteration). A pair with
    :math:`s^\top y \le \epsilon\, y^\top y` is not stored.

    **Bounds.** With ``constraints=`` of :func:`downhill.prox.box` or
    :func:`downhill.prox.nonnegative`, elements at a bound whose gradient
    points outwards are held (their direction is 0, as in the active-set
    projected quasi-Newton method of [Kim10]_), and the step backtracks
    along the projected arc :math:`P(x_k + \alpha d_k)` until the Armijo
    condition holds (:func:`downhill.linesearch.projected_backtracking`).
    The gradient tolerance applies to the projected gradient
    :math:`P(x - g) - x`.

    Hyperparameters: ``history`` :math:`m` (10), ``gtol`` (1e-5),
    ``ftol`` (2.2e-9), ``max_linesearch`` (20 evaluations): the defaults and
    stopping tests of SciPy's L-BFGS-B (``maxcor``, ``pgtol``, ``factr * eps``),
    whose iterates it follows. See :doc:`/second_order`.

    References
    ----------
    .. [Noce80] J. Nocedal (1980) "Updating quasi-Newton matrices with
       limited storage." Mathematics of Computation 35(151):773-782.
    .. [Liu89] D. C. Liu & J. Nocedal (1989) "On the limited memory BFGS
       method for large scale optimization." Mathematical Programming
       45:503-528.
    """

    _graph_attrs = ()

    def _prepare(self, history=10, **kwargs):
        super()._prepare(**kwargs)
        self.history = hyperparams.number('history', history, low=1, integer=True)
        pairs = getattr(self, '_pairs', ())
        while len(pairs) > self.history:
            pairs.popleft()

    def _forget_curvature(self):
        self._pairs = collections.deque()

    def _fresh(self):
        return not self._pairs

    def _remember(self, s, y, sy):
        self._pairs.append((s, y, 1.0 / sy))
        while len(self._pairs) > self.history:
            self._pairs.popleft()

    def _curvature_state(self):
        n = 0 if self._x is None else self._x.size
        pairs = list(self._pairs)
        return {'s': np.array([s for s, _, _ in pairs]).reshape(len(pairs), n),
                'y': np.array([y for _, y, _ in pairs]).reshape(len(pairs), n),
                'rho': np.array([rho for _, _, rho in pairs], dtype=np.float64)}

    def _curvature_layout(self, n, arrays):
        k = arrays['s'].shape[0] if 's' in arrays and arrays['s'].ndim else 0
        return {'s': ((k, n), 'float64'), 'y': ((k, n), 'float64'), 'rho': ((k,), 'float64')}

    def _restore_curvature(self, arrays):
        self._pairs = collections.deque(
            (s.copy(), y.copy(), float(rho)) for s, y, rho in zip(arrays['s'], arrays['y'],
                                                                  arrays['rho']))
        history = getattr(self, 'history', None)
        while history is not None and len(self._pairs) > history:
            self._pairs.popleft()

    def _inverse_hessian_times(self, g):
        q = g.copy()
        if not self._pairs:
            return q
        alphas = []
        for s, y, rho in reversed(self._pairs):
            a = rho * float(s @ q)
            q -= a * y
            alphas.append(a)
        s, y, _ = self._pairs[-1]
        q *= float(s @ y) / float(y @ y)
        for (s, y, rho), a in zip(self._pairs, reversed(alphas)):
            b = rho * float(y @ q)
            q += (a - b) * s
        return q


class BFGS(_QuasiNewton):
    r"""BFGS with a dense inverse-Hessian approximation, for small problems.

    Keeps :math:`H_k \approx \nabla^2 f(x_k)^{-1}` as an :math:`n \times n`
    matrix (:math:`8 n^2` bytes: problems of up to a few thousand
    parameters) and updates it after each step ([Noce06]_ eq. 6.17):

    .. math::
        H_{k+1} = (I - \rho\, s y^\top) H_k (I - \rho\, y s^\top) + \rho\, s s^\top,
        \qquad \rho = \frac{1}{y^\top s}

    starting from :math:`H_0 = I`, as :func:`scipy.optimize.minimize`
    (``method='BFGS'``) does.
    The direction is :math:`d_k = -H_k g_k` and the step meets the strong
    Wolfe conditions, as for :class:`LBFGS` (which is the better choice
    beyond a few thousand parameters: the same idea in :math:`O(mn)`
    memory). Simple bounds are handled as by :class:`LBFGS`.

    Hyperparameters: ``gtol`` (1e-5), ``ftol`` (0), ``max_linesearch``
    (20). The stopping tests are those of SciPy's BFGS: the largest element of
    the gradient at most ``gtol``, or a line search that finds no step; SciPy's
    BFGS has no test on the decrease of the loss, so ``ftol`` is 0 here
    (L-BFGS's 2.2e-9 stopped a 7-parameter quadratic at a relative error of
    1e-5, where SciPy's BFGS reaches 1e-13 in as many iterations). See
    :doc:`/second_order`.

    References
    ----------
    .. [Flet70] R. Fletcher (1970) "A new approach to variable metric
       algorithms." The Computer Journal 13(3):317-322.
    """

    _graph_attrs = ()
    #: Above this many parameters the dense matrix is refused.
    max_size = 10000

    def __init__(self, loss, **kwargs):
        super().__init__(loss, **kwargs)
        n = sum(int(np.prod(p.get_value(borrow=True).shape)) for p in self._params)
        if n > self.max_size:
            raise ValueError(f'bfgs keeps a dense {n} x {n} inverse Hessian ({8 * n * n / 1e9:.1f} '
                             f'GB); it is meant for at most {self.max_size} parameters: use '
                             "'lbfgs' instead")

    def _prepare(self, ftol=0.0, **kwargs):
        super()._prepare(ftol=ftol, **kwargs)

    def _forget_curvature(self):
        self._h = None

    def _fresh(self):
        return self._h is None

    def _remember(self, s, y, sy):
        if self._h is None:
            self._h = np.eye(s.size)
        rho = 1.0 / sy
        hy = self._h @ y
        self._h += ((rho * rho * float(y @ hy) + rho) * np.outer(s, s)
                    - rho * (np.outer(hy, s) + np.outer(s, hy)))

    def _inverse_hessian_times(self, g):
        return g.copy() if self._h is None else self._h @ g

    def _curvature_state(self):
        return {} if self._h is None else {'h': self._h}

    def _curvature_layout(self, n, arrays):
        return {'h': ((n, n), 'float64')} if 'h' in arrays else {}

    def _restore_curvature(self, arrays):
        self._h = arrays['h'].copy() if 'h' in arrays else None


class NewtonCG(FullBatchOptimizer):
    r"""Truncated Newton with a trust region: exact Hessian-vector products, never the Hessian.

    Each iteration approximately minimizes the quadratic model

    .. math::
        m_k(p) = f_k + g_k^\top p + \tfrac{1}{2} p^\top \nabla^2 f(x_k)\, p,
        \qquad \lVert p \rVert \le \Delta_k

    by conjugate gradients (Steihaug's method, [Stei83]_; [Noce06]_
    algorithm 7.2), stopping when the residual is below
    :math:`\min(0.5, \sqrt{\lVert g_k \rVert}) \lVert g_k \rVert`, at the
    trust-region boundary, or along a direction of negative curvature (then
    to the boundary). Each CG iteration costs one Hessian-vector product
    :math:`\nabla^2 f\, v`, compiled from the graph with the R-operator
    ([Pear94]_). The step is taken when the actual decrease is more than
    :math:`\eta` times the model's; the radius is quartered when that ratio
    is below 1/4 and doubled (up to ``max_trust_radius``) when it is above
    3/4 and the step reached the boundary (as SciPy's ``trust-ncg``). A
    rejected step is still an iteration (the parameters do not move).

    Constraints are not supported (use :class:`LBFGS` for simple bounds).

    Hyperparameters: ``trust_radius`` :math:`\Delta_0` (1), ``max_trust_radius``
    (1000), ``eta`` (0.15), ``max_cg`` (250 CG iterations), ``gtol`` (1e-5),
    ``ftol`` (2.2e-9). The trust-region defaults and iterations are those of
    SciPy's ``trust-ncg`` (on a 7-parameter quadratic both stop after the same
    5 iterations at the same point). Its stopping test is stricter: SciPy's
    stops when the gradient's 2-norm is below 1e-4, this one when its largest
    element is at most ``gtol`` (as :class:`LBFGS` and SciPy's L-BFGS-B), or
    on ``ftol``. See :doc:`/second_order`.

    References
    ----------
    .. [Stei83] T. Steihaug (1983) "The conjugate gradient method and trust
       regions in large scale optimization." SIAM J. Numerical Analysis
       20(3):626-637.
    """

    _graph_attrs = ()
    _hessian = True
    _bounded = False

    def _prepare(self, trust_radius=1.0, max_trust_radius=1000.0, eta=0.15, max_cg=250, **kwargs):
        super()._prepare(**kwargs)
        self.initial_trust_radius = hyperparams.number('trust_radius', trust_radius, low=0,
                                                       low_open=True)
        self.max_trust_radius = hyperparams.number('max_trust_radius', max_trust_radius, low=0,
                                                   low_open=True)
        if self.initial_trust_radius > self.max_trust_radius:
            raise ValueError(f'trust_radius ({trust_radius!r}) must be <= max_trust_radius '
                             f'({max_trust_radius!r})')
        self.eta = hyperparams.number('eta', eta, low=0)
        if self.eta >= 0.25:
            raise ValueError(f'eta must be in [0, 0.25), got {eta!r}')
        self.max_cg = hyperparams.number('max_cg', max_cg, low=1, integer=True)
        if getattr(self, 'trust_radius', None) is None:
            self.trust_radius = self.initial_trust_radius

    def _forget(self):
        super()._forget()
        self.trust_radius = getattr(self, 'initial_trust_radius', None)

    def _curvature_state(self):
        return {'trust_radius': np.float64(self.trust_radius)}

    def _curvature_layout(self, n, arrays):
        return {'trust_radius': ((), 'float64')}

    def _check_host_state(self, arrays):
        super()._check_host_state(arrays)
        radius = float(arrays['trust_radius']) if arrays else 1.0
        if not (radius > 0 and math.isfinite(radius)):
            raise ValueError(f'host/trust_radius is {radius!r} in the checkpoint, but NewtonCG '
                             'needs a positive finite trust radius (corrupted?)')

    def _restore_curvature(self, arrays):
        self.trust_radius = float(arrays['trust_radius'])

    def _step(self, objective):
        x, f, g = self._x, self._f, self._g
        radius = self.trust_radius
        p, boundary, model = steihaug_cg(lambda v: objective.hessian_vector(x, v), g, radius,
                                         self.max_cg)
        predicted = -model
        if not predicted > 0:
            self._stop = 'no progress: the quadratic model predicts no decrease'
            return None
        point = x + p
        monitors, grad = objective(point)
        actual = f - monitors[0] if math.isfinite(monitors[0]) else -math.inf
        ratio = actual / predicted
        if ratio < 0.25:
            self.trust_radius = 0.25 * radius
        elif ratio > 0.75 and boundary:
            self.trust_radius = min(2.0 * radius, self.max_trust_radius)
        if ratio > self.eta:
            return linesearch.Point(1.0, point, monitors, grad)
        if self.trust_radius < np.finfo(float).eps * max(1.0, float(np.linalg.norm(x))):
            self._stop = f'no progress: the trust radius fell to {self.trust_radius:.3g}'
        return linesearch.Point(0.0, x, self._monitors, g)  # rejected: the parameters stay


def steihaug_cg(hessian_times, g, radius, max_iterations):
    r"""Minimize :math:`g^\top p + \frac12 p^\top B p` over :math:`\lVert p \rVert \le \Delta` by CG.

    Parameters
    ----------
    hessian_times : callable
        ``v -> B v``.
    g : array
        The gradient.
    radius : float
        The trust radius :math:`\Delta`.
    max_iterations : int

    Returns
    -------
    (p, on_boundary, model) : the step, whether it reached the boundary,
    and the model's value :math:`g^\top p + \frac12 p^\top B p` there.
    """
    z = np.zeros_like(g)
    r = g.copy()
    d = -r
    rr = float(r @ r)
    norm = math.sqrt(rr)
    tolerance = min(0.5, math.sqrt(norm)) * norm
    value = 0.0
    if norm < tolerance or norm == 0:
        return z, False, value
    for _ in range(max_iterations):
        bd = hessian_times(d)
        dbd = float(d @ bd)
        rd = float(r @ d)
        if dbd <= 0:  # negative curvature: to the boundary, at the lower of the two crossings
            ends = [(value + t * rd + 0.5 * t * t * dbd, t) for t in _crossings(z, d, radius)]
            best, t = min(ends)
            return z + t * d, True, best
        alpha = rr / dbd
        z_next = z + alpha * d
        if float(np.linalg.norm(z_next)) >= radius:
            t = _crossings(z, d, radius)[1]
            return z + t * d, True, value + t * rd + 0.5 * t * t * dbd
        value += alpha * rd + 0.5 * alpha * alpha * dbd
        r = r + alpha * bd
        rr_next = float(r @ r)
        z = z_next
        if math.sqrt(rr_next) < tolerance:
            return z, False, value
        d = -r + (rr_next / rr) * d
        rr = rr_next
    return z, False, value


def _crossings(z, d, radius):
    """The two ``t`` with ``|z + t d| = radius`` (the smaller first)."""
    a, b, c = float(d @ d), 2.0 * float(z @ d), float(z @ z) - radius * radius
    root = math.sqrt(max(b * b - 4 * a * c, 0.0))
    # the numerically stable pair of roots
    q = -0.5 * (b + math.copysign(root, b))
    t1, t2 = q / a, (c / q if q != 0 else -q / a)
    return sorted((t1, t2))
