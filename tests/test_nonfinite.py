"""NaN and infinity: the loop stops and restores the best parameters, or skips the bad update."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import checkpoint as ck
from util import build_rosen, linear_regression


def test_diverging_sgd_stops_with_finite_best_parameters(downhill_log):
    opt, train = build_rosen('sgd', dtype='float64')
    x = opt._params[0]
    n = len(list(opt.iterate(train, learning_rate=0.01, validate_every=1, patience=100,
                             max_updates=1000)))
    # x goes -3 -> 1e3 -> 1e7 -> 1e22 -> 1e66 -> 1e198 -> the loss overflows
    assert n == 5
    assert np.isfinite(x.get_value()).all()
    np.testing.assert_array_equal(x.get_value(), [-3.0, -3.0])  # the only good validation
    warnings = [r.getMessage() for r in downhill_log.records if r.levelname == 'WARNING']
    assert any("non-finite validation monitor 'loss' (inf) at iteration 5" in w for w in warnings)


def test_nan_training_monitor_names_the_monitor(downhill_log):
    w = pytensor.shared(np.array([1.0, 2.0]), name='w')
    y = pt.vector('y')
    opt = downhill.build('adam', pt.sqr(w - y).sum(), inputs=[y],
                         monitors=[('root', pt.sqrt(y[0]))])
    good, bad = [np.array([0.5, 0.5])], [np.array([-1.0, 0.5])]
    n = len(list(opt.iterate([good, bad], [good], learning_rate=0.1, validate_every=3)))
    assert n == 0  # the first pass already saw sqrt(-1)
    assert "non-finite training monitor 'root' (nan) at iteration 1" in downhill_log.text
    np.testing.assert_array_equal(w.get_value(), [1.0, 2.0])


def _regression(algo='adam'):
    loss, (w, b), (x, y), (X, Y), _ = linear_regression(n=80)
    opt = downhill.build(algo, loss, inputs=[x, y])
    batches = [[X[i:i + 20], Y[i:i + 20]] for i in range(0, 80, 20)]
    return opt, (w, b), batches


@pytest.mark.parametrize('algo', ['adam', 'sgd', 'rprop'])
def test_skip_discards_a_poisoned_batch_exactly(algo, downhill_log):
    kw = dict(learning_rate=0.05, momentum=0.5 if algo != 'rprop' else 0, validate_every=2,
              max_updates=6, on_nonfinite='skip')
    opt, (w, b), batches = _regression(algo)
    poisoned = [batches[0], [batches[1][0], batches[1][1].copy()], batches[2], batches[3]]
    poisoned[1][1][3] = np.nan
    n = len(list(opt.iterate(poisoned, batches, **kw)))

    clean, (w2, b2), batches2 = _regression(algo)
    list(clean.iterate([batches2[0], batches2[2], batches2[3]], batches2, **kw))

    assert n == 6  # training continued
    # the poisoned batch changed nothing: parameters equal a run without it, bit for bit
    assert np.array_equal(w.get_value(), w2.get_value())
    assert np.array_equal(b.get_value(), b2.get_value())
    assert opt.update_count.get_value() == clean.update_count.get_value() == 18
    assert '6 updates skipped for non-finite values' in downhill_log.text
    assert 'skipped 1 update(s) with a non-finite loss' in downhill_log.text


def test_skip_catches_a_non_finite_gradient_with_a_finite_loss():
    # d/dx sqrt(x) is infinite at 0; the loss there is finite
    x = pytensor.shared(np.array([0.0, 4.0]), name='x')
    opt = downhill.build('sgd', pt.sqrt(x).sum() + pt.sqr(x).sum())
    list(opt.iterate(None, learning_rate=0.1, max_updates=3, on_nonfinite='skip'))
    np.testing.assert_array_equal(x.get_value(), [0.0, 4.0])
    assert opt._states[(None, 'skipped_updates')].get_value() == 3


def test_get_updates_can_be_guarded():
    x = pytensor.shared(np.array([1.0]), name='x')
    t = pt.scalar('t')
    loss = pt.sqr(x - t).sum()
    opt = downhill.build('sgd', loss, inputs=[t])
    fn = pytensor.function([t], loss, updates=opt.get_updates(learning_rate=0.25, on_nonfinite='skip'))
    fn(np.nan)
    assert x.get_value()[0] == 1.0
    fn(3.0)
    assert x.get_value()[0] == 2.0


def test_stop_keeps_the_last_good_checkpoint(tmp_path, downhill_log):
    path = tmp_path / 'c.npz'
    opt, train = build_rosen('sgd', dtype='float64')
    list(opt.iterate(train, learning_rate=0.01, validate_every=10, checkpoint_every=2,
                     max_updates=100, checkpoint=path))
    saved = ck.read(path)
    assert saved.meta['loop']['iteration'] == 4  # written at 2 and 4; at 6 the loss is inf
    assert np.isfinite(saved.arrays['param/0']).all()
    assert 'not writing checkpoint' in downhill_log.text


def test_skip_with_nan_validation_data_warns_and_runs_on(downhill_log):
    opt, (w, b), batches = _regression('adam')
    bad = [[batches[0][0], np.full(20, np.nan)]]
    n = len(list(opt.iterate(batches, bad, learning_rate=0.05, validate_every=1, patience=2,
                             on_nonfinite='skip')))
    # a NaN never improves, not even the first: validations 0, 1, 2 fail, and patience stops
    assert n == 2
    assert "validation monitor 'loss' is nan" in downhill_log.text
    assert 'patience exhausted' in downhill_log.text
