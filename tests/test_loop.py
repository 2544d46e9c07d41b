"""iterate()/minimize()/evaluate(): data forms, early stopping, interrupts, logging."""

import collections
import logging

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from util import build_rosen, linear_regression


def test_monitor_order_and_types():
    loss, (w, b), (x, y), (X, Y), _ = linear_regression()
    opt = downhill.build('sgd', loss, inputs=[x, y], monitors={'w0': w[0], 'abs_b': abs(b)},
                         monitor_gradients=True)
    tm, vm = next(opt.iterate([X, Y], batch_size=50, learning_rate=0.01))
    assert isinstance(tm, collections.OrderedDict)
    assert list(tm) == ['loss', 'w0', 'abs_b', 'grad(w)', 'grad(b)']
    assert list(vm) == list(tm)
    assert all(type(v) is float for v in tm.values())


def test_monitor_values_are_batch_averages():
    loss, (w, b), (x, y), (X, Y), _ = linear_regression(n=100)
    opt = downhill.build('sgd', loss, inputs=[x, y])
    batches = [[X[i:i + 25], Y[i:i + 25]] for i in range(0, 100, 25)]
    vm = opt.evaluate(batches)
    expected = np.mean([np.mean((Xb @ np.zeros(3) - Yb) ** 2) for Xb, Yb in batches])
    assert vm['loss'] == pytest.approx(expected, rel=1e-12)


