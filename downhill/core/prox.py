r"""Constraints and proximal operators, applied inside the compiled update step.

Pass them per parameter when building an optimizer::

    opt = downhill.build('adam', loss, constraints={
        u: downhill.prox.nonnegative(),
        v: [downhill.prox.nonnegative(), downhill.prox.normalize(axis=0)],
        w: downhill.prox.l1(0.01),
    })

After the algorithm's step (and momentum) gives a parameter's new value
:math:`\tilde p`, each operator listed for it is applied in turn:
:math:`p \leftarrow \operatorname{op}_k(\ldots \operatorname{op}_1(\tilde p,
\eta), \eta)`. This happens in the update pairs themselves, so it holds in
:meth:`~downhill.Optimizer.iterate`, :func:`downhill.tools.minimize` and any
function compiled from :meth:`~downhill.Optimizer.get_updates`, with no extra
Python call per update.

An operator is any callable ``(new_value, step_size) -> expression``:

* **projections** onto a set (:func:`nonnegative`, :func:`box`,
  :func:`unit_norm`, :func:`max_norm`, :func:`simplex`) ignore the step size;
  :func:`normalize` (divide by the sum) is not a Euclidean projection but is
  used the same way;
* **proximal operators** of a regularizer :math:`r` (:func:`l1`, :func:`l2`,
  :func:`elastic_net`) solve :math:`\operatorname{prox}_{\eta r}(\tilde p) =
  \arg\min_x r(x) + \tfrac{1}{2\eta} \lVert x - \tilde p \rVert^2`, which
  depends on the step size :math:`\eta`. The loss is then the composite
  objective :math:`\mathcal{L} + r` (proximal gradient descent, [Pari14]_).

The step size :math:`\eta` is per element: the learning rate times the
algorithm's diagonal preconditioner (``learning_rate / sqrt(v_hat + eps)``
for Adam, and so on; each algorithm's page says what it is), so that an
adaptive algorithm applies the regularizer in the same metric as its step
([Yun21]_). Gradient clipping is not part of it. With momentum the step size
is still that of one gradient step (the inertial proximal method, [Ochs14]_);
see :meth:`downhill.Optimizer.get_updates` for how the velocity follows the
constraint.

Regularizers also report their value: the optimizer's ``'loss'`` monitor
becomes :math:`\mathcal{L} + \sum r`, so validation and early stopping
compare the composite objective, with ``'raw_loss'`` and one monitor per
regularizer (``'l1(w)'``) alongside.

A custom operator is any callable; if it has a ``penalty(param)`` method
returning a scalar expression (or None), that value joins the composite
loss and the monitors under its ``name`` attribute.

References
----------
.. [Pari14] N. Parikh & S. Boyd (2014) "Proximal algorithms." Foundations and
   Trends in Optimization 1(3):127-239.
.. [Duch08] J. Duchi, S. Shalev-Shwartz, Y. Singer & T. Chandra (2008)
   "Efficient projections onto the l1-ball for learning in high dimensions."
   ICML.
.. [Yun21] J. Yun, A. Lozano & E. Yang (2021) "Adaptive proximal gradient
   methods for structured neural networks." NeurIPS.
.. [Ochs14] P. Ochs, Y. Chen, T. Brox & T. Pock (2014) "iPiano: inertial
   proximal algorithm for nonconvex optimization." SIAM J. Imaging Sciences
   7(2):1388-1419.
"""

import numbers

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Variable

from .. import _compat
from . import hyperparams
from .transforms import as_dtype

__all__ = ['Operator', 'nonnegative', 'box', 'unit_norm', 'max_norm', 'simplex', 'normalize',
           'l1', 'l2', 'elastic_net', 'soft_threshold', 'project_simplex']


class Operator:
    """A named projection or proximal operator.

    Parameters
    ----------
    name : str
        Shown in monitors (``name(param)``) and in ``repr``.
    apply : callable
        ``apply(value, step_size) -> expression``.
    penalty : callable, optional
        ``penalty(param) -> scalar expression``, the regularizer's value
        (None for a projection: its indicator function is 0 on the set).
    """

    def __init__(self, name, apply, penalty=None):
        self.name = name
        self._apply = apply
        self._penalty = penalty

    def __call__(self, value, step_size):
        return self._apply(value, step_size)

    def penalty(self, param):
        """The regularizer's value at ``param`` (None for a projection)."""
        return None if self._penalty is None else self._penalty(param)

    def __repr__(self):
        return f'<downhill.prox {self.name}>'


