"""Constraints and proximal operators (downhill.prox) inside the update step.

* each operator against NumPy (projections checked by their defining
  property, not by a copy of the same formula);
* the invariant (non-negative, on the sphere, on the simplex) holds to 1e-12
  after every single update, for every algorithm, with and without
  momentum, through get_updates() and through iterate();
* the per-element step size of every algorithm: an l1 prox step by step
  against a NumPy reference whose threshold is lam times that algorithm's
  preconditioner;
* Lasso: SGD + l1 is ISTA (every step, and the converged solution to 1e-6);
  Adam and RMSProp find the same support;
* NMF with non-negativity and normalization converges;
* the composite objective in the monitors and in early stopping; errors.
"""

import pathlib
import re

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
import numpy_reference as ref
from downhill import landscapes, prox
from test_modern import MODERN

ALGOS = tuple(sorted(set(ref.ALGOS) | {'adamw', 'adamax', 'nadam'}))
RATES = dict(sgd=0.05, nag=0.05, rprop=0.01, adagrad=0.1, rmsprop=0.01, adadelta=0.5, esgd=0.05,
             adam=0.02, adamw=0.02, adamax=0.05, nadam=0.02)
EXTRA = dict(adadelta=dict(rms_regularizer=1e-4))
MOMENTUM = {'plain': {}, 'momentum': dict(momentum=0.9), 'nesterov': dict(momentum=0.9, nesterov=True)}


def evaluate(expr, value):
    x = pt.tensor('x', dtype=str(value.dtype), shape=(None,) * value.ndim)
    return pytensor.function([x], expr(x))(value)


# ----------------------------------------------------------------------------
# the operators themselves


def numpy_simplex(v, radius=1.0):
    """Projection onto {w >= 0, sum w = radius} by bisection on theta (no sorting)."""
    lo, hi = v.min() - radius, v.max()
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.maximum(v - mid, 0).sum() > radius:
            lo = mid
        else:
            hi = mid
    return np.maximum(v - (lo + hi) / 2, 0)


@pytest.mark.parametrize('axis', [None, 0, 1, -1])
def test_simplex_projection(axis, rng):
    v = rng.normal(size=(7, 5)) * 3
    v[0, 0] = v[1, 0]  # ties are fine
    got = evaluate(lambda x: prox.simplex(axis)(x, None), v)
    if axis is None:
        want = numpy_simplex(v.ravel()).reshape(v.shape)
    else:
        want = np.apply_along_axis(numpy_simplex, axis, v)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got.min() >= 0
    sums = got.sum() if axis is None else got.sum(axis=axis)
    np.testing.assert_allclose(sums, 1, atol=1e-12)
    # a point already on the simplex stays where it is
    np.testing.assert_allclose(evaluate(lambda x: prox.simplex(axis)(x, None), got), got, atol=1e-12)


def test_simplex_radius_and_optimality(rng):
    v = rng.normal(size=9)
    w = evaluate(lambda x: prox.simplex(radius=2.5)(x, None), v)
    assert abs(w.sum() - 2.5) < 1e-12
    # no random feasible point is closer
    for _ in range(200):
        q = rng.dirichlet(np.ones(9)) * 2.5
        assert np.sum((q - v) ** 2) >= np.sum((w - v) ** 2) - 1e-12


@pytest.mark.parametrize('axis', [None, 0, 1])
def test_unit_norm_and_max_norm(axis, rng):
    v = rng.normal(size=(4, 6)) * 2
    v[:, 0] = 0  # a zero column
    got = evaluate(lambda x: prox.unit_norm(axis)(x, None), v)
    norms = np.sqrt((got ** 2).sum(axis=axis))
    np.testing.assert_allclose(norms, 1, atol=1e-12)
    if axis == 0:
        np.testing.assert_allclose(got[:, 0], 0.5)  # (1, 1, 1, 1) / sqrt(4)
        np.testing.assert_allclose(got[:, 1:], v[:, 1:] / np.linalg.norm(v[:, 1:], axis=0))
    capped = evaluate(lambda x: prox.max_norm(1.5, axis)(x, None), v)
    vnorm = np.sqrt((v ** 2).sum(axis=axis, keepdims=True))
    np.testing.assert_allclose(capped, v * np.minimum(1, 1.5 / np.where(vnorm > 0, vnorm, 1)), atol=1e-12)


