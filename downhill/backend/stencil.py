"""Fusing elementwise work over shifted slices of vectors into one loop.

Losses over chains of neighbours -- Rosenbrock's ``x[1:] - x[:-1] ** 2``, a
random walk's ``x[1:] - x[:-1]``, a smoothness penalty -- give PyTensor graphs
in which every term is a vector the length of the parameter: the loss terms,
each piece of the gradient, and the gradient they are added into
(``IncSubtensor`` of zeros). PyTensor fuses the elementwise arithmetic, but
its slices, sums and increments are separate operations, so each term is
stored before the next operation reads it. At 10^7 float64 parameters the
Adam step of Rosenbrock holds 5 such arrays beside the parameter and its
state, and it is as slow as writing and reading them.

:data:`fuse_stencils` (a graph rewrite, run by downhill in PyTensor's Numba
mode) finds a set of elementwise operations whose vector inputs are slices
``v[a:len(v) - b]`` of 1-d variables with constant ``a`` and ``b``, whose
results are only summed or added into a slice of a buffer, and replaces it
with one :class:`StencilLoop`: a loop over the common length that reads each
slice's element, computes every term with one fused scalar function, adds the
sums up and adds the increments into the buffer (in place when PyTensor had
made the increment in place). The terms are never stored. When the buffer
(a gradient) is only read by one elementwise operation (the optimizer's
update), that operation is folded into the loop as well (:class:`Update`), and
only a block of the buffer is ever stored. The numbers are
those of PyTensor's step up to the last bit: a sum is added up in another
order, and Numba's fast-math flags let LLVM contract ``a * b + c`` into one
rounding differently in the fused loop (each element of the buffer receives
its increments in the same order as before).

The rewrite is registered in PyTensor's optimizer database under the tag
``downhill_stencil``, which no mode includes by default;
:func:`downhill.backend.fusion.mode_with_fusion` adds it to a Numba mode (PyTensor 3 only).
"""

from typing import NamedTuple

import numpy as np
import pytensor.scalar as ps
from pytensor.graph.basic import Apply
from pytensor.graph.features import ReplaceValidate
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.tensor.basic import Alloc
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.subtensor import IncSubtensor, Subtensor, get_constant_idx
from pytensor.tensor.type import TensorType

from .. import _compat
from .generated_loops import elementwise, generated_cache_key, is_full_sum, replace_validated, scalar_callee, total

__all__ = ['FuseStencils', 'StencilLoop', 'Update', 'fuse_stencils']

TAG = 'downhill_stencil'
#: After PyTensor's elementwise fusion (49) and in-place rewrites (50.1-50.5).
POSITION = 50.9
#: Iterations per block of a loop with a folded update (128 KiB of float64 buffer).
BLOCK = 16384


class Update(NamedTuple):
    """An elementwise operation folded into a :class:`StencilLoop`, fed by one of its buffers.

    When a buffer (a gradient) is only read by one elementwise operation (the
    optimizer's update of the parameter and its state), the loop runs in
    blocks and applies that operation to each block's complete elements
    (PyTensor's own compiled version of it, vectorized, on views of the
    block), so only a block's worth of the buffer is ever stored.
    """

    #: The ``Elemwise`` op (with its in-place pattern).
    elemwise: object
    #: Which buffer it reads; that buffer's input is then its fill value.
    buffer: int
    #: The buffer's dtype.
    dtype: str
    #: Per input of the op: ``('buffer', 0)``, ``('vector', j)`` or ``('scalar', j)``.
    roles: tuple
    #: Per output: ``(dtype, j)``, ``j`` the vector it overwrites, or None for a new array.
    outputs: tuple
    #: Element ``i + lag`` of the buffer is complete after iteration ``i``.
    lag: int
    #: The dtypes of the op's inputs.
    in_dtypes: tuple
    #: Per vector: the index of the loop's base it is (None: another array).
    same_as_base: tuple

    @property
    def n_vectors(self):
        return len(self.same_as_base)

    @property
    def n_scalars(self):
        return len({j for role, j in self.roles if role == 'scalar'})


