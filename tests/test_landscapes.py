"""Tests for downhill.landscapes: minima, gradients, NumPy twins, dtypes."""

import dataclasses

import numpy as np
import pytensor
import pytest

from downhill import landscapes
from downhill.landscapes import Landscape

MODE = "FAST_COMPILE"

# (factory name, keyword arguments): a few dimensions for each landscape.
CASES = [
    ("rosenbrock", {}),
    ("rosenbrock", {"d": 3}),
    ("rosenbrock", {"d": 6}),
    ("ackley", {}),
    ("ackley", {"d": 1}),
    ("ackley", {"d": 5}),
    ("rastrigin", {}),
    ("rastrigin", {"d": 1}),
    ("rastrigin", {"d": 4}),
    ("beale", {}),
    ("himmelblau", {}),
    ("styblinski_tang", {}),
    ("styblinski_tang", {"d": 1}),
    ("styblinski_tang", {"d": 5}),
    ("quadratic", {}),
    ("quadratic", {"d": 1}),
    ("quadratic", {"d": 6, "condition": 1e4}),
    ("gaussian_wells", {}),
    ("gaussian_wells", {"d": 3, "n_wells": 5, "seed": 1}),
    ("gaussian_wells", {"n_points": 7, "seed": 2}),
]


def _case_id(case):
    name, kwargs = case
    return name + "".join(f"-{k}={v}" for k, v in kwargs.items())


CASE_IDS = [_case_id(c) for c in CASES]

_CACHE = {}


def _built(name, kwargs, dtype="float64"):
    """The landscape and a compiled x -> (loss, grad), cached per case."""
    key = (name, tuple(sorted(kwargs.items())), dtype)
    if key not in _CACHE:
        ls = landscapes.LANDSCAPES[name](dtype=dtype, **kwargs)
        grad = pytensor.grad(ls.loss, ls.param)
        xin = ls.param.type("xin")
        fn = pytensor.function([xin], [ls.loss, grad],
                               givens=[(ls.param, xin)], mode=MODE)
        _CACHE[key] = (ls, fn)
    return _CACHE[key]


def _box(ls):
    """Per-coordinate (low, high) for every entry of the parameter.

    ``bounds`` covers the first two coordinates; further coordinates reuse
    them cyclically, like the tiled starting points.
    """
    d = ls.d
    lo = np.array([ls.bounds[i % 2][0] for i in range(d)])
    hi = np.array([ls.bounds[i % 2][1] for i in range(d)])
    shape = ls.start.shape
    return np.broadcast_to(lo, shape), np.broadcast_to(hi, shape)


def _random_points(ls, n, seed):
    lo, hi = _box(ls)
    rng = np.random.default_rng(seed)
    # stay a little inside the box
    span = hi - lo
    return [lo + span * rng.uniform(0.05, 0.95, size=lo.shape)
            for _ in range(n)]


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request):
    name, kwargs = request.param
    return _built(name, kwargs)


# ---------------------------------------------------------------------------
# The structure of a Landscape
# ---------------------------------------------------------------------------


def test_fields_and_shapes(case):
    ls, _ = case
    assert isinstance(ls, Landscape)
    assert ls.name in landscapes.LANDSCAPES
    assert ls.param.name == "x"
    np.testing.assert_array_equal(ls.param.get_value(), ls.start)
    assert ls.start.shape == ls.param.get_value().shape
    assert ls.minimum.shape == ls.start.shape
    assert ls.minimum.dtype == ls.start.dtype == np.float64
    assert isinstance(ls.minimum_value, float)
    assert ls.loss.ndim == 0
    assert len(ls.bounds) == 2
    for lo, hi in ls.bounds:
        assert isinstance(lo, float) and isinstance(hi, float) and lo < hi
    assert ls.metadata["d"] == ls.d
    # the start and the minimum lie inside the plotting box
    lo, hi = _box(ls)
    assert np.all((lo <= ls.start) & (ls.start <= hi))
    assert np.all((lo <= ls.minimum) & (ls.minimum <= hi))
    assert ls.name in repr(ls)


