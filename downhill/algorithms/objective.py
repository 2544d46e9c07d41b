r"""The loss as a function of one flat vector, over all of a dataset's batches.

Full-batch methods (:mod:`downhill.algorithms.second_order`) work on a vector
:math:`\theta \in \mathbb{R}^n` that holds every parameter, flattened and
concatenated in the optimizer's order. This module compiles, from the
optimizer's symbolic loss:

* :math:`f(\theta)`, the monitors and :math:`\nabla f(\theta)` in one
  function (each parameter is replaced by a reshaped slice of
  :math:`\theta` through ``givens``, so nothing is written to the shared
  variables while a line search probes);
* :math:`\nabla^2 f(\theta)\, v` for a vector :math:`v`, with the
  R-operator (forward mode over the reverse-mode gradient, [Pear94]_): the
  Hessian is never formed, and one product costs a small multiple of one
  gradient.

Both are averaged over a fixed list of batches, as the loop averages its
monitors: :math:`f = \frac{1}{B} \sum_b f_b`. The counts of calls
(``evaluations['fg']``, ``evaluations['hv']``, one per full pass) are kept,
because the number of function evaluations is how second-order methods are
compared.

References
----------
.. [Pear94] B. A. Pearlmutter (1994) "Fast exact multiplication by the
   Hessian." Neural Computation 6(1):147-160.
"""

import logging

import numpy as np
import pytensor
import pytensor.tensor as pt

from .. import _compat

log = logging.getLogger('downhill')

__all__ = ['FlatObjective']


class FlatObjective:
    """Loss, monitors, gradient and Hessian-vector products of a flat vector.

    Parameters
    ----------
    params : list of shared variables
        The parameters, in the order they are packed into the vector.
    loss : scalar expression
        What is minimized.
    monitors : list of scalar expressions
        Computed along with the loss (the first is usually the loss itself).
    grads : list of expressions
        The gradient of ``loss`` with respect to each parameter.
    inputs : list of symbolic inputs
        The data inputs, in the order of a batch's arrays.
    prepare : callable
        ``prepare(*groups)`` returns ``(mode, *groups)``: the mode to compile
        with and each group of expressions as the backend compiles them (the
        optimizer's ``_prepared``, the seam to the speed-ups).
    hessian : bool
        Also compile the Hessian-vector product.
    """

    def __init__(self, params, loss, monitors, grads, inputs, prepare, hessian=False):
        self.params = list(params)
        self.shapes = [p.get_value(borrow=True).shape for p in self.params]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.size = int(self.offsets[-1])
        self.evaluations = {'fg': 0, 'hv': 0}
        self._batches = [[]]
        theta = pt.vector('theta', dtype='float64')
        givens = list(zip(self.params, self._unflatten(theta)))
        monitors, grads = list(monitors), list(grads)
        vector = pt.vector('v', dtype='float64')
        # the products are taken of the exact gradient, before tanh is replaced
        products = _compat.rop(grads, self.params, self._unflatten(vector)) if hessian else []
        mode, monitors, grads, products = prepare(monitors, grads, products)
        self._fg = pytensor.function(list(inputs) + [theta], monitors + [_flatten(grads)],
                                     givens=givens, mode=mode, on_unused_input='ignore',
                                     name='loss_and_gradient')
        self._hv = None
        if hessian:
            self._hv = pytensor.function(list(inputs) + [theta, vector], _flatten(products),
                                         givens=givens, mode=mode, on_unused_input='ignore',
                                         name='hessian_vector')

    def _unflatten(self, vector):
        return [vector[a:b].reshape(shape).astype(p.dtype) if shape else
                vector[a:b].reshape(()).astype(p.dtype)
                for p, shape, a, b in zip(self.params, self.shapes, self.offsets[:-1], self.offsets[1:])]

    def use(self, batches):
        """Average over ``batches`` (converted lists of arrays) from now on."""
        self._batches = list(batches)

    def get(self):
        """The parameters' current values as one float64 vector."""
        if not self.params:
            return np.zeros(0)
        return np.concatenate([np.asarray(p.get_value(borrow=True), dtype=np.float64).ravel()
                               for p in self.params])

    def split(self, theta):
        """The parameter arrays (each in its own dtype) held in ``theta``."""
        return [np.asarray(theta[a:b], dtype=p.dtype).reshape(shape)
                for p, shape, a, b in zip(self.params, self.shapes, self.offsets[:-1], self.offsets[1:])]

    def set(self, theta):
        """Write ``theta`` into the shared parameters."""
        for p, value in zip(self.params, self.split(theta)):
            p.set_value(value, borrow=False)

    def __call__(self, theta):
        """``(monitors, gradient)`` at ``theta``, averaged over the batches.

        ``monitors`` is a list of floats (the loss first), ``gradient`` a
        float64 vector.
        """
        self.evaluations['fg'] += 1
        monitors, grad = None, None
        for batch in self._batches:
            *values, g = self._fg(*batch, theta)
            if monitors is None:
                monitors, grad = [float(v) for v in values], np.array(g, dtype=np.float64)
            else:
                monitors = [m + float(v) for m, v in zip(monitors, values)]
                grad += g
        n = len(self._batches)
        if n > 1:
            monitors = [m / n for m in monitors]
            grad /= n
        return monitors, grad

    def hessian_vector(self, theta, vector):
        r""":math:`\nabla^2 f(\theta)\, v`, averaged over the batches."""
        self.evaluations['hv'] += 1
        total = None
        for batch in self._batches:
            hv = self._hv(*batch, theta, vector)
            total = np.array(hv, dtype=np.float64) if total is None else total + hv
        return total / len(self._batches) if len(self._batches) > 1 else total


def _flatten(parts):
    return pt.concatenate([pt.cast(part, 'float64').flatten() for part in parts])