def test_elementwise_operators(rng):
    v = rng.normal(size=(3, 4))
    t = np.abs(rng.normal(size=(3, 4))) * 0.5  # a per-element step size

    def run(op):
        x = pt.matrix('x')
        s = pt.matrix('s')
        return pytensor.function([x, s], op(x, s), on_unused_input='ignore')(v, t)

    np.testing.assert_array_equal(run(prox.nonnegative()), np.maximum(v, 0))
    np.testing.assert_array_equal(run(prox.box(-0.2, 0.5)), np.clip(v, -0.2, 0.5))
    np.testing.assert_array_equal(run(prox.box(lower=0)), np.maximum(v, 0))
    soft = np.sign(v) * np.maximum(np.abs(v) - 0.3 * t, 0)
    np.testing.assert_allclose(run(prox.l1(0.3)), soft, rtol=1e-15)
    assert (run(prox.l1(0.3)) == 0).sum() > 0
    np.testing.assert_allclose(run(prox.l2(0.7)), v / (1 + 0.7 * t), rtol=1e-15)
    np.testing.assert_allclose(run(prox.elastic_net(0.3, 0.7)), soft / (1 + 0.7 * t), rtol=1e-15)
    np.testing.assert_allclose(run(prox.normalize(axis=1)), v / v.sum(axis=1, keepdims=True))
    # the prox of r solves argmin_x r(x) + |x - v|^2 / (2 t): check on a grid, element 0
    lam, step, v0 = 0.3, t[0, 0], v[0, 0]
    grid = np.linspace(v0 - 2, v0 + 2, 400001)
    best = grid[np.argmin(lam * np.abs(grid) + (grid - v0) ** 2 / (2 * step))]
    assert abs(run(prox.l1(lam))[0, 0] - best) < 1e-4


def test_symbolic_strength_changes_without_recompiling():
    lam = pytensor.shared(0.5)
    x = pt.vector('x')
    f = pytensor.function([x], prox.l1(lam)(x, 1.0))
    np.testing.assert_allclose(f([1.0, -0.2]), [0.5, 0])
    lam.set_value(0.1)
    np.testing.assert_allclose(f([1.0, -0.2]), [0.9, -0.1])


def test_operator_errors():
    with pytest.raises(ValueError, match='lam must be >= 0'):
        prox.l1(-1)
    with pytest.raises(TypeError, match='lam must be a number'):
        prox.l2('big')
    with pytest.raises(ValueError, match='lower bound .* is above upper bound'):
        prox.box(1, 0)
    with pytest.raises(ValueError, match='needs a lower or an upper bound'):
        prox.box()
    with pytest.raises(ValueError, match='radius must be > 0'):
        prox.simplex(radius=0)


# ----------------------------------------------------------------------------
# invariants after every update, every algorithm


def nonneg_problem():
    rng = np.random.default_rng(5)
    target = rng.normal(size=(6, 3))
    x = pytensor.shared(np.abs(rng.normal(size=(6, 3))), name='x')
    loss = pt.sqr(x - target).sum() + 0.1 * pt.sqr(x.sum(axis=0) - 1).sum()
    return x, loss, prox.nonnegative(), lambda v: v.min() >= 0


def sphere_problem():
    scape = landscapes.gaussian_wells(d=3, n_points=8, seed=1)
    x = scape.param
    x.set_value(x.get_value() / np.linalg.norm(x.get_value(), axis=1, keepdims=True))
    check = lambda v: np.abs(np.linalg.norm(v, axis=1) - 1).max() < 1e-12  # noqa: E731
    return x, scape.loss, prox.unit_norm(axis=1), check


def simplex_problem():
    rng = np.random.default_rng(6)
    target = rng.normal(size=(5, 4))
    x = pytensor.shared(np.full((5, 4), 0.2), name='x')
    loss = pt.sqr(x - target).sum() + pt.sqr(x[0] * x[1]).sum()
    check = lambda v: v.min() >= 0 and np.abs(v.sum(axis=0) - 1).max() < 1e-12  # noqa: E731
    return x, loss, prox.simplex(axis=0), check


PROBLEMS = dict(nonnegative=nonneg_problem, sphere=sphere_problem, simplex=simplex_problem)


