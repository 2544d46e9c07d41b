"""Summing elementwise terms in the loop that computes them.

A loss such as ``mean((X - u v) ** 2)`` gives a PyTensor graph in which one
fused elementwise operation makes both the squared residual (only summed, for
the loss) and the residual's gradient (read by the products of the backward
pass); the sum is a separate operation, so the squares are stored and read
again. The gradient's scaling by the mean's divisor is yet another pass: the
divisor comes out of the same fused scalar operation as the loss (PyTensor's
fusion joins all 0-d arithmetic), which waits for the sum, so PyTensor cannot
fuse the scaling into the residual's loop. On the 2000 x 256 matrix
factorization that is three passes over the residual where one does.

:data:`fuse_sums` (a graph rewrite, run by downhill in PyTensor's Numba mode)
finds an elementwise operation (of any number of dimensions) some of whose
outputs are only summed over all axes, and replaces it and those sums by one
:class:`ElemwiseSums`: a loop that computes every output with one fused scalar
function and adds the summed terms up instead of storing them. An output read
only by a further elementwise operation with 0-d inputs (the scaling) is
computed by that operation in the same loop; a 0-d input that came out of the
loss's scalar operation is computed apart when it does not depend on the sums
(the divisor). Outputs are written in place where PyTensor's operation wrote
in place. Each element gets the same operations as before (Numba's fast-math
flags apply as in PyTensor's own loops); the sums are added up in another
order.
"""

import numpy as np
import pytensor.scalar as ps
from pytensor.graph.basic import Apply
from pytensor.graph.features import ReplaceValidate
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.tensor.elemwise import DimShuffle, Elemwise
from pytensor.tensor.type import TensorType

from .. import _compat
from .generated_loops import elementwise, generated_cache_key, is_full_sum, replace_validated, scalar_callee, total

__all__ = ['ElemwiseSums', 'FuseSums', 'fuse_sums']

TAG = 'downhill_sums'
#: After the stencil loops (50.9), which handle the 1-d slices of vectors.
POSITION = 50.95


