r"""Symbolic test landscapes with known minima.

Each factory in this module builds a small optimization problem: a PyTensor
shared variable (the parameter, initialized at a conventional starting point)
and a scalar PyTensor expression of it (the loss), together with what is known
about the problem: where its global minimum is, the value there, plotting
bounds, and a pure-NumPy evaluator of the same function for contour plots and
cross-checks.

>>> from downhill import landscapes
>>> problem = landscapes.rosenbrock()
>>> problem.param.get_value()
array([-1.2,  1. ])
>>> float(problem.numpy(problem.minimum))
0.0

The classic functions (:func:`rosenbrock`, :func:`ackley`, :func:`rastrigin`,
:func:`beale`, :func:`himmelblau`, :func:`styblinski_tang`,
:func:`quadratic`) come from the optimization test-function literature; see
e.g. M. Jamil and X.-S. Yang, "A literature survey of benchmark functions for
global optimization problems", *Int. J. Math. Model. Numer. Optim.* 4(2),
2013, and S. Surjanovic and D. Bingham, *Virtual Library of Simulation
Experiments: Test Functions and Datasets* (Simon Fraser University).
:func:`gaussian_wells` is a random landscape made of Gaussian wells that can
also hold many starting points at once, each rolling downhill on its own.

Every factory takes a ``dtype`` argument (``'float64'`` by default, or
``'float32'``); all constants are built in that dtype, so a ``'float32'``
landscape has a float32 parameter, a float32 loss and float32 gradients.
Each call returns a fresh shared variable.

The module is standalone: it depends on NumPy and PyTensor only.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
from typing import Any, Callable, Mapping

import numpy as np
import pytensor
import pytensor.tensor as pt

__all__ = [
    "Landscape",
    "LANDSCAPES",
    "get",
    "rosenbrock",
    "ackley",
    "rastrigin",
    "beale",
    "himmelblau",
    "styblinski_tang",
    "quadratic",
    "gaussian_wells",
    "STYBLINSKI_TANG_ARGMIN",
    "STYBLINSKI_TANG_MIN",
]


# ---------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Landscape:
    """A symbolic optimization problem with a known minimum.

    Attributes
    ----------
    name : str
        Name of the landscape, e.g. ``'rosenbrock'`` (a key of
        :data:`LANDSCAPES`).
    param : pytensor shared variable
        The parameter, named ``'x'``, initialized at :attr:`start`. Its shape
        is ``(d,)``, or ``(n_points, d)`` for a multi-start
        :func:`gaussian_wells` landscape.
    loss : pytensor scalar expression
        The loss, a function of :attr:`param` only, of the landscape's dtype.
    start : numpy.ndarray
        The starting point (a copy of the initial value of :attr:`param`).
    minimum : numpy.ndarray
        A global minimizer, with the same shape and dtype as :attr:`param`
        (for multi-start landscapes, the minimizer repeated for every point).
    minimum_value : float
        The value of :attr:`loss` at :attr:`minimum`, computed in float64.
    bounds : tuple of two (low, high) pairs
        Plotting bounds ``((xmin, xmax), (ymin, ymax))`` for the first two
        coordinates. For one-dimensional landscapes both pairs are the bounds
        of the only coordinate.
    numpy : callable
        ``numpy(x)`` evaluates the same function in NumPy (float64) for an
        array of points of shape ``(..., d)`` and returns an array of shape
        ``(...)``. For every landscape ``numpy(value).sum()`` equals the loss
        at ``param == value``; for a single-point landscape ``numpy(value)``
        is already that scalar.
    metadata : mapping
        Read-only extra facts about the problem, such as other global
        minima (``'other_minima'`` for :func:`himmelblau`), the well
        parameters of :func:`gaussian_wells`, or the curvatures of
        :func:`quadratic`. Always has ``'d'`` and the factory's arguments.
    """

    name: str
    param: Any = dataclasses.field(repr=False)
    loss: Any = dataclasses.field(repr=False)
    start: np.ndarray = dataclasses.field(repr=False)
    minimum: np.ndarray = dataclasses.field(repr=False)
    minimum_value: float
    bounds: tuple
    numpy: Callable[[Any], np.ndarray] = dataclasses.field(repr=False)
    metadata: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}), repr=False)

    @property
    def d(self) -> int:
        """Number of coordinates of one point."""
        return int(self.start.shape[-1])

    @property
    def dtype(self) -> str:
        """Dtype of the parameter and the loss: float32 or float64."""
        return str(self.start.dtype)

    def __repr__(self) -> str:
        return (f"Landscape(name={self.name!r}, shape={self.start.shape}, "
                f"dtype={self.dtype!r}, minimum_value={self.minimum_value!r})")


# ---------------------------------------------------------------------------
# Argument checking and small helpers
# ---------------------------------------------------------------------------

_DTYPES = ("float32", "float64")


def _check_dtype(dtype) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _DTYPES:
        raise ValueError(
            f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return name


def _check_int(name: str, value, minimum: int) -> int:
    if (isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Integral)
            or value < minimum):
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_real(name: str, value, minimum: float) -> float:
    if (isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Real)
            or not np.isfinite(value) or value < minimum):
        raise ValueError(
            f"{name} must be a finite number >= {minimum}, got {value!r}")
    return float(value)


def _tile(pattern, d: int) -> np.ndarray:
    """Repeat ``pattern`` cyclically to length ``d`` (float64)."""
    pattern = np.asarray(pattern, dtype="float64")
    return np.resize(pattern, d)


def _points(x, d: int) -> np.ndarray:
    """Validate an array of points of shape ``(..., d)`` for the evaluators."""
    x = np.asarray(x, dtype="float64")
    if x.ndim == 0 or x.shape[-1] != d:
        raise ValueError(
            f"expected points of shape (..., {d}), got shape {x.shape}")
    return x


def _readonly(a, dtype="float64") -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.setflags(write=False)
    return a


def _bounds(lo_hi_x, lo_hi_y=None):
    lo_hi_y = lo_hi_x if lo_hi_y is None else lo_hi_y
    return ((float(lo_hi_x[0]), float(lo_hi_x[1])),
            (float(lo_hi_y[0]), float(lo_hi_y[1])))


class _Constants:
    """Builds PyTensor constants of a fixed dtype so nothing upcasts."""

    def __init__(self, dtype: str):
        self.dtype = dtype

    def __call__(self, value):
        return pt.constant(np.asarray(value, dtype=self.dtype))


def _make(name, start, loss_builder, minimum, minimum_value, bounds,
          evaluator, dtype, metadata):
    """Create the shared parameter and loss, and pack the Landscape."""
    start = _readonly(start, dtype)
    param = pytensor.shared(np.array(start), name="x")
    loss = loss_builder(param, _Constants(dtype))
    loss.name = f"{name}_loss"
    if loss.ndim != 0 or loss.dtype != dtype:  # pragma: no cover - internal
        raise AssertionError(
            f"{name}: loss is {loss.dtype}[{loss.ndim}-d], expected a "
            f"{dtype} scalar")
    return Landscape(
        name=name,
        param=param,
        loss=loss,
        start=start,
        minimum=_readonly(minimum, dtype),
        minimum_value=float(minimum_value),
        bounds=bounds,
        numpy=evaluator,
        metadata=types.MappingProxyType(dict(metadata)),
    )


# ---------------------------------------------------------------------------
# The classic functions
# ---------------------------------------------------------------------------


def rosenbrock(d: int = 2, dtype: str = "float64") -> Landscape:
    r"""Rosenbrock's banana-shaped valley.

    .. math::

        f(x) = \sum_{i=1}^{d-1} \left[ 100 \, (x_{i+1} - x_i^2)^2
               + (1 - x_i)^2 \right]

    The global minimum is :math:`f(1, \ldots, 1) = 0`. The valley floor is
    easy to reach but nearly flat along the parabola :math:`x_{i+1} = x_i^2`,
    which makes progress towards the minimum slow. For :math:`4 \le d \le 7`
    there is also a local minimum near :math:`(-1, 1, \ldots, 1)`.

    The start is the classic :math:`(-1.2, 1)`, repeated for more dimensions:
    :math:`(-1.2, 1, -1.2, 1, \ldots)`.

    Parameters
    ----------
    d : int, optional
        Number of dimensions, at least 2. Default 2.
    dtype : {'float64', 'float32'}, optional
        Dtype of the parameter and the loss.

    Returns
    -------
    Landscape

    References
    ----------
    H. H. Rosenbrock, "An automatic method for finding the greatest or least
    value of a function", *The Computer Journal* 3(3):175-184, 1960.
    """
    d = _check_int("d", d, 2)
    dtype = _check_dtype(dtype)

    def build(x, c):
        head, tail = x[:-1], x[1:]
        return pt.sum(c(100) * pt.square(tail - pt.square(head))
                      + pt.square(c(1) - head))

    def evaluate(x):
        x = _points(x, d)
        head, tail = x[..., :-1], x[..., 1:]
        return np.sum(100.0 * (tail - head ** 2) ** 2 + (1.0 - head) ** 2,
                      axis=-1)

    return _make("rosenbrock", _tile([-1.2, 1.0], d), build, np.ones(d), 0.0,
                 _bounds((-2.0, 2.0), (-1.0, 3.0)), evaluate, dtype,
                 {"d": d})


def ackley(d: int = 2, dtype: str = "float64") -> Landscape:
    r"""Ackley's function: a funnel covered in regular bumps.

    .. math::

        f(x) = -a \exp\left(-b \sqrt{\tfrac{1}{d} \textstyle\sum_i x_i^2}
               \right) - \exp\left(\tfrac{1}{d} \textstyle\sum_i
               \cos(c \, x_i)\right) + a + e

    with :math:`a = 20`, :math:`b = 0.2` and :math:`c = 2\pi`. The global
    minimum is :math:`f(0, \ldots, 0) = 0`, surrounded by many local minima
    near the integer lattice. The function has a cone-shaped kink at the
    origin; the symbolic loss is written so that its gradient there is
    exactly zero (a valid subgradient) rather than NaN.

    The start is :math:`(25, 20)`, repeated for more dimensions: far out on
    the nearly flat outer plateau.

    Parameters
    ----------
    d : int, optional
        Number of dimensions, at least 1. Default 2.
    dtype : {'float64', 'float32'}, optional
        Dtype of the parameter and the loss.

    Returns
    -------
    Landscape

    References
    ----------
    D. H. Ackley, *A Connectionist Machine for Genetic Hillclimbing*,
    Kluwer, 1987.
    """
    d = _check_int("d", d, 1)
    dtype = _check_dtype(dtype)
    a, b, cc = 20.0, 0.2, 2.0 * np.pi

    def build(x, c):
        mean_sq = pt.mean(pt.square(x))
        positive = pt.gt(mean_sq, c(0))
        # sqrt has an infinite derivative at 0; keep both branches finite
        # so the gradient at the origin is 0 and not NaN.
        safe = pt.switch(positive, mean_sq, c(1))
        radius = pt.switch(positive, pt.sqrt(safe), c(0))
        mean_cos = pt.mean(pt.cos(c(cc) * x))
        return (c(a) * (c(1) - pt.exp(-c(b) * radius))
                + (pt.exp(c(1)) - pt.exp(mean_cos)))

    def evaluate(x):
        x = _points(x, d)
        radius = np.sqrt(np.mean(x ** 2, axis=-1))
        mean_cos = np.mean(np.cos(cc * x), axis=-1)
        return a * (1.0 - np.exp(-b * radius)) + (np.e - np.exp(mean_cos))

    return _make("ackley", _tile([25.0, 20.0], d), build, np.zeros(d), 0.0,
                 _bounds((-32.768, 32.768)), evaluate, dtype,
                 {"d": d, "a": a, "b": b, "c": cc})


def rastrigin(d: int = 2, dtype: str = "float64") -> Landscape:
    r"""Rastrigin's function: a bowl with a regular grid of local minima.

    .. math::

        f(x) = 10 d + \sum_{i=1}^{d} \left[ x_i^2 - 10 \cos(2 \pi x_i)
               \right]

    The global minimum is :math:`f(0, \ldots, 0) = 0`; there is a local
    minimum near every point of the integer lattice.

    The start is :math:`(3.3, 2.7)`, repeated for more dimensions, a few
    basins away from the origin.

    Parameters
    ----------
    d : int, optional
        Number of dimensions, at least 1. Default 2.
    dtype : {'float64', 'float32'}, optional
        Dtype of the parameter and the loss.

    Returns
    -------
    Landscape

    References
    ----------
    L. A. Rastrigin, *Systems of Extremal Control*, Nauka, Moscow, 1974;
    generalized by H. Mühlenbein, M. Schomisch and J. Born, "The parallel
    genetic algorithm as function optimizer", *Parallel Computing*
    17:619-632, 1991.
    """
    d = _check_int("d", d, 1)
    dtype = _check_dtype(dtype)
    two_pi = 2.0 * np.pi

    # Written as sum(x^2 + 10 (1 - cos(2 pi x))) so the origin gives exactly 0.
    def build(x, c):
        return pt.sum(pt.square(x)
                      + c(10) * (c(1) - pt.cos(c(two_pi) * x)))

    def evaluate(x):
        x = _points(x, d)
        return np.sum(x ** 2 + 10.0 * (1.0 - np.cos(two_pi * x)), axis=-1)

    return _make("rastrigin", _tile([3.3, 2.7], d), build, np.zeros(d), 0.0,
                 _bounds((-5.12, 5.12)), evaluate, dtype, {"d": d})


def beale(dtype: str = "float64") -> Landscape:
    r"""Beale's function, two-dimensional with sharp ridges at the corners.

    .. math::

        f(x, y) = (1.5 - x + x y)^2 + (2.25 - x + x y^2)^2
                  + (2.625 - x + x y^3)^2

    The global minimum is :math:`f(3, 0.5) = 0`. The start is :math:`(1, 1)`.

    Parameters
    ----------
    dtype : {'float64', 'float32'}, optional
        Dtype of the parameter and the loss.

    Returns
    -------
    Landscape

    References
    ----------
    E. M. L. Beale, "On an iterative method for finding a local minimum of a
    function of more than one variable", Technical Report 25, Statistical
    Techniques Research Group, Princeton University, 1958.
    """
    dtype = _check_dtype(dtype)
    coefs = (1.5, 2.25, 2.625)

    def build(x, c):
        u, v = x[0], x[1]
        return sum(pt.square(c(k) - u + u * v ** (i + 1))
                   for i, k in enumerate(coefs))

    def evaluate(x):
        x = _points(x, 2)
        u, v = x[..., 0], x[..., 1]
        return sum((k - u + u * v ** (i + 1)) ** 2
                   for i, k in enumerate(coefs))

    return _make("beale", [1.0, 1.0], build, [3.0, 0.5], 0.0,
                 _bounds((-4.5, 4.5)), evaluate, dtype, {"d": 2})


def _himmelblau_np(x):
    u, v = x[..., 0], x[..., 1]
    return (u ** 2 + v - 11.0) ** 2 + (u + v ** 2 - 7.0) ** 2


def _himmelblau_minima() -> np.ndarray:
    """The four minima of Himmelblau's function, polished by Newton."""
    guesses = np.array([[3.0, 2.0], [-2.805118, 3.131312],
                        [-3.779310, -3.283186], [3.584428, -1.848126]])
    out = []
    for z in guesses:
        for _ in range(50):
            u, v = z
            p, q = u * u + v - 11.0, u + v * v - 7.0
            grad = np.array([4 * u * p + 2 * q, 2 * p + 4 * v * q])
            hess = np.array([[12 * u * u + 4 * v - 42, 4 * (u + v)],
                             [4 * (u + v), 4 * u + 12 * v * v - 26]])
            step = np.linalg.solve(hess, grad)
            z = z - step
            if np.max(np.abs(step)) < 1e-16:
                break
        out.append(z)
    return np.array(out)