class StencilLoop(Op):
    """One loop: sums and slice-increments of a scalar function of shifted vector elements.

    Inputs: the buffers (one per chain of increments), then the 1-d ``bases``,
    then the scalars (0-d: the elementwise operations' broadcast inputs); with
    an ``update``, then its vectors, its one-element scalars and the consumed
    buffer's length (that buffer's input is its fill value). Outputs: one 0-d
    sum per entry of ``sums``, then the buffers with their increments added
    (but the consumed one), then the update's outputs.

    Parameters
    ----------
    scalar_op : pytensor.scalar.Composite
        Its inputs: one element of each view, then the scalars. Its outputs:
        the summed terms, then the increments.
    views : tuple of (int, int, int)
        ``(base, a, b)``: the slice ``bases[base][a:len - b]``.
    n_bases, n_scalars : int
    sums : tuple of (str, str)
        ``(dtype, acc_dtype)`` of each sum (the first outputs of ``scalar_op``).
    incs : tuple of (int, int, int)
        ``(buffer, a, b)`` of each increment, in the order they are applied:
        ``buffers[buffer][a:len - b] += term``.
    n_buffers : int
    inplace : bool
        Whether the buffers are overwritten (else copied first).
    update : Update or None
        The elementwise operation folded in, if any.
    """

    __props__ = ('scalar_op', 'views', 'n_bases', 'n_scalars', 'sums', 'incs', 'n_buffers',
                 'inplace', 'update')

    def __init__(self, scalar_op, views, n_bases, n_scalars, sums, incs, n_buffers, inplace,
                 update=None):
        self.scalar_op = scalar_op
        self.views = tuple(views)
        self.n_bases, self.n_scalars, self.n_buffers = n_bases, n_scalars, n_buffers
        self.sums, self.incs = tuple(sums), tuple(incs)
        self.inplace = bool(inplace)
        self.update = update
        kept = [k for k in range(n_buffers) if update is None or k != update.buffer]
        self.destroy_map = {}
        if self.inplace:
            self.destroy_map = {len(self.sums) + j: [k] for j, k in enumerate(kept)}
        if update is not None:
            first_vector = n_buffers + n_bases + n_scalars
            start = len(self.sums) + len(kept)
            tolerated = []
            for q, (_, into) in enumerate(update.outputs):
                if into is not None:
                    self.destroy_map[start + q] = [first_vector + into]
                    base = update.same_as_base[into]
                    if base is not None:  # read as a base, written behind the loop (``lag``)
                        tolerated.append((first_vector + into, n_buffers + base))
            self.destroyhandler_tolerate_same = tolerated

    def make_node(self, *inputs):
        buffers, _, _, vectors, _, _ = self._split(inputs)
        outputs = [TensorType(dtype, shape=())() for dtype, _ in self.sums]
        outputs += [b.type() for k, b in enumerate(buffers)
                    if self.update is None or k != self.update.buffer]
        if self.update is not None:
            outputs += [vectors[into].type() if into is not None else TensorType(dtype, shape=(None,))()
                        for dtype, into in self.update.outputs]
        return Apply(self, list(inputs), outputs)

    def _split(self, inputs):
        """(buffers, bases, scalars, update vectors, update scalars, update length)."""
        nb, nv, ns = self.n_buffers, self.n_bases, self.n_scalars
        parts = [inputs[:nb], inputs[nb:nb + nv], inputs[nb + nv:nb + nv + ns]]
        rest = inputs[nb + nv + ns:]
        if self.update is None:
            return (*parts, [], [], None)
        nu, nus = self.update.n_vectors, self.update.n_scalars
        return (*parts, rest[:nu], rest[nu:nu + nus], rest[nu + nus])

    def perform(self, node, inputs, output_storage):
        buffers, bases, scalars, vectors, update_scalars, size = self._split(inputs)
        update = self.update
        buffers = [b if self.inplace else b.copy() for b in buffers]
        if update is not None:  # the buffer it consumes is made whole here, then read
            dtype = node.inputs[update.buffer].dtype
            buffers[update.buffer] = np.full(int(size), np.asarray(buffers[update.buffer]).item(),
                                             dtype=dtype)
        length = self._length(bases, buffers)
        views = [bases[k][a:a + length] for k, a, _ in self.views]
        values = elementwise(self.scalar_op, *views, *[np.asarray(v).item() for v in scalars])
        for k, (dtype, acc) in enumerate(self.sums):
            output_storage[k][0] = total(values[k], dtype, acc)
        for j, (buf, a, _) in enumerate(self.incs):
            target = buffers[buf]
            target[a:a + length] += np.asarray(values[len(self.sums) + j], dtype=target.dtype)
        out = len(self.sums)
        for k, buf in enumerate(buffers):
            if update is None or k != update.buffer:
                output_storage[out][0] = buf
                out += 1
        if update is not None:
            gradient = buffers[update.buffer]
            if any(len(v) != len(gradient) for v in vectors):
                raise ValueError(f'{self}: the update\'s vectors have lengths '
                                 f'{[len(v) for v in vectors]}, the buffer {len(gradient)}')
            args = [gradient if role == 'buffer' else vectors[j] if role == 'vector'
                    else np.asarray(update_scalars[j]).item() for role, j in update.roles]
            results = elementwise(update.elemwise.scalar_op, *args)
            for q, (dtype, into) in enumerate(update.outputs):
                value = np.asarray(results[q], dtype=dtype)
                if into is not None:
                    vectors[into][...] = value
                    value = vectors[into]
                output_storage[out + q][0] = value

    def _length(self, bases, buffers):
        lengths = {max(0, len(bases[k]) - a - b) for k, a, b in self.views}
        lengths |= {max(0, len(buffers[buf]) - a - b) for buf, a, b in self.incs}
        if len(lengths) != 1:
            raise ValueError(f'{self}: the sliced vectors have different lengths {sorted(lengths)}')
        return lengths.pop()

    numba_name = 'stencil_loop'

    def numba_callees(self, node):
        """The Numba-compiled functions :meth:`numba_source` calls, by name: ``(op, node)``.

        ``scalar_fn`` is the terms' scalar function, ``update_fn`` the folded
        update's (see :class:`Update`). The loop depends on the op alone, not on ``node``.
        """
        callees = {'scalar_fn': scalar_callee(self.scalar_op)}
        if self.update is not None:
            callees['update_fn'] = (self.update.elemwise, self.update_node())
        return callees

    def numba_source(self, node):
        """The Python source of the loop (``stencil_loop``), compiled by Numba."""
        update = self.update
        names = self._split([f'buf{k}' for k in range(self.n_buffers)]
                            + [f'base{k}' for k in range(self.n_bases)]
                            + [f's{k}' for k in range(self.n_scalars)]
                            + ([] if update is None else
                               [f'u{j}' for j in range(update.n_vectors)]
                               + [f'us{j}' for j in range(update.n_scalars)] + ['size']))
        buffers, bases, scalars, vectors, _, _ = names
        arguments = [name for group in names[:5] for name in group] + ([] if update is None else ['size'])
        lines = [f"def stencil_loop({', '.join(arguments)}):"]
        length_of = {k: f'{b}.shape[0]' for k, b in enumerate(buffers)}
        if update is not None:
            length_of[update.buffer] = 'size.item()'
        lengths = [f'max(0, {bases[k]}.shape[0] - {a + b})' for k, a, b in self.views]
        lengths += [f'max(0, {length_of[buf]} - {a + b})' for buf, a, b in self.incs]
        lines.append(f'    n = {lengths[0]}')
        for other in dict.fromkeys(lengths[1:]):
            lines.append(f'    if {other} != n:')
            lines.append("        raise ValueError('StencilLoop: the sliced vectors have "
                         "different lengths')")
        if not self.inplace:
            lines += [f'    {b} = {b}.copy()' for k, b in enumerate(buffers)
                      if update is None or k != update.buffer]
        lines += [f'    {name}v = {name}.item()' for name in scalars]
        for k, (_, acc) in enumerate(self.sums):
            lines.append(f'    acc{k} = np.{acc}(0)')
        nout = len(self.sums) + len(self.incs)
        term = (lambda j: f'r[{j}]') if nout > 1 else (lambda j: 'r')
        args = [f'{bases[k]}[i + {a}]' for k, a, _ in self.views] + [f'{v}v' for v in scalars]
        body = [f"r = scalar_fn({', '.join(args)})"]
        body += [f'acc{k} += {term(k)}' for k in range(len(self.sums))]
        for j, (buf, a, _) in enumerate(self.incs):
            if update is not None and buf == update.buffer:  # the block's part of the buffer
                body.append(f'block_buffer[i + {a - update.lag} - start] += {term(len(self.sums) + j)}')
            else:
                body.append(f'{buffers[buf]}[i + {a}] += {term(len(self.sums) + j)}')
        outs = [f'np.asarray(acc{k}, dtype=np.{dtype})' for k, (dtype, _) in enumerate(self.sums)]
        outs += [b for k, b in enumerate(buffers) if update is None or k != update.buffer]
        if update is None:
            lines.append('    for i in range(n):')
            lines += ['        ' + line for line in body]
        else:
            lines += self._blocked_update(buffers[update.buffer], vectors, body)
            outs += [f'u{into}' if into is not None else f'o{q}'
                     for q, (_, into) in enumerate(update.outputs)]
        lines.append(f"    return {outs[0] if len(outs) == 1 else '(' + ', '.join(outs) + ')'}")
        return '\n'.join(lines) + '\n'

    def _blocked_update(self, fill, vectors, body):
        """Source lines of the loop with the folded update (see :class:`Update`).

        The loop runs in blocks of ``BLOCK`` iterations. A block adds its
        increments into ``block_buffer``, whose element 0 is the block's first
        element not yet complete (``start + lag``); after the block, the
        update runs on its complete elements (views), and the few elements
        still pending move to the front.
        """
        update = self.update
        lag = update.lag
        pending = max(a for buf, a, _ in self.incs if buf == update.buffer) - lag
        lines = ['    total = size.item()',
                 f'    fill = {fill}.item()',
                 # no bigger than the loop: a small problem's call should not fill 128 KiB
                 f'    block_buffer = np.full(min(n, {BLOCK}) + {pending}, fill, dtype=np.{update.dtype})']
        for v in vectors:
            lines += [f'    if {v}.shape[0] != total:',
                      "        raise ValueError('StencilLoop: the update vectors and the buffer "
                      "have different lengths')"]
        lines += [f'    o{q} = np.empty(total, dtype=np.{dtype})'
                  for q, (dtype, into) in enumerate(update.outputs) if into is None]
        if lag:  # elements no iteration increments
            lines.append(f'    head = min({lag}, total)')
            lines += self._update_block('0', 'head', f'np.full(head, fill, dtype=np.{update.dtype})',
                                        vectors, '    ')
        lines += [f'    for start in range(0, n, {BLOCK}):',
                  f'        stop = min(start + {BLOCK}, n)',
                  '        for i in range(start, stop):']
        lines += ['            ' + line for line in body]
        lines.append('        done = stop - start')
        lines += self._update_block(f'start + {lag}', f'stop + {lag}', 'block_buffer[:done]',
                                    vectors, '        ')
        lines += [f'        for t in range({pending}):',
                  '            block_buffer[t] = block_buffer[done + t]',
                  f'        block_buffer[{pending}:done + {pending}] = fill',
                  # the elements after the last increment: the pending ones, then
                  # fill (the block buffer holds both, but for a long tail)
                  f'    rest = total - n - {lag}',
                  '    if rest > block_buffer.shape[0]:',
                  f'        longer = np.full(rest, fill, dtype=np.{update.dtype})',
                  f'        longer[:{pending}] = block_buffer[:{pending}]',
                  '        block_buffer = longer',
                  '    if rest > 0:']
        lines += self._update_block(f'n + {lag}', 'total', 'block_buffer[:rest]', vectors, '        ')
        return lines

    def _update_block(self, first, stop, gradient, vectors, indent):
        """Source lines running the folded update on elements ``first:stop`` (``gradient``)."""
        update = self.update
        args = [gradient if role == 'buffer' else f'{vectors[j]}[{first}:{stop}]' if role == 'vector'
                else f'us{j}' for role, j in update.roles]
        lines = [f"w = update_fn({', '.join(args)})"]
        nu = len(update.outputs)
        for q, (_, into) in enumerate(update.outputs):
            if into is None:  # written in place otherwise
                lines.append(f"o{q}[{first}:{stop}] = {'w[%d]' % q if nu > 1 else 'w'}")
        return [indent + line for line in lines]

    def update_node(self):
        """An ``Apply`` of the folded update's op on vectors (and one-element scalars)."""
        update = self.update
        inputs = [TensorType(dtype, shape=(1,) if role == 'scalar' else (None,))()
                  for dtype, (role, _) in zip(update.in_dtypes, update.roles)]
        return update.elemwise.make_node(*inputs)

    def cache_key(self, node, keys):
        """Numba's on-disk cache key of the loop, given its callees' (None: not cached)."""
        return generated_cache_key(self.numba_source(node), keys)

    def __str__(self):
        return f'StencilLoop{{{len(self.views)} views, {len(self.sums)} sums, {len(self.incs)} incs}}'


