"""A refused call changes nothing; errors name the argument or input; modes are checked at build.

Each test is a case users hit: the call used to
fail inside the loop after it had changed the optimizer, or with a message
from NumPy or PyTensor that named no argument.
"""

import threading
from fractions import Fraction

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import compile as compiling


def _regression(algo='adam'):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    Y = X @ np.array([1.0, -2.0, 0.5])
    x, y = pt.matrix('x'), pt.vector('y')
    w = pytensor.shared(np.zeros(3), name='w')
    return downhill.build(algo, pt.sqr(x.dot(w) - y).mean(), inputs=[x, y]), w, X, Y


def _everything(opt):
    """Every value a call could change: shared variables, best parameters, attributes."""
    values = {f'param {p.name}': p.get_value() for p in opt._params}
    values.update({f'state {k}': v.get_value() for k, v in opt._states.items()})
    values.update({f'hyper {k}': v.get_value() for k, v in opt._hypers.items()})
    values.update({f'best {i}': b.copy() for i, b in enumerate(getattr(opt, '_best_params', None) or ())})
    values['loop'] = repr(vars(opt._loop_state)) if getattr(opt, '_loop_state', None) else None
    return values


def _assert_same(before, after):
    assert before.keys() == after.keys()
    for key in before:
        if isinstance(before[key], np.ndarray):
            assert np.array_equal(before[key], after[key], equal_nan=True), key
        else:
            assert before[key] == after[key], key


@pytest.mark.parametrize('algo', ['adam', 'nag', 'rprop', 'lbfgs'])
def test_a_call_failing_on_its_data_after_reset_and_new_hyperparameters_changes_nothing(algo):
    opt, w, X, Y = _regression(algo)
    opt.minimize([X, Y], max_updates=3, batch_size=10)
    before = _everything(opt)
    rate = {} if algo == 'lbfgs' else {'learning_rate': 0.5}
    with pytest.raises(downhill.DataError, match=r"input 'x' of shape \(30, 2\)"):
        opt.minimize([X[:, :2], Y], reset=True, **rate)
    _assert_same(before, _everything(opt))
    # and the next good call continues from where the first left off
    assert opt.update_count.get_value() == (0 if algo == 'lbfgs' else 9)


def test_a_dataset_given_to_a_failing_call_keeps_its_position():
    opt, w, X, Y = _regression()
    data = downhill.Dataset([X[:, :2], Y], batch_size=7, rng=3)
    position = data.state()
    with pytest.raises(downhill.DataError):
        opt.minimize(data)
    after = data.state()
    assert position.keys() == after.keys()
    assert all(np.array_equal(position[k], after[k]) for k in position)


@pytest.mark.parametrize('batch, culprit', [
    ([np.ones((5, 4)), np.ones(5)], r"input 'x' of shape \(5, 4\) \(with 'w' of shape \(3,\)\)"),
    ([np.ones((5, 3)), np.ones(4)], r"inputs 'x' of shape \(5, 3\) and 'y' of shape \(4,\); their lengths differ"),
])
def test_a_batch_that_does_not_fit_names_its_input_in_training_and_in_evaluate(batch, culprit):
    opt, w, X, Y = _regression()
    with pytest.raises(downhill.DataError, match='train: a batch does not fit the loss: ' + culprit):
        opt.minimize([batch])
    with pytest.raises(downhill.DataError, match=culprit):
        opt.evaluate([batch])
    assert np.array_equal(w.get_value(), np.zeros(3))


def test_a_label_out_of_range_names_the_label_input_and_its_values():
    x, labels = pt.matrix('x'), pt.ivector('labels')
    W = pytensor.shared(np.zeros((3, 4)), name='W')
    p = pt.special.softmax(x.dot(W), axis=-1)
    loss = -pt.log(p[pt.arange(labels.shape[0]), labels]).mean()
    opt = downhill.build('adam', loss, inputs=[x, labels])
    bad = np.array([0, 1, 7, 2], dtype='int32')
    # FAST_COMPILE (the tests' mode) checks the index; the message names the input and its range
    with pytest.raises(downhill.DataError, match=r"'labels' of shape \(4,\) \(values 0 to 7\).*IndexError"):
        opt.minimize([np.ones((4, 3)), bad])


def test_without_a_node_by_node_run_every_input_is_named(monkeypatch):
    # the fallback when this PyTensor's linker cannot run a graph one node at a time
    monkeypatch.setattr(downhill._compat, 'failing_node', lambda *args: None)
    opt, w, X, Y = _regression()
    with pytest.raises(downhill.DataError, match=r"inputs 'x' of shape \(30, 2\) and 'y' of shape \(30,\)"):
        opt.evaluate([X[:, :2], Y])


def test_an_error_of_the_data_itself_is_raised_as_it_is():
    opt, w, X, Y = _regression()

    def batches():
        yield [X, Y]
        raise RuntimeError('the reader failed')
    with pytest.raises(RuntimeError, match='the reader failed'):
        opt.evaluate(batches())


