"""The benchmark problems: data, start values, hyperparameters, update formulas.

Everything the implementations must agree on lives here, so that downhill, the
raw compiled function and the optional peers start from the same values, see
the same batches in the same order and apply the same update rules. Only NumPy
is imported at module level (a peer worker may run in a venv without PyTensor).

Problems (the maths follows issue 8 and ``../shared/peers``):

``rosenbrock-2d`` / ``rosenbrock-1000d``
    loss = sum(100 (x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2), x0 = [-1.1, 0]
    tiled to the length; no inputs.
``mlp``
    X (20000 x 64), y = tanh(X w) + 0.5 X w + 0.1 noise; a 64-128-1 tanh
    network, loss = mean((tanh(x W1 + b1) W2 + b2 - y)^2), batches of 128 rows
    in order, cycling over the 156 full batches.
``matfact``
    X (2000 x 256) = U0 V0 + 0.1 noise, rank 16; params u (2000 x 16),
    v (16 x 256); loss = mean((X - u v)^2) + 0.01 mean|u| + 0.01 mean(v^2);
    full batch, X passed as an input every step.

Update formulas are downhill's (shared/API.md), written out by hand in
:func:`raw_updates` with the same hyperparameter values downhill receives.
"""

import math

import numpy as np

#: name -> (algorithm, dtype); the configurations issue 8 asks for.
PROBLEMS = {
    'rosenbrock-2d': ('adam', 'float64'),
    'rosenbrock-1000d': ('rmsprop', 'float64'),
    'mlp': ('adam', 'float32'),
    'matfact': ('sgd', 'float64'),
}

#: Sizes. ``tiny`` is for the test suite: same code paths, seconds to run.
SIZES = {
    'full': dict(rosen_small=2, rosen_large=1000, mlp_n=20000, mlp_din=64, mlp_h=128, mlp_b=128,
                 mf_n=2000, mf_d=256, mf_k=16),
    'tiny': dict(rosen_small=2, rosen_large=10, mlp_n=512, mlp_din=8, mlp_h=16, mlp_b=128,
                 mf_n=40, mf_d=24, mf_k=4),
}

#: Updates from the common start before the parameters are compared.
CHECK_STEPS = {'rosenbrock-2d': 100, 'rosenbrock-1000d': 100, 'mlp': 100, 'matfact': 30}

#: Largest relative difference (max |a - b| / max |b| per parameter) allowed
#: between downhill and the raw function after the check steps.
RTOL = {'float64': 1e-6, 'float32': 1e-4}

MOMENTUM = 0.9
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
RMS_DECAY = 0.9
#: downhill's RMSProp has eps inside the square root; eps**2 there is the
#: closest to the torch/optax form (eps outside), see ../shared/peers.
RMS_EPS_INSIDE = 1e-16


def halflife_for(beta):
    """downhill expresses EWMA weights as half-lives: beta = exp(-ln 2 / h)."""
    return -math.log(2.0) / math.log(beta)


def beta_from_halflife(h):
    """The weight downhill derives from a half-life (bit for bit as it does)."""
    return float(np.exp(-np.log(2) / h))


def learning_rate(problem):
    return 1e-3


def hyper(problem):
    """The numbers every implementation uses (betas as downhill computes them)."""
    b1h, b2h, rmsh = halflife_for(ADAM_B1), halflife_for(ADAM_B2), halflife_for(RMS_DECAY)
    return dict(lr=learning_rate(problem), momentum=MOMENTUM,
                beta1_halflife=b1h, beta2_halflife=b2h, rms_halflife=rmsh,
                b1=beta_from_halflife(b1h), b2=beta_from_halflife(b2h), decay=beta_from_halflife(rmsh),
                adam_eps=ADAM_EPS, rms_eps=RMS_EPS_INSIDE)


