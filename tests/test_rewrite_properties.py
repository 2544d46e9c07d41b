"""Property tests of downhill's rewrites (stencil loops, fused sums, fast tanh) on generated graphs.

Hypothesis generates elementwise compositions of several inputs, their sums
and gradients, and 1-d losses over shifted slices with shared-variable
updates. Each graph is compiled in downhill's mode (``mode_with_fusion`` and
the fast tanh, as ``Optimizer._function`` compiles) and in PyTensor's stock
Numba mode, and both are checked against a reference.

The reference is not a tolerance but a bound derived from the arithmetic:
:func:`evaluate` walks the graph as it was written (before any rewrite) and
computes every value in extended precision (x87 ``long double``) with a
running bound on how far a float32 or float64 computation of it may be from
the exact value, whatever the evaluation order (see :func:`evaluate` for the
rules). Both compiled results must be within their bound of the reference;
they then differ from each other by at most the sum of their bounds.
"""

import collections
import math
from typing import NamedTuple

import numpy as np
import pytensor
import pytensor.scalar as ps
import pytensor.tensor as pt
import pytest
from hypothesis import HealthCheck, Phase, example, given, reject, settings, strategies as st
from pytensor.compile.mode import Mode
from pytensor.graph.basic import Constant
from pytensor.tensor.basic import Alloc, get_underlying_scalar_constant_value
from pytensor.tensor.elemwise import CAReduce, DimShuffle, Elemwise
from pytensor.tensor.shape import Reshape, SpecifyShape
from pytensor.tensor.subtensor import IncSubtensor, Subtensor

from downhill import _compat
from downhill.fast_tanh import replace_for_mode
from downhill.fused_sums import ElemwiseSums
from downhill.fusion import mode_with_fusion
from downhill.stencil import BLOCK, StencilLoop

FUSES = mode_with_fusion('NUMBA') != 'NUMBA'  # this PyTensor's Numba backend compiles the loops
needs_numba_fusion = pytest.mark.skipif(not FUSES, reason="this PyTensor's Numba backend has no cache keys")


# --- a reference with error bounds ------------------------------------------------------------

#: The reference's precision: x87 extended (64-bit significand) where NumPy has it.
REF = np.longdouble if np.finfo(np.longdouble).nmant >= 63 else np.float64
#: Unit roundoff: one correctly rounded operation changes x by at most UNIT |x| (normal x).
UNIT = {'float32': 2.0 ** -24, 'float64': 2.0 ** -53, 'reference': float(np.finfo(REF).eps) / 2}
#: The spacing of subnormal numbers: the absolute error of a rounding near zero.
SUBNORMAL = {'float32': 2.0 ** -149, 'float64': 2.0 ** -1074, 'reference': 2.0 ** -1074}
#: Roundings allowed beyond those counted, per chain of additions or of products (see evaluate).
SLACK = 2


class Implementation(NamedTuple):
    """What a compiled function's arithmetic may do, for :func:`evaluate`."""

    name: str
    #: Max error of tanh, in ulp of the result, per dtype.
    tanh: dict
    #: Max error of exp, in ulp of the result.
    exp: float = 1.0  # glibc's exp and expf
    #: Whether every operation rounds to the reference's precision (not to its dtype's).
    reference: bool = False


#: PyTensor's Numba backend: the C library's tanh, off by up to 2.09 ulp (float64) and 2.2
#: ulp (float32), as measured in downhill.fast_tanh's docstring and tests/test_fast_tanh.py.
STOCK = Implementation('stock', {'float64': 2.09, 'float32': 2.2})
#: downhill's replacements: exp_tanh within 1.34 ulp in NumPy, and compiled with fast-math
#: within 2 ulp of NumPy (test_compiled_exp_tanh_is_more_accurate_than_the_libm_tanh_it_replaces);
#: rational_tanh within half an ulp plus 1.6e-12 relative (float64, whose fast-math
#: rounding is ~1e-16), rounded to float32.
FUSED = Implementation('fused', {'float64': 1.34 + 2, 'float32': 0.5 + 1e-3})
#: The extended-precision evaluation itself (glibc's expl and tanhl: a few ulp of long double).
REFERENCE = Implementation('reference', {'float64': 4.0, 'float32': 4.0}, exp=4.0, reference=True)


class Undecided(Exception):
    """A comparison (or sign) the rounding could decide either way: no bound holds across it."""


def gamma(m, u):
    """Higham's gamma_m: m roundings of unit u, in any order, change a value by at most gamma_m times it."""
    return m * u / (1 - m * u)


def _float(dtype):
    return np.dtype(dtype).kind == 'f'


class Value:
    """A variable's reference value ``v`` and bound ``E`` on |computed - exact| (see :func:`evaluate`).

    ``add``: ``(sum of the terms' E, sum of the terms' |v| + E, number of
    terms, number of float32 terms, their sum of |v| + E)`` when the variable
    ends a chain of additions; ``mul``: ``(product of the factors' |v|, bound
    on how far the factors' errors move it, number of roundings, number of
    float32 factors)`` when it ends a chain of products. PyTensor may combine
    a float64 chain's float32 terms in float32 first (the gradient of
    ``x64 * x32 * x32`` is ``cast(sqr(x32), 'float64')``, and constants are
    folded in their dtype).
    """

    def __init__(self, v, E=None, dtype=None, add=None, mul=None):
        self.v = v
        self.E = np.zeros(np.shape(v)) if E is None else np.broadcast_to(E, np.shape(v))
        self.dtype = dtype
        self.add, self.mul = add, mul

    @property
    def hi(self):
        """A bound on |computed value|."""
        return np.abs(self.v).astype(np.float64) + self.E

    @property
    def exact(self):
        return not np.any(self.E)


