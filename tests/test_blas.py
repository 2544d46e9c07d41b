"""iterate(blas_threads=N): BLAS threads limited while the loop computes, not between yields."""

import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill

threadpoolctl = pytest.importorskip('threadpoolctl')


def blas_threads():
    counts = {lib['num_threads'] for lib in threadpoolctl.threadpool_info()
              if lib['user_api'] == 'blas'}
    if not counts:
        pytest.skip('no BLAS library that threadpoolctl knows is loaded')
    return max(counts)


def problem():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 8))
    y = X @ rng.standard_normal(8)
    w = pytensor.shared(np.zeros(8), name='w')
    x, t = pt.matrix('x'), pt.vector('t')
    return pt.sqr(pt.dot(x, w) - t).mean(), w, [x, t], X, y


@pytest.fixture(autouse=True)
def two_blas_threads():
    """Two threads outside the loop, whatever the machine (so that 1 inside is a change)."""
    np.dot(np.ones((300, 300)), np.ones((300, 300)))  # BLAS loaded
    with threadpoolctl.threadpool_limits(limits=2, user_api='blas'):
        yield


def test_the_limit_holds_inside_the_loop_and_is_lifted_at_each_yield():
    loss, w, inputs, X, y = problem()
    outside = blas_threads()
    assert outside == 2
    seen = []

    def batch():  # called by the loop for every update
        seen.append(blas_threads())
        return [X, y]
    opt = downhill.build('sgd', loss, inputs=inputs, mode='FAST_COMPILE')
    first = None
    for tm, _ in opt.iterate(batch, [[X, y]], blas_threads=1, max_updates=20,
                             learning_rate=0.05):
        assert blas_threads() == outside
        first = tm['loss'] if first is None else first
    assert tm['loss'] < 0.2 * first
    assert seen and set(seen) == {1}
    assert blas_threads() == outside


def test_stopping_early_lifts_the_limit_and_restores_the_best():
    loss, w, inputs, X, y = problem()
    opt = downhill.build('sgd', loss, inputs=inputs, mode='FAST_COMPILE')
    outside = blas_threads()
    it = opt.iterate([[X, y]], blas_threads=1, learning_rate=0.05, validate_every=1)
    for _ in range(5):
        next(it)
    it.close()
    assert blas_threads() == outside
    assert float(np.abs(w.get_value()).sum()) > 0


def test_blas_threads_is_checked_before_any_work():
    loss, w, inputs, X, y = problem()
    opt = downhill.build('sgd', loss, inputs=inputs, mode='FAST_COMPILE')
    with pytest.raises(ValueError, match='blas_threads'):
        opt.iterate([[X, y]], blas_threads=0)
    with pytest.raises(TypeError, match='blas_threads must be a number'):
        opt.iterate([[X, y]], blas_threads='one')
    assert np.all(w.get_value() == 0)


def test_a_missing_threadpoolctl_is_named(monkeypatch):
    loss, w, inputs, X, y = problem()
    opt = downhill.build('sgd', loss, inputs=inputs, mode='FAST_COMPILE')
    monkeypatch.setitem(sys.modules, 'threadpoolctl', None)
    with pytest.raises(ImportError, match='pip install threadpoolctl'):
        opt.iterate([[X, y]], blas_threads=1)