def downhill_kwargs(problem):
    """Keyword arguments of ``Optimizer.iterate`` for the problem's algorithm."""
    algo = PROBLEMS[problem][0]
    hp = hyper(problem)
    if algo == 'adam':
        return dict(learning_rate=hp['lr'], beta1_halflife=hp['beta1_halflife'],
                    beta2_halflife=hp['beta2_halflife'], rms_regularizer=hp['adam_eps'])
    if algo == 'rmsprop':
        return dict(learning_rate=hp['lr'], rms_halflife=hp['rms_halflife'],
                    rms_regularizer=hp['rms_eps'])
    if algo == 'sgd':
        return dict(learning_rate=hp['lr'], momentum=hp['momentum'])
    raise KeyError(algo)


# ---------------------------------------------------------------------- data

_cache = {}


def make(problem, size='full'):
    """dict(init=[arrays], batches=[tuple of arrays], data=dict), in the problem's dtype.

    Step ``i`` uses ``batches[i % len(batches)]``; full-batch problems have one
    batch (``()`` when the loss has no inputs).
    """
    key = (problem, size)
    if key in _cache:
        return _cache[key]
    dt = np.dtype(PROBLEMS[problem][1])
    s = SIZES[size]
    if problem.startswith('rosenbrock'):
        n = s['rosen_small'] if problem == 'rosenbrock-2d' else s['rosen_large']
        x0 = np.tile(np.array([-1.1, 0.0]), n // 2)
        out = dict(init=[x0.astype(dt)], batches=[()], data={})
    elif problem == 'matfact':
        n, d, k = s['mf_n'], s['mf_d'], s['mf_k']
        rng = np.random.default_rng(1234)
        U0 = rng.standard_normal((n, k))
        V0 = rng.standard_normal((k, d))
        X = U0 @ V0 + 0.1 * rng.standard_normal((n, d))
        u0 = rng.standard_normal((n, k))
        v0 = rng.standard_normal((k, d))
        X = np.ascontiguousarray(X.astype(dt))
        out = dict(init=[u0.astype(dt), v0.astype(dt)], batches=[(X,)], data={'X': X})
    elif problem == 'mlp':
        n, din, h, b = s['mlp_n'], s['mlp_din'], s['mlp_h'], s['mlp_b']
        rng = np.random.default_rng(4321)
        X = rng.standard_normal((n, din))
        w = rng.standard_normal((din, 1)) / math.sqrt(din)
        y = np.tanh(X @ w) + 0.5 * (X @ w) + 0.1 * rng.standard_normal((n, 1))
        W1 = rng.standard_normal((din, h)) / math.sqrt(din)
        b1 = np.zeros(h)
        W2 = rng.standard_normal((h, 1)) / math.sqrt(h)
        b2 = np.zeros(1)
        X = np.ascontiguousarray(X.astype(dt))
        y = np.ascontiguousarray(y.astype(dt))
        batches = [(X[i * b:(i + 1) * b], y[i * b:(i + 1) * b]) for i in range(n // b)]
        out = dict(init=[a.astype(dt) for a in (W1, b1, W2, b2)], batches=batches,
                   data={'X': X, 'y': y})
    else:
        raise KeyError(problem)
    _cache[key] = out
    return out


class Schedule:
    """The batches in order, cycling; one ``iter()`` is one pass of ``pass_len`` batches.

    Both downhill (as its ``train`` iterable) and the raw loop draw from one of
    these, so every implementation sees the same batch at the same step.
    """

    def __init__(self, batches, pass_len=None):
        self.batches = list(batches)
        self.pass_len = len(self.batches) if pass_len is None else pass_len
        self.cursor = 0

    def __iter__(self):
        batches, n = self.batches, len(self.batches)
        for _ in range(self.pass_len):
            batch = batches[self.cursor]
            self.cursor = (self.cursor + 1) % n
            yield batch


def eval_loss(problem, params, size='full'):
    """The loss at ``params``, in float64 NumPy over the full data."""
    p = [np.asarray(a, dtype=np.float64) for a in params]
    if problem.startswith('rosenbrock'):
        x = p[0]
        return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))
    data = make(problem, size)['data']
    if problem == 'matfact':
        u, v = p
        X = data['X'].astype(np.float64)
        return float(np.mean((X - u @ v) ** 2) + 0.01 * np.mean(np.abs(u)) + 0.01 * np.mean(v * v))
    if problem == 'mlp':
        W1, b1, W2, b2 = p
        X, y = data['X'].astype(np.float64), data['y'].astype(np.float64)
        return float(np.mean((np.tanh(X @ W1 + b1) @ W2 + b2 - y) ** 2))
    raise KeyError(problem)


# ------------------------------------------------------------- PyTensor graph

def symbolic(problem, size='full'):
    """(loss, params, inputs) as PyTensor objects, parameters at their start values."""
    import pytensor
    import pytensor.tensor as pt

    dt = PROBLEMS[problem][1]
    init = make(problem, size)['init']

    def shared(value, name):
        return pytensor.shared(value.copy(), name=name)

    if problem.startswith('rosenbrock'):
        x = shared(init[0], 'x')
        loss = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
        return loss, [x], []
    if problem == 'matfact':
        u, v = shared(init[0], 'u'), shared(init[1], 'v')
        X = pt.matrix('X', dtype=dt)
        loss = (pt.sqr(X - pt.dot(u, v)).mean() + 0.01 * abs(u).mean() + 0.01 * pt.sqr(v).mean())
        return loss, [u, v], [X]
    if problem == 'mlp':
        W1, b1, W2, b2 = (shared(a, n) for a, n in zip(init, ('W1', 'b1', 'W2', 'b2')))
        xb, yb = pt.matrix('xb', dtype=dt), pt.matrix('yb', dtype=dt)
        out = pt.dot(pt.tanh(pt.dot(xb, W1) + b1), W2) + b2
        loss = pt.sqr(out - yb).mean()
        return loss, [W1, b1, W2, b2], [xb, yb]
    raise KeyError(problem)


def raw_updates(problem, params, grads):
    """downhill's update rules for the problem's algorithm, written out by hand.

    Hyperparameters are constants of the parameters' dtype, states are fresh
    shared variables starting at zero (as downhill's do).
    """
    import pytensor
    import pytensor.tensor as pt

    algo, dt = PROBLEMS[problem]
    hp = hyper(problem)

    def c(value):
        return pt.constant(np.asarray(value, dtype=dt))

    def zeros_like(p, shape=None):
        value = p.get_value(borrow=True)
        return pytensor.shared(np.zeros(value.shape if shape is None else shape, dtype=dt))

    lr = c(hp['lr'])
    updates = []
    for p, g in zip(params, grads):
        if algo == 'adam':
            b1, b2, eps = c(hp['b1']), c(hp['b2']), c(hp['adam_eps'])
            t, m, v = zeros_like(p, ()), zeros_like(p), zeros_like(p)
            t_new = t + 1
            m_new = b1 * m + (1 - b1) * g
            v_new = b2 * v + (1 - b2) * pt.sqr(g)
            step = lr * (m_new / (1 - b1 ** t_new)) / (pt.sqrt(v_new / (1 - b2 ** t_new)) + eps)
            updates += [(t, t_new), (m, m_new), (v, v_new), (p, p - step)]
        elif algo == 'rmsprop':
            gamma, eps = c(hp['decay']), c(hp['rms_eps'])
            f, G = zeros_like(p), zeros_like(p)
            f_new = gamma * f + (1 - gamma) * g
            G_new = gamma * G + (1 - gamma) * pt.sqr(g)
            step = lr * g / pt.sqrt(G_new - pt.sqr(f_new) + eps)
            updates += [(f, f_new), (G, G_new), (p, p - step)]
        elif algo == 'sgd':
            mu = c(hp['momentum'])
            vel = zeros_like(p)
            vel_new = mu * vel - lr * g
            updates += [(vel, vel_new), (p, p + vel_new)]
        else:
            raise KeyError(algo)
    return updates