class _Passes:
    """An iterable that is not a list: one ``iter()`` is one pass over its batches."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return (list(b) for b in self.batches)


def test_iterable_passes_average_and_empty_pass_names_the_data():
    loss, (w, b), (x, y), (X, Y), _ = linear_regression(n=90)
    opt = downhill.build('sgd', loss, inputs=[x, y])
    batches = [[X[i:i + 30], Y[i:i + 30]] for i in range(0, 90, 30)]
    expected = np.mean([np.mean((Xb @ np.zeros(3) - Yb) ** 2) for Xb, Yb in batches])
    assert opt.evaluate(_Passes(batches))['loss'] == pytest.approx(expected, rel=1e-12)
    assert opt.evaluate(_Passes(batches[:1]))['loss'] == pytest.approx(
        np.mean((batches[0][0] @ np.zeros(3) - batches[0][1]) ** 2), rel=1e-12)
    with pytest.raises(ValueError, match='valid produced no batches'):
        opt.evaluate(_Passes([]))


def test_unnamed_gradient_monitor(downhill_log):
    x = pytensor.shared(np.zeros(2))
    opt = downhill.build('sgd', pt.sqr(x - 1).sum(), monitor_gradients=True)
    tm, _ = next(opt.iterate(None))
    assert 'grad(unnamed0)' in tm
    assert 'grad(unnamed0)' in downhill_log.text


def test_linear_regression_converges_with_early_stopping(downhill_log):
    loss, (w, b), (x, y), (X, Y), true_w = linear_regression(n=300)
    opt = downhill.build('adam', loss, inputs=[x, y])
    train = downhill.Dataset([X[:200], Y[:200]], batch_size=20, rng=0)
    valid = downhill.Dataset([X[200:], Y[200:]], batch_size=0)
    first = opt.evaluate(valid)['loss']
    n = 0
    for tm, vm in opt.iterate(train, valid, learning_rate=0.05, patience=2, validate_every=5,
                              min_improvement=0.01):
        n += 1
        assert n < 500
    final = opt.evaluate(valid)['loss']
    assert final < first / 1000
    np.testing.assert_allclose(w.get_value(), true_w, atol=0.01)
    assert 'patience exhausted' in downhill_log.text


def test_max_updates_counts_iterations():
    opt, train = build_rosen('sgd')
    assert len(list(opt.iterate(train, max_updates=7))) == 7
    assert list(opt.iterate(train, max_updates=0)) == []


def test_validation_schedule():
    opt, _ = build_rosen('sgd')
    calls = []
    real = opt.evaluate

    results = list(opt.iterate(None, max_updates=7, validate_every=3))
    valids = [vm for _, vm in results]
    # validated before updates 1, 4 and 7: the dicts change exactly there
    assert valids[0] is valids[1] is valids[2]
    assert valids[3] is valids[4] is valids[5]
    assert valids[6] is not valids[5]
    del calls, real


def test_patience_counts_failed_validations():
    x = pytensor.shared(np.float64(3.0), name='x')
    # a learning rate > 1 overshoots: the loss grows with every step, so every
    # validation after the first fails; with patience 2 the third failure stops
    opt = downhill.build('sgd', pt.sqr(x), params=[x])
    n = len(list(opt.iterate(None, learning_rate=1.05, patience=2, validate_every=1)))
    assert n == 3
    assert x.get_value() == 3.0  # best restored


def test_best_parameters_restored():
    x = pytensor.shared(np.array([3.0]), name='x')
    loss = pt.sqr(x).sum()
    opt = downhill.build('sgd', loss)
    seen = [p for p in (x.get_value()[0] for _ in opt.iterate(None, learning_rate=1.05, validate_every=1,
                                                            patience=1))]
    # lr > 1 overshoots: |x| grows every step, so the start was the best point
    assert abs(seen[-1]) > 3
    assert x.get_value()[0] == 3.0


def test_min_improvement_relative():
    x = pytensor.shared(np.array([3.0]), name='x')
    opt = downhill.build('sgd', pt.sqr(x).sum())
    # each step shrinks the loss by (1-2*0.01)^2 ~ 4%: below a 10% bar, above 1%
    n10 = len(list(opt.iterate(None, learning_rate=0.01, validate_every=1, patience=0, min_improvement=0.1)))
    x.set_value(np.array([3.0]))
    n1 = len(list(opt.iterate(None, learning_rate=0.01, validate_every=1, patience=0,
                              min_improvement=0.01, max_updates=50)))
    assert n10 == 1 and n1 == 50


def test_keyboard_interrupt_keeps_best(downhill_log):
    x = pytensor.shared(np.array([3.0]), name='x')
    opt = downhill.build('sgd', pt.sqr(x).sum())
    count = [0]

    def batches():
        count[0] += 1
        if count[0] == 25:
            raise KeyboardInterrupt
        return []

    result = opt.minimize(downhill.Dataset(batches, iteration_size=1), None,
                          learning_rate=0.1, validate_every=5, patience=100)
    # it stopped without a traceback and restored the best validated parameters
    assert result is not None
    assert 'interrupted' in downhill_log.text
    assert 0 < abs(x.get_value()[0]) < 3.0


def test_interrupt_from_minimize_loop():
    loss, (w, b), (x, y), (X, Y), _ = linear_regression()
    opt = downhill.build('sgd', loss, inputs=[x, y])
    it = opt.iterate([X, Y], learning_rate=0.1, validate_every=1)
    next(it)
    it.close()  # a consumer stopping early is allowed and raises nothing


@pytest.mark.parametrize('form', ['arrays', 'batches', 'dataset', 'callable', 'iterable', 'tuple'])
def test_train_forms(form):
    loss, (w, b), (x, y), (X, Y), true_w = linear_regression(n=64)
    opt = downhill.build('sgd', loss, inputs=[x, y])
    batches = [[X[i:i + 16], Y[i:i + 16]] for i in range(0, 64, 16)]
    state = {'i': 0}

    def call():
        state['i'] = (state['i'] + 1) % 4
        return batches[state['i']]

    train = {'arrays': [X, Y], 'tuple': (X, Y), 'batches': batches,
             'dataset': downhill.Dataset([X, Y], batch_size=16),
             'callable': call, 'iterable': (b for b in [])}[form]
    if form == 'iterable':
        class Passes:
            def __iter__(self):
                return iter(batches)
        train = Passes()
    before = opt.evaluate(batches)['loss']
    for _ in opt.iterate(train, batch_size=16, learning_rate=0.05, max_updates=20):
        pass
    assert opt.evaluate(batches)['loss'] < before / 5


def test_loss_without_inputs_forms():
    for train in (None, [[]], [()]):
        x = pytensor.shared(np.array([3.0]), name='x')
        opt = downhill.build('sgd', pt.sqr(x).sum())
        list(opt.iterate(train, learning_rate=0.1, max_updates=3, validate_every=100))
        # 3 steps of x <- 0.8 x; the validation after the last update keeps them
        assert x.get_value()[0] == pytest.approx(3.0 * 0.8 ** 3)


def test_one_batch_holding_one_array():
    x = pt.vector('x')
    w = pytensor.shared(np.zeros(3), name='w')
    opt = downhill.build('sgd', pt.sqr(w - x).sum())
    Y = np.array([1.0, 2.0, 3.0])
    tm, vm = next(opt.iterate([[Y]], learning_rate=0.1))
    assert vm['loss'] == pytest.approx(14.0)


def test_minimize_quick_start():
    """The Theano-era documentation's quick start, unchanged but for the imports."""
    rs = np.random.RandomState(3)
    A, B, K = 20, 5, 3
    u = pytensor.shared(rs.randn(A, K), name='u')
    v = pytensor.shared(rs.randn(K, B), name='v')
    z = pt.matrix()
    err = pt.sqr(z - pt.dot(u, v))
    loss = err.mean() + abs(u).mean() + (v * v).mean()
    y = np.dot(rs.randn(A, K), rs.randn(K, B)) + rs.randn(A, B)
    monitors = (('err', err.mean()), ('|u|<0.1', (abs(u) < 0.1).mean()), ('|v|<0.1', (abs(v) < 0.1).mean()))
    f = pytensor.function([z], loss)
    before = f(y)
    tm, vm = downhill.minimize(loss=loss, train=[y], patience=0, batch_size=A, max_gradient_norm=1,
                               learning_rate=0.1, monitors=monitors, monitor_gradients=True)
    assert list(tm) == ['loss', 'err', '|u|<0.1', '|v|<0.1', 'grad(u)', 'grad(v)'] or \
        list(tm) == ['loss', 'err', '|u|<0.1', '|v|<0.1', 'grad(v)', 'grad(u)']
    assert f(y) < before / 2
    updates = downhill.build('rmsprop', loss).get_updates(batch_size=A, max_gradient_norm=1, learning_rate=0.01)
    func = pytensor.function([z], loss, updates=list(updates))
    start = func(y)
    for _ in range(100):
        last = func(y)
    assert last < start


