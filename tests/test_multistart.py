"""downhill.multistart: many starting points, the best run, executors, vectorized runs."""

import concurrent.futures

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import landscapes
from downhill.multistart import multistart


def ackley():
    """Module level, so that a process pool can call it by reference."""
    return landscapes.ackley()


def test_lbfgs_from_many_starts_finds_the_global_minimum_of_ackley():
    problem = landscapes.ackley()
    alone = downhill.build('lbfgs', problem.loss)
    alone.minimize(None)
    assert alone.evaluate(None)['loss'] > 19  # from (25, 20) it stays on the plateau
    before = problem.param.get_value()
    result = multistart(problem, 12, algo='lbfgs', bounds=(-3, 3), seed=2)
    assert len(result.runs) == 12 and result.points.shape == (12, 2)
    assert result.best.loss < 1e-6
    np.testing.assert_allclose(result.best.x, [0, 0], atol=1e-6)
    assert result.best.loss == result.losses.min()
    assert sum(result.losses < 1e-6) < 12  # the others stop in local minima
    # the problem's own parameter is left as it was
    np.testing.assert_array_equal(problem.param.get_value(), before)


def test_given_starts_are_run_in_order():
    problem = landscapes.rosenbrock(2)
    starts = np.array([[-1.2, 1.0], [2.0, 2.0], [0.0, 0.0]])
    result = multistart(problem.loss, starts, algo='newton-cg', ftol=0)
    for run, start in zip(result.runs, starts):
        np.testing.assert_array_equal(run.start, start)
        np.testing.assert_allclose(run.x, [1, 1], atol=1e-5)
        assert run.iterations > 0 and run.loss < 1e-10


@pytest.mark.parametrize('pool', ['thread', 'process'])
def test_executors_give_the_same_runs_as_in_process(pool):
    problem = ackley()
    here = multistart(problem, 3, bounds=(-4, 4), seed=5)
    kind = concurrent.futures.ThreadPoolExecutor if pool == 'thread' else concurrent.futures.ProcessPoolExecutor
    with kind(2) as executor:
        sent = multistart(problem, 3, bounds=(-4, 4), seed=5, executor=executor)
        by_reference = multistart(ackley, 3, bounds=(-4, 4), seed=5, executor=executor)
    for other in (sent, by_reference):
        np.testing.assert_allclose(other.points, here.points, rtol=1e-12)
        np.testing.assert_allclose(other.losses, here.losses, rtol=1e-12)


def test_vectorized_first_order_runs_match_separate_runs():
    centre = np.array([1.0, -2.0])
    x = pytensor.shared(np.zeros(2), name='x')
    loss = pt.sqr(x - centre).sum() + 0.5 * pt.sqr(x).sum()
    starts = np.array([[3.0, 3.0], [-1.0, 0.5], [0.0, 4.0]])
    settings = dict(algo='sgd', learning_rate=0.05, max_updates=30)
    together = multistart(loss, starts, **settings)
    apart = multistart(loss, starts, vectorize=False, **settings)
    np.testing.assert_allclose(together.points, apart.points, rtol=1e-12)
    np.testing.assert_allclose(together.losses, apart.losses, rtol=1e-12)
    assert together.runs[0].iterations == 30


def test_errors():
    problem = landscapes.rosenbrock(2)
    with pytest.raises(ValueError, match='needs bounds='):
        multistart(problem.loss, 3)
    with pytest.raises(ValueError, match=r'shape \(n, 2\)'):
        multistart(problem, np.zeros((3, 5)))
    with pytest.raises(ValueError, match='cannot vectorize.*full-batch'):
        multistart(problem, 2, algo='lbfgs', vectorize=True)
    with pytest.raises(ValueError, match="unknown algorithm 'lbgfs'"):
        multistart(problem, 2, algo='lbgfs')
    with pytest.raises(ValueError, match='low <= high'):
        multistart(problem, 2, bounds=(1, -1))


def test_many_starts_log_a_summary_not_every_run(downhill_log):
    """Each run is quiet (warnings still show); the log has the summary line."""
    result = multistart(ackley(), 20, algo='adam', bounds=(-3, 3), seed=1, vectorize=False,
                        max_updates=15)
    assert len(result.runs) == 20
    lines = [r.getMessage() for r in downhill_log.records]
    assert len(lines) <= 2, lines
    assert lines[-1].startswith('multistart: 20 runs of adam, best loss')