# --- recognising the pattern ----------------------------------------------------------------

def _slice_bounds(node):
    """``(a, b)`` when ``node`` is ``v[a:len(v) - b]`` of a 1-d ``v`` (constant a >= 0, b >= 0)."""
    if node.inputs[0].ndim != 1:
        return None
    # an increment's inputs are (buffer, term, *indices); a slice's (vector, *indices)
    indices = node.inputs[2:] if isinstance(node.op, IncSubtensor) else node.inputs[1:]
    try:
        (idx,) = get_constant_idx(node.op.idx_list, [node.inputs[0], *indices])
    except Exception:  # noqa: BLE001 -- any index PyTensor cannot make constant is simply not fused
        return None
    if not isinstance(idx, slice) or idx.step not in (None, 1):
        return None
    start, stop = idx.start or 0, idx.stop
    if start < 0 or (stop is not None and stop >= 0):
        return None
    return int(start), 0 if stop is None else int(-stop)


def _is_vector_elemwise(node):
    return (isinstance(getattr(node, 'op', None), Elemwise)
            and all(o.ndim == 1 and not o.type.broadcastable[0] for o in node.outputs))


def _is_slice_increment(node):
    op = node.op
    return (isinstance(op, IncSubtensor) and not op.set_instead_of_inc
            and _slice_bounds(node) is not None and node.inputs[1].ndim == 1)