def test_minimize_old_style_dataset():
    x = pytensor.shared(-3 + np.zeros((2,), 'f'), name='x')
    data = downhill.Dataset(np.zeros((1, 1), 'f'), batch_size=1)
    data._slices = [[]]
    downhill.minimize((100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum(), data, algo='nag',
                      learning_rate=0.001, momentum=0.9, patience=1, min_improvement=0.1, max_gradient_norm=1)
    assert np.allclose(x.get_value(), [1, 1], atol=1e-2), x.get_value()


def test_minimize_train_batches():
    loss, (w, b), (x, y), (X, Y), _ = linear_regression(n=100)
    calls = []
    opt_iter = downhill.minimize(loss, [X, Y], inputs=[x, y], algo='sgd', batch_size=10, train_batches=3,
                                 learning_rate=0.1, max_updates=2)
    assert opt_iter is not None
    del calls


def test_state_carries_over_unless_reset():
    x = pytensor.shared(np.array([3.0]), name='x')
    opt = downhill.build('adam', pt.sqr(x).sum())
    list(opt.iterate(None, max_updates=5, learning_rate=0.1))
    t = [v for (p, name), v in opt._states.items() if name == 't'][0]
    assert t.get_value() == 5
    list(opt.iterate(None, max_updates=2, learning_rate=0.1))
    assert t.get_value() == 7
    list(opt.iterate(None, max_updates=2, learning_rate=0.1, reset=True))
    assert t.get_value() == 2


def test_user_updates_and_random_streams():
    counter = pytensor.shared(np.float64(0), name='counter')
    rng = pytensor.shared(np.random.default_rng(0))
    noise = downhill._compat.random_normal(rng, (), 'float64')[1]
    x = pytensor.shared(np.array([3.0]), name='x')
    loss = pt.sqr(x).sum() + 0 * noise + 0 * counter
    opt = downhill.build('sgd', loss, updates=[(counter, counter + 1)], monitors=[('noise', noise)])
    assert opt._params == [x]
    seen = [tm['noise'] for tm, _ in opt.iterate(None, max_updates=3, validate_every=100)]
    assert counter.get_value() == 3
    assert len(set(seen)) == 3  # the random stream advances every step


def test_random_draws_inside_an_op_from_graph_advance():
    """pm.Minibatch hides its index draw in an OpFromGraph that returns the next generator."""
    from pytensor.compile.builders import OpFromGraph
    rng = pytensor.shared(np.random.default_rng(0), name='batch_rng')
    data = pt.vector('data')
    rng_in, data_in = rng.type(), pt.vector()
    next_rng, index = pt.random.integers(0, 1000, size=2, rng=rng_in).owner.outputs
    sample, _ = OpFromGraph([data_in, rng_in], [data_in[index], next_rng])(data, rng)
    x = pytensor.shared(np.array(0.0), name='x')
    opt = downhill.build('sgd', pt.sqr(x - sample).mean(), inputs=[data],
                         monitors=[('first', sample[0])])
    values = np.arange(1000.0)
    seen = [tm['first'] for tm, _ in opt.iterate([[values]], max_updates=6, validate_every=100)]
    expected = np.random.default_rng(0)
    draws = [float(expected.integers(0, 1000, size=2)[0]) for _ in range(7)]
    assert seen == draws[1:]  # the validation before the first update drew draws[0]


def test_float32_model_stays_float32():
    for algo in downhill.algorithms():
        if algo == 'tester' or algo not in ('sgd', 'nag', 'rprop', 'rmsprop', 'adagrad', 'adadelta', 'esgd', 'adam'):
            continue
        x = pt.matrix('x', dtype='float32')
        w = pytensor.shared(np.ones((3, 2), 'float32'), name='w')
        loss = pt.sqr(x.dot(w)).mean()
        opt = downhill.build(algo, loss)
        for var, expr in opt.get_updates(momentum=0.5, max_gradient_norm=1):
            assert expr.type == var.type, (algo, var, expr.type)
        X64 = np.random.default_rng(0).normal(size=(8, 3))  # float64 data: cast to float32
        list(opt.iterate([X64], batch_size=4, max_updates=2, learning_rate=1e-3, momentum=0.5))
        assert w.get_value().dtype == np.float32


def test_int_data_cast_to_float_but_not_float_to_int():
    x = pt.vector('x')
    w = pytensor.shared(np.zeros(3), name='w')
    opt = downhill.build('sgd', pt.sqr(w - x).sum())
    opt.evaluate([[np.array([1, 2, 3])]])
    i = pt.lvector('i')
    opt2 = downhill.build('sgd', pt.sqr(w[i]).sum(), inputs=[i])
    with pytest.raises(TypeError, match=r"input 0 \('i'\) expects int64, got float64 data"):
        opt2.evaluate([[np.array([0.0, 1.0])]])


def test_logging(downhill_log):
    opt, train = build_rosen('rmsprop')
    list(opt.iterate(train, max_updates=12, learning_rate=0.01, validate_every=5))
    text = downhill_log.text
    assert 'RMSProp: learning_rate=0.01' in text
    validations = [r.getMessage() for r in downhill_log.records if r.getMessage().startswith('validation')]
    assert validations[0].startswith('validation 0 loss=') and len(validations) == 4
    assert validations[3].startswith('validation 12 loss=') and '(after the last update)' in validations[3]
    assert 'RMSProp 1 loss=' in text
    assert 'stopped after 12 iterations: max_updates=12 reached' in text
    improved = [r.getMessage() for r in downhill_log.records if r.getMessage().startswith('validation')]
    assert improved[0].endswith(' *')


def test_silencing_the_logger(caplog):
    caplog.set_level(logging.WARNING, logger='downhill')
    opt, train = build_rosen('sgd')
    list(opt.iterate(train, max_updates=2))
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]


