"""A float32 ``tanh`` that is faster and more accurate than the one PyTensor compiles.

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
float32. :func:`replace_float32_tanh` puts it in place of
every float32 ``tanh`` of the functions downhill compiles (``build(...,
fast_tanh=False)`` keeps PyTensor's). float64 ``tanh`` is left alone.

The Python-linker functions of downhill's quick start compute the same
formula with NumPy (:mod:`downhill.quick`). PyTensor's Numba backend compiles
with fast-math flags (contraction into fused multiply-adds, reciprocals), so
its float64 intermediate values may differ in the last bit; rounded to
float32, the results agree but for inputs within ~1e-16 of a rounding
boundary.
"""

import numpy as np
import pytensor.tensor as pt
from pytensor.compile.mode import get_mode
from pytensor.graph.replace import graph_replace
from pytensor.scalar import basic as scalar
from pytensor.tensor.elemwise import Elemwise

from . import _compat

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


def numpy_rational_tanh(x, p=P, q=Q):
    """:func:`rational_tanh` of a float32 array, in NumPy, in the same order of operations.

    ``p`` and ``q``: other coefficients to try (``benchmarks/fit_tanh.py``).
    """
    wide = np.clip(np.asarray(x, dtype=np.float64), -CLAMP, CLAMP)
    u = wide * wide
    return (wide * _horner(p, u) / _horner(q, u)).astype(np.float32)


def _is_float32_tanh(node):
    return (isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, scalar.Tanh)
            and node.outputs[0].dtype == 'float32')


def calls_libm_tanh(mode):
    """Whether ``mode`` (None, a name or a Mode) compiles ``tanh`` to a scalar libm call.

    JAX, PyTorch and MLX have their own vectorized ``tanh`` (and JAX may run
    without float64), so their graphs are left as they are.
    """
    linker = type(get_mode(mode).linker).__name__
    return not any(name in linker for name in ('JAX', 'PyTorch', 'MLX'))


def _float32_tanhs(outputs):
    return [node for node in _compat.applys_between(_compat.graph_inputs(outputs), outputs)
            if _is_float32_tanh(node)]


def replace_float32_tanh(outputs, flat=True):
    """``outputs`` (a list of expressions) with every float32 ``tanh`` made :func:`rational_tanh`.

    ``flat``: as for :func:`rational_tanh` (False for the Python linker:
    building a flat view imports ``pytensor.sparse``, 0.2 s). The list is
    returned as it is when there is none. All outputs are rewritten together,
    so a node they share (a random draw downstream of a ``tanh`` and its
    generator's update) stays one node.
    """
    outputs = list(outputs)
    found = _float32_tanhs(outputs)
    while found:
        # A replacement is built on its tanh's input as it is: replace first
        # the tanhs with no other tanh upstream, then the next layer.
        first = [node for node in found if not _float32_tanhs(node.inputs)]
        outputs = graph_replace(outputs, {
            out: out.type.filter_variable(rational_tanh(node.inputs[0], flat))
            for node in first for out in node.outputs})
        found = _float32_tanhs(outputs)
    return outputs


def replace_for_mode(mode, *groups):
    """Each group (a list of expressions) rewritten by :func:`replace_float32_tanh`, for ``mode``.

    All groups are rewritten together (what they share stays shared); the
    flat view is left out for Python-linker modes.
    """
    everything = replace_float32_tanh([e for group in groups for e in group],
                                      flat=not _compat.compiles_quickly(mode))
    out, start = [], 0
    for group in groups:
        out.append(everything[start:start + len(group)])
        start += len(group)
    return out
