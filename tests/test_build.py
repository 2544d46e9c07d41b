"""build(), the registry, hyperparameter attributes (ported from the old suite)."""

import os

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from util import assert_progress, build_factor, build_rosen


@pytest.mark.parametrize('name, cls', [
    ('sgd', downhill.SGD), ('nag', downhill.NAG), ('RProp', downhill.RProp),
    ('RmsProp', downhill.RMSProp), ('ADAGRAD', downhill.ADAGRAD), ('ADADELTA', downhill.ADADELTA),
    ('EsGd', downhill.ESGD), ('Adam', downhill.Adam)])
def test_build_by_name(name, cls):
    assert type(build_rosen(name)[0]) is cls


def test_build_accepts_class():
    assert type(build_rosen(downhill.Adam)[0]) is downhill.Adam


class Tester(downhill.Optimizer):
    __test__ = False  # not a pytest class

    def _get_updates_for(self, param, grad):
        yield (param, param + 1.1)


def test_subclass_is_registered():
    opt, train = build_rosen('tester')
    assert isinstance(opt, Tester)
    assert downhill.algorithms()['tester'] is Tester


def test_custom_algorithm_runs():
    opt, train = build_rosen('tester')
    seen = []
    for i, (tm, vm) in enumerate(opt.iterate(train, max_updates=3)):
        assert tm['x'] >= vm['x']
        assert tm['y'] >= vm['y']
        seen.append(i)
    assert seen == [0, 1, 2]


def test_custom_algorithm_with_own_hyperparameter():
    class Scaled(downhill.Optimizer):
        def _prepare(self, scale=2.0, **kwargs):
            self.scale = scale
            super()._prepare(**kwargs)

        def _get_updates_for(self, param, grad):
            yield param, self.scale * grad

    opt, train = build_rosen('scaled')
    x = opt._params[0]
    # d/dx = -400 x (y - x^2) - 2 (1 - x), d/dy = 200 (y - x^2) at (-3, -3)
    g = np.array([-400 * -3 * (-3 - 9) - 2 * (1 + 3), 200 * (-3 - 9)], 'f')
    list(opt.iterate(train, max_updates=1, scale=0.001, validate_every=100))
    # best params are restored at the end: the initial ones (validation before the update)
    assert np.allclose(x.get_value(), [-3, -3])
    opt.set_params([[-3, -3]])
    f = __import__('pytensor').function([], [], updates=opt.get_updates(scale=0.001))
    f()
    np.testing.assert_allclose(x.get_value(), np.array([-3, -3]) - 0.001 * g, rtol=1e-5)
    with pytest.raises(TypeError, match="'scal'.*did you mean 'scale'"):
        opt.get_updates(scal=1)


def test_factor_monitors():
    opt, train = build_factor('tester')
    for i, (tm, vm) in enumerate(opt.iterate(train)):
        assert abs(vm['u<1'] - 0.001) < 1e-5
        assert vm['u<-1'] == 0
        assert vm['v<1'] == 1
        assert vm['v<-1'] == 0
        if i == 2:
            break


def test_gradient_clip_synonyms():
    opt, data = build_rosen('tester')
    for _ in opt.iterate(data, gradient_clip=1):
        assert opt.max_gradient_elem == 1
        break
    for _ in opt.iterate(data, max_gradient_clip=2):
        assert opt.max_gradient_elem == 2
        break
    for _ in opt.iterate(data, max_gradient_elem=3):
        assert opt.max_gradient_elem == 3
        break


def test_set_params():
    opt, _ = build_rosen('tester')
    opt.set_params([[1, 2]])
    assert np.allclose(opt._params[0].get_value(), [1, 2])
    assert opt._params[0].get_value().dtype == np.float32


def test_set_best_params():
    opt, _ = build_rosen('tester')
    opt._best_params = [[1, 2]]
    opt.set_params('best')
    assert np.allclose(opt._params[0].get_value(), [1, 2])


def test_set_params_errors():
    opt, _ = build_rosen('tester')
    with pytest.raises(ValueError, match='got 2 arrays for 1 parameters'):
        opt.set_params([[1, 2], [3]])
    with pytest.raises(ValueError, match=r"shape \(3,\).*'x' has shape \(2,\)"):
        opt.set_params([[1, 2, 3]])


