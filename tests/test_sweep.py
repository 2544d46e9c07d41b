"""downhill.sweep: grids, results in grid order, the same numbers on every executor."""

import concurrent.futures
import functools
import multiprocessing

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill.sweep import grid_points

#: Workers started with spawn do not see conftest's FAST_COMPILE: every run says it.
FIXED = dict(mode='FAST_COMPILE', max_updates=4, validate_every=2, patience=100)
GRID = {'algo': ['sgd', 'adam'], 'learning_rate': [0.01, 0.1]}


def build_problem():
    """A least-squares problem (module level, so a worker can import it by name)."""
    rng = np.random.RandomState(3)
    X = rng.normal(size=(64, 3))
    Y = X @ np.array([1.0, -2.0, 0.5])
    x, y = pt.matrix('x'), pt.vector('y')
    w = pytensor.shared(np.zeros(3), name='w')
    loss = pt.sqr(x @ w - y).mean()
    return dict(loss=loss, inputs=[x, y], train=downhill.Dataset([X, Y], batch_size=16, rng=1),
                monitors={'w0': w[0]})


@functools.lru_cache(maxsize=None)
def reference(algo, learning_rate):
    """One point run by hand with iterate(), for comparison."""
    args = build_problem()
    opt = downhill.build(algo, args['loss'], inputs=args['inputs'], monitors=args['monitors'],
                         mode='FAST_COMPILE')
    kw = {k: v for k, v in FIXED.items() if k != 'mode'}
    history = [t['loss'] for t, _ in opt.iterate(args['train'], learning_rate=learning_rate, **kw)]
    return history, [p.get_value() for p in opt._params]


def check(runs):
    assert [r.point for r in runs] == grid_points(GRID)
    for run in runs:
        history, params = reference(run.point['algo'], run.point['learning_rate'])
        assert [t['loss'] for t in run.train] == history
        assert list(run.train[0]) == ['loss', 'w0']
        assert len(run.valid) == 4 and run.best_loss <= run.valid[0]['loss']
        assert run.param_names == ['w']
        np.testing.assert_array_equal(run.params[0], params[0])
    # the sweep really ran different settings
    assert len({tuple(r.params[0]) for r in runs}) == 4
    assert runs[3].train[-1]['loss'] < runs[3].train[0]['loss'] / 2


def test_grid_points():
    assert grid_points({'a': [1, 2], 'b': ['x', 'y']}) == [
        {'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    assert grid_points([{'a': 1}, {'b': 2}]) == [{'a': 1}, {'b': 2}]
    with pytest.raises(TypeError, match=r"grid\['a'\] must be a list of values to try, got 0.1"):
        grid_points({'a': 0.1})
    with pytest.raises(ValueError, match=r"grid\['a'\] is empty"):
        grid_points({'a': []})
    with pytest.raises(TypeError, match=r'grid\[1\] must be a dict'):
        grid_points([{'a': 1}, 2])


def test_sequential_with_a_builder():
    check(downhill.sweep(build_problem, GRID, **FIXED))


def test_sequential_with_a_dict_leaves_the_callers_params_alone():
    args = build_problem()
    shared = [v for v in pytensor.graph.traversal.graph_inputs([args['loss']])
              if isinstance(v, pytensor.compile.SharedVariable)]
    before = [v.get_value().copy() for v in shared]
    check(downhill.sweep(args, GRID, **FIXED))
    for v, value in zip(shared, before):
        np.testing.assert_array_equal(v.get_value(), value)


def test_process_pool_with_builder_and_with_pickled_graph():
    with concurrent.futures.ProcessPoolExecutor(
            2, mp_context=multiprocessing.get_context('spawn')) as pool:
        check(downhill.sweep(build_problem, GRID, executor=pool, **FIXED))
        check(downhill.sweep(build_problem(), GRID, executor=pool, **FIXED))


def test_dask_local_cluster():
    distributed = pytest.importorskip('dask.distributed')
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        check(downhill.sweep(build_problem(), GRID, executor=client, **FIXED))
        check(downhill.sweep(build_problem, GRID, executor=client.get_executor(), **FIXED))


def test_errors_before_any_run():
    with pytest.raises(TypeError, match="unknown keyword argument 'learning_rte'; did you mean "
                                        "'learning_rate'"):
        downhill.sweep(build_problem, {'learning_rte': [0.1]}, **FIXED)
    with pytest.raises(TypeError, match="unknown keyword argument 'beta1_halflife'"):
        downhill.sweep(build_problem, {'beta1_halflife': [3]}, algo='sgd', **FIXED)
    with pytest.raises(ValueError, match='sets max_updates, also given as keyword arguments'):
        downhill.sweep(build_problem, {'max_updates': [3]}, **FIXED)
    with pytest.raises(ValueError, match='the graph and data belong in build_args'):
        downhill.sweep(build_problem, {'train': [None]}, **FIXED)
    with pytest.raises(TypeError, match='must pickle .* defined at module level'):
        downhill.sweep(lambda: build_problem(), GRID,
                       executor=concurrent.futures.ThreadPoolExecutor(1), **FIXED)
    with pytest.raises(TypeError, match='executor must have a submit'):
        downhill.sweep(build_problem, GRID, executor=object(), **FIXED)
    with pytest.raises(ValueError, match="unknown algorithm 'adamm'"):
        downhill.sweep(build_problem, {'algo': ['adamm']}, **FIXED)


def test_a_failing_run_names_its_point():
    with pytest.raises(ValueError, match='learning_rate must be >= 0') as info:
        downhill.sweep(build_problem, {'learning_rate': [0.1, -1.0]}, **FIXED)
    assert "run 1, point {'learning_rate': -1.0}" in ''.join(getattr(info.value, '__notes__', []))