class _Region:
    """Connected elementwise nodes and the sums and increments they feed."""

    def __init__(self):
        self.nodes, self.sums, self.incs = [], [], []


def _regions(fgraph):
    order = fgraph.toposort()
    owner_region = {}
    for node in order:
        if not _is_vector_elemwise(node):
            continue
        found = {id(owner_region[i.owner]): owner_region[i.owner] for i in node.inputs
                 if i.owner in owner_region}
        regions = list(found.values())
        region = regions[0] if regions else _Region()
        for other in regions[1:]:
            region.nodes += other.nodes
            for n in other.nodes:
                owner_region[n] = region
        region.nodes.append(node)
        owner_region[node] = region
    for node in order:
        if is_full_sum(node) and node.inputs[0].ndim == 1 and node.inputs[0].owner in owner_region:
            owner_region[node.inputs[0].owner].sums.append(node)
        elif _is_slice_increment(node) and node.inputs[1].owner in owner_region:
            owner_region[node.inputs[1].owner].incs.append(node)
    unique = {id(r): r for r in owner_region.values()}
    return [r for r in unique.values() if r.sums or r.incs]


def _chains(region, clients):
    """The region's increments as chains (innermost first), or None if they do not chain up."""
    incs = set(region.incs)
    chains = []
    for node in region.incs:
        buffer = node.inputs[0]
        if buffer.owner in incs:
            continue  # not the start of a chain
        chain = [node]
        while True:
            users = clients[chain[-1].outputs[0]]
            nxt = [n for n, _ in users if n in incs and n.inputs[0] is chain[-1].outputs[0]]
            if not nxt:
                break
            if len(users) != 1:
                return None  # an intermediate total is also used elsewhere
            chain.append(nxt[0])
        chains.append(chain)
    if sum(len(c) for c in chains) != len(incs):
        return None
    return chains