@pytest.mark.parametrize('algo', ['sgd', 'nag', 'rprop', 'rmsprop', 'adagrad', 'adadelta', 'esgd', 'adam'])
def test_progress_rosen(algo):
    kwargs = {'learning_rate': 1e-6} if algo == 'esgd' else {}
    assert_progress(*build_rosen(algo), **kwargs)


@pytest.mark.parametrize('algo', ['sgd', 'nag', 'rprop', 'rmsprop', 'adagrad', 'adadelta', 'esgd', 'adam'])
def test_progress_factor(algo):
    kwargs = {'learning_rate': 1e-6} if algo == 'esgd' else {}
    if algo in ('sgd', 'nag'):
        kwargs['max_gradient_clip'] = 1
    assert_progress(*build_factor(algo), **kwargs)


def test_sgd_factor_nesterov():
    assert_progress(*build_factor('sgd'), max_gradient_clip=1, momentum=0.5, nesterov=True)


@pytest.mark.parametrize('hv_method', ['rop', 'lop', 'grad'])
def test_esgd_hv_methods(hv_method):
    assert_progress(*build_rosen('esgd'), learning_rate=1e-6, hv_method=hv_method)
    assert_progress(*build_factor('esgd'), learning_rate=1e-6, hv_method=hv_method)


def test_esgd_attributes():
    opt, data = build_rosen('esgd')
    assert opt.hv_method == 'rop'
    for _ in opt.iterate(data):
        assert np.allclose(opt.learning_rate.eval(), 1e-4)
        assert np.allclose(opt.ewma.eval(), np.exp(-np.log(2) / 14))
        assert np.allclose(opt.epsilon.eval(), 1e-8)
        break
    opt.hv_method = 'lop'
    for _ in opt.iterate(data, learning_rate=0.3, rms_halflife=10, rms_regularizer=20):
        assert opt.hv_method == 'lop'
        assert np.allclose(opt.learning_rate.eval(), 0.3)
        assert np.allclose(opt.ewma.eval(), np.exp(-np.log(2) / 10))
        assert np.allclose(opt.epsilon.eval(), 20)
        break


def test_esgd_random_stream_advances():
    opt, data = build_rosen('esgd')
    before = opt.rng.get_value(borrow=False).bit_generator.state['state']['state']
    for _ in opt.iterate(data, max_updates=2, learning_rate=1e-6):
        pass
    after = opt.rng.get_value(borrow=False).bit_generator.state['state']['state']
    assert before != after


def test_rprop_attributes(downhill_log):
    opt, data = build_rosen('rprop')
    for _ in opt.iterate(data):
        assert np.allclose(opt.learning_rate.eval(), 1e-4)
        assert np.allclose(opt.step_increase.eval(), 1.01)
        assert np.allclose(opt.step_decrease.eval(), 0.99)
        assert np.allclose(opt.min_step.eval(), 0)
        assert np.allclose(opt.max_step.eval(), 100)
        break
    for _ in opt.iterate(data, learning_rate=0.3, rprop_increase=22, rprop_decrease=101,
                         rprop_min_step=50, rprop_max_step=-10):
        assert np.allclose(opt.learning_rate.eval(), 0.3)
        assert np.allclose(opt.step_increase.eval(), 22)
        assert np.allclose(opt.step_decrease.eval(), 101)
        assert np.allclose(opt.min_step.eval(), 50)
        assert np.allclose(opt.max_step.eval(), -10)
        break
    assert 'rprop_min_step=50 > rprop_max_step=-10' in downhill_log.text


def test_adagrad_attributes():
    opt, data = build_rosen('adagrad')
    for _ in opt.iterate(data, rms_regularizer=0.1):
        assert np.allclose(opt.learning_rate.eval(), 1e-4)
        assert np.allclose(opt.epsilon.eval(), 0.1)
        break


@pytest.mark.parametrize('algo', ['rmsprop', 'adadelta'])
def test_rms_attributes(algo):
    opt, data = build_rosen(algo)
    for _ in opt.iterate(data):
        assert np.allclose(opt.ewma.eval(), np.exp(-np.log(2) / 14))
        assert np.allclose(opt.epsilon.eval(), 1e-8)
        break
    for _ in opt.iterate(data, rms_halflife=10, rms_regularizer=20):
        assert np.allclose(opt.ewma.eval(), np.exp(-np.log(2) / 10))
        assert np.allclose(opt.epsilon.eval(), 20)
        break


