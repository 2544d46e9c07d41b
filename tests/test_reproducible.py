"""The same script with the same seeds gives the same bits, run after run.

Each run is a fresh interpreter in PyTensor's default mode with every speed-up
on (what a user's script gets; the suite's FAST_COMPILE does not reach it):
every algorithm on a small tanh network fed by shuffled Datasets, a
``get_updates()`` step compiled by the user, ``multistart``, ``sweep`` and the
``downhill fit`` command. Parameters, monitors and update counts are compared
bit for bit between runs, and between a cold compile cache and a warm one.
Figures differ between CPUs and PyTensor versions; these tests compare runs
on one machine only.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import downhill

pytestmark = pytest.mark.compiled

SCRIPT = textwrap.dedent('''
    import hashlib, json, logging, sys
    import numpy as np, pytensor, pytensor.tensor as pt
    import downhill
    from downhill import landscapes

    logging.getLogger('downhill').setLevel(logging.WARNING)

    def digest(arrays):
        return hashlib.sha1(b''.join(np.asarray(a).tobytes() for a in arrays)).hexdigest()

    def network():
        rng = np.random.default_rng(0)
        X = rng.standard_normal((96, 4))
        Y = np.tanh(X @ rng.standard_normal((4, 2)))
        x, y = pt.matrix('x'), pt.matrix('y')
        w1 = pytensor.shared(rng.standard_normal((4, 6)) * 0.5, name='w1')
        w2 = pytensor.shared(rng.standard_normal((6, 2)) * 0.5, name='w2')
        loss = pt.sqr(pt.tanh(x @ w1) @ w2 - y).mean()
        return loss, [w1, w2], [x, y], X, Y

    out = {}
    for algo in sys.argv[1].split(','):
        loss, params, inputs, X, Y = network()
        opt = downhill.build(algo, loss, inputs=inputs, monitors={'|w1|': abs(params[0]).sum()})
        if algo in ('lbfgs', 'bfgs', 'newtoncg'):
            train, valid = [[X[:64], Y[:64]]], [[X[64:], Y[64:]]]
        else:  # one Dataset seeded, the other with the default shuffle
            train = downhill.Dataset([X[:64], Y[:64]], batch_size=8, rng=7)
            valid = downhill.Dataset([X[64:], Y[64:]], batch_size=16)
        history = [(t, v) for t, v in opt.iterate(train, valid, max_updates=40, validate_every=5,
                                                  patience=100)]
        count = getattr(opt, 'update_count', None)
        out[algo] = dict(params=digest(p.get_value() for p in params), history=history,
                         updates=int(count.get_value() if hasattr(count, 'get_value') else count))
    if sys.argv[2] == 'all':
        loss, params, inputs, X, Y = network()
        step = pytensor.function(inputs, loss, updates=downhill.build('adam', loss, inputs=inputs)
                                 .get_updates(learning_rate=0.01))
        out['get_updates'] = dict(losses=[float(step(X[i:i + 8], Y[i:i + 8])) for i in range(0, 96, 8)],
                                  params=digest(p.get_value() for p in params))
        result = downhill.multistart(landscapes.ackley(), 4, algo='adam', bounds=(-3, 3), seed=1,
                                     max_updates=30)
        out['multistart'] = dict(points=digest(result.points), losses=[float(v) for v in result.losses])

        def problem():
            loss, params, inputs, X, Y = network()
            return dict(loss=loss, inputs=inputs, train=downhill.Dataset([X, Y], batch_size=8))
        runs = downhill.sweep(problem, {'algo': ['sgd', 'nadam'], 'learning_rate': [0.01, 0.1]},
                              max_updates=6, validate_every=2)
        out['sweep'] = [dict(params=digest(r.params), best=r.best_loss) for r in runs]
    print(json.dumps(out))
''')

MODEL = textwrap.dedent('''
    import numpy as np, pytensor, pytensor.tensor as pt

    def problem():
        rng = np.random.default_rng(0)
        X = rng.normal(size=(200, 3))
        Y = np.tanh(X @ [1.0, -2.0, 0.5]) + 0.25
        x, y = pt.matrix('x'), pt.vector('y')
        w = pytensor.shared(np.full(3, 0.1), name='w')
        b = pytensor.shared(0.0, name='b')
        loss = pt.sqr(pt.tanh(pt.dot(x, w)) + b - y).mean()
        return {'loss': loss, 'inputs': [x, y], 'train': [X, Y]}
''')

#: The library's own algorithms (tests elsewhere register subclasses of their own).
ALGOS = sorted(k for k, cls in downhill.algorithms().items() if cls.__module__.startswith('downhill.'))


def run(algos, extra, compiledir=None):
    env = dict(os.environ)
    env.pop('DOWNHILL_TEST_MODE', None)
    if compiledir is not None:
        env['PYTENSOR_FLAGS'] = f'base_compiledir={compiledir}'
    proc = subprocess.run([sys.executable, '-c', SCRIPT, ','.join(algos), extra], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_algorithm_and_tool_repeats_bit_for_bit():
    first, second = run(ALGOS, 'all'), run(ALGOS, 'all')
    for key in first:
        assert first[key] == second[key], key
    # and the runs did something: losses fell, the runs differ from each other
    for algo in ALGOS:
        history = first[algo]['history']
        assert history[-1][0]['loss'] < history[0][0]['loss'], algo
    # (NAG without momentum, the default, is SGD: left out)
    assert len({first[a]['params'] for a in ALGOS if a != 'nag'}) == len(ALGOS) - 1


def test_a_cold_compile_cache_gives_the_bits_of_a_warm_one(tmp_path):
    warm = run(['adam', 'lbfgs'], 'algorithms')
    cold = run(['adam', 'lbfgs'], 'algorithms', compiledir=tmp_path / 'cold')
    assert any((tmp_path / 'cold').iterdir())  # the cold run really compiled into its own cache
    assert cold == warm


def test_a_quick_start_repeats_bit_for_bit_however_fast_the_compiler(monkeypatch):
    """quick_start=True switches on a count of updates: a compiler held back (as on a
    loaded machine or a cold cache) and a compiler done at once give the same bits."""
    import threading
    import pytensor
    import pytensor.tensor as pt
    from downhill import compile as compiling
    monkeypatch.setattr(compiling, 'is_quick', lambda mode: False)  # FAST_COMPILE plays Numba
    monkeypatch.setattr(downhill._compat, 'compiles_at_first_call', lambda fn: True)
    monkeypatch.setattr(compiling, 'QUICK_UPDATES', 6)  # 4 updates an iteration

    def trained(hold):
        rng = np.random.default_rng(0)
        X, Y = rng.standard_normal((40, 3)), rng.standard_normal(40)
        x, y = pt.matrix('x'), pt.vector('y')
        w = pytensor.shared(np.zeros(3), name='w')
        opt = downhill.build('adam', pt.sqr(pt.tanh(x @ w) - y).mean(), inputs=[x, y],
                             mode='FAST_COMPILE', quick_start=True)
        step = opt._compiled_step()
        gate = threading.Event()
        if hold:
            start = step.start
            step.start = lambda: start() if gate.is_set() else None
        else:
            step.start()
            step.wait()
            step.switched = False  # ready before the first update, but not its turn yet
        used = []
        for i, (tm, vm) in enumerate(opt.iterate([X, Y], batch_size=10, max_updates=3,
                                                 learning_rate=0.1, validate_every=1)):
            used.append(step.calls)
            if hold and i == 0:  # the compiler starts late, and is still busy at the switch
                gate.set()
                step.start()
        assert step.switched and used == [4, 6, 6]  # 6 quick updates, then the final step
        return w.get_value().tobytes(), tm, vm

    assert trained(hold=True) == trained(hold=False)


def test_the_fit_command_saves_the_same_bits_every_run(tmp_path):
    (tmp_path / 'model.py').write_text(MODEL)
    saved = []
    for k in range(2):
        path = tmp_path / f'params{k}.npz'
        proc = subprocess.run([sys.executable, '-m', 'downhill.cli', 'fit', 'model.py:problem',
                               '--algo', 'adam', '--set', 'learning_rate=0.05', '--set', 'max_updates=20',
                               '--save', str(path)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with np.load(path) as f:
            saved.append({k: f[k].tobytes() for k in f.files})
        # what it prints, but for the time it took and the file's name
        saved[-1]['stdout'] = re.sub(r'in [\d.]+ s|params\d\.npz', '', proc.stdout)
    assert saved[0] == saved[1] and len(saved[0]) >= 3
    assert 'best validation loss' in saved[0]['stdout']