def _times(a, b):
    """(|x y|, bound on |x' y' - x y|) from those of x and y: D' = D (|y| + e) + L e, no cancellation."""
    (L1, D1), (L2, D2) = a, b
    return L1 * L2, D1 * (L2 + D2) + L1 * D2


def _narrow(x, dtype):
    """Whether x is a term of a chain of a wider dtype (float32 in float64)."""
    return x.dtype is not None and _float(x.dtype) and UNIT[x.dtype] > UNIT[dtype]


def _factors(x, dtype):
    if x.mul is not None and x.dtype == dtype:
        return x.mul
    return np.abs(x.v).astype(np.float64), x.E, 0, int(_narrow(x, dtype))


def _terms(x, dtype):
    if x.add is not None and x.dtype == dtype:
        return x.add
    narrow = _narrow(x, dtype)
    return x.E, x.hi, 1, int(narrow), x.hi if narrow else 0.0


def _in_float32(count, magnitude):
    """The bound added when ``count`` float32 terms (or factors) of a chain are combined in float32 first."""
    return gamma(count - 1, UNIT['float32']) * magnitude if count > 1 else 0.0


def _adds(terms, u, reference):
    """(S_E, S_hi, T, float32 terms, their S_hi) of a chain of additions of ``terms``, and its E."""
    S_E, S_hi, T, T32, S32 = (sum(t[i] for t in terms) for i in range(5))
    E = S_E + gamma(T - 1 + SLACK, u) * S_hi + (0 if reference else _in_float32(T32, S32))
    return (S_E, S_hi, T, T32, S32), E


def _uncertain(a, b):
    """Where a comparison of a and b could go either way."""
    margin = a.E + b.E
    return (margin > 0) & (np.abs(a.v - b.v).astype(np.float64) <= margin)


COMPARISONS = ps.EQ | ps.NEQ | ps.GT | ps.GE | ps.LT | ps.LE


def _exact_elemwise(node, ins, values):
    """A non-float elementwise result: shapes, comparisons, logic (exact, when decided)."""
    op = node.op.scalar_op
    if isinstance(op, COMPARISONS):
        a, b = ins
        # eq(maximum(x, y), x), the gradient of maximum, is x >= y: decided unless x and y
        # are within their bounds of each other (maximum's value is then either's)
        for i in (0, 1):
            owner = node.inputs[i].owner
            if (isinstance(op, ps.EQ | ps.NEQ) and owner is not None
                    and isinstance(getattr(owner.op, 'scalar_op', None), ps.Maximum | ps.Minimum)
                    and node.inputs[1 - i] in owner.inputs):
                a, b = (values[x] for x in owner.inputs)
                break
        if np.any(_uncertain(a, b)):
            raise Undecided(f'{node.op} of values within their error bounds of each other')
    elif any(not i.exact for i in ins):
        raise NotImplementedError(f'{node.op}: a non-float result of inexact values')
    spec = getattr(op, 'nfunc_spec', None)
    fn = getattr(np, spec[0]) if spec else np.frompyfunc(op.impl, len(ins), 1)
    dtype = node.outputs[0].dtype
    return Value(np.asarray(fn(*[i.v for i in ins])).astype(dtype), None, dtype)