_HIMMELBLAU_MINIMA = _himmelblau_minima()


def himmelblau(dtype: str = "float64") -> Landscape:
    r"""Himmelblau's function, two-dimensional with four global minima.

    .. math::

        f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2

    All four minima have value 0: :math:`(3, 2)`, which is the one stored
    in :attr:`Landscape.minimum`, and approximately
    :math:`(-2.805118, 3.131313)`, :math:`(-3.779310, -3.283186)` and
    :math:`(3.584428, -1.848127)`, which are stored (to full float64
    precision) as ``metadata['other_minima']``, an array of shape (3, 2).
    ``metadata['all_minima']`` has all four. The start is :math:`(0, 0)`,
    from where steepest descent heads for :math:`(3, 2)`.

    Parameters
    ----------
    dtype : {'float64', 'float32'}, optional
        Dtype of the parameter and the loss.

    Returns
    -------
    Landscape

    References
    ----------
    D. M. Himmelblau, *Applied Nonlinear Programming*, McGraw-Hill, 1972.
    """
    dtype = _check_dtype(dtype)

    def build(x, c):
        u, v = x[0], x[1]
        return (pt.square(pt.square(u) + v - c(11))
                + pt.square(u + pt.square(v) - c(7)))

    def evaluate(x):
        return _himmelblau_np(_points(x, 2))

    return _make("himmelblau", [0.0, 0.0], build, [3.0, 2.0], 0.0,
                 _bounds((-5.0, 5.0)), evaluate, dtype,
                 {"d": 2,
                  "other_minima": _readonly(_HIMMELBLAU_MINIMA[1:]),
                  "all_minima": _readonly(_HIMMELBLAU_MINIMA)})