def test_no_output_on_import():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, '-c', 'import downhill'], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == '' and out.stderr == ''


@pytest.mark.compiled
def test_default_backend_matches_fast_compile():
    """The default (Numba) backend computes the same trajectory as FAST_COMPILE."""
    results = []
    for mode in (None, 'FAST_COMPILE'):
        x = pytensor.shared(np.array([-1.2, 1.0]), name='x')
        loss = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
        opt = downhill.build('adam', loss, mode=mode)
        path = [x.get_value() for _ in opt.iterate(None, max_updates=20, learning_rate=0.01,
                                                   validate_every=100)]
        results.append(np.array(path))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)


def test_run_ending_between_validations_keeps_the_last_update_if_better(downhill_log):
    x = pytensor.shared(np.array(3.0), name='x')
    opt = downhill.build('sgd', pt.sqr(x - 1))
    opt.minimize(None, max_updates=3, validate_every=10, learning_rate=0.1)
    assert x.get_value() == pytest.approx(1 + 2 * 0.8 ** 3)   # not 3.0, the value before training
    assert 'validation 3 loss=' in downhill_log.text and '(after the last update)' in downhill_log.text


def test_validation_after_the_last_update_leaves_the_validation_data_where_it_was():
    import json
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    x = pt.matrix('x')
    w = pytensor.shared(np.zeros(2), name='w')
    opt = downhill.build('sgd', pt.sqr(x.dot(w) - 1).mean(), inputs=[x])
    valid = downhill.Dataset([X], batch_size=8, iteration_size=2, rng=1)
    opt.minimize([X], valid, max_updates=3, validate_every=2, learning_rate=0.1)
    twin = downhill.Dataset([X], batch_size=8, iteration_size=2, rng=1)
    for _ in range(2):   # the validations at iterations 0 and 2; the final one was put back
        list(twin)
    assert json.dumps(valid.state(), sort_keys=True) == json.dumps(twin.state(), sort_keys=True)
    assert not np.array_equal(w.get_value(), np.zeros(2))


