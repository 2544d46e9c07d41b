"""A ``tanh`` that is faster and more accurate than the one PyTensor compiles.

PyTensor's Numba backend (and its C backend) turns ``tanh`` into a loop that
calls the C library's scalar ``tanhf`` once per element: about 20 ns each,
7x slower than NumPy's SIMD ``tanh`` (``benchmarks/repro_numba_tanh.py``),
and on the MLP benchmark more than half of each update. It is also not
correctly rounded: off by up to 2.2 ulp, for 20% of float32 inputs.

:func:`rational_tanh` computes ``tanh(x) = x P(x^2) / Q(x^2)`` for
``|x| <= 9.1`` (beyond it the float32 result is +-1) in float64 and rounds the
result to float32. It is only multiplications, additions and one division,
which the compiler vectorizes, and its relative error (1.6e-12) is far below
float32's resolution: the result is the correctly rounded ``tanh`` for all but
2 in a million inputs (those within 1.6e-12 of a rounding boundary: 2,058 of
the 1.09e9 positive float32 below 9.6), each off by at most 0.5 ulp plus
that. ``benchmarks/fit_tanh.py`` derives the coefficients and checks every
float32. :func:`replace_libm_tanh` puts it in place of
every float32 ``tanh`` of the functions downhill compiles (``build(...,
fast_tanh=False)`` keeps PyTensor's).

float64 ``tanh`` compiled by PyTensor's Numba backend is as slow (15 ns an
element) and off by up to 2.09 ulp, with 24% of the results not correctly
rounded. :func:`exp_tanh` computes it as the Cephes library does: a rational
function ``x + x^3 P(x^2) / Q(x^2)`` below ``|x| = 0.625``,
``1 - 2 / (exp(2|x|) + 1)`` above: 6 ns an element, off by at most 1.34 ulp,
1.7% of the results not correctly rounded (both measured against the
``long double`` tanh in ``tests/test_fast_tanh.py``). It is the float64
``tanh`` of the functions downhill compiles, under the same switch.

The Python-linker functions of downhill's quick start compute the same
formulas with NumPy (:mod:`downhill.backend.quick`). PyTensor's Numba backend compiles
with fast-math flags (contraction into fused multiply-adds, reciprocals), so
its float64 intermediate values may differ in the last bit: float64 results
by up to 2 ulp; rounded to float32, the results agree but for inputs within
~1e-16 of a rounding boundary.
"""

import numpy as np
import pytensor.tensor as pt
from pytensor.compile.mode import get_mode
from pytensor.graph.replace import graph_replace
from pytensor.scalar import basic as scalar
from pytensor.tensor.elemwise import Elemwise

from .. import _compat

#: Where the approximation stops: float32(tanh(x)) == 1 for every float32 x >= 9.0109.
CLAMP = 9.1
#: Coefficients of P and Q in powers of x**2, lowest first (``benchmarks/fit_tanh.py``).
P = (0.9999999999984446, 0.1434741314439192, 0.004766964511171749, 5.2079924012952253e-05,
     1.8662206471433286e-07, 1.5319062845027855e-10)
Q = (1.0, 0.4768074647606908, 0.030369452797914077, 0.0005691561612691183,
     3.6228015140364627e-06, 6.745132202802344e-09, 1.6480478381546712e-12)


def _horner(coefs, u):
    out = coefs[-1]
    for c in coefs[-2::-1]:
        out = out * u + c
    return out


def rational_tanh(x, flat=True):
    """``tanh(x)`` for a float32 expression ``x``, evaluated in float64, as float32.

    .. math::

        \\tanh x \\approx x\\,\\frac{P(x^2)}{Q(x^2)}, \\quad |x| \\le 9.1

    with ``P`` of degree 5 and ``Q`` of degree 6 (:data:`P`, :data:`Q`). NaN
    stays NaN, ``+-inf`` gives ``+-1``, ``-0.0`` gives ``-0.0``.

    With ``flat`` (for compiled modes), ``x`` of 2 or more dimensions is
    computed on a flat view: a boundary that PyTensor's elementwise fusion
    does not cross. Fused with a broadcasting producer (``dot(x, W) + b``),
    the Numba loop is not vectorized and takes 3x longer than the separate add
    and tanh loops (benchmarks/repro_numba_tanh.py). The values are the same.
    """
    if flat and x.ndim >= 2:
        return rational_tanh(x.flatten(), flat=False).reshape(x.shape)
    wide = pt.clip(pt.cast(x, 'float64'), -CLAMP, CLAMP)
    u = wide * wide
    # float64 constants whatever floatX is (a Python float may become a float32 one)
    num, den = (_horner([np.float64(c) for c in coefs], u) for coefs in (P, Q))
    return pt.cast(wide * num / den, 'float32')


#: Where :func:`exp_tanh` changes from its rational function to the exponential.
SMALL64 = 0.625
#: The coefficients of Cephes' double precision ``tanh`` (S. L. Moshier, ``tanh.c``) in
#: powers of x**2, lowest first (``Q`` is monic); NumPy float64 scalars, so that they
#: stay float64 constants whatever floatX is.
P64 = tuple(map(np.float64, (-1.61468768441708447952e3, -9.92877231001918586564e1,
                             -9.64399179425052238628e-1)))
