"""downhill.stencil: elementwise work over shifted slices, fused into one loop."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode, get_mode
from pytensor.tensor.basic import Alloc
from pytensor.tensor.subtensor import IncSubtensor

import downhill
from downhill.fusion import mode_with_fusion
from downhill.stencil import BLOCK, TAG, StencilLoop

FUSES = mode_with_fusion('NUMBA') != 'NUMBA'  # this PyTensor's Numba backend compiles the loop
needs_numba_fusion = pytest.mark.skipif(not FUSES, reason="this PyTensor's Numba backend has no cache keys")


def ops(fn):
    return [type(node.op) for node in fn.maker.fgraph.apply_nodes]


def rosenbrock(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def second_differences(x):
    return ((x[2:] - 2 * x[1:-1] + x[:-2]) ** 2).sum()


def shifted_only(x):  # no term reads x[0]: its gradient is never incremented
    return ((x[2:] - 0.5 * x[1:-1]) ** 2).sum()


def adam_step(mode, x0, loss_of=rosenbrock):
    """A raw Adam step on ``loss_of(x)`` (the benchmark's update formulas) compiled in ``mode``."""
    x = pytensor.shared(x0.copy(), name='x')
    m = pytensor.shared(np.zeros_like(x0))
    v = pytensor.shared(np.zeros_like(x0))
    loss = loss_of(x)
    g = pytensor.grad(loss, x)
    m_new, v_new = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g ** 2
    fn = pytensor.function([], loss, updates=[(m, m_new), (v, v_new),
                                              (x, x - 1e-3 * m_new / (pt.sqrt(v_new) + 1e-8))],
                           mode=mode)
    return fn, x


@needs_numba_fusion
def test_rosenbrock_adam_step_is_one_loop_with_the_same_numbers():
    x0 = np.random.default_rng(0).uniform(-2, 2, 2 * BLOCK + 452)  # the loop runs in blocks
    plain, x_plain = adam_step('NUMBA', x0)
    fused, x_fused = adam_step(mode_with_fusion('NUMBA'), x0)
    assert StencilLoop in ops(fused) and IncSubtensor not in ops(fused)
    assert StencilLoop not in ops(plain)
    loop = next(n for n in fused.maker.fgraph.apply_nodes if isinstance(n.op, StencilLoop))
    assert loop.op.inplace and len(loop.op.incs) >= 2 and len(loop.op.sums) == 1
    # Adam's update reads the gradient element by element inside the loop: no gradient array
    assert loop.op.update is not None and Alloc not in ops(fused)
    for _ in range(20):
        a, b = plain(), fused()
        # a sum of 1000 terms in another order; fast-math may contract differently (last bit)
        assert abs(a - b) <= 1e-13 * abs(a)
        np.testing.assert_allclose(x_fused.get_value(), x_plain.get_value(), rtol=1e-13, atol=1e-15)
    assert a < 0.99 * float(rosenbrock(pt.as_tensor(x0)).eval())


def walk_loss(x, y, scale):
    """A Gaussian random walk's negative log density, plus a second vector's data term."""
    return (((x[1:] - x[:-1]) / scale) ** 2).sum() + (abs(x[2:] - y[:-2]) * 0.5).sum()


@pytest.mark.parametrize('linker', ['numba', 'py'])
def test_two_vectors_a_scalar_two_sums_and_two_gradients(linker):
    if linker == 'numba' and not FUSES:
        pytest.skip("this PyTensor's Numba backend has no cache keys")
    rng = np.random.default_rng(1)
    x, y = pt.dvector('x'), pt.dvector('y')
    scale = pt.dscalar('scale')
    loss = walk_loss(x, y, scale)
    outs = [loss] + pytensor.grad(loss, [x, y])
    if linker == 'numba':
        fused_mode, plain_mode = mode_with_fusion('NUMBA'), 'NUMBA'
    else:  # the Op's own perform(), the reference the Numba loop is checked against
        plain_mode = Mode(linker='py', optimizer='fast_run')
        fused_mode = plain_mode.including(TAG)
    fused = pytensor.function([x, y, scale], outs, mode=fused_mode)
    plain = pytensor.function([x, y, scale], outs, mode=plain_mode)
    assert StencilLoop in ops(fused)
    args = rng.standard_normal(50), rng.standard_normal(50), 0.7
    for got, want in zip(fused(*args), plain(*args)):
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)
    # lengths that differ are an error, as in PyTensor's own elementwise ops
    with pytest.raises(ValueError, match='length|shape'):
        fused(args[0], args[1][:-1], 0.7)