def _elemwise(node, ins, impl, values):
    op = node.op.scalar_op
    dtype = node.outputs[0].dtype
    if not _float(dtype):
        return _exact_elemwise(node, ins, values)
    u = UNIT['reference' if impl.reference else dtype]
    tiny = SUBNORMAL['reference' if impl.reference else dtype]
    shape = np.broadcast_shapes(*[np.shape(i.v) for i in ins])
    v = [np.asarray(i.v, dtype=REF) for i in ins]
    if isinstance(op, ps.Add | ps.Sub):
        record, E = _adds([_terms(i, dtype) for i in ins], u, impl.reference)
        value = v[0] - v[1] if isinstance(op, ps.Sub) else sum(v[1:], v[0])
        return Value(value, E + record[2] * tiny, dtype, add=record)
    if isinstance(op, ps.Neg):
        (x,) = ins
        return Value(-v[0], x.E, dtype, add=x.add if x.dtype == dtype else None,
                     mul=x.mul if x.dtype == dtype else None)
    if isinstance(op, ps.Mul | ps.TrueDiv | ps.Sqr | ps.Pow):
        if isinstance(op, ps.Mul):
            factors = [_factors(i, dtype) for i in ins]
            value = math.prod(v[1:], start=v[0])
            rounds = len(ins) - 1
        elif isinstance(op, ps.TrueDiv):
            num, den = ins
            lo = np.abs(den.v).astype(np.float64)
            if np.any(lo <= den.E):
                raise Undecided('a denominator within its error bound of 0')
            factors = [_factors(num, dtype),
                       (1 / lo, den.E / (lo * (lo - den.E)), 0, int(_narrow(den, dtype)))]
            value = v[0] / v[1]
            rounds = 2  # the division, or a reciprocal and a product (fast-math)
        else:
            n = 2 if isinstance(op, ps.Sqr) else get_underlying_scalar_constant_value(node.inputs[1])
            if n != int(n) or n < 0:
                raise NotImplementedError(f'{node.op}: exponent {n}')
            n = int(n)
            factors = [_factors(ins[0], dtype)] * n
            value = v[0] ** n
            rounds = max(n - 1, 1)  # products, or one libm pow (within 1 ulp)
            if n == 0:
                return Value(np.ones(shape, dtype=REF), None, dtype)
        L, D = factors[0][:2]
        for f in factors[1:]:
            L, D = _times((L, D), f[:2])
        k = sum(f[2] for f in factors) + rounds
        k32 = sum(f[3] for f in factors)
        E = D + gamma(k + SLACK, u) * (L + D) + (0 if impl.reference else _in_float32(k32, L + D))
        return Value(value, E + (k + 1) * tiny, dtype,
                     mul=(np.broadcast_to(L, shape), np.broadcast_to(D, shape), k, k32))
    if isinstance(op, ps.Abs):
        (x,) = ins
        return Value(np.abs(v[0]), x.E, dtype, mul=x.mul if x.dtype == dtype else None)
    if isinstance(op, ps.Exp):
        (x,) = ins
        # one more rounding of the argument: exp(a) exp(b) may become exp(a + b)
        arg = x.E + u * x.hi
        e = np.exp(x.v.astype(np.float64))
        E = e * np.expm1(arg) + impl.exp * (2 * u * e * np.exp(arg) + tiny)
        return Value(np.exp(v[0]), E, dtype)
    if isinstance(op, ps.Tanh):
        (x,) = ins
        t = np.tanh(v[0])
        top = np.minimum(1, np.abs(t).astype(np.float64) + x.E)
        return Value(t, x.E + impl.tanh[dtype] * (2 * u * top + tiny), dtype)  # tanh' <= 1
    if isinstance(op, ps.Sqrt):
        (x,) = ins
        a = x.v.astype(np.float64)
        root = np.sqrt(np.maximum(a, 0))
        with np.errstate(divide='ignore', invalid='ignore'):
            moved = np.where(a > x.E, x.E / (root + np.sqrt(np.maximum(a - x.E, 0))), np.sqrt(x.E))
        return Value(np.sqrt(v[0]), moved + gamma(1 + SLACK, u) * (root + moved) + tiny, dtype)
    if isinstance(op, ps.Maximum | ps.Minimum):
        a, b = ins
        fn = np.maximum if isinstance(op, ps.Maximum) else np.minimum
        return Value(fn(v[0], v[1]), np.maximum(a.E, b.E), dtype)  # 1-Lipschitz in each input
    if isinstance(op, ps.Switch):
        c, a, b = ins
        return Value(np.where(c.v, v[1], v[2]), np.where(c.v, a.E, b.E), dtype)
    if isinstance(op, ps.Second):
        return Value(np.broadcast_to(v[1], shape), np.broadcast_to(ins[1].E, shape), dtype)
    if isinstance(op, ps.Identity):
        return Value(v[0], ins[0].E, dtype, ins[0].add, ins[0].mul)
    if isinstance(op, ps.Sign):
        (x,) = ins
        if np.any((x.E > 0) & (np.abs(x.v).astype(np.float64) <= x.E)):
            raise Undecided('the sign of a value within its error bound of 0')
        return Value(np.sign(v[0]), None, dtype)
    if isinstance(op, ps.Cast):
        (x,) = ins
        if not _float(node.inputs[0].dtype) or impl.reference:
            return Value(v[0], x.E, dtype)
        narrower = UNIT[dtype] > UNIT[node.inputs[0].dtype]
        return Value(v[0], x.E + (u * x.hi + tiny if narrower else 0), dtype)
    raise NotImplementedError(f'no error bound for {node.op}')


def _toposort(outputs):
    order, done = [], set()
    stack = [o.owner for o in outputs if o.owner is not None]
    while stack:
        node = stack[-1]
        if node in done:
            stack.pop()
            continue
        pending = [i.owner for i in node.inputs if i.owner is not None and i.owner not in done]
        if pending:
            stack.extend(pending)
        else:
            done.add(node)
            order.append(node)
            stack.pop()
    return order


def _perform(node, first, rest):
    storage = [[None] for _ in node.outputs]
    node.op.perform(node, [first, *rest], storage)
    return storage[0][0]


def _moved(node, x, rest):
    """A view or copy of x's elements (DimShuffle, Subtensor, Reshape): the same for its bounds."""
    def move(a):
        return _perform(node, np.broadcast_to(a, np.shape(x.v)), rest)
    add = None if x.add is None else (move(x.add[0]), move(x.add[1]), *x.add[2:4], move(x.add[4]))
    mul = None if x.mul is None else (move(x.mul[0]), move(x.mul[1]), *x.mul[2:])
    return Value(_perform(node, x.v, rest), move(x.E), x.dtype, add, mul)