Q64 = tuple(map(np.float64, (4.84406305325125486048e3, 2.23548839060100448583e3,
                             1.12811678491632931402e2, 1.0)))


def exp_tanh(x, flat=True, xp=None):
    """``tanh(x)`` for a float64 expression ``x``, with one ``exp`` and no libm ``tanh``.

    .. math::

        \\tanh x = \\begin{cases}
            x + x\\,u\\,P(u) / Q(u), \\quad u = x^2 & |x| < 0.625 \\\\
            \\operatorname{sign}(x) \\left(1 - \\dfrac{2}{e^{2|x|} + 1}\\right) & \\text{else}
        \\end{cases}

    with Cephes' ``P`` of degree 2 and monic ``Q`` of degree 3 (:data:`P64`,
    :data:`Q64`). NaN stays NaN, ``+-inf`` gives ``+-1`` (``exp``
    overflowing to ``inf`` on the way), ``-0.0`` gives ``-0.0`` (in NumPy
    and the quick mode: PyTensor's Numba backend compiles with the fast-math
    flag ``nsz``, which lets a zero lose its sign). ``flat``: as
    for :func:`rational_tanh`. ``xp``: ``numpy`` to compute the same formula
    on arrays (:func:`numpy_exp_tanh`).
    """
    if xp is None:
        if flat and x.ndim >= 2:
            return exp_tanh(x.flatten(), flat=False).reshape(x.shape)
        xp = pt
    a = abs(x)
    u = x * x
    num, den = _horner(P64, u), _horner(Q64, u)
    select = np.where if xp is np else pt.switch
    # the correction term of -0.0 is +0.0: the zeros are kept apart
    small = select(u > 0, x + x * (u * num / den), x)
    large = xp.sign(x) * (1 - 2 / (xp.exp(2 * a) + 1))
    return select(a < SMALL64, small, large)


def numpy_exp_tanh(x):
    """:func:`exp_tanh` of a float64 array, in NumPy, in the same order of operations."""
    with np.errstate(over='ignore', invalid='ignore'):
        return exp_tanh(np.asarray(x, dtype=np.float64), xp=np)


def numpy_rational_tanh(x, p=P, q=Q):
    """:func:`rational_tanh` of a float32 array, in NumPy, in the same order of operations.

    ``p`` and ``q``: other coefficients to try (``benchmarks/fit_tanh.py``).
    """
    wide = np.clip(np.asarray(x, dtype=np.float64), -CLAMP, CLAMP)
    u = wide * wide
    return (wide * _horner(p, u) / _horner(q, u)).astype(np.float32)


#: dtype -> the ``tanh`` compiled in place of PyTensor's.
REPLACEMENTS = {'float32': rational_tanh, 'float64': exp_tanh}


def _is_libm_tanh(node):
    return (isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, scalar.Tanh)
            and node.outputs[0].dtype in REPLACEMENTS)


def calls_libm_tanh(mode):
    """Whether ``mode`` (None, a name or a Mode) compiles ``tanh`` to a scalar libm call.

    JAX, PyTorch and MLX have their own vectorized ``tanh`` (and JAX may run
    without float64), so their graphs are left as they are.
    """
    linker = type(get_mode(mode).linker).__name__
    return not any(name in linker for name in ('JAX', 'PyTorch', 'MLX'))


def _libm_tanhs(outputs):
    return [node for node in _compat.applys_between(_compat.graph_inputs(outputs), outputs)
            if _is_libm_tanh(node)]


def replace_libm_tanh(outputs, flat=True):
    """``outputs`` (a list of expressions) with every float32 and float64 ``tanh`` replaced.

    float32 by :func:`rational_tanh`, float64 by :func:`exp_tanh`
    (:data:`REPLACEMENTS`).

    ``flat``: as for :func:`rational_tanh` (False for the Python linker:
    building a flat view imports ``pytensor.sparse``, 0.2 s). The list is
    returned as it is when there is none. All outputs are rewritten together,
    so a node they share (a random draw downstream of a ``tanh`` and its
    generator's update) stays one node.
    """
    outputs = list(outputs)
    found = _libm_tanhs(outputs)
    while found:
        # A replacement is built on its tanh's input as it is: replace first
        # the tanhs with no other tanh upstream, then the next layer.
        first = [node for node in found if not _libm_tanhs(node.inputs)]
        outputs = graph_replace(outputs, {
            out: out.type.filter_variable(REPLACEMENTS[out.dtype](node.inputs[0], flat))
            for node in first for out in node.outputs})
        found = _libm_tanhs(outputs)
    return outputs


def replace_for_mode(mode, *groups):
    """Each group (a list of expressions) rewritten by :func:`replace_libm_tanh`, for ``mode``.

    All groups are rewritten together (what they share stays shared). A
    Python-linker mode (``FAST_COMPILE``, the quick start's) gets the groups
    as they are: it computes ``tanh`` with NumPy's vectorized loop already,
    while the replacement's dozen elementwise ops run there as separate
    passes, some per element (an Adam step on a 200x500 tanh layer took 4.7x
    longer with it): a speed-up must not slow a mode down.
    """
    if _compat.compiles_quickly(mode):
        return [list(group) for group in groups]
    everything = replace_libm_tanh([e for group in groups for e in group])
    out, start = [], 0
    for group in groups:
        out.append(everything[start:start + len(group)])
        start += len(group)
    return out