def test_adam_attributes():
    opt, data = build_rosen('adam')
    for _ in opt.iterate(data):
        assert np.allclose(opt.learning_rate.eval(), 1e-4)
        assert np.allclose(opt.beta1_decay.eval(), 1 - 1e-6)
        assert np.allclose(opt.beta1.eval(), np.exp(-np.log(2) / 7))
        assert np.allclose(opt.beta2.eval(), np.exp(-np.log(2) / 69))
        assert np.allclose(opt.epsilon.eval(), 1e-8)
        break
    for _ in opt.iterate(data, learning_rate=0.3, beta1_decay=0.5, beta1_halflife=10,
                         beta2_halflife=20, rms_regularizer=11):
        assert np.allclose(opt.learning_rate.eval(), 0.3)
        assert np.allclose(opt.beta1_decay.eval(), 0.5)
        assert np.allclose(opt.beta1.eval(), np.exp(-np.log(2) / 10))
        assert np.allclose(opt.beta2.eval(), np.exp(-np.log(2) / 20))
        assert np.allclose(opt.epsilon.eval(), 11)
        break


def test_nag_always_nesterov():
    opt, data = build_rosen('nag')
    opt.get_updates(momentum=0.9)
    assert opt.nesterov is True
    opt.get_updates(momentum=0.9, nesterov=False)
    assert opt.nesterov is True


def test_loop_attributes():
    opt, data = build_rosen('sgd')
    for _ in opt.iterate(data, patience=3, validate_every=4, min_improvement=0.1,
                         momentum=0.5, nesterov=True, max_gradient_norm=2):
        assert (opt.patience, opt.validate_every, opt.min_improvement) == (3, 4, 0.1)
        assert (opt.momentum, opt.nesterov, opt.max_gradient_norm) == (0.5, True, 2)
        break


def test_compiled_step_is_reused_for_new_numbers():
    opt, data = build_rosen('adam')
    for _ in opt.iterate(data, learning_rate=0.1, max_updates=1):
        pass
    fns = dict(opt._step_fns)
    for _ in opt.iterate(data, learning_rate=0.01, beta1_halflife=3, max_updates=1):
        pass
    assert opt._step_fns == fns and len(fns) == 1
    for _ in opt.iterate(data, learning_rate=0.01, momentum=0.9, max_updates=1):
        pass
    assert len(opt._step_fns) == 2  # momentum adds a velocity: another graph


def test_gradient_norm_clipping_survives_graph_rewrites():
    """PyTensor 2.38 rewrites sqrt(sqr(g)) into switch(g >= 0, g, nan): a 0-d gradient's norm
    came out NaN when negative, so it was never clipped (benchmarks/repro_sqrt_sqr.py)."""
    from pytensor.compile.mode import Mode
    from downhill import prox
    c = pytensor.shared(np.array(-5.0), name='c')
    opt = downhill.build('sgd', pt.sqr(c + 3))   # gradient -4 at c = -5: clipped to -1
    rewritten = Mode(linker='py', optimizer='fast_run')
    step = pytensor.function([], [], updates=opt.get_updates(learning_rate=0.5, max_gradient_norm=1.0),
                             mode=rewritten)
    step()
    assert c.get_value() == -4.5
    u = pytensor.shared(np.array(-3.0), name='u')
    project = pytensor.function([], prox.unit_norm()(u, 1.0), mode=rewritten)
    assert project() == -1.0


def test_the_architecture_pages_new_algorithm_registers_and_runs():
    """docs/architecture.rst: a rule of its own, with a hyperparameter every layer knows."""
    import re
    from downhill.optimizer.hyperparameters import hyperparameters
    page = os.path.join(os.path.dirname(__file__), '..', 'docs', 'architecture.rst')
    block = re.findall(r'\.\. code-block:: python\n\n((?:   .*\n|\n)+)', open(page).read())[0]
    namespace = {}
    exec('\n'.join(line[3:] for line in block.splitlines()), namespace)
    try:
        assert list(hyperparameters(namespace['SignSGD'], common=False)) == ['scale']
        x = pytensor.shared(np.array([3.0, -2.0]), name='x')
        downhill.build('signsgd', pt.sqr(x).sum()).minimize(None, learning_rate=0.1, scale=2.0,
                                                           max_updates=10)
        # ten steps of 0.2 toward 0: 1 and 0, up to the rounding of ten subtractions
        np.testing.assert_allclose(x.get_value(), [1.0, 0.0], rtol=0, atol=10 * np.finfo(float).eps * 3)
    finally:
        downhill.optimizer.registry.unregister('signsgd')
