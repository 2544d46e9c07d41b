"""The classic test functions of the optimization literature, as landscapes."""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

from .base import (Landscape, _bounds, _check_dtype, _check_int, _check_real, _make, _points,
                   _readonly, _tile)

__all__ = ["rosenbrock", "ackley", "rastrigin", "beale", "himmelblau", "styblinski_tang",
           "quadratic", "STYBLINSKI_TANG_ARGMIN", "STYBLINSKI_TANG_MIN"]


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
