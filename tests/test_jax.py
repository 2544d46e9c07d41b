"""PyTensor's JAX backend (``mode='JAX'``, how a GPU is used) as a supported route.

Needs the ``jax`` extra (``pip install -e '.[jax]'``); skipped without it. The
runs go through fresh interpreters: a clean exit and results that repeat from
one process to the next are part of what is tested.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip('jax')

SCRIPT = textwrap.dedent('''
    import hashlib, json, sys
    import numpy as np, pytensor, pytensor.tensor as pt
    import downhill

    def problem():
        rng = np.random.default_rng(0)
        X = rng.standard_normal((200, 5))
        Y = np.tanh(X @ rng.standard_normal(5))
        x, y = pt.matrix('x'), pt.vector('y')
        w = pytensor.shared(rng.standard_normal((5, 8)) * 0.3, name='w')
        v = pytensor.shared(rng.standard_normal(8) * 0.3, name='v')
        loss = pt.sqr(pt.tanh(x @ w) @ v - y).mean()
        return loss, [w, v], [x, y], X, Y

    def digest(params):
        return hashlib.sha1(b''.join(p.get_value().tobytes() for p in params)).hexdigest()

    mode, quick_start, path, stop_after = sys.argv[1], sys.argv[2] == '1', sys.argv[3], int(sys.argv[4])
    results = []
    for run in range(2):  # two runs in one process: the second must not disturb the exit
        loss, params, inputs, X, Y = problem()
        opt = downhill.build('adam', loss, inputs=inputs, mode=mode, quick_start=quick_start)
        train = downhill.Dataset([X[:150], Y[:150]], batch_size=16, name='train')
        valid = downhill.Dataset([X[150:], Y[150:]], batch_size=50, name='valid')
        history = []
        for i, (tm, vm) in enumerate(opt.iterate(
                train, valid, learning_rate=0.01, max_updates=12, validate_every=2, patience=3,
                checkpoint=None if path == '-' else path, checkpoint_every=1), 1):
            history.append((tm['loss'], vm['loss']))
            if i == stop_after:
                break
        results.append(dict(digest=digest(params), history=history,
                            values=[p.get_value().ravel().tolist() for p in params]))
        if path != '-':
            break
    print(json.dumps(results))
''')


def run(mode='JAX', quick_start=False, checkpoint='-', stop_after=0, tmp_path=None):
    script = tmp_path / 'run_jax.py'
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), mode, '1' if quick_start else '0',
                           str(checkpoint), str(stop_after)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'terminate called' not in proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('quick_start', [False, True])
def test_jax_runs_repeat_bit_for_bit_and_exit_cleanly(tmp_path, quick_start):
    first = run(quick_start=quick_start, tmp_path=tmp_path)
    again = run(quick_start=quick_start, tmp_path=tmp_path)
    assert first == again  # every parameter bit and every monitor, process after process
    assert first[0] == first[1]  # and two runs in one process
    losses = [t for t, _ in first[0]['history']]
    assert len(losses) == 12 and losses[-1] < 0.9 * losses[0]


def test_jax_trains_as_numba_does(tmp_path):
    """JAX and Numba round each operation differently (a few ulp); over 12 Adam
    updates of this smooth problem such differences stay many orders below the
    1e-8 relative difference allowed here (both float64: PyTensor's JAX
    backend enables x64), while any change of the formulas moves the
    parameters by far more (the updates change them by ~1e-2)."""
    jax_run = run(tmp_path=tmp_path)[0]
    numba_run = run(mode='NUMBA', tmp_path=tmp_path)[0]
    for a, b in zip(jax_run['values'], numba_run['values']):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(jax_run['history'], numba_run['history'], rtol=1e-8)


def test_jax_checkpoint_resumes_bit_for_bit_in_a_fresh_process(tmp_path):
    whole = run(tmp_path=tmp_path)[0]
    path = tmp_path / 'jax.npz'
    part = run(checkpoint=path, stop_after=5, tmp_path=tmp_path)[0]
    assert part['history'] == whole['history'][:5]
    rest = run(checkpoint=path, tmp_path=tmp_path)[0]
    assert rest['digest'] == whole['digest']
    assert part['history'] + rest['history'] == whole['history']
