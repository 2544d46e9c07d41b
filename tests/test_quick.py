"""downhill.quick: the Python-linker mode of the first updates."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from downhill.quick import NumpyElemwise, quick_mode


def per_element(inputs, output):
    """The plain Python linker without rewrites: frompyfunc, one call per element."""
    from pytensor.compile.mode import Mode
    return pytensor.function(inputs, output, mode=Mode(linker='py', optimizer=None),
                             on_unused_input='ignore')


def swapped(fn):
    return [n.op for n in fn.maker.fgraph.apply_nodes if isinstance(n.op, NumpyElemwise)]


@pytest.mark.parametrize('case', ['second', 'cast64to32', 'cast_to_int', 'clip', 'clip_low_above_high'])
def test_numpy_versions_compute_what_the_scalar_ops_compute(case):
    x = pt.matrix('x')
    y = pt.vector('y', dtype='float32')
    expr = {
        'second': pt.second(x, y),
        'cast64to32': pt.cast(x, 'float32'),
        'cast_to_int': pt.cast(x * 100, 'int64'),
        'clip': pt.clip(x, -0.5, y),
        'clip_low_above_high': pt.clip(x, 0.3, -0.3),
    }[case]
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((7, 4))
    if case != 'cast_to_int':  # (the per-element version refuses NaN, the compiled ones don't)
        xv[0, 0], xv[1, 1], xv[2, 2] = np.nan, np.inf, -0.0
    yv = rng.standard_normal(4).astype('float32')
    fast = pytensor.function([x, y], expr, mode=quick_mode(), on_unused_input='ignore')
    slow = per_element([x, y], expr)
    assert swapped(fast) and not swapped(slow)
    got, want = fast(xv, yv), slow(xv, yv)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def test_the_gradient_of_a_mean_is_filled_by_numpy():
    x = pt.matrix('x')
    grad = pytensor.grad(pt.sqr(x).mean(), x)
    fn = pytensor.function([x], grad, mode=quick_mode())
    ops = swapped(fn)
    assert any(type(op.elemwise.scalar_op).__name__ == 'Second' for op in ops)
    xv = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(fn(xv), per_element([x], grad)(xv))
    np.testing.assert_allclose(fn(xv), xv / 6, rtol=1e-15)