def _sum(node, x, impl):
    dtype = node.outputs[0].dtype
    acc = getattr(node.op, 'acc_dtype', None) or dtype
    axes = tuple(range(np.ndim(x.v))) if node.op.axis is None else tuple(node.op.axis)
    S_E, S_hi, T, T32, S32 = _terms(x, dtype) if acc == dtype else (x.E, x.hi, 1, 0, 0.0)
    n = math.prod(np.shape(x.v)[a] for a in axes)
    shape = np.shape(x.v)
    terms = [(np.sum(np.broadcast_to(a, shape), axis=axes), np.sum(np.broadcast_to(b, shape), axis=axes),
              T * n, T32 * n, np.sum(np.broadcast_to(c, shape), axis=axes)) for a, b, c in [(S_E, S_hi, S32)]]
    precision = 'reference' if impl.reference else acc
    # any order of the T - 1 additions (the loop's, PyTensor's, NumPy's pairwise)
    record, E = _adds(terms, UNIT[precision], impl.reference)
    E = E + record[2] * SUBNORMAL[precision]
    value = np.sum(np.asarray(x.v, dtype=REF), axis=axes)
    if UNIT[dtype] > UNIT[acc] and not impl.reference:  # the total rounded to its dtype
        E = E + UNIT[dtype] * (np.abs(value).astype(np.float64) + E) + SUBNORMAL[dtype]
    return Value(value, E, dtype, add=record if acc == dtype else None)


def _increment(node, buf, inc, rest, impl):
    dtype = node.outputs[0].dtype
    value = _perform(node, np.array(buf.v, dtype=REF), [np.asarray(inc.v, dtype=REF), *rest])
    if node.op.set_instead_of_inc:
        return Value(value, _perform(node, np.array(np.broadcast_to(buf.E, np.shape(buf.v))),
                                     [inc.E, *rest]), dtype)
    b, i = _terms(buf, dtype), _terms(inc, dtype)

    def placed(k):  # the terms' arrays, added where the increment goes
        return _perform(node, np.array(np.broadcast_to(b[k], np.shape(buf.v)), dtype=np.float64),
                        [np.asarray(i[k], dtype=np.float64), *rest])
    precision = 'reference' if impl.reference else dtype
    record = (placed(0), placed(1), b[2] + i[2], b[3] + i[3], placed(4))
    E = (record[0] + gamma(record[2] - 1 + SLACK, UNIT[precision]) * record[1]
         + (0 if impl.reference else _in_float32(record[3], record[4])) + record[2] * SUBNORMAL[precision])
    return Value(value, E, dtype, add=record)


def _apply(node, ins, impl, values):
    op = node.op
    if isinstance(op, Elemwise):
        return [_elemwise(node, ins, impl, values)]
    rest = [i.v for i in ins[1:]]
    if isinstance(op, DimShuffle | Subtensor | Reshape | SpecifyShape):
        return [_moved(node, ins[0], rest)]
    if isinstance(op, Alloc):
        shape = tuple(int(s) for s in rest)
        return [Value(np.broadcast_to(ins[0].v, shape), np.broadcast_to(ins[0].E, shape), ins[0].dtype)]
    if isinstance(op, CAReduce) and isinstance(op.scalar_op, ps.Add):
        return [_sum(node, ins[0], impl)]
    if isinstance(op, IncSubtensor):
        return [_increment(node, ins[0], ins[1], rest[1:], impl)]
    if not any(_float(o.dtype) for o in node.outputs):  # shapes and their arithmetic
        storage = [[None] for _ in node.outputs]
        op.perform(node, [np.asarray(i.v).astype(var.dtype) for i, var in zip(ins, node.inputs)],
                   storage)
        return [Value(np.asarray(s[0]), None, o.dtype) for s, o in zip(storage, node.outputs)]
    raise NotImplementedError(f'no error bound for {op}')


