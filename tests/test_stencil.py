"""downhill.stencil: elementwise work over shifted slices, fused into one loop."""

from typing import NamedTuple

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
from test_rewrite_properties import bounds, within

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


class Step(NamedTuple):
    """A compiled step with no inputs, returning its loss."""

    fn: object
    #: The shared variables it updates.
    state: tuple
    #: The loss, then the new values of ``state``, as written (before PyTensor's rewrites).
    exprs: list


def adam_step(mode, x0, loss_of=rosenbrock):
    """A raw Adam step on ``loss_of(x)`` (the benchmark's update formulas) compiled in ``mode``."""
    x = pytensor.shared(x0.copy(), name='x')
    m = pytensor.shared(np.zeros_like(x0), name='m')
    v = pytensor.shared(np.zeros_like(x0), name='v')
    loss = loss_of(x)
    g = pytensor.grad(loss, x)
    m_new, v_new = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g ** 2
    x_new = x - 1e-3 * m_new / (pt.sqrt(v_new) + 1e-8)
    fn = pytensor.function([], loss, updates=[(m, m_new), (v, v_new), (x, x_new)], mode=mode)
    return Step(fn, (m, v, x), [loss, m_new, v_new, x_new])


def same_steps(fused, plain, steps):
    """Run both steps ``steps`` times, each time from the fused step's state; their last loss.

    Each time, the losses and the new states agree within the bounds
    derived from the arithmetic (:func:`test_rewrite_properties.evaluate`:
    the sums added up in any order, fast-math's contractions and
    reciprocals): either is within its bound of the exact value. A
    comparison after several steps from separate states would mix in how the
    steps amplify a difference.
    """
    for _ in range(steps):
        for q, p in zip(plain.state, fused.state):
            q.set_value(p.get_value())
        refs = bounds(fused.exprs, {})  # from the state both start from
        got = [fused.fn()] + [p.get_value() for p in fused.state]
        want = [plain.fn()] + [q.get_value() for q in plain.state]
        for g, w, (_, bound), var in zip(got, want, refs, ['loss', *fused.state]):
            within(g, w, bound['fused'] + bound['stock'], f'{var}')
    return float(got[0])


@needs_numba_fusion
def test_rosenbrock_adam_step_is_one_loop_with_the_same_numbers():
    x0 = np.random.default_rng(0).uniform(-2, 2, 2 * BLOCK + 452)  # the loop runs in blocks
    plain = adam_step('NUMBA', x0)
    fused = adam_step(mode_with_fusion('NUMBA'), x0)
    assert StencilLoop in ops(fused.fn) and IncSubtensor not in ops(fused.fn)
    assert StencilLoop not in ops(plain.fn)
    loop = next(n for n in fused.fn.maker.fgraph.apply_nodes if isinstance(n.op, StencilLoop))
    assert loop.op.inplace and len(loop.op.incs) >= 2 and len(loop.op.sums) == 1
    # Adam's update reads the gradient element by element inside the loop: no gradient array
    assert loop.op.update is not None and Alloc not in ops(fused.fn)
    # a sum of 33,219 terms in another order; fast-math may contract differently
    last = same_steps(fused, plain, 20)
    assert last < 0.99 * float(rosenbrock(pt.as_tensor(x0)).eval())


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
    # the sums in another order, fast-math's contractions: within the bounds derived
    # from the arithmetic (test_rewrite_properties.evaluate)
    refs = bounds(outs, dict(zip([x, y, scale], args)))
    for got, want, (_, bound) in zip(fused(*args), plain(*args), refs):
        within(got, want, bound['fused'] + bound['stock'], 'the fused loop')
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
    # Each term is a float32 difference and square (within gamma32_3 d^2), added up in
    # float64 (within gamma_n of the sum: any order) and rounded to float32 (half an
    # ulp): the float64 sum of the exact squares is within that (and its own gamma_n).
    u32, u64 = 2.0 ** -24, 2.0 ** -53
    total = (d ** 2).sum()
    bound = (3 * u32 / (1 - 3 * u32) + 2 * len(d) * u64 + u32) * total
    assert abs(float(got) - total) <= bound
    want, magnitude = np.zeros(10_000), np.zeros(10_000)
    want[1:] += 2 * d
    want[:-1] -= 2 * d
    magnitude[1:] += 2 * abs(d)
    magnitude[:-1] += 2 * abs(d)
    # each element adds up at most two terms 2 d (a float32 difference, product and
    # addition: 3 roundings of the terms' absolute sum)
    assert np.all(abs(grad - want) <= 3 * u32 / (1 - 3 * u32) * magnitude)


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
    plain = adam_step('NUMBA', x0, loss_of)
    fused = adam_step(mode_with_fusion('NUMBA'), x0, loss_of)
    loop = next(n.op for n in fused.fn.maker.fgraph.apply_nodes if isinstance(n.op, StencilLoop))
    assert loop.update is not None
    assert loop.update.lag == (0 if loss_of is second_differences else 1)
    same_steps(fused, plain, 10)