def _styblinski_tang_root(t: float) -> float:
    """Solve 4 t^3 - 32 t + 5 = 0 (f' = 0) by Newton's method from ``t``."""
    for _ in range(100):
        step = (4 * t ** 3 - 32 * t + 5) / (12 * t ** 2 - 32)
        t -= step
        if abs(step) < 1e-17:
            break
    return t


#: Coordinate of the global minimizer of Styblinski-Tang (about -2.903534).
STYBLINSKI_TANG_ARGMIN = _styblinski_tang_root(-3.0)
#: Minimum value of Styblinski-Tang per dimension (about -39.166166).
STYBLINSKI_TANG_MIN = 0.5 * (STYBLINSKI_TANG_ARGMIN ** 4
                             - 16 * STYBLINSKI_TANG_ARGMIN ** 2
                             + 5 * STYBLINSKI_TANG_ARGMIN)


def styblinski_tang(d: int = 2, dtype: str = "float64") -> Landscape:
    r"""The Styblinski-Tang function, separable with :math:`2^d` minima.

    .. math::

        f(x) = \frac{1}{2} \sum_{i=1}^{d} \left( x_i^4 - 16 x_i^2
               + 5 x_i \right)

    Each coordinate has a global minimum at :math:`t^* \approx -2.903534`
    (the most negative root of :math:`4t^3 - 32t + 5 = 0`, computed by
    Newton's method at import time, :data:`STYBLINSKI_TANG_ARGMIN`) and a
    shallower local minimum near :math:`2.7468`. The global minimum is
    :math:`f(t^*, \ldots, t^*) \approx -39.166166 \, d`
    (:data:`STYBLINSKI_TANG_MIN` times ``d``).

    The start is the origin, where the slope points towards the global
    minimum of every coordinate.

    Parameters
    ----------
    d : int, optional
        Number of dimensions, at least 1. Default 2.
    dtype : {'float64', 'float32'}, optional
        Dtype of the parameter and the loss.

    Returns
    -------
    Landscape

    References
    ----------
    M. A. Styblinski and T.-S. Tang, "Experiments in nonconvex optimization:
    stochastic approximation with function smoothing and simulated
    annealing", *Neural Networks* 3(4):467-483, 1990.
    """
    d = _check_int("d", d, 1)
    dtype = _check_dtype(dtype)

    def build(x, c):
        x2 = pt.square(x)
        return c(0.5) * pt.sum(pt.square(x2) - c(16) * x2 + c(5) * x)

    def evaluate(x):
        x = _points(x, d)
        return 0.5 * np.sum(x ** 4 - 16.0 * x ** 2 + 5.0 * x, axis=-1)

    return _make("styblinski_tang", np.zeros(d), build,
                 np.full(d, STYBLINSKI_TANG_ARGMIN), d * STYBLINSKI_TANG_MIN,
                 _bounds((-5.0, 5.0)), evaluate, dtype,
                 {"d": d,
                  "local_minimum_coordinate": _styblinski_tang_root(3.0)})


