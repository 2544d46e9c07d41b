r"""Full-batch second-order methods: L-BFGS, BFGS and Newton-CG.

These optimizers run through the same :meth:`~downhill.Optimizer.iterate`
and :func:`downhill.tools.minimize` loop as the stochastic ones (one yield per
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
vector internally (:class:`~downhill.algorithms.objective.FlatObjective`) and written
back to the shared variables after every iteration. Simple bounds given as
``constraints=`` (:func:`downhill.core.prox.box`, :func:`downhill.core.prox.nonnegative`)
are handled by the quasi-Newton methods with a projected, L-BFGS-B-like
active-set step; any other constraint is refused.

Checkpoints (:meth:`~downhill.Optimizer.save`, ``iterate(checkpoint=...)``)
keep what the iteration continues from, so that a resumed run is bit for bit
the uninterrupted one: the current point as the float64 vector (not only the
parameters rounded to their dtypes), its loss and gradient, a pending stop,
the evaluation counts and the curvature memory (the L-BFGS pairs, the BFGS
matrix, the Newton-CG trust radius).
"""

from .base import FullBatchOptimizer, check_arrays
from .newton_cg import NewtonCG, steihaug_cg
from .quasi_newton import BFGS, LBFGS

__all__ = ['BFGS', 'FullBatchOptimizer', 'LBFGS', 'NewtonCG', 'check_arrays', 'steihaug_cg']