def test_monitor_names_are_kept_verbatim():
    """Monitor names are dict keys, whatever characters they hold (quotes, braces, newlines)."""
    loss, (w, b), (x, y), (X, Y), _ = linear_regression()
    odd = ["it's", 'a "b" {c}', 'two\nlines', '\\']
    opt = downhill.build('sgd', loss, inputs=[x, y], monitors=[(name, w[0] * i) for i, name in enumerate(odd)])
    tm, vm = next(opt.iterate([[X, Y]], learning_rate=0.01))
    assert list(tm) == ['loss'] + odd
    assert tm[odd[0]] == 0.0 and tm[odd[3]] == pytest.approx(3 * tm[odd[1]])


def test_progress_is_rate_limited_and_tells_when_it_is_due(monkeypatch, downhill_log):
    import types
    from downhill import logs
    now = [100.0]
    # the logs module's clock only: time.monotonic itself stays as it is for everyone else
    monkeypatch.setattr(logs, 'time', types.SimpleNamespace(monotonic=lambda: now[0]))
    progress = logs.Progress('X', interval=0.1, first=3)
    due = [progress(i, {'loss': 1.0}) for i in (1, 2, 3)]
    assert due == [0.0, 0.0, 100.1]  # the first iterations, then not before interval
    now[0] = 100.05
    assert progress(4, {'loss': 1.0}) == 100.1  # called early anyway: no line
    now[0] = 100.2
    assert progress(5, {'loss': 0.5}) == pytest.approx(100.3)
    assert [r.getMessage() for r in downhill_log.records] == [
        'X 1 loss=1', 'X 2 loss=1', 'X 3 loss=1', 'X 5 loss=0.5']
    downhill_log.set_level(logging.DEBUG, logger='downhill')
    assert progress(6, {'loss': 0.25}) == 0.0  # every iteration
    downhill_log.set_level(logging.WARNING, logger='downhill')
    assert progress(7, {'loss': 0.125}) == pytest.approx(100.3)  # silent; looks again after interval
    assert downhill_log.records[-1].getMessage() == 'X 6 loss=0.25'