def evaluate(outputs, givens, impl):
    """The reference value of each of ``outputs`` and a bound on |computed - exact|, as Values.

    ``givens``: the value of each input (shared variables default to theirs).
    ``impl``: what the computation's arithmetic may do (:data:`STOCK`,
    :data:`FUSED`, :data:`REFERENCE`). The value of each variable is
    computed in extended precision; its bound E covers any computation of the
    graph as written, in its dtypes, that

    - rounds each operation once (twice for a division: fast-math may
      multiply by a reciprocal), or fewer times (a fused multiply-add);
    - adds up a chain of additions (``Add``, ``Sub``, ``Neg``, ``Sum``,
      increments) in any order, or multiplies out a chain of products
      (``Mul``, ``TrueDiv``, ``Sqr``, ``Pow``) in any order: PyTensor's
      canonicalisation flattens such chains and Numba's fast-math
      reassociates them, the fused loops add their sums up in another order.
      A chain of T terms is within ``sum E_t + gamma_{T-1+SLACK} sum(|t| + E_t)``
      of the exact sum (Higham, Accuracy and Stability of Numerical
      Algorithms, 2nd ed., lemma 3.1 and section 4.2); a product of factors f within
      ``prod(|f| + E_f) - prod|f| + gamma_{k+SLACK} prod(|f| + E_f)``, k its
      roundings. SLACK = 2 roundings more per chain cover rewrites that move
      a factor or term across a chain's end (``sum(c x)`` -> ``c sum(x)``,
      ``exp(a) exp(b)`` -> ``exp(a + b)``, for which exp's argument is given
      one rounding more too); float32 terms of a float64 chain may be
      combined in float32 first (PyTensor rewrites the gradient of
      ``x64 * x32 * x32`` into ``cast(sqr(x32), 'float64')``);
    - computes exp and tanh within ``impl``'s ulps (tanh and exp are
      1-Lipschitz and e^x-Lipschitz, which carries their input's error);
    - takes maximum, minimum, abs, switch and casts to a wider type exactly
      (a cast to float32 rounds once).

    A comparison, a sign or a maximum's gradient that the input errors could
    decide either way raises :class:`Undecided`: the graph has no bound
    there. The bounds are computed in float64; their own rounding changes
    them by a relative O(T 2^-53), immaterial.
    """
    values = {}

    def get(var):
        if var not in values:
            if isinstance(var, Constant):
                data = var.data
            elif var in givens:
                data = givens[var]
            else:
                data = var.get_value(borrow=True)
            data = np.asarray(data)
            values[var] = Value(data.astype(REF) if _float(data.dtype) else data, None, var.dtype)
        return values[var]

    for node in _toposort(outputs):
        for var, value in zip(node.outputs, _apply(node, [get(i) for i in node.inputs], impl, values)):
            values[var] = value
    return [get(o) for o in outputs]


def bounds(outputs, givens):
    """Per output: its reference value and {'fused', 'stock', 'reference': bound on |computed - exact|}."""
    runs = {impl.name: evaluate(outputs, givens, impl) for impl in (FUSED, STOCK, REFERENCE)}
    return [(runs['reference'][j].v, {name: run[j].E for name, run in runs.items()})
            for j in range(len(outputs))]


def within(got, want, bound, what):
    """Assert |got - want| <= bound elementwise; the largest ratio |got - want| / bound."""
    got = np.asarray(got)
    assert got.shape == np.shape(want), f'{what}: shape {got.shape}, expected {np.shape(want)}'
    err = np.abs(np.asarray(got, dtype=REF) - np.asarray(want, dtype=REF)).astype(np.float64)
    bound = np.broadcast_to(bound, err.shape)
    bad = ~(err <= bound)
    if np.any(bad):
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape) if err.ndim else ()
        raise AssertionError(f'{what}: {np.asarray(got)[i]!r} is {err[i]:.3g} from {np.asarray(want)[i]!r}, '
                             f'more than the bound {bound[i]:.3g} ({int(bad.sum())} of {bad.size} elements)')
    with np.errstate(divide='ignore', invalid='ignore'):
        return float(np.max(np.where(err > 0, err / bound, 0), initial=0))


# --- generated graphs ----------------------------------------------------------------------

UNARY = ('sqr', 'pow2', 'abs', 'neg', 'tanh', 'exp', 'cast')
BINARY = ('add', 'sub', 'mul', 'div', 'max')
CONSTANTS = (0.5, 2.0, -1.5, 3.0)
LEAVES = ('in', 'view', 'scalar', 'const')


def expressions(leaves, conditions):
    """Specs (nested tuples) of elementwise compositions of ``leaves``; ``where`` tests a ``conditions`` leaf.

    Each is nonlinear in a leaf that is not a constant: PyTensor rewrites the
    sum of a linear term (``sum(-x)``, ``sum(3 x)``) into a sum of the input,
    with no elementwise operation left to fuse.
    """
    def extend(children):
        return st.sampled_from('uubbbw').flatmap(lambda kind: {
            'u': st.tuples(st.sampled_from(UNARY), children),
            'b': st.tuples(st.sampled_from(BINARY), children, children),
            'w': st.tuples(st.just('where'), conditions, children, children)}[kind])
    return st.recursive(leaves, extend, max_leaves=5).map(
        lambda spec: ('sqr', spec) if spec[0] in LEAVES else spec).filter(nonlinear)


def varies(spec):
    """Whether a spec reads an input or a view (but in a condition)."""
    if spec[0] in LEAVES:
        return spec[0] in ('in', 'view')
    return any(varies(child) for child in spec[2 if spec[0] == 'where' else 1:])


def nonlinear(spec):
    """Whether a spec has a nonlinear operation of a leaf that :func:`varies`."""
    kind = spec[0]
    if kind in LEAVES:
        return False
    children = spec[2:] if kind == 'where' else spec[1:]
    if kind in ('sqr', 'pow2', 'abs', 'tanh', 'exp', 'max', 'div', 'where'):
        return any(varies(child) for child in children)
    if kind == 'mul' and all(varies(child) for child in children):
        return True
    return any(nonlinear(child) for child in children)