@pytest.mark.parametrize('form', ['batches', 'callable', 'iterable'])
def test_empty_arrays_are_refused_in_every_data_form(form):
    opt, w, X, Y = _regression()
    empty = [X[:0], Y[:0]]
    data = {'batches': [empty], 'callable': lambda: empty, 'iterable': iter([empty] * 3)}[form]
    with pytest.raises(ValueError, match=r"input 0 \('x'\) got an empty array \(shape \(0, 3\)\)"):
        opt.minimize(data, max_updates=2)
    assert np.array_equal(w.get_value(), np.zeros(3))


@pytest.mark.parametrize('kwargs, message', [
    (dict(nesterov=np.array([1, 0])), r'nesterov must be True or False, got array\(\[1, 0\]\) \(ndarray\)'),
    (dict(reset=np.array([True, False])), r'reset must be True or False'),
    (dict(reset=2), r'reset must be True or False, got 2'),
    (dict(on_nonfinite=np.array(['stop', 'skip'])), r"on_nonfinite must be one of 'stop', 'skip', got array"),
    (dict(on_nonfinite=b'stop'), r"on_nonfinite must be one of 'stop', 'skip', got b'stop' \(bytes\)"),
    (dict(gradient_clip=-1), r'gradient_clip must be >= 0, got -1'),
    (dict(max_gradient_clip='a'), r"max_gradient_clip must be a number, got 'a'"),
    (dict(patience=np.float32(0.01)), r'patience must be a whole number, got np.float32\(0.01\)'),
    (dict(validate_every=Fraction(1, 10)), r'validate_every must be a whole number, got Fraction\(1, 10\)'),
    (dict(learning_rate=10 ** 400), r'learning_rate must be a number a float can hold'),
])
def test_bad_arguments_are_named(kwargs, message):
    opt, w, X, Y = _regression()
    before = _everything(opt)
    with pytest.raises((TypeError, ValueError), match=message):
        opt.minimize([X, Y], max_updates=2, **kwargs)
    _assert_same(before, _everything(opt))


def test_build_names_params_that_are_not_shared_variables():
    x = pytensor.shared(np.zeros(2), name='x')
    with pytest.raises(TypeError, match='params must be a shared variable or a list of them, got 5'):
        downhill.build('sgd', pt.sqr(x).sum(), params=5)


@pytest.mark.parametrize('axis, message', [('a', r"axis must be an int .*got 'a' \(str\)"),
                                            (1.5, r'axis must be an int .*got 1.5 \(float\)')])
def test_dataset_axis_must_be_an_int(axis, message):
    with pytest.raises(TypeError, match=message):
        downhill.Dataset([np.zeros((4, 2))], axis=axis)


def test_a_mode_whose_package_is_missing_is_refused_at_build(monkeypatch):
    real = compiling.importlib.util.find_spec
    monkeypatch.setattr(compiling.importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'numba' else real(name, *a))
    x = pytensor.shared(np.array([3.0]), name='x')
    with pytest.raises(ValueError, match=r"mode='NUMBA' compiles with numba, which is not installed"):
        downhill.build('sgd', pt.sqr(x).sum(), mode='NUMBA')
    with pytensor.config.change_flags(mode='NUMBA'):
        with pytest.raises(ValueError, match=r"the configured mode \('NUMBA'\) compiles with numba"):
            downhill.build('sgd', pt.sqr(x).sum())


def test_pytorch_mode_without_torch_is_refused_and_leaves_pytensor_usable():
    try:
        import torch  # noqa: F401
        pytest.skip('torch is installed')
    except ImportError:
        pass
    x = pytensor.shared(np.array([3.0]), name='x')
    loss = pt.sqr(x).sum()
    with pytest.raises(ValueError, match='install torch or choose another mode'):
        downhill.build('sgd', loss, mode='PYTORCH')
    assert pytensor.function([], loss, mode='FAST_COMPILE')() == 9.0
    downhill.build('sgd', loss, mode='FAST_COMPILE').minimize(None, max_updates=2)


def test_a_quick_start_never_compiles_with_pytensor_in_another_thread(monkeypatch):
    # PyTensor's compile sets process-wide flags (config.mode during its rewrites) for as
    # long as it runs: from a thread, the user's own compiles would see them, and two
    # threads restoring them in the wrong order leave them changed
    config_type, threads = type(pytensor.config), set()
    real = config_type.change_flags

    def change_flags(self, *args, **kwargs):
        threads.add(threading.current_thread().name)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(config_type, 'change_flags', change_flags)
    mode = pytensor.config.mode
    x = pytensor.shared(np.ones(20), name='x')
    opt = downhill.build('adam', pt.sqr(pt.tanh(x) - 0.5).sum(), mode='NUMBA', quick_start=True)
    updates = opt.iterate(None, max_updates=60, learning_rate=0.01)
    next(updates)  # the first update ran; the kernel may still be compiling
    user = pytensor.function([], x.sum())
    assert 'Numba' not in type(user.maker.linker).__name__ and pytensor.config.mode == mode
    for _ in updates:
        pass
    assert opt.wait_compiled(60)
    assert threads == {threading.main_thread().name}
    assert pytensor.config.mode == mode
