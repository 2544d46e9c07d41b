"""Newton-CG: a trust region, its subproblem solved by Steihaug's conjugate gradients."""

import logging
import math


import numpy as np

from ...core import hyperparams
from .. import linesearch

log = logging.getLogger('downhill')
from .base import FullBatchOptimizer


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
