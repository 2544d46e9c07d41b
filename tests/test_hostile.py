"""Hostile and odd inputs (hypothesis): every call works or raises a clear error, changing nothing.

The graphs are built once per algorithm and reused across examples (only
data and hyperparameters vary), so the examples cost no compiles; shapes,
which do need new graphs, get few examples.
"""

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import downhill
from downhill.second_order import FullBatchOptimizer

FAST = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FEW = settings(FAST, max_examples=12)

ALGOS = sorted(k for k, v in downhill.algorithms().items() if v.__module__.startswith('downhill.'))

# numbers that users get wrong: huge, tiny, negative, zero, NaN, inf, and non-numbers
weird_numbers = st.one_of(
    st.sampled_from([0, 1, -1, 0.5, 1e-300, 1e300, -1e-300, float('nan'), float('inf'),
                     -float('inf'), 2, 1.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 10**6),
    st.sampled_from(['0.1', None, True, [0.1], np.float32(0.01), np.array(0.1), np.array([1.0, 2.0]),
                     Fraction(1, 10), Fraction(3, 1), Decimal('0.5'), 10 ** 400, -10 ** 400,
                     np.int64(3), np.float64(2.0), np.array(['a', 'b']), complex(1, 1)]),
)
# what users pass where True/False or a name belongs
weird_flags = st.sampled_from([True, False, 0, 1, 2, -1, 0.5, np.bool_(True), np.array(True),
                               np.array([1, 0]), np.array([True, False]), 'yes', None, [True],
                               float('nan')])
weird_choices = st.sampled_from(['stop', 'skip', 'STOP', '', None, 0, np.array(['stop', 'skip']),
                                 ['stop'], np.str_('stop'), b'stop'])


def _vars_snapshot(opt):
    """Every shared variable the optimizer owns: parameters, state, hyperparameters."""
    out = {}
    for i, p in enumerate(opt._params):
        out[f'param{i}'] = p.get_value()
    for key, var in opt._states.items():
        out[f'state{key[1]}{id(key[0])}'] = var.get_value()
    for name, var in opt._hypers.items():
        out[f'hyper{name}'] = var.get_value()
    return out


def _same(a, b):
    return set(a) <= set(b) and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


_CACHE = {}


def _regression(algo):
    """One optimizer per algorithm on a small regression, reused by every example."""
    if algo not in _CACHE:
        rng = np.random.default_rng(0)
        X = rng.normal(size=(30, 3))
        Y = X @ np.array([1.0, -2.0, 0.5])
        x, y = pt.matrix('x'), pt.vector('y')
        w = pytensor.shared(np.zeros(3), name='w')
        opt = downhill.build(algo, pt.sqr(x.dot(w) - y).mean(), inputs=[x, y])
        _CACHE[algo] = opt, w, (X, Y)
    opt, w, data = _CACHE[algo]
    w.set_value(np.zeros(3))
    return opt, w, data


def _run(opt, *args, **kwargs):
    """Run iterate() to its end; a ValueError/TypeError is returned, not raised."""
    before = _vars_snapshot(opt)
    try:
        n = len(list(opt.iterate(*args, **kwargs)))
    except (ValueError, TypeError) as err:
        after = _vars_snapshot(opt)
        assert _same(before, after), f'{err!r} left changed shared variables'
        return err
    return n


LOOP = dict(
    learning_rate=weird_numbers, momentum=weird_numbers, patience=weird_numbers,
    validate_every=weird_numbers, min_improvement=weird_numbers, max_gradient_norm=weird_numbers,
    max_gradient_elem=weird_numbers, weight_decay=weird_numbers,
)
PER_ALGO = dict(
    rms_halflife=weird_numbers, rms_regularizer=weird_numbers, beta1_halflife=weird_numbers,
    beta2_halflife=weird_numbers, rprop_increase=weird_numbers, rprop_decrease=weird_numbers,
    rprop_min_step=weird_numbers, rprop_max_step=weird_numbers,
)


@FAST
@given(algo=st.sampled_from(ALGOS), data=st.data(),
       max_updates=st.sampled_from([0, 1, 2, -1, 2.5, 'x', float('nan')]),
       on_nonfinite=st.sampled_from(['stop', 'skip', 'ignore']))
def test_hyperparameters_work_or_raise_naming_the_argument(algo, data, max_updates, on_nonfinite):
    opt, w, (X, Y) = _regression(algo)
    known = opt._valid_keywords()
    kwargs = {k: data.draw(s, label=k) for k, s in LOOP.items() if data.draw(st.booleans(), label=f'use {k}')}
    kwargs.update({k: data.draw(s, label=k) for k, s in PER_ALGO.items()
                   if k in known and data.draw(st.booleans(), label=f'use {k}')})
    if 'validate_every' in kwargs and isinstance(kwargs['validate_every'], int) and kwargs['validate_every'] > 5:
        kwargs['validate_every'] = 5
    result = _run(opt, [X, Y], max_updates=max_updates, on_nonfinite=on_nonfinite, batch_size=10,
                  **kwargs)
    if isinstance(result, Exception):
        message = str(result)
        given_names = list(kwargs) + ['max_updates', 'on_nonfinite']
        assert any(name in message for name in given_names), message
    else:
        assert result <= max_updates
        assert np.isfinite(w.get_value()).all()


@FAST
@given(algo=st.sampled_from(ALGOS), nesterov=weird_flags, reset=weird_flags,
       on_nonfinite=weird_choices, columns=st.sampled_from([3, 3, 2, 4]),
       ragged=st.sampled_from([0, 0, 1, -1]), learning_rate=st.sampled_from([0.5, 0.01]))
def test_flags_choices_and_data_that_do_not_fit_work_or_change_nothing(
        algo, nesterov, reset, on_nonfinite, columns, ragged, learning_rate):
    """A bad flag, choice or batch raises an error naming it, and the optimizer is as it was.

    Three updates run first, so that a reset or a changed learning rate
    would show; the failing call may have a reset and a new learning rate.
    """
    opt, w, (X, Y) = _regression(algo)
    rate = {} if isinstance(opt, FullBatchOptimizer) else {'learning_rate': 0.1}
    assert 1 <= _run(opt, [X, Y], max_updates=3, batch_size=10, **rate) <= 3  # L-BFGS may converge
    rng = np.random.default_rng(columns)
    Xb = rng.normal(size=(X.shape[0], columns))
    Yb = Y[:len(Y) + ragged] if ragged < 0 else np.concatenate([Y, Y[:ragged]])
    kwargs = {} if isinstance(opt, FullBatchOptimizer) else {'nesterov': nesterov,
                                                              'learning_rate': learning_rate}
    result = _run(opt, [[Xb, Yb]], max_updates=6, reset=reset, on_nonfinite=on_nonfinite, **kwargs)
    bad_data = columns != 3 or ragged != 0
    if not isinstance(result, Exception):
        assert not bad_data
        return
    message = str(result)
    if bad_data and 'fit the loss' in message:
        assert isinstance(result, downhill.DataError)
        assert "'x' of shape" in message or "'y' of shape" in message, message
    else:
        assert any(name in message for name in ('nesterov', 'reset', 'on_nonfinite')), message


@FAST
@given(rows=st.integers(0, 12), batch_size=st.sampled_from([-1, 0, 1, 5, 12, 13, 100]),
       iteration_size=st.sampled_from([None, 0, 1, 3, -1]),
       poison=st.sampled_from([None, np.nan, np.inf, -np.inf]),
       dtype=st.sampled_from(['float64', 'float32', 'int64', 'complex128']),
       on_nonfinite=st.sampled_from(['stop', 'skip']))
def test_data_works_or_raises(rows, batch_size, iteration_size, poison, dtype, on_nonfinite):
    opt, w, _ = _regression('adam')
    rng = np.random.default_rng(rows)
    X = rng.normal(size=(rows, 3)).astype(dtype)
    Y = rng.normal(size=rows).astype(dtype)
    if poison is not None and rows and dtype.startswith("float"):
        X[rows // 2, 1] = poison
    try:
        train = downhill.Dataset([X, Y], batch_size=batch_size, iteration_size=iteration_size, rng=1)
    except (ValueError, TypeError) as err:
        message = str(err)
        assert ('empty' in message and rows == 0) or 'iteration_size' in message, message
        return
    result = _run(opt, train, max_updates=3, learning_rate=0.01, on_nonfinite=on_nonfinite)
    if isinstance(result, Exception):
        message = str(result)
        assert ('iteration_size 0' in message or 'complex' in message
                or 'would lose information' in message), message
        return
    assert np.isfinite(w.get_value()).all()


@FEW
@given(shape=st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple),
       dtype=st.sampled_from(['float32', 'float64']), algo=st.sampled_from(ALGOS),
       scale=st.sampled_from([0.0, 1.0, 1e6]))
def test_parameter_shapes_and_dtypes(shape, dtype, algo, scale):
    target = np.full(shape, 2.0 * (scale + 1), dtype)
    p = pytensor.shared(np.full(shape, scale, dtype), name='p')
    opt = downhill.build(algo, pt.sqr(p - target).sum())
    before = opt.evaluate(None)['loss']
    rate = {} if isinstance(opt, FullBatchOptimizer) else {'learning_rate': 0.01}
    n = len(list(opt.iterate(None, max_updates=3, validate_every=1, patience=10, **rate)))
    value = p.get_value()
    assert value.dtype == dtype and value.shape == shape
    assert np.isfinite(value).all()
    assert n <= 3 and opt.evaluate(None)['loss'] <= before


@pytest.mark.parametrize('kwargs, name', [
    (dict(learning_rate='0.1'), 'learning_rate'),
    (dict(learning_rate=float('nan')), 'learning_rate'),
    (dict(learning_rate=-0.1), 'learning_rate'),
    (dict(learning_rate=float('inf')), 'learning_rate'),
    (dict(rms_halflife=0), 'rms_halflife'),
    (dict(rms_halflife=-3), 'rms_halflife'),
    (dict(momentum=[0.9]), 'momentum'),
    (dict(patience=-1), 'patience'),
    (dict(patience=1.5), 'patience'),
    (dict(max_updates=-1), 'max_updates'),
    (dict(validate_every=0), 'validate_every'),
    (dict(on_nonfinite='ignore'), 'on_nonfinite'),
    (dict(checkpoint_every=0, checkpoint='x.npz'), 'checkpoint_every'),
])
def test_mistakes_are_errors_naming_the_argument(kwargs, name):
    opt, w, (X, Y) = _regression('rmsprop')
    err = _run(opt, [X, Y], **{'max_updates': 1, **kwargs})
    assert isinstance(err, (ValueError, TypeError)) and name in str(err), err


@pytest.mark.parametrize('algo, kwargs, text', [
    ('sgd', dict(momentum=1.0), 'momentum=1.0 >= 1'),
    ('rprop', dict(rprop_min_step=2, rprop_max_step=1), 'rprop_min_step=2 > rprop_max_step=1'),
])
def test_unwise_values_warn_and_run(algo, kwargs, text, downhill_log):
    opt, w, (X, Y) = _regression(algo)
    n = _run(opt, [X, Y], max_updates=2, learning_rate=1e-3, **kwargs)
    assert n == 2
    assert any(text in r.getMessage() for r in downhill_log.records if r.levelname == 'WARNING')


def test_patience_zero_and_max_updates_zero():
    opt, w, (X, Y) = _regression('sgd')
    assert _run(opt, [X, Y], max_updates=0) == 0
    assert np.array_equal(w.get_value(), np.zeros(3))
    # patience 0: the first validation that fails to improve stops
    n = _run(opt, [X, Y], patience=0, validate_every=1, min_improvement=0.99,
             learning_rate=1e-6, max_updates=50)
    assert n == 1