class ElemwiseSums(Op):
    """One loop over equal-shaped arrays: elementwise outputs and full sums of further terms.

    Inputs: arrays of one number of dimensions (those of static length 1 are
    broadcast, as in ``Elemwise``). Outputs: one 0-d sum per entry of
    ``sums``, then one array per entry of ``outputs``.

    Parameters
    ----------
    scalar_op : pytensor.scalar.ScalarOp
        Its inputs: one element of each input. Its outputs: the summed terms,
        then the elements of the array outputs.
    sums : tuple of (str, str)
        ``(dtype, acc_dtype)`` of each sum.
    outputs : tuple of (str, int or None)
        ``(dtype, i)`` of each array output: it overwrites input ``i``, or is
        a new array when ``i`` is None.
    """

    __props__ = ('scalar_op', 'sums', 'outputs')
    numba_name = 'elemwise_sums'

    def __init__(self, scalar_op, sums, outputs):
        self.scalar_op = scalar_op
        self.sums, self.outputs = tuple(sums), tuple(outputs)
        self.destroy_map = {len(self.sums) + q: [i] for q, (_, i) in enumerate(self.outputs)
                            if i is not None}

    def make_node(self, *inputs):
        ndims = {i.ndim for i in inputs}
        if len(ndims) != 1:
            raise TypeError(f'{self}: the inputs have different numbers of dimensions {sorted(ndims)}')
        shape = tuple(1 if all(i.type.broadcastable[d] for i in inputs) else None
                      for d in range(ndims.pop()))
        outs = [TensorType(dtype, shape=())() for dtype, _ in self.sums]
        outs += [inputs[i].type() if i is not None else TensorType(dtype, shape=shape)()
                 for dtype, i in self.outputs]
        return Apply(self, list(inputs), outs)

    def perform(self, node, inputs, output_storage):
        values = elementwise(self.scalar_op, *inputs)
        for k, (dtype, acc) in enumerate(self.sums):
            output_storage[k][0] = total(values[k], dtype, acc)
        for q, (dtype, i) in enumerate(self.outputs):
            value = np.asarray(values[len(self.sums) + q], dtype=dtype)
            if i is not None:
                inputs[i][...] = value
                value = inputs[i]
            output_storage[len(self.sums) + q][0] = value

    def numba_callees(self, node):
        """The Numba-compiled functions :meth:`numba_source` calls, by name: ``(op, node)``."""
        return {'scalar_fn': scalar_callee(self.scalar_op)}

    def numba_source(self, node):
        """The Python source of the loop (``elemwise_sums``), compiled by Numba.

        Nested loops in C order over the output's shape; a broadcast input is
        read at index 0 along its broadcast dimensions. A dimension's length is
        checked to be the same in every input that is not broadcast along it.
        """
        ndim = node.inputs[0].ndim
        names = [f'a{i}' for i in range(len(node.inputs))]
        broadcast = [i.type.broadcastable for i in node.inputs]
        lines = [f"def elemwise_sums({', '.join(names)}):"]
        for d in range(ndim):
            full = [names[i] for i in range(len(names)) if not broadcast[i][d]]
            lines.append(f'    n{d} = {full[0]}.shape[{d}]' if full else f'    n{d} = 1')
            for other in full[1:]:
                lines += [f'    if {other}.shape[{d}] != n{d}:',
                          f"        raise ValueError('ElemwiseSums: the inputs differ in length "
                          f"along dimension {d}')"]
        shape = ''.join(f'n{d}, ' for d in range(ndim))
        for q, (dtype, i) in enumerate(self.outputs):
            array = f'a{i}' if i is not None else f'np.empty(({shape}), dtype=np.{dtype})'
            lines.append(f'    o{q} = {array}')
        lines += [f'    acc{k} = np.{acc}(0)' for k, (_, acc) in enumerate(self.sums)]
        index = [f'i{d}' for d in range(ndim)]
        elements = [f"{name}[{', '.join('0' if b else i for b, i in zip(bc, index))}]"
                    for name, bc in zip(names, broadcast)]
        n_out = len(self.sums) + len(self.outputs)
        term = (lambda j: f'r[{j}]') if n_out > 1 else (lambda j: 'r')
        body = [f"r = scalar_fn({', '.join(elements)})"]
        body += [f'acc{k} += {term(k)}' for k in range(len(self.sums))]
        body += [f"o{q}[{', '.join(index)}] = {term(len(self.sums) + q)}" for q in range(len(self.outputs))]
        for d in range(ndim):
            lines.append('    ' * (d + 1) + f'for i{d} in range(n{d}):')
        lines += ['    ' * (ndim + 1) + line for line in body]
        outs = [f'np.asarray(acc{k}, dtype=np.{dtype})' for k, (dtype, _) in enumerate(self.sums)]
        outs += [f'o{q}' for q in range(len(self.outputs))]
        lines.append(f"    return {outs[0] if len(outs) == 1 else '(' + ', '.join(outs) + ')'}")
        return '\n'.join(lines) + '\n'

    def cache_key(self, node, keys):
        """Numba's on-disk cache key of the loop, given its callees' (None: not cached)."""
        return generated_cache_key(self.numba_source(node), keys)

    def __str__(self):
        return f'ElemwiseSums{{{len(self.sums)} sums, {len(self.outputs)} outputs}}'


# --- recognising the pattern ----------------------------------------------------------------

def _depends_on(var, outputs):
    return any(a in outputs for a in _compat.ancestors([var]))


def _scalar_apart(var, avoid):
    """``var`` (all dimensions broadcast) computed without ``avoid``'s outputs, or None.

    ``var`` is usually a 0-d output of a fused scalar ``Composite`` expanded to
    the arrays' dimensions; that output alone is computed by a new Composite
    of only the inputs it depends on.
    """
    if not _depends_on(var, avoid):
        return var
    node = var.owner
    if not isinstance(node.op, DimShuffle) or node.inputs[0].ndim != 0:
        return None
    scalar = node.inputs[0]
    source = scalar.owner
    if (source is None or not isinstance(source.op, Elemwise)
            or not isinstance(source.op.scalar_op, ps.Composite)):
        return None
    composite = source.op.scalar_op
    inner = composite.fgraph.outputs[source.outputs.index(scalar)]
    needed = set(_compat.ancestors([inner]))
    used = [k for k, i in enumerate(composite.fgraph.inputs) if i in needed]
    if any(_depends_on(source.inputs[k], avoid) for k in used):
        return None
    alone = ps.Composite([composite.fgraph.inputs[k] for k in used], [inner])
    return node.op(Elemwise(alone)(*[source.inputs[k] for k in used]))