def short_slices(x):  # more elements after the loop's last increment than the loop has
    return ((x[1:-3] - x[:-4]) ** 2).sum()


@needs_numba_fusion
@pytest.mark.parametrize('size', [6, 2 * BLOCK + 52])
def test_the_folded_update_after_the_last_increment(size):
    x0 = np.random.default_rng(5).uniform(-2, 2, size)
    plain = adam_step('NUMBA', x0, short_slices)
    fused = adam_step(mode_with_fusion('NUMBA'), x0, short_slices)
    loop = next(n.op for n in fused.fn.maker.fgraph.apply_nodes if isinstance(n.op, StencilLoop))
    assert loop.update is not None
    same_steps(fused, plain, 5)


def test_the_folded_update_in_python():
    x0 = np.random.default_rng(4).uniform(-2, 2, 30)
    plain_mode = Mode(linker='py', optimizer='fast_run')
    plain = adam_step(plain_mode, x0, second_differences)
    fused = adam_step(plain_mode.including(TAG), x0, second_differences)
    loop = [n.op for n in fused.fn.maker.fgraph.apply_nodes if isinstance(n.op, StencilLoop)]
    assert loop and loop[0].update is not None
    same_steps(fused, plain, 5)


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
    # x - 1e-4 g from the same g, here and in the loop: a product and a subtraction (or
    # a fused multiply-add), each within 2 roundings of |x| + 1e-4 |g| of the exact value
    eps = 2.0 ** -53
    bound = 2 * eps / (1 - 2 * eps) * (abs(start) + 1e-4 * abs(grad))
    assert np.all(abs(x.get_value() - (start - 1e-4 * grad)) <= 2 * bound)


@needs_numba_fusion
def test_a_gradient_monitor_fused_with_the_update():
    # PyTensor fuses sqr(g) (summed: the monitor) and the update into one
    # two-output Composite; folding it into the loop changes what the sum reads
    def step(mode):
        x = pytensor.shared(np.linspace(-1, 1, 50), name='x')
        loss = rosenbrock(x)
        g = pytensor.grad(loss, x)
        exprs = [loss, (g ** 2).sum(), x - 1e-4 * g]
        with pytensor.config.change_flags(on_opt_error='raise'):
            fn = pytensor.function([], exprs[:2], updates=[(x, exprs[2])], mode=mode)
        return x, exprs, fn
    x_fused, exprs, fused = step(mode_with_fusion('NUMBA'))
    x_plain, _, plain = step(get_mode('NUMBA').excluding(TAG))
    assert StencilLoop in ops(fused)
    for _ in range(5):  # each step from the same x, within the bounds derived from the arithmetic
        x_plain.set_value(x_fused.get_value())
        refs = bounds(exprs, {})
        got, want = fused() + [x_fused.get_value()], plain() + [x_plain.get_value()]
        for a, b, (_, bound) in zip(got, want, refs):
            within(a, b, bound['fused'] + bound['stock'], 'the step with a gradient monitor')
