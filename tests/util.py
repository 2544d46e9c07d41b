"""Small problems shared by the tests (after the old downhill suite's util)."""

import numpy as np
import pytensor
import pytensor.tensor as pt

import downhill


def build_rosen(algo, name=True, monitor_gradients=False, dtype='float32'):
    x = pytensor.shared(-3 + np.zeros((2,), dtype), name='x' if name else None)
    return downhill.build(
        algo,
        loss=(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum(),
        monitors=[('x', x[:-1].sum()), ('y', x[1:].sum())],
        monitor_gradients=monitor_gradients), [[]]


def build_factor(algo, seed=0):
    rng = np.random.RandomState(seed)
    a = np.arange(1000).reshape((100, 10)).astype('f')
    b = 0.1 + np.zeros((10, 100), 'f')
    x = pt.matrix('x', dtype='float32')
    u = pytensor.shared(a, name='u')
    v = pytensor.shared(0.1 + b, name='v')
    return downhill.build(
        algo,
        loss=pt.sum(pt.sqr(x - pt.dot(u, v))),
        monitors=[
            ('u<1', (u < 1).mean()),
            ('u<-1', (u < -1).mean()),
            ('v<1', (v < 1).mean()),
            ('v<-1', (v < -1).mean()),
        ]), [[np.dot(a, b) + rng.randn(100, 100).astype('f')] for _ in range(10)]


def assert_progress(opt, train, valid=None, **kwargs):
    mover = opt.iterate(train, valid=valid, **kwargs)
    train0, valid0 = next(mover)
    train1, valid1 = next(mover)
    assert train1['loss'] < valid0['loss']   # made progress
    assert valid1['loss'] == valid0['loss']  # no new validation happened


def linear_regression(n=200, seed=0, dtype='float64'):
    """y = X w + b + noise; returns (loss, (w, b), (x, y), (X, Y), true_w)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(dtype)
    true_w = np.array([1.5, -2.0, 0.5])
    Y = (X @ true_w + 0.3 + 0.01 * rng.normal(size=n)).astype(dtype)
    x = pt.matrix('x', dtype=dtype)
    y = pt.vector('y', dtype=dtype)
    w = pytensor.shared(np.zeros(3, dtype), name='w')
    b = pytensor.shared(np.asarray(0, dtype), name='b')
    loss = pt.sqr(x.dot(w) + b - y).mean()
    return loss, (w, b), (x, y), (X, Y), true_w
