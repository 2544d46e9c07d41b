"""Every example runs and finds what it should."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / 'examples'


def run(name):
    env = dict(os.environ, PYTENSOR_FLAGS=f'mode={os.environ.get("DOWNHILL_TEST_MODE", "FAST_COMPILE")}')
    out = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout, out.stderr


def test_matrix_factorization():
    stdout, stderr = run('matrix_factorization.py')
    start, best = map(float, re.search(r'loss ([\d.]+) -> ([\d.]+)', stdout).groups())
    assert best < start / 2
    assert 'validation 0 loss=' in stderr  # progress is visible without configuring logging
    assert '3. get_updates()' in stdout


def test_linear_regression():
    stdout, _ = run('linear_regression.py')
    w, b = map(float, re.search(r'price = ([\d.]+) \* size \+ ([\d.]+)', stdout).groups())
    assert w == pytest.approx(150, rel=0.05) and b == pytest.approx(50, abs=10)
    assert 'stopped after' in stdout


def test_rosenbrock():
    stdout, _ = run('rosenbrock.py')
    rows = {line.split()[0]: float(line.split()[1]) for line in stdout.splitlines()[1:]}
    assert set(rows) == {'sgd', 'nag', 'rprop', 'rmsprop', 'adagrad', 'adadelta', 'esgd', 'adam'}
    start = 24.2  # loss at (-1.2, 1)
    for algo, final in rows.items():
        assert final < start, (algo, final)
    assert min(rows.values()) < 1e-3
