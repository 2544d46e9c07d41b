"""The quick mode: what runs the first updates while the final step compiles.

PyTensor's Python linker with no graph rewrites compiles in 0.05-0.2 s
(``FAST_COMPILE`` takes 0.5-0.9 s for the first function of a process,
mostly importing ``setuptools`` and ``pytensor.sparse`` for its C-linker
checks and shape rewrites) and runs each op with NumPy, except the
elementwise ops whose scalar op names no NumPy function: the linker runs
those through ``numpy.frompyfunc``, one Python call per element. The
gradient of a mean has a ``second`` (fill) the size of the data (0.2 s per
call on the matrix-factorization benchmark), and ``cast`` and ``clip`` are in
many graphs (:mod:`downhill.backend.fast_tanh`). The one rewrite of this mode gives
those and ``identity`` (:data:`NUMPY_VERSIONS`) a NumPy ``perform`` that
computes the same values.
"""

import numpy as np
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.scalar import basic as scalar
from pytensor.tensor.elemwise import Elemwise


def _second(x, y):
    return np.broadcast_to(y, np.broadcast_shapes(np.shape(x), np.shape(y)))


def _clip(x, low, high):
    # the scalar op's own order of tests: NaN stays NaN, and low wins over a smaller high
    return np.where(x < low, low, np.where(x > high, high, x))


#: Scalar op type -> the NumPy function computing it on whole arrays.
NUMPY_VERSIONS = {
    scalar.Second: _second,
    scalar.Cast: lambda x: x,  # the output dtype does the cast
    scalar.Clip: _clip,
    scalar.Identity: lambda x: x,
}


class NumpyElemwise(Op):
    """An ``Elemwise`` computed by one NumPy function instead of element by element."""

    __props__ = ('elemwise',)

    def __init__(self, elemwise):
        self.elemwise = elemwise
        self.compute = NUMPY_VERSIONS[type(elemwise.scalar_op)]

    def make_node(self, *inputs):
        node = self.elemwise.make_node(*inputs)
        return Apply(self, node.inputs, [out.type() for out in node.outputs])

    def perform(self, node, inputs, output_storage):
        # always a new array, as Elemwise's own perform makes, and no warnings either
        with np.errstate(all='ignore'):
            output_storage[0][0] = np.array(self.compute(*inputs), dtype=node.outputs[0].dtype)

    def __str__(self):
        return f'Numpy{self.elemwise}'


@node_rewriter([Elemwise])
def numpy_elemwise(fgraph, node):
    """Swap an Elemwise the Python linker would run per element for a :class:`NumpyElemwise`."""
    if type(node.op.scalar_op) in NUMPY_VERSIONS and len(node.outputs) == 1:
        return NumpyElemwise(node.op)(*node.inputs, return_list=True)
    return None


_QUICK_MODE = None


def quick_mode():
    """PyTensor's Python linker, with :func:`numpy_elemwise` as its only rewrite."""
    global _QUICK_MODE
    if _QUICK_MODE is None:
        from pytensor.compile.mode import Mode
        _QUICK_MODE = Mode(linker='py', optimizer=in2out(numpy_elemwise, name='numpy_elemwise'))
    return _QUICK_MODE
