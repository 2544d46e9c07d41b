"""The benchmark harness runs and its correctness check passes (tiny sizes).

Never a timed test: nothing here looks at how fast anything is. The workers
run in FAST_COMPILE (nothing to compile), on the problems' ``tiny`` sizes.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import problems as P  # noqa: E402
from benchmarks import report  # noqa: E402


def test_raw_updates_match_numpy_adam():
    """The hand-written raw updates are the documented formulas (one Adam step, in NumPy)."""
    import pytensor
    loss, params, inputs = P.symbolic('rosenbrock-2d', 'tiny')
    grads = pytensor.grad(loss, params)
    fn = pytensor.function(inputs, loss, updates=P.raw_updates('rosenbrock-2d', params, grads))
    fn()
    hp = P.hyper('rosenbrock-2d')
    x = P.make('rosenbrock-2d', 'tiny')['init'][0].copy()
    g = np.array([-400 * (x[1] - x[0] ** 2) * x[0] - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)])
    m = (1 - hp['b1']) * g / (1 - hp['b1'])
    v = (1 - hp['b2']) * g * g / (1 - hp['b2'])
    expected = x - hp['lr'] * m / (np.sqrt(v) + hp['adam_eps'])
    np.testing.assert_allclose(params[0].get_value(), expected, rtol=1e-12)


def test_schedule_cycles_in_order():
    s = P.Schedule([(1,), (2,), (3,)], pass_len=2)
    assert [b[0] for b in s] == [1, 2]
    s.pass_len = 4
    assert [b[0] for b in s] == [3, 1, 2, 3]


def test_benchmark_runs_and_agrees(tmp_path):
    """``python -m benchmarks`` end to end: every problem, downhill and raw, check passes."""
    out_json, out_md = tmp_path / 'bench.json', tmp_path / 'bench.md'
    cmd = [sys.executable, '-m', 'benchmarks', '--size', 'tiny', '--mode', 'FAST_COMPILE',
           '--impl', 'raw,downhill', '--no-cold', '--rounds', '1', '--windows', '1',
           '--target-s', '0.01', '--check-steps', '5', '--threads', '1',
           '--json', str(out_json), '--md', str(out_md)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out_json.read_text())
    rows = data['rows']
    for problem in P.PROBLEMS:
        for impl in ('raw', 'downhill'):
            row = next(r for r in rows if r['problem'] == problem and r['impl'] == impl
                       and r['variant'] == 'base')
            assert not row.get('error'), row
            assert row['ups'] > 0 and row['first_warm_s'] > 0
            assert row['check_steps'] == 5
            assert row['check_ok'], row
    md = out_md.read_text()
    assert 'downhill iterate()' in md and 'raw pytensor.function' in md
    assert 'MISMATCH' not in md
    if hasattr(os, 'sched_setaffinity'):  # round 0's timed windows ran on the first allowed CPU
        first_cpu = min(os.sched_getaffinity(0))
        full = [r for r in data['results'] if r.get('phase') == 'full']
        assert full and all(r['cpu'] == first_cpu for r in full)
        assert 'pinned to CPU r mod (CPUs)' in md


def test_report_flags_mismatch():
    rows = [dict(problem='matfact', algo='sgd', dtype='float64', impl='downhill', variant='base',
                 label='downhill iterate()', ups=10.0, ups_min=9.0, ups_max=11.0, ratio=0.5,
                 check_rel=1e-3, check_ok=False)]
    assert 'MISMATCH' in report.markdown_table(rows)


@pytest.mark.parametrize('problem', list(P.PROBLEMS))
def test_tiny_problems_have_finite_loss(problem):
    data = P.make(problem, 'tiny')
    assert np.isfinite(P.eval_loss(problem, data['init'], 'tiny'))


def test_second_call_benchmark_runs():
    from benchmarks import second_call
    first, second = second_call.main(['--mode', 'FAST_COMPILE'])
    assert first > 0 and second > 0
