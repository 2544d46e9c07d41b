"""What downhill's generated Numba loops share (:mod:`downhill.backend.stencil`, :mod:`downhill.backend.fused_sums`).

Each loop op generates Python source (``numba_source(node)``) that calls the
Numba versions of PyTensor ops (``numba_callees(node)``), and keeps a Python
``perform`` as the reference the loop is tested against. This module holds
the pieces both need: the scalar function of that reference, the on-disk
cache key of generated source, recognising a full sum, and replacing nodes
while keeping PyTensor's graph when an in-place conflict turns up.
"""

import hashlib
import logging

import numpy as np
import pytensor.scalar as ps
from pytensor.graph.utils import InconsistencyError
from pytensor.link.utils import fgraph_to_python
from pytensor.tensor.elemwise import CAReduce

log = logging.getLogger('downhill')

_PYTHON_FUNCTIONS = {}


def python_function(scalar_op):
    """``scalar_op`` as a Python function of scalars (for the loops' reference ``perform``).

    Not ``scalar_op.impl``: PyTensor's Python version of a Composite gives
    every output of a nested multi-output Composite the last one's value
    (``benchmarks/repro_nested_composite.py``), and the loops' scalar
    functions nest the Composites PyTensor's fusion made.
    """
    if not isinstance(scalar_op, ps.Composite):
        return scalar_op.impl
    fn = _PYTHON_FUNCTIONS.get(scalar_op)
    if fn is None:
        def convert(op, node=None, **kwargs):
            def perform(*inputs):
                storage = [[None] for _ in node.outputs]  # one cell per output
                op.perform(node, inputs, storage)
                return tuple(c[0] for c in storage) if len(storage) > 1 else storage[0][0]
            return perform
        fn = _PYTHON_FUNCTIONS[scalar_op] = fgraph_to_python(scalar_op.fgraph, convert)
    return fn


def elementwise(scalar_op, *args):
    """``scalar_op`` applied element by element to broadcast ``args``: a tuple, one array per output.

    One Python call per element: the reference for a Numba loop, not a fast path.
    """
    values = np.frompyfunc(python_function(scalar_op), len(args), scalar_op.nout)(*args)
    return values if scalar_op.nout > 1 else (values,)


def total(values, dtype, acc_dtype):
    """The sum of ``values`` added up in ``acc_dtype``, as a 0-d array of ``dtype`` (a ``Sum``'s output)."""
    return np.asarray(np.asarray(values, dtype=acc_dtype).sum(), dtype=dtype)


def scalar_callee(scalar_op):
    """``(scalar_op, an Apply of it)``: an entry of ``numba_callees`` for a scalar function."""
    return scalar_op, scalar_op.make_node(*[i.type() for i in scalar_op.inputs])


def generated_cache_key(source, keys):
    """The on-disk cache key of generated Numba source calling functions with cache keys ``keys``.

    The source is part of it, so a change to the code generator never loads a
    stale loop; None (not cached) when a callee has none.
    """
    if any(key is None for key in keys):
        return None
    return hashlib.sha256(str((source, tuple(keys))).encode()).hexdigest()


def is_full_sum(node):
    """Whether ``node`` adds up all the elements of its input (``x.sum()``)."""
    op = getattr(node, 'op', None)
    return (isinstance(op, CAReduce) and isinstance(op.scalar_op, ps.Add)
            and (op.axis is None or sorted(op.axis) == list(range(node.inputs[0].ndim))))


def replace_validated(fgraph, pairs, what, reason):
    """Replace ``pairs`` in ``fgraph``; False (logged) when PyTensor finds an in-place conflict."""
    try:
        fgraph.replace_all_validate(pairs, reason=reason)
    except (InconsistencyError, TypeError) as err:  # an in-place conflict: keep the graph as it is
        log.debug('not fusing %s into a loop: %s', what, err)
        return False
    return True
