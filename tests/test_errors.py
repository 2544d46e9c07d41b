"""Bad input gets a clear error that names the culprit, before any work is done."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from util import build_rosen, linear_regression


def test_unknown_algorithm_lists_names():
    x = pytensor.shared(np.zeros(2), name='x')
    with pytest.raises(ValueError, match="unknown algorithm 'conjugate-gradient'; valid names: .*adadelta.*adam.*sgd"):
        downhill.build('conjugate-gradient', pt.sqr(x).sum())


@pytest.mark.parametrize('call', ['iterate', 'get_updates', 'minimize'])
def test_unknown_keyword_suggests_closest(call):
    opt, train = build_rosen('sgd')
    x = opt._params[0]
    before = x.get_value()
    with pytest.raises(TypeError, match="unknown keyword argument 'learning_rte'; did you mean 'learning_rate'"):
        if call == 'iterate':
            opt.iterate(train, learning_rte=0.1)
        elif call == 'get_updates':
            opt.get_updates(learning_rte=0.1)
        else:
            downhill.minimize(opt._loss, None, learning_rte=0.1)
    np.testing.assert_array_equal(x.get_value(), before)


def test_unknown_algorithm_specific_keyword():
    opt, train = build_rosen('adam')
    with pytest.raises(TypeError, match="'beta1_halflive'; did you mean 'beta1_halflife'"):
        opt.iterate(train, beta1_halflive=3)
    # a keyword of another algorithm is unknown to this one
    with pytest.raises(TypeError, match="'rprop_increase'"):
        opt.iterate(train, rprop_increase=1.1)


def test_non_scalar_loss():
    x = pytensor.shared(np.zeros(2), name='x')
    with pytest.raises(ValueError, match=r'loss must be a scalar \(0-d\) expression, got one with ndim=1'):
        downhill.build('sgd', pt.sqr(x))


def test_loss_not_an_expression():
    with pytest.raises(TypeError, match='loss must be a scalar PyTensor expression, got float'):
        downhill.build('sgd', 1.0)


def test_loss_without_shared_variables():
    x = pt.vector('x')
    with pytest.raises(ValueError, match='depends on no float shared variables to optimize'):
        downhill.build('sgd', pt.sqr(x).sum())


def test_params_not_shared():
    x = pt.vector('x')
    w = pytensor.shared(np.zeros(2), name='w')
    with pytest.raises(TypeError, match=r"params\[1\] \('x'\) is a TensorVariable, not a shared variable"):
        downhill.build('sgd', pt.sqr(x - w).sum(), params=[w, x])


def test_param_not_in_loss():
    w = pytensor.shared(np.zeros(2), name='w')
    v = pytensor.shared(np.zeros(2), name='v')
    with pytest.raises(ValueError, match=r"params\[1\] \('v'\) does not affect the loss"):
        downhill.build('sgd', pt.sqr(w).sum(), params=[w, v])


def test_batch_with_wrong_number_of_arrays():
    loss, params, (x, y), (X, Y), _ = linear_regression()
    opt = downhill.build('sgd', loss, inputs=[x, y])
    with pytest.raises(ValueError, match=r"holds 1 arrays but the loss has 2 inputs \('x', 'y'\)"):
        next(opt.iterate([[X]]))
    with pytest.raises(ValueError, match=r"holds 3 arrays but the loss has 2 inputs \('x', 'y'\)"):
        opt.evaluate([[X, Y, Y]])


def test_dataset_unequal_lengths_shows_shapes():
    with pytest.raises(ValueError, match=r'different lengths along axis 0: input 0 shape \(10, 3\); input 1 shape \(9,\)'):
        downhill.Dataset([np.zeros((10, 3)), np.zeros(9)])


def test_unsupported_array_type_names_position_and_type():
    with pytest.raises(ValueError, match=r'input 1 has type builtins.list'):
        downhill.Dataset([np.zeros(3), [1, 2, 3]])
    loss, params, (x, y), (X, Y), _ = linear_regression()
    opt = downhill.build('sgd', loss, inputs=[x, y])
    with pytest.raises(ValueError, match=r'train has unsupported type builtins.int'):
        opt.iterate(3)


def test_wrong_ndim_and_dtype_of_data():
    loss, params, (x, y), (X, Y), _ = linear_regression()
    opt = downhill.build('sgd', loss, inputs=[x, y])
    with pytest.raises(ValueError, match=r"input 1 \('y'\) expects an array with 1 dimensions, got shape \(200, 1\)"):
        opt.evaluate([[X, Y[:, None]]])
    with pytest.raises(TypeError, match=r"input 0 \('x'\) expects float64, got complex128"):
        opt.evaluate([[X.astype(complex), Y]])


def test_explicit_inputs_must_cover_the_graph():
    loss, params, (x, y), _, _ = linear_regression()
    with pytest.raises(ValueError, match=r"need inputs that are not in inputs=: 'y'"):
        downhill.build('sgd', loss, inputs=[x])
    with pytest.raises(TypeError, match=r'inputs\[0\] must be a symbolic input variable'):
        downhill.build('sgd', loss, inputs=[params[0], y])


def test_bad_monitors():
    opt, _ = build_rosen('sgd')
    x = opt._params[0]
    with pytest.raises(ValueError, match="monitor 'v' must be a scalar expression"):
        downhill.build('sgd', opt._loss, monitors={'v': x})
    with pytest.raises(ValueError, match="monitor name 'loss' is used twice"):
        downhill.build('sgd', opt._loss, monitors=[('loss', x.sum())])


@pytest.mark.parametrize('kwargs, message', [
    ({'learning_rate': -0.1}, 'learning_rate must be >= 0, got -0.1'),
    ({'learning_rate': 'fast'}, "learning_rate must be a number, got 'fast'"),
    ({'learning_rate': float('nan')}, 'learning_rate must be a number, got NaN'),
    ({'momentum': -0.5}, 'momentum must be >= 0'),
    ({'patience': -1}, 'patience must be >= 0'),
    ({'validate_every': 0}, 'validate_every must be >= 1'),
    ({'max_updates': 2.5}, 'max_updates must be a whole number'),
    ({'rms_halflife': 0}, 'rms_halflife must be > 0'),
    ({'max_gradient_norm': -1}, 'max_gradient_norm must be >= 0'),
    ({'nesterov': 'yes'}, "nesterov must be True or False, got 'yes'"),
])
def test_bad_hyperparameter_values(kwargs, message):
    opt, train = build_rosen('rmsprop')
    with pytest.raises((TypeError, ValueError), match=message):
        opt.iterate(train, **kwargs)


def test_unwise_values_warn_and_run(downhill_log):
    opt, train = build_rosen('sgd')
    list(opt.iterate(train, momentum=1.0, max_updates=1, learning_rate=1e-6))
    assert 'momentum=1.0 >= 1' in downhill_log.text


def test_esgd_bad_hv_method():
    opt, train = build_rosen('esgd')
    with pytest.raises(ValueError, match="hv_method must be one of 'rop', 'lop', 'grad', got 'fd'"):
        opt.iterate(train, hv_method='fd')


def test_empty_and_zero_size_data():
    loss, params, (x, y), (X, Y), _ = linear_regression()
    opt = downhill.build('sgd', loss, inputs=[x, y])
    with pytest.raises(ValueError, match='train data is an empty list'):
        opt.iterate([])
    with pytest.raises(ValueError, match='arrays are empty along axis 0'):
        opt.iterate([X[:0], Y[:0]])
    with pytest.raises(ValueError, match='iteration_size 0'):
        opt.iterate(downhill.Dataset([X, Y], iteration_size=0))


@pytest.mark.parametrize('value', [np.float32(0.01), __import__('fractions').Fraction(1, 10), 2.5])
@pytest.mark.parametrize('name', ['max_updates', 'patience', 'validate_every'])
def test_a_whole_number_argument_refuses_a_fraction_instead_of_truncating_it(name, value):
    opt, train = build_rosen('sgd')
    before = opt._params[0].get_value()
    with pytest.raises(ValueError, match=rf'{name} must be a whole number, got {value!r}'.replace('(', r'\(').replace(')', r'\)')):
        list(opt.iterate(train, **{name: value}))
    np.testing.assert_array_equal(opt._params[0].get_value(), before)
    # whole numbers of any real type are taken
    assert downhill.hyperparams.number(name, np.float32(4.0), integer=True) == 4


def test_a_number_too_large_for_a_float_is_named():
    opt, train = build_rosen('sgd')
    with pytest.raises(ValueError, match=r'learning_rate must be a number a float can hold, got 1000'):
        list(opt.iterate(train, learning_rate=10 ** 400))