def build(spec, leaf):
    """The expression of a spec; ``leaf(spec)`` gives the variable of a leaf."""
    kind = spec[0]
    if kind in LEAVES:
        return leaf(spec)
    if kind == 'where':
        return pt.switch(leaf(spec[1]) > 0, build(spec[2], leaf), build(spec[3], leaf))
    args = [build(s, leaf) for s in spec[1:]]
    a = args[0]
    if kind == 'exp':  # of a bounded value: an input in [-2, 2], a constant, or a tanh
        return pt.exp(a if spec[1][0] in LEAVES else pt.tanh(a))
    if kind == 'cast':
        return pt.cast(a, 'float32' if a.dtype == 'float64' else 'float64')
    if kind == 'div':  # by a denominator >= 1
        return a / (1 + pt.sqr(args[1]))
    ops = {'sqr': pt.sqr, 'pow2': lambda a: a ** 2, 'abs': abs, 'neg': lambda a: -a, 'tanh': pt.tanh,
           'add': lambda a, b: a + b, 'sub': lambda a, b: a - b, 'mul': lambda a, b: a * b,
           'max': pt.maximum}
    return ops[kind](*args)


def constant(value, dtype):
    return pt.constant(np.asarray(value, dtype=dtype))


class Compiled(NamedTuple):
    fused: object
    stock: object
    ratio: float


def compile_and_compare(inputs, givens, outputs, updates, what):
    """Compile ``outputs`` and ``updates`` in both modes, run both from the same state, check both bounds.

    The bounds are computed first: a graph the rounding could decide either
    way is rejected before anything is compiled.
    """
    targets = [p for p, _ in updates]
    exprs = list(outputs) + [e for _, e in updates]
    start = {p: p.get_value() for p in targets}
    try:
        refs = bounds(exprs, {**givens, **start})
    except Undecided:
        reject()
    # as downhill's Optimizer._function compiles: the fast tanh, then the fused mode
    fused_outs, fused_ups = replace_for_mode('NUMBA', outputs, [e for _, e in updates])
    fused = pytensor.function(inputs, fused_outs, updates=list(zip(targets, fused_ups)),
                              mode=mode_with_fusion('NUMBA'), on_unused_input='ignore')
    stock = pytensor.function(inputs, outputs, updates=updates, mode='NUMBA', on_unused_input='ignore')
    args = [givens[i] for i in inputs]
    results = {}
    for name, fn in (('fused', fused), ('stock', stock), ('again', fused)):
        for p in targets:
            p.set_value(start[p].copy())
        results[name] = [np.array(o) for o in fn(*args)] + [p.get_value() for p in targets]
    # Not a bound that anything passes: at most 1e-6 (1e-3 where float32 is computed) of the
    # output's largest value, below a term (of order 1) left out, added twice or shifted by
    # one even in a cancelling sum of 32,771 (the bound of a sum is then ~n eps sum|terms|).
    narrow = any(getattr(v, 'dtype', None) == 'float32' for v in _compat.ancestors(exprs))
    tightness = 1e-3 if narrow else 1e-6
    ratio = 0.0
    for j, (want, bound) in enumerate(refs):
        out = f'{what}: output {j}' if j < len(outputs) else f'{what}: new {targets[j - len(outputs)]}'
        fused_value, stock_value = results['fused'][j], results['stock'][j]
        assert fused_value.dtype == stock_value.dtype == exprs[j].dtype, out
        scale = float(np.max(np.abs(want), initial=0))
        assert not scale or np.max(bound['fused'], initial=0) <= tightness * scale, f'{out}: a loose bound'
        ratio = max(ratio, within(fused_value, want, bound['fused'] + bound['reference'], f'{out} (fused)'))
        within(stock_value, want, bound['stock'] + bound['reference'], f'{out} (stock)')
        within(fused_value, stock_value, bound['fused'] + bound['stock'], f'{out} (fused vs stock)')
        # a second call from the same state: the same bits (no state left behind in place)
        np.testing.assert_array_equal(results['again'][j], fused_value, err_msg=out)
    return Compiled(fused, stock, ratio)


def count(fn, op_type, where=lambda op: True):
    return sum(isinstance(n.op, op_type) and where(n.op) for n in fn.maker.fgraph.apply_nodes)


#: The same graphs every run (Hypothesis derives the seed from the test's source), so that
#: Numba's compile cache is warm after the first; no shrinking (each attempt compiles two
#: functions: add Phase.shrink to minimise a failure).
SETTINGS = settings(derandomize=True, deadline=None, database=None, print_blob=False,
                    phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


# --- elementwise terms, their sums and gradients (downhill.fused_sums) ---------------------------

class SumsCase(NamedTuple):
    shape: tuple
    #: Per input: (broadcast pattern, dtype).
    inputs: tuple
    #: (spec, 'sum' or 'mean', coefficient) of each summed term of the loss.
    summed: tuple
    #: The spec of an output returned unsummed, or None.
    kept: object
    #: The inputs the gradient is taken with respect to.
    wrt: tuple
    #: Whether the inputs are shared variables updated by SGD (the loss is then the only output).
    shared: bool
    seed: int


@st.composite
def sums_cases(draw):
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.sampled_from([1, 2, 3, 5, 7])) for _ in range(ndim))
    dtype = draw(st.sampled_from(['float32', 'float64']))
    n = draw(st.integers(2, 3))
    inputs = [((False,) * ndim, dtype)]  # one input of the full shape
    for _ in range(n - 1):
        pattern = draw(st.sampled_from(['full', 'row', 'column', 'any']))
        bcast = {'full': (False,) * ndim, 'row': (True,) * (ndim - 1) + (False,),
                 'column': (False,) + (True,) * (ndim - 1),
                 'any': tuple(draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim)))}[pattern]
        other = 'float64' if dtype == 'float32' else 'float32'
        inputs.append((bcast, draw(st.sampled_from([dtype, dtype, other]))))
    leaves = st.one_of(st.tuples(st.just('in'), st.integers(0, n - 1)),
                       st.tuples(st.just('in'), st.integers(0, n - 1)),
                       st.tuples(st.just('const'), st.sampled_from(CONSTANTS)))
    spec = expressions(leaves, st.tuples(st.just('in'), st.integers(0, n - 1)))
    summed = draw(st.lists(st.tuples(spec, st.sampled_from(['sum', 'mean']), st.sampled_from([1.0, 0.5, -2.0])),
                           min_size=1, max_size=2))
    kept = draw(st.one_of(st.none(), spec))
    wrt = tuple(sorted(draw(st.sets(st.integers(0, n - 1), min_size=1))))
    return SumsCase(shape, tuple(inputs), tuple(summed), kept, wrt, draw(st.booleans()),
                    draw(st.integers(0, 2 ** 16)))


