"""Every example runs and finds what it should, in the suite's FAST_COMPILE mode, in
PyTensor's default backend with every speed-up on (what a user running the
example gets), and there with downhill's speed-ups off."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / 'examples'


@pytest.fixture(params=['test-mode', pytest.param('default', marks=pytest.mark.compiled),
                        pytest.param('stock', marks=pytest.mark.compiled)])
def run(request):
    """Runs an example in the suite's mode (FAST_COMPILE), as a user would (no mode set, every
    speed-up on), or in the default backend with downhill's speed-ups off (DOWNHILL_SPEEDUPS=0)."""
    env = dict(os.environ)
    if request.param in ('default', 'stock'):
        env.pop('PYTENSOR_FLAGS', None)
        env.pop('DOWNHILL_SPEEDUPS', None)
        if request.param == 'stock':
            env['DOWNHILL_SPEEDUPS'] = '0'
    else:
        env['PYTENSOR_FLAGS'] = f'mode={os.environ.get("DOWNHILL_TEST_MODE", "FAST_COMPILE")}'

    def run_example(name):
        out = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                             env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout, out.stderr
    return run_example


def test_matrix_factorization(run):
    stdout, stderr = run('matrix_factorization.py')
    start, best = map(float, re.search(r'loss ([\d.]+) -> ([\d.]+)', stdout).groups())
    assert best < start / 2
    assert 'validation 0 loss=' in stderr  # progress is visible without configuring logging
    assert '3. get_updates()' in stdout


def test_linear_regression(run):
    stdout, _ = run('linear_regression.py')
    w, b = map(float, re.search(r'price = ([\d.]+) \* size \+ ([\d.]+)', stdout).groups())
    assert w == pytest.approx(150, rel=0.05) and b == pytest.approx(50, abs=10)
    assert 'stopped after' in stdout


def test_rosenbrock(run):
    stdout, _ = run('rosenbrock.py')
    rows = {line.split()[0]: float(line.split()[1]) for line in stdout.splitlines()[1:]}
    assert set(rows) == {'sgd', 'nag', 'rprop', 'rmsprop', 'adagrad', 'adadelta', 'esgd', 'adam'}
    start = 24.2  # loss at (-1.2, 1)
    for algo, final in rows.items():
        assert final < start, (algo, final)
    assert min(rows.values()) < 1e-3


def test_nmf_constraints(run):
    stdout, _ = run('nmf_constraints.py')
    rows = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()[1:]}
    assert set(rows) == {'sgd', 'adam', 'rmsprop'}
    for algo, (start, final, factor, min_a, min_s, colsum) in rows.items():
        assert float(final) < float(start)
        assert float(min_a) >= 0 and float(min_s) >= 0 and float(colsum) < 1e-12
    assert float(rows['adam'][2]) > 500 and float(rows['rmsprop'][2]) > 20


def test_sphere_wells(run):
    out, _ = run('sphere_wells.py')
    assert float(re.search(r'farthest from the circle after any update: (\S+)', out).group(1)) < 1e-12
    assert re.search(r'points at a constrained local minimum: 100 of 100', out)
    assert int(re.search(r'at the constrained global minimum .*: (\d+)', out).group(1)) > 20


def test_lasso(run):
    out, _ = run('lasso.py')
    support = re.search(r'ISTA reference: \d+ non-zero weights at (\[.*\])', out).group(1)
    for algo in ('sgd', 'adam'):
        line = next(l for l in out.splitlines() if l.startswith(algo))
        assert f'non-zero weights at {support}' in line
        assert float(re.search(r'largest difference from ISTA (\S+)', line).group(1)) < 1e-4
    sgd = next(l for l in out.splitlines() if l.startswith('sgd'))
    assert float(re.search(r'largest difference from ISTA (\S+)', sgd).group(1)) < 1e-6