# ----------------------------------------------------------------------------
# a run without data keeps its work; logging configured after the import


@pytest.mark.parametrize('algo', ['sgd', 'adam', 'nag'])
def test_minimize_without_data_keeps_the_last_update(algo):
    """max_updates below validate_every: the last update is validated and kept, not the start."""
    x = pytensor.shared(np.ones(3), name='x')
    downhill.minimize((x ** 2).sum(), None, algo=algo, learning_rate=0.1, max_updates=5)
    if algo == 'sgd':  # each update multiplies x by 1 - 2 * 0.1
        np.testing.assert_allclose(x.get_value(), np.full(3, 0.8 ** 5), rtol=1e-12)
    assert (x.get_value() ** 2).sum() < 0.5 * 3


def test_logging_configured_after_the_import_shows_each_line_once():
    import subprocess
    import sys
    code = ('import numpy as np, pytensor, logging, downhill\n'
            'logging.basicConfig(level=logging.INFO)\n'
            "x = pytensor.shared(np.ones(3), name='x')\n"
            "downhill.minimize((x ** 2).sum(), None, algo='sgd', max_updates=2, mode='FAST_COMPILE')\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if 'downhill' in line]
    assert any('validation 0 loss=3' in line for line in lines)
    assert len(lines) == len(set(lines)) >= 4
    # and without any configuration the library's own handler still shows progress
    code = code.replace('logging.basicConfig(level=logging.INFO)\n', '')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.stderr.count('validation 0 loss=3') == 1


PROGRESS_SCRIPT = ('import numpy as np, pytensor, downhill\n'
                   "x = pytensor.shared(np.ones(3), name='x')\n"
                   "downhill.minimize((x ** 2).sum(), None, algo='sgd', learning_rate=1e-4,\n"
                   "                  max_updates=3000, validate_every=1000, mode='FAST_COMPILE')\n"
                   "print('done')\n")


def test_progress_in_a_log_file_is_a_few_lines_not_one_per_iteration():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, '-c', PROGRESS_SCRIPT], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    iterations = [line for line in out.stderr.splitlines() if ' downhill SGD ' in line
                  and line.split(' downhill SGD ')[1].split()[0].isdigit()]
    # the first three, then at most one per 5 s (Progress.interval) of a run of a few seconds
    assert 3 <= len(iterations) <= 10, iterations
    assert out.stderr.count('downhill validation ') == 4  # every validation stays in the log: 0-3000


def test_progress_on_a_terminal_is_one_line_rewritten_in_place():
    import os
    import pty
    import subprocess
    import sys
    parent, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, '-c', PROGRESS_SCRIPT], stderr=child,
                            stdout=subprocess.PIPE, text=True)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    os.close(parent)
    screen = b''.join(chunks).decode()
    lines = screen.replace('\r\n', '\n').split('\n')
    # no log line per iteration: the iterations are one line rewritten with carriage returns
    assert not any(line.split(' downhill SGD ')[-1].split(' ')[0].isdigit()
                   for line in lines if ' downhill SGD ' in line and '\r' not in line)
    assert screen.count('\rSGD ') >= 2
    assert 'stopped after 3000 iterations' in screen
