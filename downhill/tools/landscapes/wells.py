"""A random landscape of Gaussian wells, for one starting point or many at once."""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

from .base import Landscape, _bounds, _check_dtype, _check_int, _make, _points, _readonly

__all__ = ["gaussian_wells"]


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
    d, n_wells, seed, n_points, dtype = _check_wells_arguments(d, n_wells, seed, n_points, dtype)
    centres, depths, widths, start = _draw_wells(d, n_wells, n_points, seed)
    minima, values = _local_minima(centres, depths, widths)
    best, best_value = minima[0], values[0]
    build, evaluate = _wells_functions(d, centres, depths, widths)
    minimum = best if n_points == 1 else np.tile(best, (n_points, 1))
    metadata = dict(d=d, n_wells=n_wells, seed=seed, n_points=n_points, centres=_readonly(centres),
                    depths=_readonly(depths), widths=_readonly(widths),
                    local_minima=_readonly(np.array(minima)),
                    local_minimum_values=_readonly(values), point_minimum_value=float(best_value))
    return _make("gaussian_wells", start, build, minimum, n_points * best_value,
                 _bounds((-3.0, 3.0)), evaluate, dtype, metadata)


def _check_wells_arguments(d, n_wells, seed, n_points, dtype):
    """The arguments of :func:`gaussian_wells`, checked in the order of its signature."""
    d = _check_int("d", d, 1)
    n_wells = _check_int("n_wells", n_wells, 1)
    if seed is not None:
        seed = _check_int("seed", seed, 0)
    n_points = _check_int("n_points", n_points, 1)
    return d, n_wells, seed, n_points, _check_dtype(dtype)


def _draw_wells(d, n_wells, n_points, seed):
    """``(centres, depths, widths, start)``, drawn in that order (the wells do not depend on n_points)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-2.5, 2.5, size=(n_wells, d))
    depths = rng.uniform(0.5, 1.5, size=n_wells)
    widths = rng.uniform(0.4, 1.0, size=n_wells)
    starts = rng.uniform(-3.0, 3.0, size=(n_points, d))
    start = starts[0] if n_points == 1 else starts
    return centres, depths, widths, start


def _local_minima(centres, depths, widths):
    """The distinct local minima reached from every well centre, and their values, lowest first."""
    found = [_wells_descend(centre.copy(), centres, depths, widths)
             for centre in centres]
    found.sort(key=lambda pair: pair[1])
    minima, values = [], []
    for point, value in found:
        if all(np.max(np.abs(point - m)) > 1e-6 for m in minima):
            minima.append(point)
            values.append(value)
    return minima, values


def _wells_functions(d, centres, depths, widths):
    """The symbolic loss builder and the NumPy evaluator of the wells (one point or rows of points)."""
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

    return build, evaluate