def _memory(var):
    """The variable whose memory ``var`` is (following views and in-place outputs back)."""
    while var.owner is not None:
        node = var.owner
        k = node.outputs.index(var)
        source = node.op.view_map.get(k) or node.op.destroy_map.get(k)
        if not source:
            break
        var = node.inputs[source[0]]
    return var


def _fuse(fgraph, region):
    clients = fgraph.clients
    nodes = set(region.nodes)
    for node in region.nodes:  # every term is only summed, incremented or used in the region
        for out in node.outputs:
            for user, i in clients[out]:
                if not (user in nodes or user in region.sums or (user in region.incs and i == 1)):
                    return None
    chains = _chains(region, clients)
    if chains is None:
        return None
    scalar_of, views, bases, scalars = {}, [], [], []

    def leaf(var):
        if var.ndim == 0 or var.type.broadcastable == (True,):
            if var not in scalar_of:
                scalars.append(var)
                scalar_of[var] = ps.get_scalar_type(var.dtype)()
            return scalar_of[var]
        sliced = var.owner is not None and isinstance(var.owner.op, Subtensor)
        bounds = _slice_bounds(var.owner) if sliced else None
        base, (a, b) = (var.owner.inputs[0], bounds) if bounds else (var, (0, 0))
        if base not in bases:
            bases.append(base)
        key = (bases.index(base), a, b)
        if key not in scalar_of:
            views.append(key)
            scalar_of[key] = ps.get_scalar_type(var.dtype)()
        return scalar_of[key]

    for node in fgraph.toposort():
        if node not in nodes:
            continue
        ins = [scalar_of[i] if i.owner in nodes else leaf(i) for i in node.inputs]
        outs = node.op.scalar_op.make_node(*ins).outputs
        for var, s in zip(node.outputs, outs):
            scalar_of[var] = s
    sum_terms = [scalar_of[s.inputs[0]] for s in region.sums]
    incs = [n for chain in chains for n in chain]
    inc_terms = [scalar_of[n.inputs[1]] for n in incs]
    view_inputs = [scalar_of[key] for key in views]
    scalar_inputs = [scalar_of[s] for s in scalars]
    inputs = view_inputs + scalar_inputs
    # a term that is an input element itself (a sum of ``x[1:] * 1``) goes through identity
    terms = [ps.identity(t) if t in inputs else t for t in sum_terms + inc_terms]
    composite = ps.Composite(inputs, terms)
    buffer_of = {n: k for k, chain in enumerate(chains) for n in chain}
    # In place only where PyTensor had it so, and never into memory the loop also reads:
    # PyTensor's increment ran after every term was computed; the loop interleaves them.
    read = {_memory(b) for b in bases}
    inplace = all(c[0].op.destroy_map and _memory(c[0].inputs[0]) not in read for c in chains)
    op = StencilLoop(
        composite, views, len(bases), len(scalars),
        [(s.outputs[0].dtype, s.op.acc_dtype or s.outputs[0].dtype) for s in region.sums],
        [(buffer_of[n],) + _slice_bounds(n) for n in incs], len(chains), inplace)
    scalar_args = [s if s.ndim == 0 else s.dimshuffle() for s in scalars]
    outs = op(*[c[0].inputs[0] for c in chains], *bases, *scalar_args, return_list=True)
    pairs = [(s.outputs[0], out) for s, out in zip(region.sums, outs)]
    pairs += [(c[-1].outputs[0], out) for c, out in zip(chains, outs[len(region.sums):])]
    return pairs