@needs_numba_fusion
def test_float32_sum_accumulates_as_pytensor_does():
    x = pt.fvector('x')
    loss = ((x[1:] - x[:-1]) ** 2).sum()
    fused = pytensor.function([x], [loss, pytensor.grad(loss, x)], mode=mode_with_fusion('NUMBA'))
    assert StencilLoop in ops(fused)
    value = np.random.default_rng(2).standard_normal(10_000).astype(np.float32)
    got, grad = fused(value)
    assert got.dtype == np.float32 and grad.dtype == np.float32
    d = np.diff(value.astype(np.float64))
    assert abs(float(got) - (d ** 2).sum()) <= 1e-6 * (d ** 2).sum()
    want = np.zeros(10_000)
    want[1:] += 2 * d
    want[:-1] -= 2 * d
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-5)


@needs_numba_fusion
def test_terms_used_elsewhere_are_not_fused():
    x = pt.dvector('x')
    terms = (x[1:] - x[:-1]) ** 2
    fn = pytensor.function([x], [terms.sum(), terms], mode=mode_with_fusion('NUMBA'))
    assert StencilLoop not in ops(fn)
    value = np.arange(5.0) ** 2
    total, each = fn(value)
    np.testing.assert_allclose(each, np.diff(value) ** 2)
    assert total == each.sum()


def test_other_modes_are_left_alone():
    for mode in ('FAST_COMPILE', Mode(linker='py', optimizer='fast_run')):
        assert mode_with_fusion(mode) is mode
    opted_out = get_mode('NUMBA').excluding(TAG)
    x = pt.dvector('x')
    if FUSES:
        fn = pytensor.function([x], pytensor.grad(rosenbrock(x), x), mode=mode_with_fusion(opted_out))
        assert StencilLoop not in ops(fn)


@needs_numba_fusion
def test_downhill_compiles_the_fused_step():
    x = pytensor.shared(np.tile([-1.1, 0.0], 500), name='x')
    opt = downhill.build('adam', rosenbrock(x), mode='NUMBA', quick_start=False)
    step = opt._compiled_step()
    assert StencilLoop in ops(getattr(step, 'function', step))  # the lean caller keeps its Function
    first = float(opt.evaluate(None)['loss'])
    for _ in zip(range(30), opt.iterate(None, learning_rate=1e-3)):
        pass
    assert float(opt.evaluate(None)['loss']) < 0.9 * first


@needs_numba_fusion
def test_an_increment_into_memory_the_loop_reads_is_not_made_in_place():
    # PyTensor adds into c in place after computing every term from c; a loop
    # writing c[i + 1] would read the new value at the next step
    x = pt.dvector('x')
    c = pt.cumsum(x)
    out = pt.inc_subtensor(c[1:], c[:-1] * 2)
    fused = pytensor.function([x], out, mode=mode_with_fusion('NUMBA'))
    loop = [n.op for n in fused.maker.fgraph.apply_nodes if isinstance(n.op, StencilLoop)]
    assert loop and not loop[0].inplace
    value = np.arange(1.0, 6.0)
    want = np.cumsum(value)
    want[1:] += 2 * np.cumsum(value)[:-1]
    np.testing.assert_array_equal(fused(value), want)


