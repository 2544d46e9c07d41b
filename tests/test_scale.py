"""Scale: no parameter-sized allocations in the loop, and the scale benchmarks run (tiny sizes).

Never timed: the benchmarks are only checked to run and to report sane fields.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rosenbrock(n=6):
    x = pytensor.shared(np.tile([-1.1, 0.0], n // 2), name='x')
    return x, (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def test_best_parameters_are_copied_into_the_same_arrays():
    """Every improved validation copies into the optimizer's arrays; nothing new is allocated."""
    x, loss = _rosenbrock()
    opt = downhill.build('adam', loss)
    buffers = list(opt._best_params)
    seen = []
    for _ in opt.iterate(None, learning_rate=0.01, max_updates=30, validate_every=2):
        seen.append(opt._best_params[0])
    assert all(b is buffers[0] for b in seen)
    assert opt._best_params[0] is buffers[0]
    # the best (restored) values are those of the last improved validation, not the live ones
    np.testing.assert_array_equal(x.get_value(), buffers[0])


def test_set_params_writes_into_the_parameter_buffer():
    x, loss = _rosenbrock()
    opt = downhill.build('sgd', loss)
    storage = x.get_value(borrow=True)
    target = np.arange(6.0)
    opt.set_params([target])
    assert x.get_value(borrow=True) is storage
    np.testing.assert_array_equal(storage, target)
    target[0] = 99.0                       # the parameter does not alias the caller's array
    assert x.get_value()[0] == 0.0
    opt.set_params([np.arange(6, dtype='int32')])   # converted as before
    assert x.get_value().dtype == np.float64
    with pytest.raises(ValueError, match='array 0 has shape'):
        opt.set_params([np.zeros(5)])


def test_set_params_on_a_read_only_buffer_replaces_it():
    value = np.zeros(4)
    value.flags.writeable = False
    w = pytensor.shared(value, name='w', borrow=True)
    opt = downhill.build('sgd', pt.sqr(w - 1).sum())
    opt.set_params([np.ones(4)])
    np.testing.assert_array_equal(w.get_value(), np.ones(4))
    assert not np.shares_memory(w.get_value(borrow=True), value)


def test_interrupted_snapshot_is_never_a_mix(monkeypatch):
    """A Ctrl-C while copying the best parameters finishes the copy before it propagates."""
    from downhill import base
    a = pytensor.shared(np.zeros(3), name='a')
    b = pytensor.shared(np.zeros(3), name='b')
    opt = downhill.build('sgd', pt.sqr(a - 1).sum() + pt.sqr(b - 2).sum())
    a.set_value(np.ones(3))
    b.set_value(np.full(3, 2.0))
    real, calls = np.copyto, []

    def flaky(dest, src, **kw):
        calls.append(1)
        real(dest, src, **kw)
        if len(calls) == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(base.np, 'copyto', flaky)
    with pytest.raises(KeyboardInterrupt):
        opt._snapshot()
    monkeypatch.setattr(base.np, 'copyto', real)
    np.testing.assert_array_equal(opt._best_params[0], np.ones(3))
    np.testing.assert_array_equal(opt._best_params[1], np.full(3, 2.0))


def _run(args, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([sys.executable, '-m'] + args, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_scale_params_benchmark_runs(tmp_path):
    out = tmp_path / 'p.json'
    _run(['benchmarks.scale_params', '--sizes', '10,20', '--mode', 'FAST_COMPILE',
          '--seconds', '0.05', '--windows', '1', '--json', str(out), '--md', str(tmp_path / 'p.md')])
    rows = json.loads(out.read_text())['rows']
    assert [(r['n'], r['impl']) for r in rows] == [(10, 'raw'), (10, 'downhill'),
                                                   (20, 'raw'), (20, 'downhill')]
    for r in rows:
        assert r['ups'] > 0 and r['peak_bytes'] >= r['base_bytes'] > 0
    # the same updates: both implementations end near each other's loss after warm-up steps
    assert all(np.isfinite(r['loss']) for r in rows)
    assert 'parameter-sized arrays at peak' in (tmp_path / 'p.md').read_text()


def test_scale_data_benchmark_runs(tmp_path):
    stores = ['memmap', 'mapped']
    for store, module in (('hdf5', 'h5py'), ('zarr', 'zarr')):
        try:
            __import__(module)
            stores.append(store)
        except ImportError:
            pass
    out = tmp_path / 'd.json'
    _run(['benchmarks.scale_data', '--store', ','.join(stores), '--file-mb', '4',
          '--limit-mb', '2000', '--mode', 'FAST_COMPILE', '--dir', str(tmp_path),
          '--json', str(out)])
    rows = json.loads(out.read_text())['rows']
    assert [r['store'] for r in rows] == stores
    for row in rows:
        assert row['rows'] == 4 * 2 ** 20 // 1024 and row['file_bytes'] > 0
        assert row['rows_trained'] == row['rows'] and row['loss_after'] < row['loss_before']
        assert row['peak_bytes'] > 0 and row['under_limit']
    assert not any(p.name.startswith('scale_data') for p in tmp_path.iterdir())  # cleaned up