def sums_graph(case):
    rng = np.random.default_rng(case.seed)
    variables, givens = [], {}
    for i, (bcast, dtype) in enumerate(case.inputs):
        value = rng.uniform(-2, 2, tuple(1 if b else s for b, s in zip(bcast, case.shape))).astype(dtype)
        static = tuple(1 if b else None for b in bcast)
        if case.shared:
            var = pytensor.shared(value, name=f'p{i}', shape=static)
        else:
            var = pt.tensor(f'x{i}', dtype=dtype, shape=static)
            givens[var] = value
        variables.append(var)
    dtype = case.inputs[0][1]

    def leaf(spec):
        return variables[spec[1]] if spec[0] == 'in' else constant(spec[1], dtype)
    loss = 0
    for spec, how, coef in case.summed:
        term = build(spec, leaf)
        loss = loss + constant(coef, term.dtype) * (term.sum() if how == 'sum' else term.mean())
    wrt = [variables[i] for i in case.wrt]
    grads = pytensor.grad(loss, wrt, disconnected_inputs='ignore')
    if case.shared:
        updates = [(p, pt.cast(p - constant(0.1, p.dtype) * g, p.dtype)) for p, g in zip(wrt, grads)]
        outputs = [loss]
    else:
        updates, outputs = [], [loss, *grads]
    if case.kept is not None:
        outputs.append(build(case.kept, leaf))
    inputs = [] if case.shared else variables
    return inputs, givens, outputs, updates


@pytest.mark.compiled
@needs_numba_fusion
def test_fused_sums_of_generated_elementwise_graphs():
    stats = collections.Counter()

    @settings(SETTINGS, max_examples=18)
    @given(sums_cases())
    def check(case):
        inputs, givens, outputs, updates = sums_graph(case)
        compiled = compile_and_compare(inputs, givens, outputs, updates, repr(case))
        stats['cases'] += 1
        stats['fired'] += count(compiled.fused, ElemwiseSums) > 0
        assert not count(compiled.stock, ElemwiseSums)
        stats['ratio'] = max(stats['ratio'], compiled.ratio)
    check()
    print(f'fused sums: {dict(stats)}')
    assert stats['fired'] >= 0.8 * stats['cases'], stats


# --- shifted slices of vectors, their sums, gradients and updates (downhill.stencil) -----------

class StencilCase(NamedTuple):
    n: int
    #: Whether a second vector y (of the same length) is sliced too.
    two: bool
    dtype: str
    #: (spec, coefficient, window) of each summed term of the loss: its views are
    #: x[a:n - (window - a)], 0 <= a <= window (terms of other windows make other loops).
    terms: tuple
    #: 'none' (loss and gradients), 'sgd', 'rmsprop' (updates, the loss), 'sgd+grad' (both).
    update: str
    seed: int


def rosenbrock_case(n, update):
    """Rosenbrock's sum(100 (x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2)."""
    x0, x1 = ('view', 0, 0), ('view', 0, 1)
    spec = ('add', ('mul', ('const', 100.0), ('pow2', ('sub', x1, ('pow2', x0)))),
            ('pow2', ('sub', ('const', 1.0), x0)))
    return StencilCase(n, False, 'float64', ((spec, 1.0, 1),), update, 0)


@st.composite
def stencil_cases(draw):
    n = draw(st.sampled_from([1, 2, 3, 4, 5, 7, 9, 16, 2 * BLOCK + 3]))  # and blocks of the folded update
    two = draw(st.booleans())

    def term(window):
        views = st.tuples(st.just('view'), st.integers(0, int(two)), st.integers(0, window))
        leaves = st.one_of(views, views, views, st.just(('scalar',)),
                           st.tuples(st.just('const'), st.sampled_from(CONSTANTS)))
        return st.tuples(expressions(leaves, views), st.sampled_from([1.0, 0.5, -2.0]), st.just(window))
    terms = draw(st.lists(st.sampled_from([1, 2, 3, 0]).flatmap(term), min_size=1, max_size=2))
    return StencilCase(n, two, draw(st.sampled_from(['float32', 'float64'])), tuple(terms),
                       draw(st.sampled_from(['sgd', 'rmsprop', 'none', 'sgd+grad'])),
                       draw(st.integers(0, 2 ** 16)))