def _scaling(fgraph, out, avoid):
    """``(node, extra inputs)`` when ``out``'s only reader is an elementwise op of it and 0-d values."""
    users = fgraph.clients[out]
    if len(users) != 1:
        return None
    user, _ = users[0]
    if (not isinstance(getattr(user, 'op', None), Elemwise) or len(user.outputs) != 1
            or user.outputs[0].type.broadcastable != out.type.broadcastable):
        return None
    extra = {}
    for inp in user.inputs:
        if inp is out:
            continue
        if not all(inp.type.broadcastable):
            return None
        apart = _scalar_apart(inp, avoid)
        if apart is None:
            return None
        extra[inp] = apart
    return user, extra


def _fuse(fgraph, node):
    clients = fgraph.clients
    summed = [q for q, out in enumerate(node.outputs)
              if clients[out] and all(is_full_sum(user) for user, _ in clients[out])]
    if not summed:
        return None
    sums = [(q, user) for q in summed for user, _ in clients[node.outputs[q]]]
    kept = [q for q in range(len(node.outputs)) if q not in summed]
    avoid = set(node.outputs)
    inputs = list(node.inputs)
    scalars = [ps.get_scalar_type(i.dtype)() for i in inputs]
    terms = node.op.scalar_op.make_node(*scalars).outputs
    results, replaced = [], []
    for q in kept:
        scaling = _scaling(fgraph, node.outputs[q], avoid)
        if scaling is None:
            results.append(terms[q])
            replaced.append(node.outputs[q])
            continue
        user, extra = scaling
        args = []
        for inp in user.inputs:
            if inp is node.outputs[q]:
                args.append(terms[q])
                continue
            if extra[inp] not in inputs:
                inputs.append(extra[inp])
                scalars.append(ps.get_scalar_type(inp.dtype)())
            args.append(scalars[inputs.index(extra[inp])])
        results.append(user.op.scalar_op.make_node(*args).outputs[0])
        replaced.append(user.outputs[0])
    outs = [terms[q] for q, _ in sums] + results
    # a term that is an input element itself goes through identity
    composite = ps.Composite(scalars, [ps.identity(t) if t in scalars else t for t in outs])
    # in place into the inputs PyTensor's operation overwrote (they are free to overwrite)
    free = sorted({i for v in node.op.destroy_map.values() for i in v})
    outputs = []
    for var in replaced:
        into = next((i for i in free if node.inputs[i].type == var.type), None)
        if into is not None:
            free.remove(into)
        outputs.append((var.dtype, into))
    totals = [user.outputs[0] for _, user in sums]
    op = ElemwiseSums(composite, [(t.dtype, t.owner.op.acc_dtype or t.dtype) for t in totals], outputs)
    new = op(*inputs, return_list=True)
    return list(zip(totals, new)) + list(zip(replaced, new[len(sums):]))


class FuseSums(GraphRewriter):
    """Replace each elementwise op whose outputs are partly only summed by one :class:`ElemwiseSums`."""

    def add_requirements(self, fgraph):
        fgraph.attach_feature(ReplaceValidate())

    def apply(self, fgraph):
        for node in fgraph.toposort():
            if (node in fgraph.apply_nodes and isinstance(node.op, Elemwise)
                    and node.outputs[0].ndim > 0):
                pairs = _fuse(fgraph, node)
                if pairs:
                    replace_validated(fgraph, pairs, f'{node.op} and its sums', TAG)


#: The rewrite; :func:`downhill.backend.fusion.mode_with_fusion` registers it in PyTensor's
#: ``optdb`` as ``fuse_sums`` with the tag ``downhill_sums`` when a mode first needs it.
fuse_sums = FuseSums()
