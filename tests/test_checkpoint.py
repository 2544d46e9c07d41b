"""Checkpoints: exact resume (in a fresh process), atomic writes, refusals, signals."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import checkpoint as ck
from downhill import interrupts
from downhill.second_order import FullBatchOptimizer
from util import linear_regression

#: The library's algorithms with a compiled per-batch step (the full-batch methods, whose
#: curvature memory lives in Python, have test_full_batch_resume_in_fresh_process_is_bit_for_bit).
STOCHASTIC = sorted(k for k, v in downhill.algorithms().items()
                    if v.__module__.startswith('downhill.') and not issubclass(v, FullBatchOptimizer))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(downhill.__file__)))

# Runs every algorithm for N or 2N iterations with checkpoint=; one process per side.
RESUME_CHILD = textwrap.dedent('''
    import json, logging, sys
    import numpy as np
    import pytensor
    pytensor.config.mode = 'FAST_COMPILE'
    import pytensor.tensor as pt
    import downhill
    from downhill.second_order import FullBatchOptimizer
    logging.getLogger('downhill').setLevel(logging.WARNING)
    STOCHASTIC = [k for k, v in downhill.algorithms().items() if not issubclass(v, FullBatchOptimizer)]

    def build(algo):
        rng = np.random.default_rng(0)
        X = rng.normal(size=(40, 3))
        Y = X @ np.array([1.5, -2.0, 0.5]) + 0.1 * rng.normal(size=40)
        x, y = pt.matrix('x'), pt.vector('y')
        w = pytensor.shared(np.zeros(3), name='w')
        b = pytensor.shared(np.float64(0.0), name='b')
        opt = downhill.build(algo, pt.sqr(x.dot(w) + b - y).mean(), inputs=[x, y])
        return opt, (X, Y)

    def run(opt, data, path, n):
        """One run from the start (a reused optimizer is reset: no second compile)."""
        X, Y = data
        opt.set_params([np.zeros(3), np.float64(0.0)])
        if hasattr(opt, 'rng'):
            opt.rng.set_value(np.random.default_rng(opt.seed))
        # shuffled mini-batches; 4 of 6 batches per iteration, so the position matters
        train = downhill.Dataset([X[:32], Y[:32]], batch_size=6, iteration_size=4, rng=5)
        valid = downhill.Dataset([X[32:], Y[32:]], batch_size=3, rng=7)
        kw = dict(learning_rate=0.01, momentum=0.5, validate_every=2, checkpoint_every=3,
                  patience=100, reset=True)
        if isinstance(opt, downhill.SGD):  # host-side schedule state too
            kw['learning_rate'] = 0.05 * downhill.schedules.reduce_on_plateau(
                patience=0, factor=0.5, min_improvement=0.3)
        return [tm['loss'] for tm, vm in opt.iterate(train, valid, max_updates=n,
                                                      checkpoint=path, **kw)]

    phase, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {}
    for algo in sorted(STOCHASTIC):
        opt, data = build(algo)
        if phase == 'first':
            out[algo] = {'full': run(opt, data, f'{folder}/full-{algo}.npz', 2 * n),
                         'part': run(opt, data, f'{folder}/part-{algo}.npz', n)}
        else:
            out[algo] = {'rest': run(opt, data, f'{folder}/part-{algo}.npz', 2 * n)}
    json.dump(out, open(f'{folder}/{phase}.json', 'w'))
''')

# Runs each full-batch method (and L-BFGS with bounds) for N or 2N iterations with checkpoint=;
# one process per side. A float32 parameter: the parameters hold the float64 point rounded.
FULL_BATCH = {'lbfgs': {'history': 3}, 'bfgs': {}, 'newtoncg': {}, 'lbfgs-box': {}}
FULL_BATCH_CHILD = textwrap.dedent('''
    import json, logging, sys
    import numpy as np
    import pytensor
    pytensor.config.mode = 'FAST_COMPILE'
    import pytensor.tensor as pt
    import downhill
    logging.getLogger('downhill').setLevel(logging.WARNING)
    CASES = json.loads(sys.argv[4])

    def run(case, path, n):
        """One run from the start, by a new optimizer (so its evaluation counts start at 0)."""
        rng = np.random.default_rng(0)
        X = rng.normal(size=(40, 4))
        Y = X.sum(axis=1) + 0.1 * rng.normal(size=40)
        x, y = pt.matrix('x'), pt.vector('y')
        w = pytensor.shared(np.full(4, -1.0), name='w')
        b = pytensor.shared(np.float32(2.0), name='b')
        rosenbrock = pt.sum(100 * pt.sqr(w[1:] - pt.sqr(w[:-1])) + pt.sqr(1 - w[:-1]))
        loss = rosenbrock + 0.1 * pt.sqr(x.dot(w) + b - y).mean() + pt.sqr(pt.sqr(b - 0.3))
        box = {w: downhill.prox.box(-2.0, 0.3)} if case.endswith('-box') else None
        opt = downhill.build(case.split('-')[0], loss, inputs=[x, y], constraints=box)
        # 4 batches, seeded: their order is the order of the sums over them
        train = downhill.Dataset([X, Y], batch_size=10, rng=4)
        losses = [tm['loss'] for tm, vm in opt.iterate(train, max_updates=n, checkpoint=path,
                                                        gtol=0, ftol=0, **CASES[case])]
        return {'losses': losses, 'evaluations': opt.evaluations}

    phase, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {}
    for case in CASES:
        if phase == 'first':
            out[case] = {'full': run(case, f'{folder}/full-{case}.npz', 2 * n),
                         'part': run(case, f'{folder}/part-{case}.npz', n)}
        else:
            out[case] = {'rest': run(case, f'{folder}/part-{case}.npz', 2 * n)}
    json.dump(out, open(f'{folder}/{phase}.json', 'w'))
''')

# Writes 8 MB checkpoints to one path as fast as it can, numbering them.
WRITER_CHILD = textwrap.dedent('''
    import sys
    import numpy as np
    from downhill import checkpoint
    path = sys.argv[1]
    big = np.random.default_rng(0).normal(size=1_000_000)
    for i in range(10**9):
        checkpoint.write(path, {'big': big + i}, {'format': checkpoint.FORMAT, 'count': i})
        if i == 0:
            print('ready', flush=True)
''')


def _child(code, *args, **kwargs):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.Popen([sys.executable, '-c', code, *map(str, args)], env=env, **kwargs)


def _problem(algo='sgd', seed=0):
    loss, (w, b), (x, y), (X, Y), _ = linear_regression(n=60, seed=seed)
    opt = downhill.build(algo, loss, inputs=[x, y])
    train = downhill.Dataset([X[:48], Y[:48]], batch_size=10, iteration_size=3, rng=3)
    valid = downhill.Dataset([X[48:], Y[48:]], batch_size=0)
    return opt, train, valid, (w, b)


# ------------------------------------------------------------- exact resume


def test_resume_in_fresh_process_is_bit_for_bit(tmp_path):
    n = 5
    first = _child(RESUME_CHILD, 'first', tmp_path, n)
    assert first.wait(timeout=300) == 0
    second = _child(RESUME_CHILD, 'second', tmp_path, n)
    assert second.wait(timeout=300) == 0
    runs = json.load(open(tmp_path / 'first.json'))
    rest = json.load(open(tmp_path / 'second.json'))
    assert set(runs) == set(STOCHASTIC)
    for algo in runs:
        full = ck.read(tmp_path / f'full-{algo}.npz')
        resumed = ck.read(tmp_path / f'part-{algo}.npz')
        # max_updates=2N resumed at N did N more
        assert len(runs[algo]['part']) == n and len(rest[algo]['rest']) == n, algo
        assert runs[algo]['full'][n:] == rest[algo]['rest'], algo
        # parameters, best parameters and every state entry, bit for bit
        assert sorted(full.arrays) == sorted(resumed.arrays), algo
        for key, value in full.arrays.items():
            assert np.array_equal(value, resumed.arrays[key]), (algo, key)
        for part in ('loop', 'data', 'generators', 'hooks'):
            assert full.meta[part] == resumed.meta[part], (algo, part)
        assert full.meta['loop']['iteration'] == 2 * n
    assert full.meta['hooks'][0]['reductions'] > 0  # the plateau schedule did act (sgd)


def test_full_batch_resume_in_fresh_process_is_bit_for_bit(tmp_path):
    """L-BFGS pairs, the BFGS matrix, the trust radius and the float64 point are all saved."""
    n = 8
    cases = json.dumps(FULL_BATCH)
    for phase in ('first', 'second'):
        child = _child(FULL_BATCH_CHILD, phase, tmp_path, n, cases)
        assert child.wait(timeout=300) == 0, phase
    runs = json.load(open(tmp_path / 'first.json'))
    rest = json.load(open(tmp_path / 'second.json'))
    for case in FULL_BATCH:
        full, part, resumed = runs[case]['full'], runs[case]['part'], rest[case]['rest']
        assert len(full['losses']) == 2 * n and len(resumed['losses']) == n, case
        assert full['losses'][:n] == part['losses'], case
        assert full['losses'][n:] == resumed['losses'], case  # the yielded losses, exactly
        a, b = ck.read(tmp_path / f'full-{case}.npz'), ck.read(tmp_path / f'part-{case}.npz')
        assert sorted(a.arrays) == sorted(b.arrays), case
        for key, value in a.arrays.items():
            if key != 'host/evaluations':
                assert np.array_equal(value, b.arrays[key]), (case, key)
        assert a.meta['loop'] == b.meta['loop'] and a.meta['loop']['iteration'] == 2 * n, case
        # the resumed run evaluates its starting point once more; nothing else differs
        assert resumed['evaluations'] == dict(full['evaluations'], fg=full['evaluations']['fg'] + 1)
        assert list(b.arrays['host/evaluations']) == [resumed['evaluations']['fg'],
                                                      resumed['evaluations']['hv']], case
    lbfgs = ck.read(tmp_path / 'full-lbfgs.npz').arrays
    assert lbfgs['host/s'].shape == (3, 5) and lbfgs['host/rho'].shape == (3,)  # history=3
    assert ck.read(tmp_path / 'full-bfgs.npz').arrays['host/h'].shape == (5, 5)
    assert ck.read(tmp_path / 'full-lbfgs-box.npz').arrays['param/0'].max() == 0.3  # bound active
    # the float32 parameter holds the point rounded; the checkpoint keeps it exactly
    x = lbfgs['host/x']
    assert lbfgs['param/1'] == np.float32(x[4]) and x[4] != np.float64(np.float32(x[4]))


def test_save_and_load_continue_the_trajectory(tmp_path):
    opt, train, valid, (w, b) = _problem('nag')
    kw = dict(learning_rate=0.05, momentum=0.9, validate_every=2)
    it = opt.iterate(train, valid, **kw)
    for _ in range(4):
        next(it)
    opt.save(tmp_path / 'mid.npz')
    expected = [tm['loss'] for tm, _ in (next(it) for _ in range(4))]
    expected_w = w.get_value()
    it.close()

    opt2, train2, valid2, (w2, b2) = _problem('nag')
    opt2.load(tmp_path / 'mid.npz')
    it2 = opt2.iterate(train2, valid2, **kw)
    got = [tm['loss'] for tm, _ in (next(it2) for _ in range(4))]
    assert got == expected
    assert np.array_equal(w2.get_value(), expected_w)
    assert opt2._loop_state.iteration == 8


def test_counters_continue(tmp_path, downhill_log):
    """Patience and validations continue: failures counted before the checkpoint still count."""
    path = tmp_path / 'c.npz'
    x = pytensor.shared(np.array([3.0]), name='x')
    opt = downhill.build('sgd', pt.sqr(x).sum())
    # min_improvement 1: no validation after the first improves; patience 3 stops at the 4th failure
    list(opt.iterate(None, learning_rate=0.1, validate_every=1, patience=3, min_improvement=1,
                     max_updates=2, checkpoint=path))
    assert ck.read(path).meta['loop']['failures'] == 1
    y = pytensor.shared(np.array([3.0]), name='x')
    again = downhill.build('sgd', pt.sqr(y).sum())
    n = len(list(again.iterate(None, learning_rate=0.1, validate_every=1, patience=3,
                               min_improvement=1, checkpoint=path)))
    assert n == 2  # failures 2, 3 at iterations 2, 3; the 4th failure at iteration 4 stops
    assert 'resuming from' in downhill_log.text and 'patience exhausted' in downhill_log.text
    assert ck.read(path).meta['loop']['iteration'] == 4


def test_dataset_state_round_trip():
    X = np.arange(50.0)[:, None]
    a = downhill.Dataset([X], batch_size=4, iteration_size=5, rng=11)
    for _ in range(7):
        list(a)
    b = downhill.Dataset([X], batch_size=4, iteration_size=5, rng=99)
    b.restore(json.loads(json.dumps(a.state())))
    for _ in range(6):
        assert all(np.array_equal(p[0], q[0]) for p, q in zip(a, b))
    c = downhill.Dataset([X], batch_size=5, rng=1)
    with pytest.raises(ValueError, match='the saved state is of 13 batches, this dataset has 10'):
        c.restore(a.state())


# ------------------------------------------------------------------ refusals


def _saved(tmp_path, algo='adam', name='w', dtype='float64', shape=(3,), momentum=0):
    p = pytensor.shared(np.ones(shape, dtype), name=name)
    opt = downhill.build(algo, pt.sqr(p).sum())
    list(opt.iterate(None, learning_rate=0.1, momentum=momentum, max_updates=2))
    path = tmp_path / f'{algo}-{name}-{dtype}-{shape}.npz'
    opt.save(path)
    return path


@pytest.mark.parametrize('change, message', [
    (dict(algo='sgd'), 'the checkpoint was written by Adam, but this optimizer is SGD'),
    (dict(name='v'), "parameter 0 is named 'w' in the checkpoint, 'v' here"),
    (dict(shape=(4,)), r"parameter 0 \('w'\) has shape \(3,\) in the checkpoint, \(4,\) here"),
    (dict(dtype='float32'), r"parameter 0 \('w'\) has dtype float64 in the checkpoint, float32 here"),
])
def test_refuses_a_checkpoint_that_does_not_fit(tmp_path, change, message):
    path = _saved(tmp_path)
    spec = dict(algo='adam', name='w', dtype='float64', shape=(3,))
    spec.update(change)
    p = pytensor.shared(np.full(spec['shape'], 7, spec['dtype']), name=spec['name'])
    opt = downhill.build(spec['algo'], pt.sqr(p).sum())
    with pytest.raises(ValueError, match=message):
        opt.load(path)
    assert (p.get_value() == 7).all()  # nothing changed


def test_refuses_a_state_entry_that_differs(tmp_path):
    path = _saved(tmp_path, momentum=0.5)
    with np.load(path) as z:
        arrays = dict(z)
    meta = json.loads(str(arrays.pop('meta')))
    j = [e['name'] for e in meta['states']].index('velocity')
    meta['states'][j]['shape'] = [5]
    arrays[f'state/{j}'] = np.zeros(5)
    ck.write(path, arrays, meta)
    p = pytensor.shared(np.ones(3), name='w')
    opt = downhill.build('adam', pt.sqr(p).sum())
    with pytest.raises(ValueError, match=r"state entry \d+ \('velocity'\) of parameter 0 \('w'\) has "
                                         r"shape \(5,\) in the checkpoint, \(3,\) here"):
        opt.load(path)


def test_refuses_truncated_corrupted_and_foreign_files(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    p = pytensor.shared(np.ones(3), name='w')
    opt = downhill.build('adam', pt.sqr(p).sum())
    truncated = tmp_path / 'truncated.npz'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match='truncated or corrupted'):
        opt.load(truncated)
    corrupted = tmp_path / 'corrupted.npz'
    middle = len(data) // 2
    corrupted.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 8])
                          + data[middle + 8:])
    with pytest.raises(ValueError, match='truncated or corrupted|corrupted'):
        opt.load(corrupted)
    foreign = tmp_path / 'foreign.npz'
    np.savez(foreign, w=np.ones(3))
    with pytest.raises(ValueError, match='not a downhill checkpoint'):
        opt.load(foreign)
    text = tmp_path / 'text.npz'
    text.write_text('hello')
    with pytest.raises(ValueError, match='truncated or corrupted'):
        opt.load(text)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        opt.load(tmp_path / 'missing.npz')
    assert (p.get_value() == 1).all()


def test_refuses_a_newer_format(tmp_path):
    path = _saved(tmp_path)
    with np.load(path) as z:
        arrays = dict(z)
    meta = json.loads(str(arrays.pop('meta')))
    meta['version'] = ck.VERSION + 1
    ck.write(path, arrays, meta)
    with pytest.raises(ValueError, match=f'format version {ck.VERSION + 1} was written by a newer'):
        ck.read(path)


def test_no_pickle_in_a_checkpoint(tmp_path):
    path = _saved(tmp_path, algo='esgd')
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    with np.load(path, allow_pickle=False) as z:  # would raise on any object array
        assert all(z[k].dtype != object for k in z.files)
    assert 'meta.npy' in names and 'param/0.npy' in names


# -------------------------------------------------------- atomic writes, signals


def test_killed_writer_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / 'big.npz'
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(2):
        writer = _child(WRITER_CHILD, path, stdout=subprocess.PIPE)
        assert writer.stdout.readline().strip() == b'ready'
        time.sleep(rng.uniform(0.05, 0.4))  # somewhere in the middle of some write
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
        writer.stdout.close()
        with np.load(path, allow_pickle=False) as z:  # whole, CRCs verified
            meta = json.loads(str(z['meta']))
            assert np.array_equal(z['big'][:3] - meta['count'], z['big'][:3] - meta['count'])
            base = np.random.default_rng(0).normal(size=1_000_000)
            assert np.array_equal(z['big'], base + meta['count'])
        counts.append(meta['count'])
    assert max(counts) > 0  # the kills did land after several complete writes


def test_sigterm_writes_a_final_checkpoint_and_returns(tmp_path, downhill_log):
    path = tmp_path / 'term.npz'
    x = pytensor.shared(np.array([3.0]), name='x')
    opt = downhill.build('sgd', pt.sqr(x).sum())
    calls = [0]

    def batch():
        calls[0] += 1
        if calls[0] == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return []

    before = signal.getsignal(signal.SIGTERM)
    n = len(list(opt.iterate(downhill.Dataset(batch, iteration_size=1), None, learning_rate=0.1,
                             validate_every=100, checkpoint=path, checkpoint_every=1000)))
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    saved = ck.read(path)
    # the 7th batch is the 6th update (the first feeds the validation); that iteration completes
    assert n == 6 and saved.meta['loop']['iteration'] == 6
    assert saved.arrays['param/0'][0] == pytest.approx(3.0 * 0.8 ** 6)
    assert 'SIGTERM' in downhill_log.text


def test_sigterm_between_iterations_goes_to_the_previous_handler(tmp_path):
    """While the caller's code runs, SIGTERM is not the loop's business."""
    path = tmp_path / 'term.npz'
    x = pytensor.shared(np.array([3.0]), name='x')
    opt = downhill.build('sgd', pt.sqr(x).sum())
    seen = []
    mine = lambda signum, frame: seen.append(signum)  # noqa: E731
    before = signal.signal(signal.SIGTERM, mine)
    try:
        n = 0
        for _ in opt.iterate(None, learning_rate=0.1, checkpoint=path, max_updates=10):
            n += 1
            if n == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # in the caller's code
        assert seen == [signal.SIGTERM] and n == 10  # the caller's handler ran; the loop went on
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_ctrl_c_writes_a_final_checkpoint(tmp_path):
    path = tmp_path / 'int.npz'
    x = pytensor.shared(np.array([3.0]), name='x')
    opt = downhill.build('sgd', pt.sqr(x).sum())
    calls = [0]

    def batch():
        calls[0] += 1
        if calls[0] == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return []

    result = opt.minimize(downhill.Dataset(batch, iteration_size=1), None, learning_rate=0.1,
                          validate_every=100, checkpoint=path, checkpoint_every=1000)
    assert result is not None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # the Ctrl-C came while the 4th iteration drew its batch: that iteration is finished first
    assert ck.read(path).meta['loop']['iteration'] == 4
    # the best parameters are those of the only validation (the start)
    assert x.get_value()[0] == 3.0


def test_ctrl_c_in_the_loop_asks_to_stop_and_a_second_one_stops_at_once():
    signals = interrupts.Interrupts(enabled=True)
    done = []

    def step():
        os.kill(os.getpid(), signal.SIGINT)
        done.append(True)  # the step's remaining work still happens
        return 1

    signals.install()
    signals.active = True
    try:
        step()
        assert done == [True] and signals.terminate and signals.reason == 'interrupted'
        with pytest.raises(KeyboardInterrupt):
            step()
        assert signals.abandoned and done == [True]
    finally:
        signals.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_stopping_early_writes_a_checkpoint(tmp_path):
    path = tmp_path / 'early.npz'
    opt, train, valid, _ = _problem('adam')
    for i, _ in enumerate(opt.iterate(train, valid, learning_rate=0.01, checkpoint=path,
                                      checkpoint_every=100)):
        if i == 2:
            break
    assert ck.read(path).meta['loop']['iteration'] == 3


def test_resume_logs_changed_hyperparameters(tmp_path, downhill_log):
    path = tmp_path / 'h.npz'
    opt, train, valid, _ = _problem('rmsprop')
    list(opt.iterate(train, valid, learning_rate=0.01, max_updates=2, checkpoint=path))
    opt2, train2, valid2, _ = _problem('rmsprop')
    list(opt2.iterate(train2, valid2, learning_rate=0.02, max_updates=3, checkpoint=path))
    assert 'resuming with learning_rate=0.02; the checkpoint was written with 0.01' in downhill_log.text
    assert ck.read(path).meta['loop']['iteration'] == 3


def test_checkpoint_argument_errors(tmp_path):
    opt, train, valid, (w, b) = _problem()
    with pytest.raises(TypeError, match='checkpoint must be a file path'):
        opt.iterate(train, checkpoint=3)
    with pytest.raises(ValueError, match='checkpoint_every must be >= 1, got 0'):
        opt.iterate(train, checkpoint=tmp_path / 'x.npz', checkpoint_every=0)
    with pytest.raises(ValueError, match='does not exist'):
        opt.iterate(train, checkpoint=tmp_path / 'no' / 'such' / 'folder.npz')
    with pytest.raises(ValueError, match='is a folder, not a file'):
        opt.iterate(train, checkpoint=tmp_path)
    bad = tmp_path / 'bad.npz'
    bad.write_bytes(b'PK\x03\x04 not really')
    with pytest.raises(ValueError, match='truncated or corrupted'):
        opt.iterate(train, checkpoint=bad, learning_rate=0.5)
    assert opt.learning_rate.get_value() == 1e-4  # the failed call changed nothing
    assert np.array_equal(w.get_value(), np.zeros(3))


def test_host_state_round_trip(tmp_path):
    """An algorithm that keeps state in Python saves it through _host_state."""

    class HostCounter(downhill.SGD):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.history = np.zeros(0)

        def _host_state(self):
            return {'history': self.history}

        def _restore_host_state(self, arrays):
            self.history = arrays['history']

    downhill.optimizer.registry.unregister('hostcounter')  # not an algorithm for the other tests
    x = pytensor.shared(np.array([3.0]), name='x')
    opt = HostCounter(pt.sqr(x).sum())
    opt.history = np.array([1.0, 2.0])
    opt.save(tmp_path / 'h.npz')
    y = pytensor.shared(np.array([3.0]), name='x')
    again = HostCounter(pt.sqr(y).sum())
    again.load(tmp_path / 'h.npz')
    assert np.array_equal(again.history, [1.0, 2.0])
    plain = downhill.build('sgd', pt.sqr(pytensor.shared(np.array([3.0]), name='x')).sum())
    with pytest.raises(ValueError, match=r"the checkpoint was written by HostCounter"):
        plain.load(tmp_path / 'h.npz')


def _full_batch(algo):
    loss, (w, b), (x, y), (X, Y), _ = linear_regression(n=60)
    opt = downhill.build(algo, loss + 1e3 * pt.sqr(w[0] - 3 * w[1]), inputs=[x, y])
    return opt, [X, Y], (w, b)


@pytest.mark.parametrize('algo, key, change, message', [
    ('lbfgs', 'host/s', lambda v: v[:, :-1], r"host/s has shape \(2, 3\) and dtype float64 in the "
     r"checkpoint, but LBFGS expects shape \(2, 4\)"),
    ('lbfgs', 'host/rho', lambda v: v.astype(np.float32), r"host/rho .* dtype float32 .* expects "
     r"shape \(2,\) and dtype float64"),
    ('bfgs', 'host/h', lambda v: v[:3, :3], r"host/h has shape \(3, 3\) .* expects shape \(4, 4\)"),
    ('bfgs', 'host/x', None, r"has no host/x, which BFGS needs"),
    ('newtoncg', 'host/trust_radius', lambda v: -v, r"host/trust_radius is -.* positive finite"),
    ('newtoncg', 'host/extra', lambda v: np.zeros(2), r"host state host/extra that NewtonCG does not"),
], ids=['lbfgs-s-shape', 'lbfgs-rho-dtype', 'bfgs-h-shape', 'bfgs-no-x', 'newtoncg-radius',
        'newtoncg-unknown'])
def test_full_batch_refuses_host_state_that_does_not_fit(tmp_path, algo, key, change, message):
    """A curvature memory of the wrong shape or dtype is named, and nothing changes."""
    opt, data, _ = _full_batch(algo)
    path = tmp_path / 'ck.npz'
    assert len(list(opt.iterate(data, max_updates=2, checkpoint=path, gtol=0, ftol=0))) == 2
    saved = ck.read(path)
    arrays = dict(saved.arrays)
    if change is None:
        del arrays[key]
    else:
        arrays[key] = change(arrays.get(key, arrays['host/x']))
    ck.write(path, arrays, saved.meta)
    again, data, (w, b) = _full_batch(algo)
    with pytest.raises(ValueError, match=message):
        again.load(path)
    with pytest.raises(ValueError, match=message):
        again.iterate(data, checkpoint=path)
    assert np.array_equal(w.get_value(), np.zeros(3))  # nothing was restored


def test_full_batch_resume_after_setting_the_parameters(tmp_path, downhill_log):
    """Parameters set after load() are the start; counters and budget continue; no 'skip'."""
    path = tmp_path / 'lbfgs.npz'
    opt, data, _ = _full_batch('lbfgs')
    assert len(list(opt.iterate(data, max_updates=2, checkpoint=path, gtol=0, ftol=0))) == 2
    again, data, (w, b) = _full_batch('lbfgs')
    again.load(path)
    again.set_params([np.ones(3), np.float64(0.5)])
    start = again.evaluate(data)['loss']
    n = len(list(again.iterate(data, max_updates=4, gtol=0, ftol=0)))
    assert n == 2  # the budget of 4 continued
    assert 'the parameters were set after the checkpoint was loaded' in downhill_log.text
    assert again.evaluate(data)['loss'] < start
    with pytest.raises(ValueError, match="on_nonfinite='skip' needs a compiled step"):
        again.iterate(data, on_nonfinite='skip')