def _fold_update(fgraph, node):
    """Replacements folding the only reader of one of ``node``'s buffers into it (see :class:`Update`)."""
    op = node.op
    made = set(node.outputs)  # the update's other inputs must not be computed from these
    for k in range(op.n_buffers):
        grad = node.outputs[len(op.sums) + k]
        users = fgraph.clients[grad]
        buffer = node.inputs[k]
        alloc = buffer.owner
        if (len(users) != 1 or not _is_vector_elemwise(users[0][0])
                or alloc is None or not isinstance(alloc.op, Alloc) or len(alloc.inputs) != 2
                or len(fgraph.clients[buffer]) != 1 or not all(alloc.inputs[0].type.broadcastable)):
            continue
        user = users[0][0]
        roles, vectors, scalars = [], [], []
        for inp in user.inputs:
            if inp is grad:
                roles.append(('buffer', 0))
            elif inp.ndim != 1 or any(v in made for v in _compat.ancestors([inp])):
                break
            else:
                group = scalars if inp.type.broadcastable == (True,) else vectors
                if inp not in group:
                    group.append(inp)
                roles.append(('scalar' if group is scalars else 'vector', group.index(inp)))
        else:
            pairs = _folded(fgraph, node, k, user, roles, vectors, scalars)
            if pairs:
                return pairs
    return None