@pytest.mark.parametrize('mom', list(MOMENTUM))
@pytest.mark.parametrize('problem', list(PROBLEMS))
@pytest.mark.parametrize('algo', ALGOS)
def test_invariant_after_every_update(algo, problem, mom):
    x, loss, op, holds = PROBLEMS[problem]()
    opt = downhill.build(algo, loss, constraints={x: op})
    hyper = dict(learning_rate=RATES[algo], **EXTRA.get(algo, {}), **MOMENTUM[mom])
    step = pytensor.function([], loss, updates=opt.get_updates(**hyper))
    start = x.get_value()
    first = step()
    for k in range(30):
        last = step()
        assert holds(x.get_value()), (algo, problem, mom, k, x.get_value())
    assert np.abs(x.get_value() - start).max() > 1e-3, 'the parameters did not move'
    if mom == 'plain' and algo not in ('rprop', 'adadelta', 'nadam', 'adamax'):
        assert last < first


@pytest.mark.parametrize('algo', ['sgd', 'adam'])
def test_invariant_in_iterate_and_minimize(algo):
    x, loss, op, holds = simplex_problem()
    opt = downhill.build(algo, loss, constraints={x: op})
    for _ in opt.iterate(None, max_updates=20, learning_rate=0.05, momentum=0.5):
        assert holds(x.get_value())
    x, loss, op, holds = sphere_problem()
    downhill.minimize(loss, None, algo=algo, constraints={x: op}, max_updates=20, learning_rate=0.05)
    assert holds(x.get_value())


def test_velocity_is_the_actual_move():
    """Projected heavy-ball: with classical momentum the stored velocity is p_new - p_old."""
    x, loss, op, holds = nonneg_problem()
    opt = downhill.build('sgd', loss, constraints={x: op})
    step = pytensor.function([], loss, updates=opt.get_updates(learning_rate=0.05, momentum=0.9))
    velocity = opt._states[(x, 'velocity')]
    for _ in range(20):
        before = x.get_value()
        step()
        np.testing.assert_allclose(velocity.get_value(), x.get_value() - before, atol=1e-15)
    assert (x.get_value() == 0).any()  # the constraint bound


def test_float32_parameter_stays_float32():
    with pytensor.config.change_flags(floatX='float64'):
        x = pytensor.shared(np.full((3, 4), 0.25, 'float32'), name='x')
        loss = pt.sqr(x - np.arange(12, dtype='float32').reshape(3, 4)).sum()
        for algo in ('sgd', 'adam', 'rprop'):
            ops = [prox.nonnegative(), prox.simplex(axis=0), prox.l1(0.1), prox.box(0, 0.6),
                   prox.unit_norm(0), prox.max_norm(2.0, 1), prox.elastic_net(0.1, 0.2),
                   prox.normalize(0)]
            opt = downhill.build(algo, loss, constraints={x: ops})
            for var, expr in opt.get_updates(momentum=0.5, learning_rate=0.01):
                assert expr.type.dtype == var.type.dtype, (algo, var, expr.type)
            list(opt.iterate(None, max_updates=2, learning_rate=0.01))
            assert x.get_value().dtype == np.float32


def test_custom_callable_and_its_step_size():
    x = pytensor.shared(np.array([1.0, -1.0, 0.5]), name='x')
    seen = []

    def halve(value, step_size):
        seen.append(step_size)
        return value / 2

    opt = downhill.build('sgd', pt.sqr(x).sum(), constraints={x: halve})
    f = pytensor.function([], [], updates=opt.get_updates(learning_rate=0.1))
    f()
    np.testing.assert_allclose(x.get_value(), np.array([1.0, -1.0, 0.5]) * 0.8 / 2)
    assert seen[0].eval() == pytest.approx(0.1)


# ----------------------------------------------------------------------------
# the step size of every algorithm: l1 against a NumPy reference


def _d_from(state, algo, g, s, h):
    """The preconditioner D of the reference step (s = D d)."""
    if algo in ('sgd', 'nag'):
        return h['learning_rate']
    if algo == 'adagrad':
        return h['learning_rate'] / np.sqrt(state.G + h['rms_regularizer'])
    if algo == 'rmsprop':
        return h['learning_rate'] / np.sqrt(state.G - state.f ** 2 + h['rms_regularizer'])
    if algo in ('adadelta', 'esgd'):
        return s / g  # both are D g
    if algo == 'rprop':
        return np.where(g != 0, state.steps / np.where(g != 0, np.abs(g), 1), state.steps)
    if algo in ('adam', 'adamw', 'nadam'):
        return h['learning_rate'] / (np.sqrt(state.v / (1 - state.b2 ** state.t)) + h['rms_regularizer'])
    if algo == 'adamax':
        return h['learning_rate'] / (state.u + h['rms_regularizer'])
    raise KeyError(algo)