def quadratic(d: int = 2, condition: float = 100,
              dtype: str = "float64") -> Landscape:
    r"""An ill-conditioned convex quadratic bowl.

    .. math::

        f(x) = \frac{1}{2} x^\top A x = \frac{1}{2} \sum_{i=1}^{d}
               \lambda_i x_i^2,
        \qquad \lambda_i = \kappa^{(i-1)/(d-1)}

    :math:`A` is diagonal with eigenvalues log-spaced from 1 to the
    condition number :math:`\kappa` (for ``d == 1`` the only eigenvalue is
    1). They are stored as ``metadata['eigenvalues']``. The global minimum is
    :math:`f(0, \ldots, 0) = 0`. The start is :math:`(1, \ldots, 1)`.

    Gradient descent with a fixed step needs on the order of :math:`\kappa`
    iterations here, which makes this the standard probe for how methods cope
    with poor conditioning.

    Parameters
    ----------
    d : int, optional
        Number of dimensions, at least 1. Default 2.
    condition : float, optional
        Condition number :math:`\kappa` of :math:`A`, at least 1. Default 100.
    dtype : {'float64', 'float32'}, optional
        Dtype of the parameter and the loss.

    Returns
    -------
    Landscape

    References
    ----------
    J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed.,
    Springer, 2006, section 3.3 (convergence rate of steepest descent).
    """
    d = _check_int("d", d, 1)
    condition = _check_real("condition", condition, 1.0)
    dtype = _check_dtype(dtype)
    eig = np.geomspace(1.0, condition, d) if d > 1 else np.ones(1)

    def build(x, c):
        return c(0.5) * pt.sum(c(eig) * pt.square(x))

    def evaluate(x):
        x = _points(x, d)
        return 0.5 * np.sum(eig * x ** 2, axis=-1)

    return _make("quadratic", np.ones(d), build, np.zeros(d), 0.0,
                 _bounds((-2.0, 2.0)), evaluate, dtype,
                 {"d": d, "condition": condition,
                  "eigenvalues": _readonly(eig)})