def _strength(name, value):
    """A regularization strength: a number >= 0, or a symbolic scalar (e.g. a shared variable)."""
    if isinstance(value, Variable):
        if getattr(value.type, 'ndim', None) != 0:
            raise ValueError(f'{name} must be a scalar, got {value!r} with ndim={value.type.ndim}')
        return value
    return hyperparams.number(name, value, low=0)


def _bound(name, value):
    if isinstance(value, Variable):
        return value
    if value is None:
        return None
    arr = np.asarray(value, dtype=float)
    if np.isnan(arr).any():
        raise ValueError(f'{name} must not be NaN')
    return arr


def _cast(value, like):
    """A number, array or expression in the dtype of ``like``."""
    if isinstance(value, Variable):
        return as_dtype(value, like.dtype)
    if isinstance(value, numbers.Real):
        return pt.constant(value, dtype=like.dtype)
    return pt.constant(np.asarray(value, dtype=like.dtype))


def _norm(x, axis):
    return _compat.l2_norm(x, axis=axis, keepdims=True)


def _check_axis(axis):
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        return tuple(hyperparams.number('axis', a, integer=True) for a in axis)
    return hyperparams.number('axis', axis, integer=True)


def _size(x, axis):
    """Number of elements reduced over by ``axis``, as a scalar of ``x``'s dtype."""
    if axis is None:
        n = x.size
    else:
        n = 1
        for a in (axis if isinstance(axis, tuple) else (axis,)):
            n = n * x.shape[a]
    return pt.cast(n, x.dtype)


# ----------------------------------------------------------------- functions


def soft_threshold(x, threshold):
    r""":math:`\operatorname{sign}(x) \max(|x| - \tau, 0)`, the proximal operator of :math:`\tau \lVert x \rVert_1`."""
    return pt.sign(x) * pt.maximum(abs(x) - threshold, 0)


def project_simplex(x, axis=None, radius=1.0):
    r"""The Euclidean projection of ``x`` onto the simplex, along ``axis``.

    .. math::
        \arg\min_{w \ge 0,\ \sum w = z} \lVert w - x \rVert_2
        = \max(x - \theta, 0), \qquad
        \theta = \max_j \frac{\sum_{i \le j} u_i - z}{j}

    with :math:`u` the values sorted in decreasing order ([Duch08]_, fig. 1;
    the maximum over :math:`j` equals their :math:`\rho`-th term, so no
    index needs to be gathered). Exact, vectorized over the other axes.
    ``axis=None`` projects the whole array.
    """
    if axis is None:
        return project_simplex(x.flatten(), 0, radius).reshape(x.shape)
    ndim = x.type.ndim
    axis = axis % ndim if ndim else 0
    u = -pt.sort(-x, axis=axis)
    css = pt.cumsum(u, axis=axis)
    k = pt.arange(1, x.shape[axis] + 1).astype(x.dtype)
    k = k.dimshuffle(['x' if a != axis else 0 for a in range(ndim)])
    theta = pt.max((css - _cast(radius, x)) / k, axis=axis, keepdims=True)
    return pt.maximum(x - theta, 0)


# ----------------------------------------------------------------- projections


def nonnegative():
    r"""Project onto the non-negative orthant: :math:`\max(p, 0)`."""
    return Operator('nonnegative', lambda x, step: pt.maximum(x, 0))


def box(lower=None, upper=None):
    r"""Clip each element to :math:`[l, u]`.

    ``lower`` and ``upper`` are numbers, arrays that broadcast against the
    parameter, or symbolic scalars; either may be None (no bound).
    """
    lo, hi = _bound('lower', lower), _bound('upper', upper)
    if lo is None and hi is None:
        raise ValueError('box() needs a lower or an upper bound')
    if isinstance(lo, np.ndarray) and isinstance(hi, np.ndarray) and np.any(lo > hi):
        raise ValueError(f'box(): lower bound {lower!r} is above upper bound {upper!r}')

    def apply(x, step):
        if lo is not None:
            x = pt.maximum(x, _cast(lo, x))
        if hi is not None:
            x = pt.minimum(x, _cast(hi, x))
        return x
    return Operator('box', apply)


def unit_norm(axis=None):
    r"""Project onto the unit sphere: :math:`p / \lVert p \rVert_2`.

    With ``axis``, each slice along it (e.g. ``axis=1``: each row of a
    matrix) gets unit norm. A zero slice, whose projection is not unique,
    becomes :math:`(1, \ldots, 1) / \sqrt{n}`.
    """
    axis = _check_axis(axis)

    def apply(x, step):
        norm = _norm(x, axis)
        positive = norm > 0
        fallback = pt.ones_like(x) / pt.sqrt(_size(x, axis))
        return pt.switch(positive, x / pt.switch(positive, norm, pt.ones_like(norm)), fallback)
    return Operator('unit_norm', apply)


