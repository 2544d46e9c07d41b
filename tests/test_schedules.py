"""Learning-rate and momentum schedules, the update counter, reduce_on_plateau,
and reuse of the compiled step."""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import schedules


def values_of(schedule, ts):
    """The symbolic value at each t, compiled with the schedule's numbers as constants."""
    t = pt.dscalar('t')
    numbers = {k: pt.constant(np.float64(v)) for k, v in schedule.numbers().items()}
    f = pytensor.function([t], schedule.symbolic(t, numbers), on_unused_input='ignore')
    return np.array([float(f(k)) for k in ts])


TS = np.arange(0, 260)


def cosine_ref(t, period, warmup=0, final=0.0, restart=False):
    if t < warmup:
        return (t + 1) / warmup
    since = t - warmup
    p = (since % period) / period if restart else min(since, period) / period
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p))


def one_cycle_ref(t, total, warmup=0.3, start=0.04, end=4e-6):
    up = warmup * total
    if t < up:
        return start + (1 - start) * (1 - math.cos(math.pi * t / up)) / 2
    return 1 + (end - 1) * (1 - math.cos(math.pi * min(1, (t - up) / (total - up)))) / 2


CASES = {
    'constant': (schedules.constant(0.3), lambda t: 0.3),
    'step': (schedules.step(every=10, factor=0.3), lambda t: 0.3 ** (t // 10)),
    'exponential': (schedules.exponential(halflife=20), lambda t: 2 ** (-t / 20)),
    'linear_warmup': (schedules.linear_warmup(8), lambda t: min(1, (t + 1) / 8)),
    'cosine': (schedules.cosine(100, warmup=10, final=0.1), lambda t: cosine_ref(t, 100, 10, 0.1)),
    'cosine-nowarmup': (schedules.cosine(50), lambda t: cosine_ref(t, 50)),
    'cosine-restart': (schedules.cosine(40, warmup=5, restart=True),
                       lambda t: cosine_ref(t, 40, 5, 0, True)),
    'one_cycle': (schedules.one_cycle(200), lambda t: one_cycle_ref(t, 200)),
    'one_cycle-momentum': (schedules.one_cycle(100, warmup=0.5, start=1.2, end=1.2),
                           lambda t: one_cycle_ref(t, 100, 0.5, 1.2, 1.2)),
    'product': (0.5 * schedules.linear_warmup(10) * schedules.exponential(30),
                lambda t: 0.5 * min(1, (t + 1) / 10) * 2 ** (-t / 30)),
}


@pytest.mark.parametrize('name', list(CASES))
def test_formula(name):
    schedule, formula = CASES[name]
    want = np.array([formula(t) for t in TS])
    np.testing.assert_allclose(values_of(schedule, TS), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([schedule.at(t) for t in TS], want, rtol=1e-12, atol=1e-15)


def test_landmarks():
    cos = schedules.cosine(100, warmup=10)
    assert cos.at(0) == pytest.approx(0.1) and cos.at(9) == 1 and cos.at(10) == 1
    assert cos.at(60) == pytest.approx(0.5) and cos.at(110) == pytest.approx(0) and cos.at(500) < 1e-12
    cycle = schedules.one_cycle(1000)
    assert cycle.at(0) == pytest.approx(0.04) and cycle.at(300) == 1
    assert cycle.at(1000) == pytest.approx(4e-6) and cycle.at(5000) == pytest.approx(4e-6)
    assert schedules.linear_warmup(4).at(0) == 0.25 and schedules.linear_warmup(4).at(3) == 1


def test_repr():
    assert repr(schedules.cosine(10, warmup=2)) == 'cosine(period=10, warmup=2, final=0, restart=False)'
    assert repr(0.1 * schedules.exponential(5)) == 'constant(value=0.1) * exponential(halflife=5)'


def test_errors():
    with pytest.raises(ValueError, match='every must be > 0'):
        schedules.step(0)
    with pytest.raises(ValueError, match='halflife must be > 0'):
        schedules.exponential(-1)
    with pytest.raises(ValueError, match='warmup must be between 0 and 1'):
        schedules.one_cycle(100, warmup=2)
    with pytest.raises(TypeError, match='period must be a number'):
        schedules.cosine('long')
    with pytest.raises(TypeError):
        schedules.exponential(3) * 'a'
    x = pytensor.shared(np.zeros(2), name='x')
    opt = downhill.build('sgd', pt.sqr(x - 1).sum())
    with pytest.raises(TypeError, match='learning_rate must be a number'):
        opt.get_updates(learning_rate='fast')
    with pytest.raises(ValueError, match='momentum must be >= 0'):
        opt.get_updates(momentum=-0.5)


# ----------------------------------------------------------------------------
# in an optimizer


def quadratic(dtype='float64'):
    target = np.array([1.0, -2.0, 3.0], dtype)
    x = pytensor.shared(np.zeros(3, dtype), name='x')
    return x, pt.sqr(x - target).sum(), target


def sgd_reference(target, rates, momenta=None, n=50):
    """x <- x - lr_k g (with momentum: v <- mu_k v - lr_k g ; x <- x + v)."""
    x, v = np.zeros(3), np.zeros(3)
    path = []
    for k in range(n):
        s = rates[k] * 2 * (x - target)
        if momenta is None:
            x = x - s
        else:
            v = momenta[k] * v - s
            x = x + v
        path.append(x)
    return path


def test_sgd_follows_the_learning_rate_schedule():
    x, loss, target = quadratic()
    schedule = 0.2 * schedules.cosine(30, warmup=5)
    path = sgd_reference(target, [schedule.at(k) for k in range(50)])
    opt = downhill.build('sgd', loss)
    f = pytensor.function([], loss, updates=opt.get_updates(learning_rate=schedule))
    for k in range(50):
        assert opt.learning_rate.eval() == pytest.approx(schedule.at(k), rel=1e-12)
        f()
        np.testing.assert_allclose(x.get_value(), path[k], rtol=1e-6, atol=1e-12)
        assert opt.update_count.get_value() == k + 1
    # and through iterate(), which carries on counting from 50
    x.set_value(np.zeros(3))
    opt.reset_state()
    for k, _ in enumerate(opt.iterate(None, learning_rate=schedule, max_updates=50,
                                      validate_every=10 ** 6, patience=10 ** 6)):
        np.testing.assert_allclose(x.get_value(), path[k], rtol=1e-6, atol=1e-12)


def test_momentum_schedule():
    x, loss, target = quadratic()
    rate = schedules.step(every=10, factor=0.5) * 0.05
    mom = 0.9 * schedules.linear_warmup(20)
    path = sgd_reference(target, [rate.at(k) for k in range(50)], [mom.at(k) for k in range(50)])
    opt = downhill.build('sgd', loss)
    f = pytensor.function([], loss, updates=opt.get_updates(learning_rate=rate, momentum=mom))
    for k in range(50):
        f()
        np.testing.assert_allclose(x.get_value(), path[k], rtol=1e-6, atol=1e-12)
    assert opt.momentum.eval() == pytest.approx(0.9)


def test_counter_carries_over_and_resets():
    x, loss, target = quadratic()
    opt = downhill.build('adam', loss)
    rate = 0.1 * schedules.exponential(halflife=10)
    list(opt.iterate(None, learning_rate=rate, max_updates=5))
    assert opt.update_count.get_value() == 5
    assert opt.learning_rate.eval() == pytest.approx(0.1 * 2 ** -0.5)
    list(opt.iterate(None, learning_rate=rate, max_updates=5))
    assert opt.update_count.get_value() == 10
    assert opt.learning_rate.eval() == pytest.approx(0.05)
    list(opt.iterate(None, learning_rate=rate, max_updates=3, reset=True))
    assert opt.update_count.get_value() == 3
    # counting happens whatever the learning rate
    list(opt.iterate(None, learning_rate=0.01, max_updates=2))
    assert opt.update_count.get_value() == 5
    assert opt._states[(None, 'update_count')] is opt.update_count


def test_float32_with_schedules():
    with pytensor.config.change_flags(floatX='float64'):
        x, loss, target = quadratic('float32')
        for algo in ('sgd', 'rprop', 'adam'):
            opt = downhill.build(algo, loss)
            updates = opt.get_updates(learning_rate=0.1 * schedules.cosine(10),
                                      momentum=0.5 * schedules.linear_warmup(3))
            for var, expr in updates:
                assert expr.type.dtype == var.type.dtype, (algo, var, expr.type)
            list(opt.iterate(None, max_updates=2, learning_rate=0.1 * schedules.cosine(10)))
            assert x.get_value().dtype == np.float32


def test_rprop_starts_at_the_scheduled_rate():
    x, loss, target = quadratic()
    opt = downhill.build('rprop', loss)
    f = pytensor.function([], [], updates=opt.get_updates(learning_rate=0.5 * schedules.constant(0.1)))
    f()
    np.testing.assert_allclose(x.get_value(), 0.05 * np.sign(target))


def test_logged(downhill_log):
    x, loss, target = quadratic()
    opt = downhill.build('sgd', loss)
    list(opt.iterate(None, max_updates=1, learning_rate=0.1 * schedules.exponential(3)))
    assert 'learning_rate=constant(value=0.1) * exponential(halflife=3)' in downhill_log.text


# ----------------------------------------------------------------------------
# compiled-step reuse


def test_new_numbers_reuse_the_compiled_step():
    x, loss, target = quadratic()
    opt = downhill.build('adam', loss)
    list(opt.iterate(None, max_updates=2, learning_rate=0.1 * schedules.cosine(100, warmup=5)))
    first = dict(opt._step_fns)
    list(opt.iterate(None, max_updates=2, learning_rate=0.3 * schedules.cosine(50, warmup=1)))
    assert opt._step_fns == first
    assert opt.learning_rate.eval() == pytest.approx(0.3 * schedules.cosine(50, warmup=1).at(4))
    list(opt.iterate(None, max_updates=2, learning_rate=0.1 * schedules.exponential(5)))
    assert len(opt._step_fns) == 2  # another kind of schedule: another graph
    list(opt.iterate(None, max_updates=2, learning_rate=0.01))
    assert len(opt._step_fns) == 3
    list(opt.iterate(None, max_updates=2, learning_rate=0.5 * schedules.cosine(7)))
    list(opt.iterate(None, max_updates=2, learning_rate=0.02))
    assert len(opt._step_fns) == 3


def test_second_call_with_new_numbers_compiles_nothing(monkeypatch):
    """The first call compiles; the second, with other numbers for the same
    schedules and hyperparameters, only sets shared values (no timing: we
    count the functions compiled)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 20))
    Y = X @ rng.normal(size=(20, 5))
    x, y = pt.matrix('x'), pt.matrix('y')
    w = pytensor.shared(np.zeros((20, 10)), name='w')
    v = pytensor.shared(rng.normal(size=(10, 5)) * 0.1, name='v')
    loss = pt.sqr(pt.tanh(x.dot(w)).dot(v) - y).mean()
    opt = downhill.build('adam', loss, inputs=[x, y], quick_start=False,
                         constraints={w: downhill.prox.l1(1e-3), v: downhill.prox.max_norm(2.0, 0)})
    compiled = []
    real_function = pytensor.function

    def counting(*args, **kwargs):
        compiled.append(kwargs.get('name'))
        return real_function(*args, **kwargs)
    monkeypatch.setattr(pytensor, 'function', counting)

    list(opt.iterate([[X, Y]], max_updates=3, learning_rate=0.01 * schedules.cosine(1000, warmup=50),
                     momentum=0.5, weight_decay=1e-4))
    first = list(compiled)
    assert first, 'the first call compiled nothing'
    list(opt.iterate([[X, Y]], max_updates=3, learning_rate=0.05 * schedules.cosine(300, warmup=10),
                     momentum=0.8, weight_decay=1e-3, beta1_halflife=3))
    assert compiled == first, compiled[len(first):]
    assert 'projection' in first  # the start was projected onto the constraints, once
    assert len(opt._step_fns) == 1
    assert opt._current('_weight_decay') == 1e-3   # the new numbers are in place


# ----------------------------------------------------------------------------
# reduce_on_plateau


def test_plateau_logic():
    plateau = schedules.reduce_on_plateau(factor=0.5, patience=1, min_value=0.2)
    seen = []
    for loss in [5, 4, 4, 4, 3, 3.5, 3.2, 3.1, 3.4, 3.3, 3.2, 3.1]:
        valid = {'loss': loss}
        reduced = plateau.observe(valid)
        assert not plateau.observe(valid)  # the same dict again counts nothing
        seen.append((reduced, plateau.value))
    # two failures in a row (more than patience=1) reduce; the fourth reduction would go
    # below min_value, which stops it
    assert [r for r, _ in seen] == [False, False, False, True, False, False, True, False, True,
                                    False, False, False]
    assert seen[-1][1] == 0.2  # 1 -> 0.5 -> 0.25 -> 0.2 (min_value)
    assert plateau.reductions == 3
    with pytest.raises(KeyError, match="watches the monitor 'acc'"):
        schedules.reduce_on_plateau(monitor='acc').observe({'loss': 1})


def test_plateau_cooldown_and_min_improvement():
    plateau = schedules.reduce_on_plateau(factor=0.1, patience=0, cooldown=2, min_improvement=0.1)
    reductions = [plateau({'loss': v}) for v in [10, 9.5, 9.4, 9.3, 9.2, 5, 4.9]]
    # 9.5 is not 10% better: reduce; 9.4 and 9.3 cool down; 9.2 reduces; 5 improves;
    # 4.9 (not 10% better) is in the cooldown
    assert reductions == [False, True, False, False, True, False, False]


def test_plateau_inside_iterate_changes_the_shared_rate_without_recompiling(downhill_log):
    # SGD with learning rate 1 on (x - 1)^2 jumps between x0 and 2 - x0: the loss never improves
    x = pytensor.shared(np.array(3.0), name='x')
    opt = downhill.build('sgd', pt.sqr(x - 1))
    plateau = schedules.reduce_on_plateau(factor=0.5, patience=1)
    rates = []
    for train, valid in opt.iterate(None, learning_rate=1.0 * plateau, validate_every=1,
                                    patience=10, max_updates=5):
        plateau.observe(valid)  # iterate() has observed it already: this counts nothing
        rates.append(float(opt.learning_rate.eval()))
    assert rates == [1, 1, 0.5, 0.5, 0.5]
    assert x.get_value() == 1  # the halved rate jumps straight to the minimum
    assert len(opt._step_fns) == 1
    assert 'reduce_on_plateau: learning_rate factor 1 -> 0.5' in downhill_log.text
    assert opt._validation_hooks == [plateau]
    # passed again, it continues from its reduced value and its count: the first
    # validation of the new run is the second in a row at loss 0
    list(opt.iterate(None, learning_rate=1.0 * plateau, max_updates=1))
    assert opt.learning_rate.eval() == 0.25


def test_plateau_is_observed_by_iterate_itself():
    x = pytensor.shared(np.array(3.0), name='x')
    opt = downhill.build('sgd', pt.sqr(x - 1))
    plateau = schedules.reduce_on_plateau(factor=0.5, patience=1)
    rates = [float(opt.learning_rate.eval())
             for _ in opt.iterate(None, learning_rate=1.0 * plateau, validate_every=1,
                                  patience=10, max_updates=6)]
    # x bounces between 3 and -1 at rate 1 (loss 4); the third validation without
    # improvement halves the rate before update 3, which lands on x = 1 (loss 0);
    # two validations of loss 0 later it halves again
    assert rates == [1, 1, 0.5, 0.5, 0.5, 0.25]
    assert plateau.reductions == 2
    assert x.get_value() == 1


def test_plateau_watching_a_missing_monitor_fails_before_the_first_update():
    x = pytensor.shared(np.array(3.0), name='x')
    opt = downhill.build('sgd', pt.sqr(x - 1))
    plateau = schedules.reduce_on_plateau(monitor='accuracy')
    with pytest.raises(KeyError, match="'accuracy'"):
        opt.minimize(None, learning_rate=plateau)
    assert x.get_value() == 3


def test_plateau_with_a_raw_compiled_function():
    x = pytensor.shared(np.array(3.0), name='x')
    opt = downhill.build('sgd', pt.sqr(x - 1))
    plateau = schedules.reduce_on_plateau(factor=0.25, patience=0)
    f = pytensor.function([], pt.sqr(x - 1), updates=opt.get_updates(learning_rate=plateau * 0.8))
    assert f() == 4
    plateau.observe({'loss': 4.0})
    plateau.observe({'loss': 5.0})
    assert opt.learning_rate.eval() == pytest.approx(0.2)