def stencil_graph(case):
    rng = np.random.default_rng(case.seed)
    dtype = case.dtype
    bases = [pytensor.shared(rng.uniform(-2, 2, case.n).astype(dtype), name=name)
             for name in ('xy' if case.two else 'x')]
    s = pt.scalar('s', dtype=dtype)
    givens = {s: np.asarray(rng.uniform(0.5, 1.5), dtype=dtype)}

    def leaf(spec, window):
        if spec[0] == 'view':
            _, base, a = spec
            b = window - a
            return bases[base][a:-b] if b else bases[base][a:]
        return s if spec[0] == 'scalar' else constant(spec[1], dtype)
    loss = 0
    for spec, coef, window in case.terms:
        term = build(spec, lambda leaf_spec: leaf(leaf_spec, window))
        loss = loss + constant(coef, term.dtype) * term.sum()
    grads = pytensor.grad(loss, bases, disconnected_inputs='ignore')
    lr = constant(1e-2, dtype)
    updates, outputs = [], [loss]
    if case.update == 'rmsprop':  # nonlinear in g: PyTensor cannot increment into the state
        for p, g in zip(bases, grads):
            v = pytensor.shared(rng.uniform(0, 1, case.n).astype(dtype), name=f'v_{p.name}')
            v_new = pt.cast(constant(0.9, dtype) * v + constant(0.1, dtype) * pt.sqr(g), dtype)
            updates += [(v, v_new), (p, pt.cast(p - lr * g / pt.sqrt(v_new + constant(1, dtype)), dtype))]
    elif case.update != 'none':
        updates = [(p, pt.cast(p - lr * g, dtype)) for p, g in zip(bases, grads)]
    if case.update in ('none', 'sgd+grad'):
        outputs += grads
    return [s], givens, outputs, updates


@pytest.mark.compiled
@needs_numba_fusion
def test_stencil_loops_of_generated_slice_graphs():
    stats = collections.Counter()

    @settings(SETTINGS, max_examples=16)
    @given(stencil_cases())
    @example(rosenbrock_case(7, 'none'))
    @example(rosenbrock_case(2 * BLOCK + 3, 'rmsprop'))
    def check(case):
        inputs, givens, outputs, updates = stencil_graph(case)
        compiled = compile_and_compare(inputs, givens, outputs, updates, repr(case))
        stats['cases'] += 1
        stats['fired'] += count(compiled.fused, StencilLoop) > 0
        assert not count(compiled.stock, StencilLoop)
        if case.update in ('sgd', 'rmsprop'):
            stats['updates'] += 1
            stats['folded'] += count(compiled.fused, StencilLoop, lambda op: op.update is not None) > 0
        stats['ratio'] = max(stats['ratio'], compiled.ratio)
    check()
    print(f'stencil loops: {dict(stats)}')
    assert stats['fired'] >= 0.8 * stats['cases'], stats
    assert stats['folded'] >= 0.5 * stats['updates'], stats


# --- the bounds themselves ----------------------------------------------------------------

@pytest.mark.parametrize('b_dtype, perturbation', [('float64', 1e-10), ('float32', 1e-4)])
def test_the_bounds_hold_for_numpy_and_a_small_perturbation_breaks_them(b_dtype, perturbation):
    """PyTensor's Python ops (NumPy) stay within the bounds; a result off by a little does not.

    With a float32 input, float32 rounding (6e-8) is the resolution.
    """
    rng = np.random.default_rng(3)
    a, b = pt.dmatrix('a'), pt.matrix('b', dtype=b_dtype, shape=(1, None))
    x = pt.dvector('x')
    e = pt.switch(a > 0, pt.maximum(a * b, a / (1 + pt.sqr(b))), pt.cast(b, 'float64') ** 2 - a)
    walk = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
    loss = pt.sqr(e).mean() + 0.5 * e.sum() + walk
    outs = [loss, *pytensor.grad(loss, [a, b, x])]
    givens = {a: rng.uniform(-2, 2, (5, 3)), b: rng.uniform(-2, 2, (1, 3)).astype(b_dtype),
              x: rng.uniform(-2, 2, 9)}
    got = pytensor.function(list(givens), outs, mode=Mode(linker='py', optimizer=None))(*givens.values())
    for j, ((want, bound), value) in enumerate(zip(bounds(outs, givens), got)):
        assert within(value, want, bound['stock'] + bound['reference'], f'output {j}') <= 1
        with pytest.raises(AssertionError, match='more than the bound'):
            within(value * (1 + perturbation) + 1e-300, want, bound['stock'] + bound['reference'],
                   f'output {j}')
    # the gradient of maximum(y, y): either input's, by a rounding
    y = pt.dvector('y')
    with pytest.raises(Undecided):
        bounds([pytensor.grad(pt.maximum(y * 3, 3 * y).sum(), y)], {y: np.ones(3)})
    with pytest.raises(NotImplementedError, match='no error bound'):
        bounds([pt.log(y)], {y: np.ones(3)})