def max_norm(c, axis=None):
    r"""Project onto the ball of radius ``c``: :math:`p \min(1, c / \lVert p \rVert_2)`.

    With ``axis``, each slice along it is projected separately (e.g.
    ``axis=0`` limits the norm of every column of a weight matrix, the
    max-norm regularization of [Sriv14]_).

    References
    ----------
    .. [Sriv14] N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever & R.
       Salakhutdinov (2014) "Dropout: a simple way to prevent neural networks
       from overfitting." JMLR 15.
    """
    c = _strength('c', c)
    axis = _check_axis(axis)

    def apply(x, step):
        radius = _cast(c, x)
        norm = _norm(x, axis)
        over = norm > radius
        return pt.switch(over, x * (radius / pt.switch(over, norm, pt.ones_like(norm))), x)
    return Operator('max_norm', apply)


def simplex(axis=None, radius=1.0):
    r"""Project onto the probability simplex: :math:`p \ge 0`, :math:`\sum p = z`.

    The exact Euclidean projection (see :func:`project_simplex`), along
    ``axis`` (e.g. ``axis=0``: every column is a distribution), or over the
    whole parameter when ``axis`` is None. ``radius`` is the sum :math:`z`.
    """
    axis = _check_axis(axis)
    if isinstance(axis, tuple):
        raise ValueError('simplex() projects along one axis (or all, with axis=None)')
    radius = _strength('radius', radius)
    if not isinstance(radius, Variable) and radius <= 0:
        raise ValueError(f'radius must be > 0, got {radius!r}')
    return Operator('simplex', lambda x, step: project_simplex(x, axis, radius))


def normalize(axis=None):
    r"""Divide by the sum: :math:`p / \sum p` (along ``axis``, or over everything).

    Not a projection, but the usual way to fix the scale ambiguity of a
    factorization (the ``prox_unity`` of the blog post "Proximal matrix
    factorization in pytorch"); follow :func:`nonnegative` with it so that
    the sums are positive. A slice that sums to zero is left
    unchanged.
    """
    axis = _check_axis(axis)

    def apply(x, step):
        total = x.sum(axis=axis, keepdims=True)
        zero = pt.eq(total, 0)
        return x / pt.switch(zero, pt.ones_like(total), total)
    return Operator('normalize', apply)


# ------------------------------------------------------------ regularizers


def l1(lam):
    r"""The lasso: regularizer :math:`\lambda \lVert p \rVert_1`, applied by soft thresholding.

    .. math:: \operatorname{prox}(\tilde p, \eta) = \operatorname{sign}(\tilde p)
              \max(|\tilde p| - \lambda \eta, 0)

    Elements reach exact zeros. ``lam`` is a number >= 0 or a symbolic
    scalar (a shared variable, to change it without recompiling).
    """
    lam = _strength('lam', lam)
    return Operator(
        'l1', lambda x, step: soft_threshold(x, _cast(lam, x) * step),
        lambda p: _cast(lam, p) * abs(p).sum())


def l2(lam):
    r"""Ridge shrinkage: regularizer :math:`\tfrac{\lambda}{2} \lVert p \rVert_2^2`.

    .. math:: \operatorname{prox}(\tilde p, \eta) = \frac{\tilde p}{1 + \lambda \eta}

    With SGD this is weight decay applied implicitly (backward) rather than
    through the gradient (``weight_decay=``, forward).
    """
    lam = _strength('lam', lam)
    return Operator(
        'l2', lambda x, step: x / (1 + _cast(lam, x) * step),
        lambda p: _cast(lam, p) / 2 * pt.sqr(p).sum())


def elastic_net(l1=0.0, l2=0.0):
    r"""Regularizer :math:`\lambda_1 \lVert p \rVert_1 + \tfrac{\lambda_2}{2} \lVert p \rVert_2^2` ([Zou05]_).

    .. math:: \operatorname{prox}(\tilde p, \eta) = \frac{\operatorname{sign}(\tilde p)
              \max(|\tilde p| - \lambda_1 \eta, 0)}{1 + \lambda_2 \eta}

    References
    ----------
    .. [Zou05] H. Zou & T. Hastie (2005) "Regularization and variable
       selection via the elastic net." J. Royal Statistical Society B 67(2).
    """
    lam1, lam2 = _strength('l1', l1), _strength('l2', l2)

    def apply(x, step):
        return soft_threshold(x, _cast(lam1, x) * step) / (1 + _cast(lam2, x) * step)

    def penalty(p):
        return _cast(lam1, p) * abs(p).sum() + _cast(lam2, p) / 2 * pt.sqr(p).sum()
    return Operator('elastic_net', apply, penalty)