def test_landscape_is_frozen_and_arrays_are_read_only():
    ls = landscapes.rosenbrock()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ls.name = "other"
    for arr in (ls.start, ls.minimum):
        with pytest.raises(ValueError):
            arr[0] = 5.0
    # setting the parameter does not touch the recorded start
    ls.param.set_value(ls.minimum)
    np.testing.assert_array_equal(ls.start, [-1.2, 1.0])


def test_each_call_makes_a_fresh_parameter():
    a, b = landscapes.ackley(), landscapes.ackley()
    assert a.param is not b.param
    a.param.set_value(np.zeros(2))
    np.testing.assert_array_equal(b.param.get_value(), [25.0, 20.0])


# ---------------------------------------------------------------------------
# Minima
# ---------------------------------------------------------------------------


def test_value_and_gradient_at_minimum(case):
    ls, fn = case
    value, grad = fn(ls.minimum)
    assert abs(float(value) - ls.minimum_value) <= 1e-12 * (
        1 + abs(ls.minimum_value))
    assert np.all(np.isfinite(grad))
    assert np.max(np.abs(grad)) <= 1e-10
    assert abs(float(np.sum(ls.numpy(ls.minimum))) - ls.minimum_value) \
        <= 1e-12 * (1 + abs(ls.minimum_value))


def test_minimum_is_lowest_in_its_neighbourhood(case):
    ls, _ = case
    rng = np.random.default_rng(7)
    shifts = rng.normal(scale=1e-3, size=(200,) + ls.minimum.shape)
    values = ls.numpy(ls.minimum + shifts)
    if ls.minimum.ndim == 2:
        values = values.sum(axis=-1)
    assert np.all(values >= ls.minimum_value - 1e-12)


def test_start_is_not_the_minimum(case):
    ls, fn = case
    value, grad = fn(ls.start)
    assert float(value) > ls.minimum_value + 1e-3
    assert np.max(np.abs(grad)) > 0


def test_ackley_gradient_at_origin_is_zero_not_nan():
    for dtype in ("float64", "float32"):
        ls, fn = _built("ackley", {"d": 3}, dtype)
        value, grad = fn(np.zeros(3, dtype=dtype))
        assert float(value) == 0.0
        np.testing.assert_array_equal(grad, np.zeros(3))


def test_himmelblau_has_four_minima():
    ls, fn = _built("himmelblau", {})
    others = ls.metadata["other_minima"]
    assert others.shape == (3, 2)
    np.testing.assert_allclose(
        others, [[-2.805118, 3.131312], [-3.779310, -3.283186],
                 [3.584428, -1.848126]], atol=1e-6)
    np.testing.assert_array_equal(ls.minimum, [3.0, 2.0])
    assert ls.metadata["all_minima"].shape == (4, 2)
    for point in ls.metadata["all_minima"]:
        value, grad = fn(point)
        assert abs(float(value)) < 1e-20
        assert np.max(np.abs(grad)) < 1e-10


def test_styblinski_tang_constants():
    t = landscapes.STYBLINSKI_TANG_ARGMIN
    # the most negative root of f'(t)/2 = 4 t^3 - 32 t + 5, checked by np.roots
    assert t == pytest.approx(min(np.roots([4.0, 0.0, -32.0, 5.0]).real),
                              abs=1e-14)
    assert 4 * t ** 3 - 32 * t + 5 == pytest.approx(0.0, abs=1e-12)
    assert round(t, 6) == -2.903534
    assert round(landscapes.STYBLINSKI_TANG_MIN, 5) == -39.16617
    assert -39.16617 < landscapes.STYBLINSKI_TANG_MIN < -39.16616
    for d in (1, 3):
        ls = landscapes.styblinski_tang(d=d)
        np.testing.assert_array_equal(ls.minimum, np.full(d, t))
        assert ls.minimum_value == pytest.approx(
            d * landscapes.STYBLINSKI_TANG_MIN, rel=1e-15)
    local = landscapes.styblinski_tang().metadata["local_minimum_coordinate"]
    assert local == pytest.approx(2.746803, abs=1e-6)


