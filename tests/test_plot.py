"""downhill.plot: trajectories, loss curves and the race picture."""

import builtins
import importlib
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip('matplotlib')
matplotlib.use('Agg')

from matplotlib.figure import Figure  # noqa: E402

import downhill  # noqa: E402
from downhill import landscapes, plot  # noqa: E402


def _axes():
    return Figure().subplots()


def _record(problem, algo, steps, **hypers):
    problem.param.set_value(problem.start.copy())
    opt = downhill.build(algo, problem.loss, params=[problem.param])
    path, history = [problem.param.get_value()], []
    for pair in opt.iterate(None, max_updates=steps, validate_every=steps + 1, patience=steps,
                            **hypers):
        path.append(problem.param.get_value())
        history.append(pair)
    return np.asarray(path), history


def test_trajectories_draws_paths_contours_and_minimum():
    problem = landscapes.rosenbrock()
    path, _ = _record(problem, 'sgd', 20, learning_rate=1e-3, momentum=0.9)
    ax = plot.trajectories({'sgd': path, 'other': path[::-1]}, problem, ax=_axes())
    labels = [line.get_label() for line in ax.get_lines()]
    assert 'sgd' in labels and 'other' in labels and 'minimum' in labels and 'start' in labels
    assert ax.get_xlim() == problem.bounds[0] and ax.get_ylim() == problem.bounds[1]
    assert ax.collections, 'expected contour sets'
    sgd = [line for line in ax.get_lines() if line.get_label() == 'sgd'][0]
    np.testing.assert_allclose(sgd.get_xdata(), path[:, 0])
    assert sgd.get_color() == plot.COLORS['sgd']
    assert ax.get_legend() is not None
    assert ax.get_title() == 'rosenbrock'


def test_trajectories_without_landscape_and_unnamed_path():
    ax = plot.trajectories([[0, 0], [1, 1], [np.nan, 2], [2, 1]], ax=_axes())
    (line,) = [l for l in ax.get_lines() if l.get_label() != 'start'][:1]
    assert len(line.get_xdata()) == 3   # the non-finite point is left out
    lo, hi = ax.get_xlim()
    assert lo < 0 and hi > 2


def test_trajectories_many_points_and_more_dimensions():
    wells = landscapes.gaussian_wells(n_points=3)
    path = np.stack([wells.start, wells.start + 0.1])
    ax = plot.trajectories({'adam': path}, wells, ax=_axes())
    assert sum(l.get_label() == 'adam' for l in ax.get_lines()) == 1
    assert sum(l.get_color() == plot.COLORS['adam'] for l in ax.get_lines()) == 6
    himmelblau = landscapes.himmelblau()
    ax = plot.trajectories({'x': [himmelblau.start]}, himmelblau, ax=_axes())
    star = [l for l in ax.get_lines() if l.get_label() == 'minimum'][0]
    assert len(star.get_xdata()) == 4   # all four global minima
    quad = landscapes.quadratic(d=5)
    plot.trajectories({'x': np.ones((3, 5))}, quad, ax=_axes(), log_scale=False)


def test_trajectories_rejects_bad_shapes():
    with pytest.raises(ValueError, match='sequence of points'):
        plot.trajectories({'a': np.zeros((2, 2, 2, 2))}, ax=_axes())
    with pytest.raises(ValueError, match='empty'):
        plot.trajectories({}, ax=_axes())


def test_losses_reads_what_iterate_yields():
    problem = landscapes.quadratic()
    _, history = _record(problem, 'adam', 15, learning_rate=0.05)
    ax = plot.losses({'adam': history, 'floats': [3.0, 2.0, 1.0]}, ax=_axes())
    adam = [l for l in ax.get_lines() if l.get_label() == 'adam'][0]
    np.testing.assert_allclose(adam.get_ydata(), [t['loss'] for t, _ in history])
    assert ax.get_yscale() == 'log'
    ax = plot.losses([t for t, _ in history], ax=_axes(), minimum=-1.0, log_scale=False)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [t['loss'] + 1 for t, _ in history])
    assert ax.get_legend() is None
    ax = plot.losses({'v': history}, ax=_axes(), which='valid')
    assert np.allclose(ax.get_lines()[0].get_ydata(), history[0][1]['loss'])
    ax = plot.losses({'neg': [-1.0, 0.0, 1.0]}, ax=_axes())
    assert ax.get_yscale() == 'symlog'
    with pytest.raises(KeyError, match="monitor 'acc'"):
        plot.losses({'a': history}, key='acc', ax=_axes())
    with pytest.raises(ValueError, match='which'):
        plot.losses({'a': history}, which='test', ax=_axes())


def test_race_figure_saves_png(tmp_path):
    problem = landscapes.beale()
    path, history = _record(problem, 'rmsprop', 10, learning_rate=0.01)
    out = tmp_path / 'race.png'
    fig = plot.race(problem, {'rmsprop': path}, {'rmsprop': [t['loss'] for t, _ in history]},
                    path=out, title='t')
    assert isinstance(fig, Figure)
    assert out.stat().st_size > 10_000


def test_colors_are_stable():
    got = plot.colors(['adam', 'mine', 'sgd', 'yours'])
    assert got['adam'] == plot.COLORS['adam'] and got['sgd'] == plot.COLORS['sgd']
    assert got['mine'] != got['yours']


def test_default_axes_use_pyplot():
    plt = plot._pyplot()
    plt.figure()
    try:
        ax = plot.losses([1.0, 0.5])
        assert ax is plt.gca()
    finally:
        plt.close('all')


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == 'matplotlib' or name.startswith('matplotlib.'):
            raise ImportError('No module named matplotlib')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', fake_import)
    for name in [m for m in sys.modules if m == 'matplotlib' or m.startswith('matplotlib.')]:
        monkeypatch.delitem(sys.modules, name)
    fresh = importlib.reload(plot)   # importing downhill.plot itself needs no matplotlib
    with pytest.raises(ImportError, match='pip install matplotlib') as err:
        fresh.losses([1.0])
    assert 'downhill' not in str(err.value).split('install')[-1]