# ---------------------------------------------------------------------------
# Random Gaussian wells
# ---------------------------------------------------------------------------


def _wells_value_grad_hess(x, centres, depths, widths):
    """Value, gradient and Hessian of the per-point well function at x (d,)."""
    diff = x - centres                                   # (K, d)
    inv_var = 1.0 / widths ** 2                          # (K,)
    weight = depths * np.exp(-0.5 * np.sum(diff ** 2, axis=1) * inv_var)
    value = -np.sum(weight)
    grad = (weight * inv_var) @ diff
    hess = (np.sum(weight * inv_var) * np.eye(x.size)
            - np.einsum("k,ki,kj->ij", weight * inv_var ** 2, diff, diff))
    return value, grad, hess


def _newton_step(hess, grad):
    """The Newton step ``-hess^-1 grad``, or None where ``hess`` is not positive definite."""
    try:
        np.linalg.cholesky(hess)
    except np.linalg.LinAlgError:
        return None
    return -np.linalg.solve(hess, grad)


def _wells_descend(x, centres, depths, widths, max_iter=500):
    """Damped Newton (steepest descent where the Hessian is indefinite)."""
    lipschitz = np.sum(depths / widths ** 2)
    value, grad, hess = _wells_value_grad_hess(x, centres, depths, widths)
    for _ in range(max_iter):
        if np.max(np.abs(grad)) < 1e-14:
            break
        step = _newton_step(hess, grad)
        if step is None:
            step = -grad / lipschitz
        slope = grad @ step
        t = 1.0
        for _ in range(60):
            trial = x + t * step
            trial_value = np.sum(-depths * np.exp(
                -0.5 * np.sum((trial - centres) ** 2, axis=1) / widths ** 2))
            if trial_value <= value + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            break  # no decrease possible at this precision
        x = trial
        value, grad, hess = _wells_value_grad_hess(x, centres, depths, widths)
    # Near a minimum the value's decrease drowns in its rounding (how soon
    # depends on the CPU's exp) and the line search crawls: finish with plain
    # Newton steps for as long as they shrink the gradient.
    for _ in range(20):
        step = _newton_step(hess, grad)
        if step is None:
            break
        trial = x + step
        trial_value, trial_grad, trial_hess = _wells_value_grad_hess(trial, centres, depths, widths)
        if np.max(np.abs(trial_grad)) >= np.max(np.abs(grad)):
            break
        x, value, grad, hess = trial, trial_value, trial_grad, trial_hess
    return x, value