def test_quadratic_eigenvalues():
    ls = landscapes.quadratic(d=5, condition=1e4)
    eig = ls.metadata["eigenvalues"]
    np.testing.assert_allclose(eig, [1, 10, 100, 1e3, 1e4], rtol=1e-12)
    assert eig.max() / eig.min() == pytest.approx(1e4)
    np.testing.assert_array_equal(landscapes.quadratic(d=1).metadata[
        "eigenvalues"], [1.0])
    # condition 1 is the round bowl
    ls = landscapes.quadratic(d=3, condition=1)
    np.testing.assert_allclose(ls.numpy(np.ones(3)), 1.5)


@pytest.mark.parametrize("name, kwargs, point, expected", [
    ("rosenbrock", {}, [-1.2, 1.0], 24.2),
    ("rosenbrock", {"d": 3}, [0.0, 0.0, 0.0], 2.0),
    ("ackley", {"d": 1}, [1.0], 20 * (1 - np.exp(-0.2))),
    ("ackley", {}, [0.0, 0.0], 0.0),
    ("rastrigin", {}, [1.0, 2.0], 5.0),
    ("rastrigin", {"d": 1}, [0.5], 20.25),
    ("beale", {}, [1.0, 1.0], 14.203125),
    ("beale", {}, [0.0, 0.0], 1.5 ** 2 + 2.25 ** 2 + 2.625 ** 2),
    ("himmelblau", {}, [0.0, 0.0], 170.0),
    ("styblinski_tang", {"d": 2}, [1.0, -1.0], 0.5 * (-10 + -20)),
    ("quadratic", {"condition": 100}, [1.0, 1.0], 50.5),
    ("quadratic", {"d": 3, "condition": 4}, [1.0, 1.0, 1.0], 3.5),
])
def test_known_values(name, kwargs, point, expected):
    ls, fn = _built(name, kwargs)
    value, _ = fn(np.array(point))
    assert float(value) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert float(ls.numpy(point)) == pytest.approx(expected, rel=1e-12,
                                                   abs=1e-12)


# ---------------------------------------------------------------------------
# Gradients and the NumPy evaluator
# ---------------------------------------------------------------------------


def test_gradient_matches_finite_differences(case):
    ls, fn = case
    h = 1e-6
    for point in _random_points(ls, 4, seed=1234):
        value, grad = fn(point)
        numeric = np.zeros_like(point)
        for i in np.ndindex(point.shape):
            up, down = point.copy(), point.copy()
            up[i] += h
            down[i] -= h
            numeric[i] = (fn(up)[0] - fn(down)[0]) / (2 * h)
        tol = 1e-6 * (1 + abs(float(value)) + np.max(np.abs(grad)))
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=tol)


def test_numpy_matches_symbolic(case):
    ls, fn = case
    for point in _random_points(ls, 5, seed=99) + [ls.start]:
        value, _ = fn(point)
        np.testing.assert_allclose(np.sum(ls.numpy(point)), value,
                                   rtol=1e-12, atol=1e-12)


def test_numpy_evaluates_batches_of_points(case):
    ls, _ = case
    d = ls.d
    rng = np.random.default_rng(5)
    batch = rng.uniform(-1.0, 1.0, size=(4, 3, d))
    out = ls.numpy(batch)
    assert out.shape == (4, 3)
    single = np.array([[ls.numpy(batch[i, j]) for j in range(3)]
                       for i in range(4)])
    np.testing.assert_allclose(out, single, rtol=1e-14)
    # a contour-plot grid over the first two coordinates
    if d >= 2:
        (x0, x1), (y0, y1) = ls.bounds
        xx, yy = np.meshgrid(np.linspace(x0, x1, 7), np.linspace(y0, y1, 5))
        pts = np.zeros(xx.shape + (d,))
        pts[..., 0], pts[..., 1] = xx, yy
        assert ls.numpy(pts).shape == (5, 7)
    with pytest.raises(ValueError, match="shape"):
        ls.numpy(np.zeros(d + 1))


