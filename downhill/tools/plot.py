"""Pictures of optimization: trajectories over a landscape, and loss curves.

These functions need matplotlib, which downhill does not install by itself
(``pip install matplotlib``). They import it only when called, so importing
:mod:`downhill.tools.plot` always works.

Each function draws into a matplotlib ``Axes``: pass ``ax=`` to choose one
(e.g. in a notebook, ``fig, ax = plt.subplots()``), or leave it out to draw
into the current axes of :mod:`matplotlib.pyplot`. When no display is
available and no backend was chosen, pyplot is switched to the
non-interactive ``Agg`` backend, so saving a figure works on a server.

>>> import downhill
>>> from downhill.tools import landscapes, plot
>>> problem = landscapes.rosenbrock()
>>> opt = downhill.build('adam', problem.loss)
>>> path, history = [problem.param.get_value()], []
>>> for train, valid in opt.iterate(max_updates=300, learning_rate=0.05):
...     path.append(problem.param.get_value())
...     history.append(train)
>>> ax = plot.trajectories({'adam': path}, problem)   # doctest: +SKIP
>>> ax = plot.losses({'adam': history})               # doctest: +SKIP
"""

import math
import os
import sys

import numpy as np

__all__ = ['trajectories', 'losses', 'race', 'colors']

#: The colour of each built-in algorithm, the same in every picture.
COLORS = {
    'sgd': '#1f77b4',
    'nag': '#ff7f0e',
    'rprop': '#2ca02c',
    'rmsprop': '#d62728',
    'adagrad': '#9467bd',
    'adadelta': '#8c564b',
    'esgd': '#e377c2',
    'adam': '#17becf',
    'adamw': '#bcbd22',
    'adamax': '#7f7f7f',
    'nadam': '#393b79',
}
_EXTRA = ['#637939', '#8c6d31', '#843c39', '#7b4173', '#5254a3', '#e7ba52', '#31a354']

_MISSING = ('downhill.plot needs matplotlib, which is not installed; install it with '
            '"pip install matplotlib"')