def gaussian_wells(d: int = 2, n_wells: int = 8, seed: int | None = 0,
                   n_points: int = 1, dtype: str = "float64") -> Landscape:
    r"""A random landscape made of Gaussian wells, for one or many points.

    .. math::

        f(x) = -\sum_{k=1}^{K} a_k \exp\left(
               -\frac{\lVert x - \mu_k \rVert^2}{2 \sigma_k^2} \right)

    The :math:`K` = ``n_wells`` centres :math:`\mu_k` are uniform in
    :math:`[-2.5, 2.5]^d`, the depths :math:`a_k` uniform in
    :math:`[0.5, 1.5]` and the widths :math:`\sigma_k` uniform in
    :math:`[0.4, 1]`, all drawn from ``numpy.random.default_rng(seed)``.
    They are stored as ``metadata['centres']`` (K, d),
    ``metadata['depths']`` (K,) and ``metadata['widths']`` (K,).

    With ``n_points == 1`` the parameter has shape ``(d,)`` and the loss is
    :math:`f(x)`. With ``n_points > 1`` the parameter has shape
    ``(n_points, d)``, one row per starting point, and the loss is the sum
    :math:`\sum_j f(x_j)`: the rows do not interact, so the gradient of the
    loss with respect to each row is that point's own gradient of
    :math:`f`, and an optimizer moves all the points downhill at once. The
    starting points are uniform in :math:`[-3, 3]^d` (drawn after the wells,
    so the wells for a given seed do not depend on ``n_points``).

    A sum of Gaussians has no closed-form minimizer, so the global minimum
    is found numerically when the landscape is built: damped Newton steps
    (steepest descent where the Hessian is indefinite) from every well
    centre, in float64. The best of these local minima is
    :attr:`Landscape.minimum` (repeated for every point when
    ``n_points > 1``); the deepest well's basin almost always holds the
    global minimum, but this search is a heuristic, not a proof. All local
    minima found are in ``metadata['local_minima']`` (sorted by value, with
    values in ``metadata['local_minimum_values']``), and
    ``metadata['point_minimum_value']`` is :math:`\min f`, so
    :attr:`Landscape.minimum_value` is ``n_points`` times it.

    Parameters
    ----------
    d : int, optional
        Number of dimensions, at least 1. Default 2.
    n_wells : int, optional
        Number of wells, at least 1. Default 8.
    seed : int or None, optional
        Seed for ``numpy.random.default_rng``, a non-negative integer;
        ``None`` draws a fresh landscape each call. Default 0.
    n_points : int, optional
        Number of points optimized at once, at least 1. Default 1.
    dtype : {'float64', 'float32'}, optional
        Dtype of the parameter and the loss.

    Returns
    -------
    Landscape

    References
    ----------
    Random Gaussian-well landscapes are a common teaching device for
    visualizing gradient descent from many starting points at once; see
    also M. Gaviano, D. E. Kvasov, D. Lera and Y. D. Sergeyev, "Algorithm
    829: Software for generation of classes of test functions with known
    local and global minima for global optimization", *ACM TOMS*
    29(4):469-480, 2003, for random multi-well test-function generators.
    """
    d = _check_int("d", d, 1)
    n_wells = _check_int("n_wells", n_wells, 1)
    if seed is not None:
        seed = _check_int("seed", seed, 0)
    n_points = _check_int("n_points", n_points, 1)
    dtype = _check_dtype(dtype)

    rng = np.random.default_rng(seed)
    centres = rng.uniform(-2.5, 2.5, size=(n_wells, d))
    depths = rng.uniform(0.5, 1.5, size=n_wells)
    widths = rng.uniform(0.4, 1.0, size=n_wells)
    starts = rng.uniform(-3.0, 3.0, size=(n_points, d))
    start = starts[0] if n_points == 1 else starts

    found = [_wells_descend(centre.copy(), centres, depths, widths)
             for centre in centres]
    found.sort(key=lambda pair: pair[1])
    minima, values = [], []
    for point, value in found:
        if all(np.max(np.abs(point - m)) > 1e-6 for m in minima):
            minima.append(point)
            values.append(value)
    best, best_value = minima[0], values[0]

    def build(x, c):
        if x.ndim == 1:
            diff = x.dimshuffle("x", 0) - c(centres)          # (K, d)
        else:
            diff = x.dimshuffle(0, "x", 1) - c(centres)       # (n, K, d)
        sq = pt.sum(pt.square(diff), axis=-1)
        wells = c(depths) * pt.exp(-sq * c(0.5 / widths ** 2))
        return -pt.sum(wells)

    def evaluate(x):
        x = _points(x, d)
        sq = np.sum((x[..., None, :] - centres) ** 2, axis=-1)
        return -np.sum(depths * np.exp(-0.5 * sq / widths ** 2), axis=-1)

    minimum = best if n_points == 1 else np.tile(best, (n_points, 1))
    return _make("gaussian_wells", start, build, minimum,
                 n_points * best_value, _bounds((-3.0, 3.0)), evaluate, dtype,
                 {"d": d, "n_wells": n_wells, "seed": seed,
                  "n_points": n_points,
                  "centres": _readonly(centres),
                  "depths": _readonly(depths),
                  "widths": _readonly(widths),
                  "local_minima": _readonly(np.array(minima)),
                  "local_minimum_values": _readonly(values),
                  "point_minimum_value": float(best_value)})


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

#: Map from landscape name to factory.
LANDSCAPES: dict[str, Callable[..., Landscape]] = {
    "rosenbrock": rosenbrock,
    "ackley": ackley,
    "rastrigin": rastrigin,
    "beale": beale,
    "himmelblau": himmelblau,
    "styblinski_tang": styblinski_tang,
    "quadratic": quadratic,
    "gaussian_wells": gaussian_wells,
}


def get(name: str, **kwargs) -> Landscape:
    """Build a landscape by name.

    Parameters
    ----------
    name : str
        A key of :data:`LANDSCAPES` (case-insensitive; ``-`` may stand for
        ``_``, as in ``'styblinski-tang'``).
    **kwargs
        Passed to the factory, e.g. ``d=5`` or ``dtype='float32'``.

    Returns
    -------
    Landscape

    Raises
    ------
    ValueError
        If ``name`` is not a known landscape; the message lists valid names.
    """
    key = name
    if isinstance(name, str):
        key = name.strip().lower().replace("-", "_")
    try:
        factory = LANDSCAPES[key]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown landscape {name!r}; valid names are: "
            f"{', '.join(sorted(LANDSCAPES))}") from None
    return factory(**kwargs)