def _folded(fgraph, node, k, user, roles, vectors, scalars):
    op = node.op
    outputs, destroyed = [], []
    for q, out in enumerate(user.outputs):
        into = user.op.destroy_map.get(q)
        source = user.inputs[into[0]] if into else None
        j = vectors.index(source) if source is not None and source in vectors else None
        if j is not None:
            destroyed.append(j)
        outputs.append((out.dtype, j))
    memories = [_memory(v) for v in vectors]
    if len(set(memories)) != len(memories):
        return None  # one array under two names: the loop could not order its reads and writes
    bases = node.inputs[op.n_buffers:op.n_buffers + op.n_bases]
    others = [_memory(v) for i, v in enumerate(node.inputs) if i != k and v not in bases]
    lag = min(a for buf, a, _ in op.incs if buf == k)
    same_as_base = []
    for j, v in enumerate(vectors):
        base = next((i for i, b in enumerate(bases) if b is v), None)
        same_as_base.append(base)
        if j in destroyed:
            if memories[j] in others or (base is None and memories[j] in map(_memory, bases)):
                return None
            if base is not None:  # written only after the loop's last read of that element
                lag = min([lag] + [a for i, a, _ in op.views if i == base])
    update = Update(user.op, k, node.inputs[k].dtype, tuple(roles), tuple(outputs), lag,
                    tuple(i.dtype for i in user.inputs), tuple(same_as_base))
    new = StencilLoop(op.scalar_op, op.views, op.n_bases, op.n_scalars, op.sums, op.incs,
                      op.n_buffers, op.inplace, update)
    fill, size = node.inputs[k].owner.inputs
    inputs = list(node.inputs)
    inputs[k] = fill.dimshuffle() if fill.ndim else fill
    outs = new(*inputs, *vectors, *scalars, size, return_list=True)
    kept = [o for i, o in enumerate(node.outputs[len(op.sums):]) if i != k]
    olds = list(node.outputs[:len(op.sums)]) + kept + list(user.outputs)
    return list(zip(olds, outs))


class FuseStencils(GraphRewriter):
    """Replace each fusable region by one :class:`StencilLoop` (see the module docstring)."""

    def add_requirements(self, fgraph):
        fgraph.attach_feature(ReplaceValidate())

    def apply(self, fgraph):
        # A replacement changes the graph the other regions were found in (a later
        # region may read a buffer or a sum the loop now makes): find them again.
        changed = True
        while changed:
            changed = False
            for region in _regions(fgraph):
                pairs = _fuse(fgraph, region)
                if pairs and replace_validated(fgraph, pairs, f'{len(region.nodes)} elementwise nodes', TAG):
                    loop = pairs[0][1].owner
                    pairs = _fold_update(fgraph, loop)
                    if pairs:
                        replace_validated(fgraph, pairs, 'the update reading its buffer', TAG)
                    changed = True
                    break


#: The rewrite; :func:`downhill.backend.fusion.mode_with_fusion` registers it in PyTensor's
#: ``optdb`` as ``fuse_stencils`` with the tag ``downhill_stencil`` when a mode first needs it.
fuse_stencils = FuseStencils()

