r"""Symbolic test landscapes with known minima.

Each factory in this module builds a small optimization problem: a PyTensor
shared variable (the parameter, initialized at a conventional starting point)
and a scalar PyTensor expression of it (the loss), together with what is known
about the problem: where its global minimum is, the value there, plotting
bounds, and a pure-NumPy evaluator of the same function for contour plots and
cross-checks.

>>> from downhill.tools import landscapes
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

The package is standalone: it depends on NumPy and PyTensor only. The
container and its helpers are in :mod:`.base`, the classic functions in
:mod:`.classic`, the Gaussian wells in :mod:`.wells`; the table of names
and :func:`get` are here.
"""

from __future__ import annotations

from typing import Callable

from .base import Landscape
from .classic import (STYBLINSKI_TANG_ARGMIN, STYBLINSKI_TANG_MIN, ackley, beale, himmelblau,
                      quadratic, rastrigin, rosenbrock, styblinski_tang)
from .wells import gaussian_wells

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
