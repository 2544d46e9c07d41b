"""The container of a test landscape, and the helpers every landscape is built with."""

from __future__ import annotations

import dataclasses
import numbers
import types
from typing import Any, Callable, Mapping

import numpy as np
import pytensor
import pytensor.tensor as pt

__all__ = ["Landscape"]


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