def prox_reference(problem, algo, lam, n_steps, seed, **hyper):
    """The algorithm's step, then soft thresholding at lam * D, per element."""
    decay = 0.01 if algo == 'adamw' else 0.0  # AdamW's own default
    h = dict(ref.DEFAULTS, weight_decay=decay, amsgrad=False, momentum_decay=0.004, **hyper)
    params = [np.asarray(p, float) for p in problem.initial]
    if algo in MODERN:
        states = [MODERN[algo](p.shape, p.dtype, h) for p in params]
    else:
        states = [ref.ALGORITHMS[algo](p.shape, p.dtype, h) for p in params]
    rng = np.random.default_rng(seed)
    mu, nesterov = h['momentum'], bool(h['nesterov']) or algo == 'nag'
    velocities = [np.zeros_like(p) for p in params]
    out = [[p.copy() for p in params]]
    for k in range(n_steps):
        batch = problem.batch(k)
        grads = problem.grads(params, batch)
        new = []
        for i, (p, g, state) in enumerate(zip(params, grads, states)):
            if algo in MODERN:
                s = state.step(g, p)
            else:
                hv = problem.hvp(params, batch, i, rng.normal(size=p.shape)) if algo == 'esgd' else None
                s = state.step(g, hv)
            D = _d_from(state, algo, g, s, h)
            if mu == 0 and not nesterov:
                unconstrained = p - s
            else:
                velocities[i] = mu * velocities[i] - s
                unconstrained = p + mu * velocities[i] - s if nesterov else p + velocities[i]
            q = np.sign(unconstrained) * np.maximum(np.abs(unconstrained) - lam * D, 0)
            if mu != 0 or nesterov:
                velocities[i] = velocities[i] + q - unconstrained
            new.append(q)
        params = new
        out.append([p.copy() for p in params])
    return out


@pytest.mark.parametrize('mom', ['plain', 'nesterov'])
@pytest.mark.parametrize('algo', ALGOS)
def test_l1_step_size_of_every_algorithm(algo, mom):
    problem = ref.LeastSquares()
    names = problem.names
    params = [pytensor.shared(np.asarray(p, float), name=n) for n, p in zip(names, problem.initial)]
    W, b, c = params
    X, Y = pt.matrix('X'), pt.matrix('Y')
    R = c * pt.dot(X, W) + b - Y
    loss = pt.mean(R * R)
    lam = 0.2
    opt = downhill.build(algo, loss, params=params, inputs=[X, Y],
                         constraints={p: prox.l1(lam) for p in params})
    hyper = dict(learning_rate=RATES[algo], **EXTRA.get(algo, {}), **MOMENTUM[mom])
    step = pytensor.function([X, Y], loss, updates=opt.get_updates(**hyper))
    if algo == 'esgd':
        opt.rng.set_value(np.random.default_rng(7))
    want = prox_reference(problem, algo, lam, 30, seed=7, **hyper)
    zeros = 0
    for k in range(30):
        step(*problem.batch(k))
        for name, p, w in zip(names, params, want[k + 1]):
            np.testing.assert_allclose(p.get_value(), w, rtol=1e-6, atol=1e-12,
                                       err_msg=f'{algo}/{mom}: {name} after step {k + 1}')
        zeros += sum(int((p.get_value() == 0).sum()) for p in params)
    assert zeros > 0, 'the threshold never bound'


# ----------------------------------------------------------------------------
# Lasso


def lasso_data(seed=7, n=200, d=30):
    rng = np.random.default_rng(seed)
    cov = 0.5 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))  # correlated features
    X = rng.multivariate_normal(np.zeros(d), cov, size=n)
    w = np.zeros(d)
    w[[0, 3, 7, 12, 20]] = [3, -2, 1.5, 0.08, -0.05]  # two too small to survive
    y = X @ w + 0.5 * rng.normal(size=n)
    return X, y


def ista(X, y, lam, lr, n_steps):
    """Proximal gradient descent on 0.5 mean((Xw - y)^2) + lam |w|_1, from w = 0."""
    w = np.zeros(X.shape[1])
    path = [w]
    for _ in range(n_steps):
        z = w - lr * X.T @ (X @ w - y) / len(y)
        w = np.sign(z) * np.maximum(np.abs(z) - lr * lam, 0)
        path.append(w)
    return path