@needs_numba_fusion
@pytest.mark.parametrize('loss_of', [second_differences, shifted_only])
def test_the_folded_update_waits_until_an_element_is_complete(loss_of):
    x0 = np.random.default_rng(3).uniform(-2, 2, 2 * BLOCK + 52)
    plain, x_plain = adam_step('NUMBA', x0, loss_of)
    fused, x_fused = adam_step(mode_with_fusion('NUMBA'), x0, loss_of)
    loop = next(n.op for n in fused.maker.fgraph.apply_nodes if isinstance(n.op, StencilLoop))
    assert loop.update is not None
    assert loop.update.lag == (0 if loss_of is second_differences else 1)
    for _ in range(10):
        a, b = plain(), fused()
        assert abs(a - b) <= 1e-13 * abs(a)
        np.testing.assert_allclose(x_fused.get_value(), x_plain.get_value(), rtol=1e-13, atol=1e-15)


def short_slices(x):  # more elements after the loop's last increment than the loop has
    return ((x[1:-3] - x[:-4]) ** 2).sum()


@needs_numba_fusion
@pytest.mark.parametrize('size', [6, 2 * BLOCK + 52])
def test_the_folded_update_after_the_last_increment(size):
    x0 = np.random.default_rng(5).uniform(-2, 2, size)
    plain, x_plain = adam_step('NUMBA', x0, short_slices)
    fused, x_fused = adam_step(mode_with_fusion('NUMBA'), x0, short_slices)
    loop = next(n.op for n in fused.maker.fgraph.apply_nodes if isinstance(n.op, StencilLoop))
    assert loop.update is not None
    for _ in range(5):
        a, b = plain(), fused()
        assert abs(a - b) <= 1e-13 * abs(a)
        np.testing.assert_allclose(x_fused.get_value(), x_plain.get_value(), rtol=1e-13, atol=1e-15)


def test_the_folded_update_in_python():
    x0 = np.random.default_rng(4).uniform(-2, 2, 30)
    plain_mode = Mode(linker='py', optimizer='fast_run')
    plain, x_plain = adam_step(plain_mode, x0, second_differences)
    fused, x_fused = adam_step(plain_mode.including(TAG), x0, second_differences)
    loop = [n.op for n in fused.maker.fgraph.apply_nodes if isinstance(n.op, StencilLoop)]
    assert loop and loop[0].update is not None
    for _ in range(5):
        a, b = plain(), fused()
        assert abs(a - b) <= 1e-13 * abs(a)
        np.testing.assert_allclose(x_fused.get_value(), x_plain.get_value(), rtol=1e-13, atol=1e-15)


@needs_numba_fusion
def test_a_gradient_also_returned_is_stored():
    x = pytensor.shared(np.linspace(-1, 1, 20), name='x')
    loss = rosenbrock(x)
    g = pytensor.grad(loss, x)
    fn = pytensor.function([], [loss, g], updates=[(x, x - 1e-4 * g)], mode=mode_with_fusion('NUMBA'))
    loop = next(n.op for n in fn.maker.fgraph.apply_nodes if isinstance(n.op, StencilLoop))
    assert loop.update is None
    start = x.get_value()
    value, grad = fn()
    np.testing.assert_allclose(x.get_value(), start - 1e-4 * grad, rtol=1e-15)


@needs_numba_fusion
def test_a_gradient_monitor_fused_with_the_update():
    # PyTensor fuses sqr(g) (summed: the monitor) and the update into one
    # two-output Composite; folding it into the loop changes what the sum reads
    def step(mode):
        x = pytensor.shared(np.linspace(-1, 1, 50), name='x')
        loss = rosenbrock(x)
        g = pytensor.grad(loss, x)
        with pytensor.config.change_flags(on_opt_error='raise'):
            fn = pytensor.function([], [loss, (g ** 2).sum()], updates=[(x, x - 1e-4 * g)], mode=mode)
        return fn, x
    fused, x_fused = step(mode_with_fusion('NUMBA'))
    plain, x_plain = step(get_mode('NUMBA').excluding(TAG))
    assert StencilLoop in ops(fused)
    for _ in range(5):
        np.testing.assert_allclose(fused(), plain(), rtol=1e-13)
        np.testing.assert_allclose(x_fused.get_value(), x_plain.get_value(), rtol=1e-13, atol=1e-15)