def _matplotlib():
    """Import matplotlib, with an error that says how to install it."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(_MISSING) from err
    return matplotlib


def _pyplot():
    """Import pyplot, choosing Agg first when there is no display and no chosen backend."""
    matplotlib = _matplotlib()
    if 'matplotlib.pyplot' not in sys.modules and not os.environ.get('MPLBACKEND'):
        headless = (sys.platform.startswith('linux') and not os.environ.get('DISPLAY')
                    and not os.environ.get('WAYLAND_DISPLAY'))
        if headless:
            matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _axes(ax):
    return _pyplot().gca() if ax is None else ax


def colors(names):
    """A colour for each name: fixed ones for the built-in algorithms, then others in turn.

    Parameters
    ----------
    names : iterable of str

    Returns
    -------
    dict
        Name to a matplotlib colour string.
    """
    result, extra = {}, 0
    for name in names:
        key = str(name).lower()
        if key in COLORS:
            result[name] = COLORS[key]
        else:
            result[name] = _EXTRA[extra % len(_EXTRA)]
            extra += 1
    return result


def _as_named(data, what):
    """A dict of name -> value from a mapping, or {None: data} for one unnamed item."""
    if isinstance(data, dict):
        if not data:
            raise ValueError(f'{what} is empty: nothing to plot')
        return dict(data)
    return {None: data}


def _points(path, name):
    """A path as an array of shape (steps, points, d), d >= 1."""
    arr = np.asarray(path, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3 or arr.shape[0] == 0:
        label = 'the path' if name is None else f'the path of {name!r}'
        raise ValueError(f'{label} must be a sequence of points (shape (steps, d) or '
                         f'(steps, n_points, d)), got shape {arr.shape}')
    return arr


def _grid(landscape, bounds, centre, resolution):
    """Evaluate the landscape on a grid over its first two coordinates."""
    (x0, x1), (y0, y1) = bounds
    xs = np.linspace(x0, x1, resolution)
    ys = np.linspace(y0, y1, resolution)
    gx, gy = np.meshgrid(xs, ys)
    d = len(centre)
    points = np.empty(gx.shape + (d,))
    points[...] = centre
    points[..., 0] = gx
    if d > 1:
        points[..., 1] = gy
    values = np.asarray(landscape.numpy(points), dtype=float)
    return gx, gy, values


def trajectories(paths, landscape=None, ax=None, bounds=None, levels=25, log_scale=True,
                 resolution=200, legend=True, title=None, cmap='bone', linewidth=1.5):
    """Draw optimization paths, over the contours of a landscape.

    Parameters
    ----------
    paths : dict or sequence of points
        ``{name: points}``, one path per name (e.g. per algorithm), or one
        unnamed path. A path is the sequence of parameter values visited, of
        shape ``(steps, d)`` (only the first two coordinates are drawn) or
        ``(steps, n_points, d)`` for a landscape that moves many points at
        once. Points that are not finite are left out.
    landscape : downhill.tools.landscapes.Landscape, optional
        Draws filled contours of ``landscape.numpy`` (for more than two
        dimensions, a slice through the global minimum), marks the global
        minimum (or all of them, when ``metadata['all_minima']`` lists
        several) with a star, and sets the limits to ``landscape.bounds``.
    ax : matplotlib Axes, optional
        Where to draw (default: the current axes of pyplot).
    bounds : ((xmin, xmax), (ymin, ymax)), optional
        Plot limits (default: the landscape's bounds, else the paths' extent).
    levels : int
        Number of contour levels.
    log_scale : bool
        Space the contours logarithmically in ``f - min f``, which shows the
        floor of a valley as well as its walls. Default True.
    resolution : int
        Grid points along each axis for the contours.
    legend : bool
        Add a legend naming each path.
    title : str, optional
        The axes title (default: the landscape's name).
    cmap : str
        Colour map of the contours.
    linewidth : float
        Width of the path lines.

    Returns
    -------
    matplotlib Axes
    """
    _matplotlib()
    ax = _axes(ax)
    named = {k: _points(v, k) for k, v in _as_named(paths, 'paths').items()}
    if bounds is None and landscape is not None:
        bounds = landscape.bounds
    if bounds is None:
        bounds = _extent(named)
    (x0, x1), (y0, y1) = bounds

    if landscape is not None:
        _draw_landscape(ax, landscape, bounds, levels, log_scale, resolution, cmap)
    _draw_paths(ax, named, linewidth)
    _draw_starts(ax, named)

    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel('$x_1$')
    ax.set_ylabel('$x_2$')
    if title is None and landscape is not None:
        title = landscape.name
    if title:
        ax.set_title(title)
    if legend and (len(named) > 1 or None not in named or landscape is not None):
        ax.legend(loc='best', fontsize='small', framealpha=0.8)
    return ax


def _extent(named):
    """Plot bounds around the finite points of the paths, padded (first two coordinates)."""
    stacked = np.concatenate([p.reshape(-1, p.shape[-1]) for p in named.values()])
    stacked = stacked[np.all(np.isfinite(stacked), axis=1)]
    if stacked.size == 0:
        stacked = np.zeros((1, 2))
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    pad = np.maximum(0.1 * (hi - lo), 0.5)
    lo, hi = lo - pad, hi + pad
    return ((lo[0], hi[0]), (lo[-1] if stacked.shape[1] == 1 else lo[1],
                             hi[-1] if stacked.shape[1] == 1 else hi[1]))


def _draw_landscape(ax, landscape, bounds, levels, log_scale, resolution, cmap):
    """Filled contours of the landscape (a slice through its minimum), stars on the global minima."""
    minimum = np.asarray(landscape.minimum, dtype=float)
    centre = minimum.reshape(-1, minimum.shape[-1])[0]
    gx, gy, values = _grid(landscape, bounds, centre, resolution)
    if log_scale:
        floor = min(float(np.nanmin(values)), float(landscape.minimum_value)
                    / max(1, minimum.size // len(centre)))
        _log_contours(ax, gx, gy, values - floor, levels, cmap)
    else:
        ax.contourf(gx, gy, values, levels=levels, cmap=cmap, alpha=0.9)
        ax.contour(gx, gy, values, levels=levels, colors='white', linewidths=0.3, alpha=0.5)
    minima = landscape.metadata.get('all_minima') if landscape.metadata else None
    stars = np.asarray(minima if minima is not None else [centre], dtype=float)
    ax.plot(stars[:, 0], stars[:, 1] if stars.shape[1] > 1 else stars[:, 0], '*',
            color='gold', markersize=14, markeredgecolor='black', zorder=5,
            label='minimum')


def _log_contours(ax, gx, gy, shifted, levels, cmap):
    """Contours of ``f - min f``, spaced logarithmically: a valley's floor shows as well as its walls."""
    from matplotlib import colors as mcolors

    positive = shifted[shifted > 0]
    low = max(float(positive.min()) if positive.size else 1e-12,
              float(np.nanmax(shifted)) * 1e-8, 1e-12)
    high = max(float(np.nanmax(shifted)), low * 10)
    shifted = np.clip(shifted, low, None)
    lv = np.logspace(math.log10(low), math.log10(high), levels)
    ax.contourf(gx, gy, shifted, levels=lv, norm=mcolors.LogNorm(low, high),
                cmap=cmap, alpha=0.9)
    ax.contour(gx, gy, shifted, levels=lv, colors='white', linewidths=0.3, alpha=0.5)


def _draw_paths(ax, named, linewidth):
    """Each path as a line in its name's colour (non-finite points left out), a dot at its end."""
    palette = colors([k for k in named if k is not None])
    for name, path in named.items():
        color = palette.get(name, 'C0')
        for j in range(path.shape[1]):
            xy = path[:, j, :]
            keep = np.all(np.isfinite(xy), axis=1)
            xy = xy[keep]
            if len(xy) == 0:
                continue
            x = xy[:, 0]
            y = xy[:, 1] if xy.shape[1] > 1 else xy[:, 0]
            label = name if (j == 0 and name is not None) else None
            ax.plot(x, y, '-', color=color, linewidth=linewidth, alpha=0.9, label=label, zorder=3)
            ax.plot(x[-1:], y[-1:], 'o', color=color, markersize=5, markeredgecolor='black',
                    zorder=4)


def _draw_starts(ax, named):
    """A white dot on the finite starting point of every path."""
    starts = [p[0, j, :] for p in named.values() for j in range(p.shape[1])
              if np.all(np.isfinite(p[0, j, :]))]
    if starts:
        s = np.asarray(starts)
        ax.plot(s[:, 0], s[:, 1] if s.shape[1] > 1 else s[:, 0], 'o', color='white',
                markeredgecolor='black', markersize=7, zorder=4, label='start')


def _curve(history, key, which):
    """The values of ``key`` along one history, as a float array."""
    values = []
    for i, item in enumerate(history):
        if isinstance(item, tuple) and len(item) == 2 and all(
                m is None or isinstance(m, dict) for m in item):
            item = item[0 if which == 'train' else 1]
        if item is None:
            values.append(np.nan)
        elif isinstance(item, dict):
            if key not in item:
                raise KeyError(f'monitor {key!r} is not in item {i} of the history; '
                               f'it has {", ".join(map(repr, item))}')
            values.append(float(item[key]))
        else:
            values.append(float(item))
    return np.asarray(values, dtype=float)


def losses(histories, ax=None, key='loss', which='train', minimum=None, log_scale=True,
           legend=True, title=None, xlabel='update', linewidth=1.5):
    """Draw loss curves (or any monitor), one line per history.

    Parameters
    ----------
    histories : dict or sequence
        ``{name: history}`` or one unnamed history. A history is a sequence
        of what :meth:`downhill.Optimizer.iterate` yields, i.e.
        ``(train_monitors, valid_monitors)`` pairs, or of monitor dicts, or
        of plain numbers.
    ax : matplotlib Axes, optional
        Where to draw (default: the current axes of pyplot).
    key : str
        The monitor to draw. Default ``'loss'``.
    which : 'train' or 'valid'
        For ``(train, valid)`` pairs, which dict to read. Validation values
        repeat between validations.
    minimum : float, optional
        The known minimum of the loss: draw ``value - minimum`` (the gap to
        the optimum) instead of the value.
    log_scale : bool
        A logarithmic y axis when every drawn value is positive (else a
        symmetric-log one). Default True.
    legend : bool
        Add a legend naming each line.
    title, xlabel : str, optional
        Labels.
    linewidth : float
        Width of the lines.

    Returns
    -------
    matplotlib Axes
    """
    _matplotlib()
    if which not in ('train', 'valid'):
        raise ValueError(f"which must be 'train' or 'valid', got {which!r}")
    ax = _axes(ax)
    named = _as_named(histories, 'histories')
    palette = colors([k for k in named if k is not None])
    curves = {}
    for name, history in named.items():
        values = _curve(history, key, which)
        if minimum is not None:
            values = values - float(minimum)
        curves[name] = values
    finite = np.concatenate([v[np.isfinite(v)] for v in curves.values()] or [np.zeros(0)])
    positive = finite.size > 0 and bool(np.all(finite > 0))
    for name, values in curves.items():
        ax.plot(np.arange(len(values)), values, '-', color=palette.get(name, 'C0'),
                linewidth=linewidth, label=name)
    if log_scale and finite.size:
        if positive:
            ax.set_yscale('log')
        else:
            nonzero = np.abs(finite[finite != 0])
            ax.set_yscale('symlog', linthresh=float(nonzero.min()) if nonzero.size else 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f'{key} - minimum' if minimum is not None else key)
    if title:
        ax.set_title(title)
    if legend and None not in named:
        ax.legend(loc='best', fontsize='small', framealpha=0.8)
    ax.grid(True, which='major', alpha=0.3)
    return ax


def race(landscape, paths, histories, path=None, title=None, figsize=(12, 5.2), dpi=100,
         floor=1e-12):
    """A two-panel race picture: trajectories over the landscape, and loss curves.

    This is the picture that ``downhill race LANDSCAPE --plot FILE`` draws.

    Parameters
    ----------
    landscape : downhill.tools.landscapes.Landscape
        The landscape raced on.
    paths : dict
        ``{name: points}``, as for :func:`trajectories`.
    histories : dict
        ``{name: losses}``, as for :func:`losses`; drawn as the gap to
        ``landscape.minimum_value``, floored at ``floor`` so that a run that
        reaches the minimum exactly still shows on the log scale.
    path : str or path-like, optional
        Save the figure there (the format follows the extension).
    title : str, optional
        A title over both panels.
    figsize, dpi
        The figure's size in inches and resolution.

    Returns
    -------
    matplotlib Figure
        Made without pyplot (so nothing is shown or kept open): save it with
        ``fig.savefig(...)``, or display it in a notebook by evaluating it.
    """
    _matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout='constrained')
    left, right = fig.subplots(1, 2, gridspec_kw={'width_ratios': [1.1, 1]})
    trajectories(paths, landscape, ax=left, title=landscape.name, legend=False)
    handles, labels = left.get_legend_handles_labels()
    marks = [(h, l) for h, l in zip(handles, labels) if l in ('minimum', 'start')]
    if marks:
        left.legend(*zip(*marks), loc='best', fontsize='small', framealpha=0.8)
    gaps = {}
    for name, values in histories.items():
        values = _curve(values, 'loss', 'train') - float(landscape.minimum_value)
        gaps[name] = np.where(np.isfinite(values), np.maximum(values, floor), np.nan)
    losses(gaps, ax=right, title='loss - minimum', xlabel='update')
    right.set_ylabel('loss - minimum')
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path)
    return fig
