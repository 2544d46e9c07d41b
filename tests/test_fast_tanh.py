"""downhill.fast_tanh: the float32 tanh downhill compiles instead of PyTensor's."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import compile as compiling
from downhill.fast_tanh import (calls_libm_tanh, numpy_rational_tanh, rational_tanh,
                                replace_float32_tanh)


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
def test_every_mode_computes_the_same_bits_as_numpy(mode):
    x = pt.matrix('x', dtype='float32')
    b = pt.vector('b', dtype='float32')
    compiled = mode is None
    if compiled:
        expr = rational_tanh(x + b)
    else:
        expr, = replace_float32_tanh([pt.tanh(x + b)], flat=False)
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


def test_only_float32_tanh_is_replaced():
    x64 = pt.vector('x64')
    assert x64.dtype == 'float64'
    outs = [pt.tanh(x64).sum(), x64 * 2]
    assert replace_float32_tanh(outs) == outs  # nothing to do: the same expressions
    x32 = pt.vector('x32', dtype='float32')
    new = replace_float32_tanh([pt.tanh(x32).sum(), pt.tanh(x64).sum()])
    fn = pytensor.function([x32, x64], new, mode=compiling.quick_mode())
    assert count_tanh(fn) == 1  # the float64 one
    assert fn.maker.fgraph.outputs[0].dtype == 'float32'


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
    assert draws(replace_float32_tanh([value, next_rng])) == 1
    # rewritten apart, the value's draw and the update's draw would be two
    assert draws(replace_float32_tanh([value]) + [next_rng]) == 2


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
    W1, b1, W2 = [p.astype(np.float32) for p in params]
    for _ in range(steps):
        h = tanh(X @ W1 + b1)
        d = (2 * (h @ W2 - y) / y.size).astype(np.float32)
        dh = (d @ W2.T) * (1 - h * h)
        W1, b1, W2 = W1 - lr * (X.T @ dh), b1 - lr * dh.sum(0), W2 - lr * (h.T @ d)
    return W1, b1, W2


@pytest.mark.parametrize('fast', [True, False])
def test_an_mlp_trains_the_same_with_either_tanh(fast):
    loss, params, inputs, data = mlp()
    start = [p.get_value() for p in params]
    opt = downhill.build('sgd', loss, params=params, inputs=inputs, fast_tanh=fast,
                         quick_start=False, mode='FAST_COMPILE')
    first = None
    for tm, _ in opt.iterate([data], validate_every=10**9, patience=10**9, max_updates=40,
                             learning_rate=np.float32(0.1)):
        first = tm['loss'] if first is None else first
    assert tm['loss'] < 0.7 * first
    want = numpy_sgd(start, *data, np.float32(0.1), 40, np.tanh)
    for p, w in zip(params, want):
        np.testing.assert_allclose(p.get_value(), w, rtol=2e-4, atol=2e-5)


def test_fast_tanh_must_be_a_flag():
    loss, params, inputs, _ = mlp()
    with pytest.raises(TypeError, match='fast_tanh must be True or False'):
        downhill.build('sgd', loss, inputs=inputs, fast_tanh='yes')


def test_the_compiled_step_has_no_float32_tanh_left_unless_asked():
    loss, params, inputs, data = mlp()
    for fast, left in ((True, 0), (False, 1)):
        opt = downhill.build('sgd', loss, params=params, inputs=inputs, fast_tanh=fast,
                             quick_start=False, mode='FAST_COMPILE')
        assert count_tanh(opt._compiled_step()) == left


@pytest.mark.parametrize('algo', ['lbfgs', 'newton-cg'])
def test_full_batch_methods_replace_tanh_too(algo):
    loss, params, inputs, data = mlp()
    opt = downhill.build(algo, loss, params=params, inputs=inputs, mode='FAST_COMPILE')
    first = None
    for tm, _ in opt.iterate([data], max_updates=15):
        first = tm['loss'] if first is None else first
    assert tm['loss'] < 0.5 * first
    objective = opt._compiled_step()
    for fn in (objective._fg, objective._hv):
        if fn is not None:
            assert count_tanh(fn) == 0
            assert any('Clip' in str(n.op) for n in fn.maker.fgraph.apply_nodes)  # the rational
