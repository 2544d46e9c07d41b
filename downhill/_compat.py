"""Every call that differs between the supported PyTensor versions (2.38 to 3.x).

Nothing else in the package looks at PyTensor's version: import what you need
from here.
"""

import warnings

import numpy as np
import pytensor
import pytensor.gradient

try:  # PyTensor >= 3
    from pytensor.graph.traversal import applys_between, explicit_graph_inputs, graph_inputs
except ImportError:  # PyTensor 2.x
    from pytensor.graph.basic import applys_between, explicit_graph_inputs, graph_inputs

from pytensor.gradient import DisconnectedInputError
from pytensor.tensor.random.op import RandomVariable

PYTENSOR_VERSION = tuple(int(p) for p in pytensor.__version__.split('.')[:2] if p.isdigit())

__all__ = [
    'DisconnectedInputError', 'RandomVariable', 'applys_between', 'explicit_graph_inputs',
    'graph_inputs', 'hessian_vector', 'l2_norm', 'random_normal', 'shared_generator',
]


def _quietly(fn, *args):
    # PyTensor 3 renamed Rop/Lop to pushforward/pullback and warns on the old
    # names; 2.38 only has the old names.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        return fn(*args)


def rop(f, wrt, v):
    """Jacobian of ``f`` with respect to ``wrt``, times ``v`` (forward mode)."""
    pushforward = getattr(pytensor.gradient, 'pushforward', None)
    if pushforward is not None:
        return pushforward(f, wrt, v)
    return _quietly(pytensor.gradient.Rop, f, wrt, v)


def lop(f, wrt, v):
    """``v`` times the Jacobian of ``f`` with respect to ``wrt`` (reverse mode)."""
    pullback = getattr(pytensor.gradient, 'pullback', None)
    if pullback is not None:
        return pullback(f, wrt, v)
    return _quietly(pytensor.gradient.Lop, f, wrt, v)


def hessian_vector(loss, grad, param, vector, method):
    """Hessian of ``loss`` with respect to ``param`` times ``vector``.

    ``method`` is 'rop' (forward over reverse), 'lop' (reverse over reverse,
    through the transposed Jacobian of the gradient) or 'grad' (the gradient of
    ``grad . vector``). All three are exact; they differ in the graph built.
    """
    if method == 'rop':
        return rop(grad, param, vector)
    if method == 'lop':
        return lop(grad, param, vector)
    if method == 'grad':
        return pytensor.grad((grad * vector).sum(), param)
    raise ValueError(f"hv_method must be 'rop', 'lop' or 'grad', got {method!r}")


def l2_norm(x, axis=None, keepdims=False):
    """The Euclidean norm of ``x`` (over ``axis``), safe from a PyTensor 2.38 rewrite.

    PyTensor 2.38's ``local_sqrt_sqr`` has its two cases swapped: it turns
    ``sqrt(sqr(x))`` into ``switch(x >= 0, x, nan)``. That graph appears
    whenever the sum in ``sqrt(sum(sqr(x)))`` is over one element (a 0-d
    gradient, a length-1 axis) and gives NaN for negative ``x``. Squaring
    ``|x|`` gives the same numbers and is rewritten correctly by every version.
    """
    return pytensor.tensor.sqrt(pytensor.tensor.sqr(abs(x)).sum(axis=axis, keepdims=keepdims))


def shared_generator(seed, name=None):
    """A shared variable holding a seeded ``numpy.random.Generator``."""
    return pytensor.shared(np.random.default_rng(seed), name=name)


def random_normal(rng, shape, dtype):
    """Draw N(0, 1) of ``shape`` from the shared generator ``rng``.

    Returns ``(next_rng, draw)``: the generator state after the draw must be
    passed as an update of ``rng`` for later calls to draw new numbers.
    """
    normal = pytensor.tensor.random.normal
    try:  # PyTensor 3 warns unless asked for the next state explicitly
        return normal(0.0, 1.0, size=shape, rng=rng, dtype=dtype, return_next_rng=True)
    except TypeError:  # PyTensor 2.x has no return_next_rng
        draw = normal(0.0, 1.0, size=shape, rng=rng, dtype=dtype)
        return draw.owner.outputs[0], draw
