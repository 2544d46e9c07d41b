"""downhill.tools.pymc_updates: downhill algorithms as PyMC ``obj_optimizer``s, step for step."""

import pytest

pymc = pytest.importorskip('pymc')

import numpy as np  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402

import downhill  # noqa: E402
from downhill.tools.pymc_updates import halflife, updates  # noqa: E402

#: The Python linker: no C compilation on a cold cache (both sides of a comparison use it).
MODE = 'FAST_COMPILE'
STEPS = 30
DATA = np.random.default_rng(0).normal(1.0, 2.0, size=20)
B1, B2 = halflife(0.9), halflife(0.999)

#: PyMC optimizer -> the downhill algorithm and hyperparameters documented to compute the same steps.
PAIRS = {
    'sgd': (lambda: pymc.sgd(learning_rate=0.01), ('sgd', dict(learning_rate=0.01))),
    'momentum': (lambda: pymc.momentum(learning_rate=0.01, momentum=0.9),
                 ('sgd', dict(learning_rate=0.01, momentum=0.9))),
    'nesterov': (lambda: pymc.nesterov_momentum(learning_rate=0.01, momentum=0.9),
                 ('nag', dict(learning_rate=0.01, momentum=0.9))),
    'adagrad': (lambda: pymc.adagrad(learning_rate=0.1, epsilon=1e-6),
                ('adagrad', dict(learning_rate=0.1, rms_regularizer=1e-6))),
    'adadelta': (lambda: pymc.adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-6),
                 ('adadelta', dict(rms_halflife=halflife(0.95), rms_regularizer=1e-6))),
    'adam': (lambda: pymc.adam(learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=0),
             ('adam', dict(learning_rate=0.01, beta1_halflife=B1, beta2_halflife=B2, rms_regularizer=0))),
    'adamax': (lambda: pymc.adamax(learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8),
               ('adamax', dict(learning_rate=0.01, beta1_halflife=B1, beta2_halflife=B2,
                               rms_regularizer=1e-8))),
}


@pytest.fixture(autouse=True)
def float64():
    with pytensor.config.change_flags(floatX='float64'):
        yield


def _fit(optimizer, method='advi', n=STEPS, **kwargs):
    with pymc.Model():
        mu = pymc.Normal('mu', 0, 10)
        sigma = pymc.HalfNormal('sigma', 5)
        pymc.Normal('y', mu, sigma, observed=DATA)
        approx = pymc.fit(n, method=method, obj_optimizer=optimizer, random_seed=1,
                          progressbar=False, compile_kwargs={'mode': MODE}, **kwargs)
    return np.concatenate([p.get_value().ravel() for p in approx.params]), approx.hist


def _rel(a, b):
    return float(np.max(np.abs(a - b) / np.abs(a)))


@pytest.mark.parametrize('name', sorted(PAIRS))
def test_advi_matches_pymc_step_for_step(name):
    theirs, (algo, hypers) = PAIRS[name]
    p_ref, h_ref = _fit(theirs())
    p_got, h_got = _fit(updates(algo, **hypers))
    p_start, _ = _fit(pymc.sgd(learning_rate=0.0))
    assert _rel(p_ref, p_start) > 1e-4  # the run moved: the comparison means something
    assert _rel(p_ref, p_got) < 1e-10
    assert _rel(h_ref, h_got) < 1e-10


def _infer(optimizer, inference, n=10):
    """``n`` steps of ``pm.<inference>(...).fit``; SVGD from fixed particles (its start ignores the seed)."""
    with pymc.Model():
        mu = pymc.Normal('mu', 0, 10)
        sigma = pymc.HalfNormal('sigma', 5)
        pymc.Normal('y', mu, sigma, observed=DATA)
        if inference == 'svgd':
            method = pymc.SVGD(n_particles=3, random_seed=1)
            particles = method.approx.params[0]
            particles.set_value(np.linspace(-1, 2, particles.get_value().size).reshape(
                particles.get_value().shape))
        else:
            method = pymc.FullRankADVI(random_seed=1)
        approx = method.fit(n, obj_optimizer=optimizer, progressbar=False,
                            compile_kwargs={'mode': MODE})
    return np.concatenate([p.get_value().ravel() for p in approx.params])