# ---------------------------------------------------------------------------
# float32
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_float32_stays_float32(name, kwargs):
    ls, fn = _built(name, kwargs, "float32")
    assert ls.param.dtype == "float32"
    assert ls.loss.dtype == "float32"
    assert ls.dtype == "float32"
    assert ls.start.dtype == ls.minimum.dtype == np.float32
    assert pytensor.grad(ls.loss, ls.param).dtype == "float32"
    value, grad = fn(ls.start)
    assert value.dtype == np.float32 and grad.dtype == np.float32
    ref, _ = _built(name, kwargs)[1](ls.start.astype("float64"))
    assert float(value) == pytest.approx(float(ref), rel=1e-5, abs=1e-5)
    value, grad = fn(ls.minimum)
    assert float(value) == pytest.approx(ls.minimum_value, rel=1e-5,
                                         abs=1e-5)
    # the parameter accepts the stored minimum as is
    ls.param.set_value(ls.minimum)


# ---------------------------------------------------------------------------
# Gaussian wells
# ---------------------------------------------------------------------------


def test_gaussian_wells_metadata_and_seed():
    a = landscapes.gaussian_wells(d=3, n_wells=6, seed=4)
    b = landscapes.gaussian_wells(d=3, n_wells=6, seed=4, n_points=10)
    c = landscapes.gaussian_wells(d=3, n_wells=6, seed=5)
    assert a.metadata["centres"].shape == (6, 3)
    assert a.metadata["depths"].shape == (6,)
    assert a.metadata["widths"].shape == (6,)
    for key in ("centres", "depths", "widths"):
        np.testing.assert_array_equal(a.metadata[key], b.metadata[key])
    assert not np.array_equal(a.metadata["centres"], c.metadata["centres"])
    # the landscape is the same whatever the number of points
    np.testing.assert_array_equal(a.metadata["point_minimum_value"],
                                  b.metadata["point_minimum_value"])
    assert b.param.get_value().shape == (10, 3)
    assert b.minimum_value == pytest.approx(10 * a.minimum_value)
    np.testing.assert_array_equal(b.minimum, np.tile(a.minimum, (10, 1)))
    # local minima are sorted, and the first is the global one
    values = a.metadata["local_minimum_values"]
    assert np.all(np.diff(values) >= 0)
    np.testing.assert_array_equal(a.metadata["local_minima"][0], a.minimum)
    np.testing.assert_allclose(a.numpy(a.metadata["local_minima"]), values,
                               rtol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gaussian_wells_minimum_beats_a_dense_grid(seed):
    ls = landscapes.gaussian_wells(seed=seed)
    (x0, x1), (y0, y1) = ls.bounds
    pad = 1.0
    xx, yy = np.meshgrid(np.linspace(x0 - pad, x1 + pad, 301),
                         np.linspace(y0 - pad, y1 + pad, 301))
    grid = ls.numpy(np.stack([xx, yy], axis=-1))
    assert ls.minimum_value <= grid.min() + 1e-12
    assert ls.minimum_value < -0.5


def test_gaussian_wells_local_minima_are_stationary():
    ls = landscapes.gaussian_wells(d=2, n_wells=12, seed=3)
    fn = _built("gaussian_wells", {"n_wells": 12, "seed": 3})[1]
    for point in ls.metadata["local_minima"]:
        _, grad = fn(point)
        assert np.max(np.abs(grad)) < 1e-10


def test_gaussian_wells_points_are_independent():
    multi, fn_multi = _built("gaussian_wells", {"n_points": 7, "seed": 2})
    single, fn_single = _built("gaussian_wells", {"seed": 2})
    np.testing.assert_array_equal(multi.metadata["centres"],
                                  single.metadata["centres"])
    points = multi.start
    value, grad = fn_multi(points)
    assert grad.shape == points.shape
    assert float(value) == pytest.approx(float(np.sum(multi.numpy(points))))
    for row, g in zip(points, grad):
        _, g1 = fn_single(row)
        np.testing.assert_allclose(g, g1, rtol=1e-12, atol=1e-15)
    # starting points are spread over the box and distinct
    assert len(np.unique(points, axis=0)) == 7
    assert np.all(np.abs(points) <= 3.0)


# ---------------------------------------------------------------------------
# Use in an optimization loop
# ---------------------------------------------------------------------------


def test_plain_gradient_descent_reaches_the_minimum():
    ls = landscapes.himmelblau()
    grad = pytensor.grad(ls.loss, ls.param)
    step = pytensor.function([], ls.loss,
                             updates=[(ls.param, ls.param - 0.01 * grad)],
                             mode=MODE)
    for _ in range(300):
        step()
    np.testing.assert_allclose(ls.param.get_value(), ls.minimum, atol=1e-6)


def test_multi_start_descent_moves_every_point_downhill():
    ls = landscapes.gaussian_wells(n_points=20, seed=0)
    grad = pytensor.grad(ls.loss, ls.param)
    step = pytensor.function([], ls.loss,
                             updates=[(ls.param, ls.param - 0.1 * grad)],
                             mode=MODE)
    before = ls.numpy(ls.param.get_value())
    for _ in range(50):
        step()
    after = ls.numpy(ls.param.get_value())
    assert np.all(after <= before + 1e-12)
    assert after.sum() < before.sum()


# ---------------------------------------------------------------------------
# Argument checking and the registry
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("factory, kwargs, argument", [
    (landscapes.rosenbrock, {"d": 1}, "d"),
    (landscapes.rosenbrock, {"d": 2.5}, "d"),
    (landscapes.ackley, {"d": 0}, "d"),
    (landscapes.ackley, {"d": True}, "d"),
    (landscapes.rastrigin, {"d": -3}, "d"),
    (landscapes.styblinski_tang, {"d": "2"}, "d"),
    (landscapes.quadratic, {"d": 0}, "d"),
    (landscapes.quadratic, {"condition": 0.5}, "condition"),
    (landscapes.quadratic, {"condition": float("nan")}, "condition"),
    (landscapes.quadratic, {"condition": float("inf")}, "condition"),
    (landscapes.gaussian_wells, {"d": 0}, "d"),
    (landscapes.gaussian_wells, {"n_wells": 0}, "n_wells"),
    (landscapes.gaussian_wells, {"n_points": 0}, "n_points"),
    (landscapes.gaussian_wells, {"seed": -1}, "seed"),
    (landscapes.gaussian_wells, {"seed": 1.5}, "seed"),
    (landscapes.beale, {"dtype": "int32"}, "dtype"),
    (landscapes.himmelblau, {"dtype": "float16"}, "dtype"),
    (landscapes.rosenbrock, {"dtype": "double-ish"}, "dtype"),
])
def test_bad_arguments_raise_value_error_naming_them(factory, kwargs,
                                                     argument):
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        factory(**kwargs)


@pytest.mark.parametrize("name", sorted(landscapes.LANDSCAPES))
def test_every_factory_accepts_dtype(name):
    factory = landscapes.LANDSCAPES[name]
    assert factory(dtype=np.float32).loss.dtype == "float32"
    assert factory().loss.dtype == "float64"
    assert factory.__doc__ and ".. math::" in factory.__doc__
    assert "References" in factory.__doc__


def test_registry_and_get():
    assert set(landscapes.LANDSCAPES) == {
        "rosenbrock", "ackley", "rastrigin", "beale", "himmelblau",
        "styblinski_tang", "quadratic", "gaussian_wells"}
    for name in landscapes.LANDSCAPES:
        assert landscapes.LANDSCAPES[name]().name == name
    ls = landscapes.get("rosenbrock", d=4, dtype="float32")
    assert ls.name == "rosenbrock" and ls.start.shape == (4,)
    assert ls.loss.dtype == "float32"
    assert landscapes.get("Styblinski-Tang", d=3).d == 3
    with pytest.raises(ValueError) as info:
        landscapes.get("nope")
    message = str(info.value)
    assert "nope" in message
    for name in landscapes.LANDSCAPES:
        assert name in message
    with pytest.raises(ValueError, match="valid names"):
        landscapes.get(None)
    # arguments are still checked through get()
    with pytest.raises(ValueError, match="^d"):
        landscapes.get("ackley", d=0)
