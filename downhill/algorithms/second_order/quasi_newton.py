"""Quasi-Newton methods: L-BFGS (limited memory) and BFGS (a dense inverse Hessian)."""

import collections
import logging


import numpy as np

from ...core import hyperparams
from .. import linesearch

log = logging.getLogger('downhill')
from .base import FullBatchOptimizer


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
    (:func:`downhill.algorithms.linesearch.strong_wolfe`, :math:`c_1 = 10^{-4}`,
    :math:`c_2 = 0.9`), trying :math:`\alpha = 1` first (and a step of
    length 1 at most on the first iteration). A pair with
    :math:`s^\top y \le \epsilon\, y^\top y` is not stored.

    **Bounds.** With ``constraints=`` of :func:`downhill.core.prox.box` or
    :func:`downhill.core.prox.nonnegative`, elements at a bound whose gradient
    points outwards are held (their direction is 0, as in the active-set
    projected quasi-Newton method of [Kim10]_), and the step backtracks
    along the projected arc :math:`P(x_k + \alpha d_k)` until the Armijo
    condition holds (:func:`downhill.algorithms.linesearch.projected_backtracking`).
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
