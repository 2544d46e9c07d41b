"""The landscapes by name: :data:`LANDSCAPES` and :func:`get`."""

from __future__ import annotations

from typing import Callable

from .base import Landscape
from .classic import ackley, beale, himmelblau, quadratic, rastrigin, rosenbrock, styblinski_tang
from .wells import gaussian_wells

__all__ = ["LANDSCAPES", "get"]


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