def lasso_optimizer(algo, lam, X, y):
    w = pytensor.shared(np.zeros(X.shape[1]), name='w')
    x, t = pt.matrix('x'), pt.vector('t')
    loss = 0.5 * pt.sqr(x.dot(w) - t).mean()
    return downhill.build(algo, loss, inputs=[x, t], constraints={w: prox.l1(lam)}), w


LAM = 0.1


def test_lasso_sgd_is_ista():
    X, y = lasso_data()
    lr = 1 / np.linalg.eigvalsh(X.T @ X / len(y)).max()
    path = ista(X, y, LAM, lr, 3000)
    solution = path[-1]
    assert np.abs(path[-1] - path[-2]).max() < 1e-14  # converged
    gradient = X.T @ (X @ solution - y) / len(y)
    on = solution != 0
    assert np.abs(gradient[on] + LAM * np.sign(solution[on])).max() < 1e-10  # optimality (KKT)
    assert np.abs(gradient[~on]).max() <= LAM
    assert 3 <= on.sum() < 10

    opt, w = lasso_optimizer('sgd', LAM, X, y)
    n = 0
    for n, (train, _) in enumerate(opt.iterate([[X, y]], max_updates=3000, learning_rate=lr,
                                               validate_every=100, patience=10 ** 6), 1):
        if n <= 50:  # step by step
            np.testing.assert_allclose(w.get_value(), path[n], rtol=1e-6, atol=1e-12)
        final = w.get_value()
    np.testing.assert_allclose(final, solution, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(final == 0, ~on)
    # iterate() restored the best validation's parameters (iteration 2900): converged too
    np.testing.assert_array_equal(w.get_value() == 0, ~on)  # exact zeros, same support
    # the composite objective at the solution
    want = 0.5 * np.mean((X @ solution - y) ** 2) + LAM * np.abs(solution).sum()
    assert opt.evaluate([[X, y]])['loss'] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize('algo,rate', [('adam', 0.01), ('rmsprop', 0.01), ('adamw', 0.01)])
def test_lasso_adaptive_algorithms_find_the_support(algo, rate):
    X, y = lasso_data()
    lr = 1 / np.linalg.eigvalsh(X.T @ X / len(y)).max()
    solution = ista(X, y, LAM, lr, 3000)[-1]
    opt, w = lasso_optimizer(algo, LAM, X, y)
    extra = dict(weight_decay=0) if algo == 'adamw' else {}
    schedule = rate * downhill.schedules.exponential(halflife=400)
    opt.minimize([[X, y]], max_updates=3000, learning_rate=schedule, validate_every=100,
                 patience=100, **extra)
    got = w.get_value()
    np.testing.assert_array_equal(np.flatnonzero(got), np.flatnonzero(solution))
    np.testing.assert_allclose(got, solution, atol=1e-3)


# ----------------------------------------------------------------------------
# NMF: non-negative factors with normalized columns


def test_nmf_with_nonnegativity_and_normalization():
    rng = np.random.default_rng(3)
    B, N, K = 30, 40, 4
    A_true = rng.random((B, K))
    A_true /= A_true.sum(axis=0)
    S_true = rng.gamma(2.0, 5.0, size=(K, N))
    Y = A_true @ S_true  # an exact non-negative factorization
    A = pytensor.shared(np.full((B, K), 1.0 / B) + 0.01 * rng.random((B, K)), name='A')
    S = pytensor.shared(rng.random((K, N)), name='S')
    loss = pt.sqr(Y - A.dot(S)).mean()
    opt = downhill.build('adam', loss, constraints={
        A: [prox.nonnegative(), prox.normalize(axis=0)], S: prox.nonnegative()})
    # Adam's constant steps make the loss oscillate near the end; a cosine schedule settles it
    rate = 0.1 * downhill.schedules.cosine(period=1000)
    step = pytensor.function([], loss, updates=opt.get_updates(learning_rate=rate))
    start = float(step())
    for k in range(999):
        value = step()
        a, s = A.get_value(), S.get_value()
        assert a.min() >= 0 and s.min() >= 0
        assert np.abs(a.sum(axis=0) - 1).max() < 1e-12
    assert value < start / 500, (start, value)


# ----------------------------------------------------------------------------
# monitors, early stopping, errors


def test_composite_loss_monitors_and_early_stopping():
    X, y = lasso_data()
    opt, w = lasso_optimizer('sgd', 5.0, X, y)  # so strong that w = 0 is optimal
    assert opt._monitor_names == ['loss', 'raw_loss', 'l1(w)']
    w.set_value(np.full(30, 0.01))
    seen = []
    for train, valid in opt.iterate([[X, y]], max_updates=30, learning_rate=0.01,
                                    validate_every=1, patience=100):
        assert train['loss'] == pytest.approx(train['raw_loss'] + train['l1(w)'])
        seen.append(valid)
    # the composite decreases (w shrinks to 0) although the raw loss rises
    assert seen[-1]['loss'] < seen[0]['loss'] and seen[-1]['raw_loss'] > seen[0]['raw_loss']
    # best = best composite: the last parameters (all zero) are kept
    assert (w.get_value() == 0).all()


def test_penalties_of_several_parameters():
    a = pytensor.shared(np.array([1.0, -2.0]), name='a')
    b = pytensor.shared(np.array([3.0]), name='b')
    opt = downhill.build('sgd', pt.sqr(a).sum() + pt.sqr(b).sum(), monitors={'m': a.sum()},
                         constraints={a: [prox.l1(0.5), prox.nonnegative()],
                                      b: prox.elastic_net(0.1, 0.2)})
    assert opt._monitor_names == ['loss', 'm', 'raw_loss', 'l1(a)', 'elastic_net(b)']
    values = opt.evaluate(None)
    assert values['raw_loss'] == 14
    assert values['l1(a)'] == pytest.approx(1.5)
    assert values['elastic_net(b)'] == pytest.approx(0.3 + 0.1 * 9)
    assert values['loss'] == pytest.approx(14 + 1.5 + 1.2)


def test_constraint_errors():
    x = pytensor.shared(np.zeros(3), name='x')
    other = pytensor.shared(np.zeros(3), name='other')
    loss = pt.sqr(x - 1).sum()
    with pytest.raises(ValueError, match="constraints: 'other' is not one of the parameters being optimized \\('x'\\)"):
        downhill.build('sgd', loss, constraints={other: prox.nonnegative()})
    with pytest.raises(TypeError, match=r"constraints\['x'\]\[1\] is 3, not a callable"):
        downhill.build('sgd', loss, constraints={x: [prox.nonnegative(), 3]})
    with pytest.raises(TypeError, match='constraints must be a dict'):
        downhill.build('sgd', loss, constraints=[prox.nonnegative()])
    with pytest.raises(ValueError, match="monitor name 'raw_loss' is used twice"):
        downhill.build('sgd', loss, monitors={'raw_loss': loss}, constraints={x: prox.l1(1)})
    opt = downhill.build('sgd', loss, constraints={x: lambda v, s: v.sum()})
    with pytest.raises(ValueError, match="returned an expression with 0 dimensions; the parameter has 1"):
        opt.get_updates()
    with pytest.raises(TypeError, match='unknown keyword argument'):
        downhill.minimize(loss, None, constraint={x: prox.nonnegative()})


def test_get_updates_pairs_keep_the_constraint():
    x = pytensor.shared(np.array([0.5, 0.1]), name='x')
    opt = downhill.build('sgd', pt.sqr(x + 1).sum(), constraints={x: prox.nonnegative()})
    f = pytensor.function([], [], updates=opt.get_updates(learning_rate=0.1))
    for _ in range(10):
        f()
    np.testing.assert_array_equal(x.get_value(), [0, 0])


def test_the_guide_page_code_runs():
    """Every ``.. code-block:: python`` of docs/constraints.rst, in a fresh namespace."""
    page = (pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'constraints.rst').read_text()
    blocks = re.findall(r'\.\. code-block:: python\n\n((?:   .*\n|\n)+)', page)
    assert len(blocks) >= 5
    for block in blocks:
        code = '\n'.join(line[3:] for line in block.splitlines())
        exec(compile(code, 'docs/constraints.rst', 'exec'), {})


def test_an_infeasible_start_is_projected_before_it_can_be_kept(downhill_log):
    """The start (2, -0.5) is off the unit circle and has a lower loss than any feasible point
    after 5 updates would beat: the run must still hand back a point on the circle."""
    y = pytensor.shared(np.array([2.0, -0.5]), name='y')
    downhill.minimize(((y - [0.3, 0.1]) ** 2).sum(), None, algo='sgd', learning_rate=0.1,
                      max_updates=5, constraints={y: prox.unit_norm()})
    assert np.linalg.norm(y.get_value()) == pytest.approx(1.0, abs=1e-12)
    assert "the start of 'y' is not on its constraints; projected onto them" in downhill_log.text
