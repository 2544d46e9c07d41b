"""downhill.fast_tanh: the float32 and float64 tanh downhill compiles instead of PyTensor's."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import compile as compiling
from downhill.fast_tanh import (calls_libm_tanh, exp_tanh, numpy_exp_tanh, numpy_rational_tanh,
                                rational_tanh, replace_libm_tanh)


def correctly_rounded(x):
    return np.tanh(x.astype(np.float64)).astype(np.float32)


def samples():
    rng = np.random.default_rng(7)
    return np.concatenate([rng.uniform(-12, 12, 300_000), rng.standard_normal(300_000),
                           10 ** rng.uniform(-45, 1.2, 200_000) * rng.choice([-1, 1], 200_000)]
                          ).astype(np.float32)


def test_rational_tanh_is_correctly_rounded_but_for_one_input_in_ten_thousand():
    x = samples()
    got, want = numpy_rational_tanh(x), correctly_rounded(x)
    exact = np.tanh(x.astype(np.float64))
    ulps = np.abs(got.astype(np.float64) - exact) / np.spacing(np.abs(want)).astype(np.float64)
    assert got.dtype == np.float32
    assert np.mean(got != want) < 1e-4
    assert ulps.max() < 0.5 + 1e-3


def test_rational_tanh_special_values():
    tiny = np.float32(1e-30)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 9.0, 8.5, 9.1, 50.0, -50.0, tiny,
                  np.float32(1e-45)], dtype=np.float32)
    got = numpy_rational_tanh(x)
    np.testing.assert_array_equal(got[[0, 2, 3, 7, 8, 9, 10, 11]],
                                  np.array([0, 1, -1, 1, 1, -1, tiny, 1e-45], dtype=np.float32))
    assert np.signbit(got[1]) and got[1] == 0
    assert np.isnan(got[4])
    np.testing.assert_array_equal(got[5:7], correctly_rounded(x[5:7]))


@pytest.mark.parametrize('mode', [None, 'quick'])
def test_every_mode_computes_the_same_float32_bits_as_numpy(mode):
    x = pt.matrix('x', dtype='float32')
    b = pt.vector('b', dtype='float32')
    compiled = mode is None
    if compiled:
        expr = rational_tanh(x + b)
    else:
        expr, = replace_libm_tanh([pt.tanh(x + b)], flat=False)
        mode = compiling.quick_mode()
    fn = pytensor.function([x, b], expr, mode=mode)
    values = samples()[:60_000].reshape(-1, 100)
    values[0, :3] = np.nan, np.inf, -np.inf
    bias = np.linspace(-1, 1, 100, dtype=np.float32)
    np.testing.assert_array_equal(fn(values, bias), numpy_rational_tanh(values + bias))


def count_tanh(fn):
    from pytensor.scalar import basic as scalar
    from pytensor.scalar.basic import Composite

    def has_tanh(op):
        if isinstance(op, scalar.Tanh):
            return True
        return isinstance(op, Composite) and any(has_tanh(n.op) for n in op.fgraph.apply_nodes)
    return sum(has_tanh(getattr(node.op, 'scalar_op', None)) for node in fn.maker.fgraph.apply_nodes)


def test_float32_and_float64_tanh_are_replaced_float16_is_not():
    x16 = pt.vector('x16', dtype='float16')
    outs = [pt.tanh(x16).sum(), x16 * 2]
    assert replace_libm_tanh(outs) == outs  # nothing to do: the same expressions
    x32, x64 = pt.vector('x32', dtype='float32'), pt.vector('x64', dtype='float64')
    new = replace_libm_tanh([pt.tanh(x32).sum(), pt.tanh(x64).sum(), pt.tanh(x16).sum()])
    fn = pytensor.function([x32, x64, x16], new, mode=compiling.quick_mode())
    assert count_tanh(fn) == 1  # the float16 one
    assert [o.dtype for o in fn.maker.fgraph.outputs] == ['float32', 'float64', 'float16']


def float64_samples():
    rng = np.random.default_rng(8)
    size = 10 ** rng.uniform(-12, np.log10(25), 1_000_000)
    return np.concatenate([size, -size, np.linspace(0.6, 0.65, 50_001),
                           rng.uniform(-3, 3, 200_000)])


def ulps(got, x):
    """Errors of float64 ``got`` in ulp of tanh(x), against the x87 ``long double`` tanh."""
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip('no extended precision long double on this platform')
    exact = np.tanh(x.astype(np.longdouble))
    return np.abs((got.astype(np.longdouble) - exact) / np.spacing(np.abs(exact).astype(np.float64)))


def test_exp_tanh_is_within_1_35_ulp_and_mostly_correctly_rounded():
    x = float64_samples()
    err = ulps(numpy_exp_tanh(x), x)
    assert err.max() < 1.35
    assert np.mean(err > 0.5) < 0.02


@pytest.mark.compiled
def test_compiled_exp_tanh_is_more_accurate_than_the_libm_tanh_it_replaces():
    x = float64_samples()
    v = pt.vector('v', dtype='float64')
    libm, ours = pytensor.function([v], [pt.tanh(v), exp_tanh(v)])(x)
    err_libm, err_ours = ulps(libm, x), ulps(ours, x)
    assert err_ours.max() < 1.35 and np.mean(err_ours > 0.5) < 0.02
    assert err_ours.max() < err_libm.max() and np.mean(err_ours > 0.5) < np.mean(err_libm > 0.5)
    # fast-math code may round differently from NumPy, in the last bits
    assert np.max(np.abs(ours - numpy_exp_tanh(x)) / np.spacing(np.abs(ours))) <= 2


@pytest.mark.parametrize('floatx', ['float64', 'float32'])
def test_exp_tanh_keeps_float64_coefficients_whatever_floatx(floatx):
    x = np.linspace(-3, 3, 20_001)
    with pytensor.config.change_flags(floatX=floatx):
        v = pt.dvector('v')
        got = pytensor.function([v], exp_tanh(v, flat=False), mode=compiling.quick_mode())(x)
    np.testing.assert_array_equal(got, numpy_exp_tanh(x))


def test_exp_tanh_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 400.0, -800.0, 19.1, 5e-324, -1e-300,
                  0.625, np.nextafter(0.625, 0)])
    got = numpy_exp_tanh(x)
    np.testing.assert_array_equal(got[[0, 2, 3, 5, 6, 7, 8, 9]], [0, 1, -1, 1, -1, 1, 5e-324, -1e-300])
    assert np.signbit(got[1]) and got[1] == 0
    assert np.isnan(got[4])
    assert ulps(got[10:], x[10:]).max() < 1
    v = pt.dvector('v')
    fn = pytensor.function([v], replace_libm_tanh([pt.tanh(v)], flat=False)[0], mode=compiling.quick_mode())
    with np.errstate(all='raise'):  # the quick mode warns of nothing (exp overflowing to inf)
        np.testing.assert_array_equal(fn(x), got)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_a_random_draw_stays_one_draw_with_its_generator_update():
    from pytensor.tensor.random.op import RandomVariable

    rng = pytensor.shared(np.random.default_rng(0))
    scale = pytensor.shared(np.float32(0.3))
    # a draw downstream of a tanh is cloned by the replacement
    draw = pt.random.normal(0, pt.tanh(scale), size=(5,), rng=rng, dtype='float32')
    value, next_rng = pt.tanh(draw).sum(), draw.owner.outputs[0]

    def draws(outputs):
        fn = pytensor.function([], outputs[0], updates=[(rng, outputs[1])],
                               mode=compiling.quick_mode())
        return sum(isinstance(n.op, RandomVariable) for n in fn.maker.fgraph.apply_nodes)
    assert draws([value, next_rng]) == 1
    assert draws(replace_libm_tanh([value, next_rng])) == 1
    # rewritten apart, the value's draw and the update's draw would be two
    assert draws(replace_libm_tanh([value]) + [next_rng]) == 2


def test_jax_and_pytorch_modes_keep_their_own_tanh():
    assert calls_libm_tanh(None) and calls_libm_tanh('FAST_COMPILE')
    assert not calls_libm_tanh('JAX')


def mlp(dtype='float32'):
    rng = np.random.default_rng(11)
    X = rng.standard_normal((32, 6)).astype(dtype)
    y = rng.standard_normal((32, 1)).astype(dtype)
    W1 = pytensor.shared(rng.standard_normal((6, 8)).astype(dtype) * 0.5, name='W1')
    b1 = pytensor.shared(np.zeros(8, dtype), name='b1')
    W2 = pytensor.shared(rng.standard_normal((8, 1)).astype(dtype) * 0.5, name='W2')
    xb, yb = pt.matrix('xb', dtype=dtype), pt.matrix('yb', dtype=dtype)
    loss = pt.sqr(pt.tanh(pt.dot(xb, W1) + b1).dot(W2) - yb).mean()
    return loss, [W1, b1, W2], [xb, yb], [X, y]


def numpy_sgd(params, X, y, lr, steps, tanh):
    W1, b1, W2 = params
    for _ in range(steps):
        h = tanh(X @ W1 + b1)
        d = (2 * (h @ W2 - y) / y.size).astype(X.dtype)
        dh = (d @ W2.T) * (1 - h * h)
        W1, b1, W2 = W1 - lr * (X.T @ dh), b1 - lr * dh.sum(0), W2 - lr * (h.T @ d)
    return W1, b1, W2


@pytest.mark.compiled
@pytest.mark.parametrize('dtype, rtol, atol', [('float32', 2e-4, 2e-5), ('float64', 1e-12, 1e-14)])
@pytest.mark.parametrize('fast', [True, False])
def test_an_mlp_trains_the_same_with_either_tanh(fast, dtype, rtol, atol):
    loss, params, inputs, data = mlp(dtype)
    start = [p.get_value() for p in params]
    lr = np.dtype(dtype).type(0.1)
    # the replacement is made for compiled modes only (see the FAST_COMPILE test below)
    opt = downhill.build('sgd', loss, params=params, inputs=inputs, fast_tanh=fast,
                         quick_start=False, mode='NUMBA')
    first = None
    for tm, _ in opt.iterate([data], validate_every=10**9, patience=10**9, max_updates=40,
                             learning_rate=lr):
        first = tm['loss'] if first is None else first
    assert tm['loss'] < 0.7 * first
    want = numpy_sgd(start, *data, lr, 40, np.tanh)
    for p, w in zip(params, want):
        np.testing.assert_allclose(p.get_value(), w, rtol=rtol, atol=atol)


def test_fast_tanh_must_be_a_flag():
    loss, params, inputs, _ = mlp()
    with pytest.raises(TypeError, match='fast_tanh must be True or False'):
        downhill.build('sgd', loss, inputs=inputs, fast_tanh='yes')


def tanh_nodes(exprs):
    from pytensor.scalar import basic as scalar
    return sum(isinstance(getattr(n.op, 'scalar_op', None), scalar.Tanh)
               for n in downhill._compat.applys_between(downhill._compat.graph_inputs(exprs), exprs))


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_compiled_modes_get_no_tanh_unless_asked_python_linker_modes_keep_theirs(dtype):
    loss, params, inputs, data = mlp(dtype)
    for mode, fast, left in (('NUMBA', True, 0), ('NUMBA', False, 1), ('FAST_COMPILE', True, 1)):
        opt = downhill.build('sgd', loss, params=params, inputs=inputs, fast_tanh=fast,
                             quick_start=False, mode=mode)
        _, graphs = compiling.prepare(opt._mode, opt._fast_tanh, [loss])
        assert tanh_nodes(graphs) == left, (mode, fast)
    # and the step compiled in FAST_COMPILE runs NumPy's tanh, not the replacement's dozen ops
    opt = downhill.build('sgd', loss, params=params, inputs=inputs, fast_tanh=True,
                         quick_start=False, mode='FAST_COMPILE')
    assert count_tanh(opt._compiled_step()) >= 1


def test_full_batch_methods_train_through_tanh():
    loss, params, inputs, data = mlp()
    for algo in ('lbfgs', 'newton-cg'):
        opt = downhill.build(algo, loss, params=params, inputs=inputs, mode='FAST_COMPILE')
        first = None
        for tm, _ in opt.iterate([data], max_updates=15):
            first = tm['loss'] if first is None else first
        assert tm['loss'] < 0.5 * first, algo


@pytest.mark.compiled
def test_full_batch_methods_replace_tanh_in_compiled_modes():
    loss, params, inputs, data = mlp()
    opt = downhill.build('lbfgs', loss, params=params, inputs=inputs, mode='NUMBA')
    opt.minimize([data], max_updates=2)
    objective = opt._compiled_step()
    assert count_tanh(objective._fg) == 0  # nor inside a fused Composite