@pytest.mark.parametrize('inference', ['fullrank_advi', 'svgd'])
def test_fullrank_advi_and_svgd_match_pymc(inference):
    ref = _infer(pymc.adagrad(learning_rate=0.01, epsilon=1e-6), inference)
    got = _infer(updates('adagrad', learning_rate=0.01, rms_regularizer=1e-6), inference)
    assert _rel(ref, _infer(pymc.sgd(learning_rate=0.0), inference)) > 1e-4
    assert _rel(ref, got) < 1e-10


def _steps(optimizer, n, loss_given=False):
    """``n`` steps on sum((p - 3)^2) through the optimizer's PyMC interface; the values of p."""
    p = pytensor.shared(np.array([0.0, 1.0]), name='p')
    loss = pt.sum((p - 3) ** 2)
    given = loss if loss_given else pytensor.grad(loss, [p])
    step = pytensor.function([], [], updates=optimizer(given, [p]), mode=MODE)
    out = []
    for _ in range(n):
        step()
        out.append(p.get_value().copy())
    return np.array(out)


@pytest.mark.parametrize('algo', ['adam', 'esgd'])
def test_a_loss_and_its_gradients_give_the_same_steps(algo):
    # esgd: its Hessian-vector products differentiate the given gradients (not the surrogate's)
    # equal but for rounding: PyTensor rewrites the two graphs differently
    np.testing.assert_allclose(_steps(updates(algo, learning_rate=0.1), 5),
                               _steps(updates(algo, learning_rate=0.1), 5, loss_given=True),
                               rtol=1e-14)


def test_a_schedule_runs_in_the_graph():
    # step(every=2, factor=0.5): learning rates 0.1, 0.1, 0.05, 0.05
    got = _steps(updates('sgd', learning_rate=0.1 * downhill.schedules.step(2, 0.5)), 4)
    p, want = np.array([0.0, 1.0]), []
    for lr in (0.1, 0.1, 0.05, 0.05):
        p = p - lr * 2 * (p - 3)
        want.append(p)
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_clipping_and_weight_decay_pass_through():
    got = _steps(updates('sgd', learning_rate=0.1, max_gradient_elem=1.0, weight_decay=0.5), 1)
    p = np.array([0.0, 1.0])
    # downhill clips the objective's gradient, then adds the decay's
    np.testing.assert_allclose(got[0], p - 0.1 * (np.clip(2 * (p - 3), -1, 1) + 0.5 * p), rtol=1e-14)


def test_reduce_on_plateau_is_fed_by_the_callback():
    plateau = downhill.schedules.reduce_on_plateau(factor=0.5, patience=0)
    optimizer = updates('sgd', learning_rate=0.1 * plateau)
    _steps(optimizer, 1)
    callback = optimizer.plateau_callback(every=2)
    callback(None, np.array([5.0, 5.0]), 2)
    callback(None, np.array([5.0, 5.0, 6.0, 6.0]), 4)  # no improvement: halved
    assert plateau.value == 0.5
    assert optimizer.optimizer.learning_rate.eval() == pytest.approx(0.05)


def test_full_batch_algorithms_are_refused_by_name():
    for algo in ('lbfgs', 'bfgs', 'newton-cg'):
        with pytest.raises(ValueError, match=f"'{algo}' is a full-batch method"):
            updates(algo)


def test_loop_and_unknown_keywords_are_refused():
    with pytest.raises(ValueError, match='patience'):
        updates('adam', patience=3)
    with pytest.raises(TypeError, match='learnig_rate'):
        updates('adam', learnig_rate=0.1)


def test_bare_call_and_mismatched_gradients():
    optimizer = updates('sgd')
    assert optimizer() is optimizer
    p = pytensor.shared(np.zeros(2))
    with pytest.raises(ValueError, match='2 gradients for 1 parameters'):
        optimizer([p * 1, p * 2], [p])
    with pytest.raises(ValueError, match='loss_or_grads and params'):
        optimizer(None, [p])


def test_a_schedule_runs_inside_pm_fit():
    # the counter schedules read is among the updates PyMC compiles: it counts PyMC's steps
    optimizer = updates('sgd', learning_rate=0.01 * downhill.schedules.step(10, 0.5))
    _fit(optimizer)
    assert optimizer.optimizer.update_count.get_value() == STEPS
    assert optimizer.optimizer.learning_rate.eval() == pytest.approx(0.01 * 0.5 ** 3)
