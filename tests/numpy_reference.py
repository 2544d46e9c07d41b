"""An independent NumPy implementation of downhill's update equations.

Written straight from the published equations (the "Hyperparameters" and
"The algorithms" sections of the API contract), for ``tests/test_math.py``
to compare the compiled PyTensor updates with, step by step.  Nothing here
imports PyTensor or downhill.

Conventions (all per parameter ``p`` with gradient ``g``):

* gradient clipping: ``max_gradient_elem > 0`` clips every element to
  ``[-c, c]`` (and then norm rescaling is skipped); otherwise
  ``max_gradient_norm > 0`` rescales ``g -> g * min(1, c / ||g||_2)``, the
  norm being that of this parameter's gradient alone;
* each algorithm turns the clipped ``g`` into a step ``s``;
* momentum ``mu``: ``v <- mu v - s ; p <- p + v``; Nesterov:
  ``v <- mu v - s ; p <- p + mu v - s`` (``v`` stored is the true velocity);
  without momentum ``p <- p - s``.  NAG is SGD with Nesterov always on.

Two test problems provide analytic losses, gradients and per-parameter
Hessian-vector products (``H_pp r``, the Hessian block of the loss with
respect to one parameter, as used by ESGD).
"""

import math

import numpy as np

DEFAULTS = dict(
    learning_rate=1e-4,
    momentum=0.0,
    nesterov=False,
    max_gradient_norm=0.0,
    max_gradient_elem=0.0,
    rms_halflife=14.0,
    rms_regularizer=1e-8,
    beta1_halflife=7.0,
    beta2_halflife=69.0,
    rprop_increase=1.01,
    rprop_decrease=0.99,
    rprop_min_step=0.0,
    rprop_max_step=100.0,
)

ALGOS = ('sgd', 'nag', 'rprop', 'adagrad', 'rmsprop', 'adadelta', 'esgd', 'adam')


def halflife_to_gamma(h):
    """EWMA weight for a halflife of ``h`` steps: ``exp(-ln 2 / h)``."""
    return math.exp(-math.log(2.0) / h)


# ----------------------------------------------------------------------------
# gradient clipping


def clip_gradient(g, max_norm=0.0, max_elem=0.0):
    """Clip one parameter's gradient.

    Returns ``(clipped, norm_bound, n_elem_clipped)``: ``norm_bound`` says
    whether norm rescaling shrank the gradient, ``n_elem_clipped`` how many
    elements element clipping changed (so tests can check that a clipping
    threshold actually bound).
    """
    if max_elem > 0:
        clipped = np.clip(g, -max_elem, max_elem)
        return clipped, False, int(np.sum(np.abs(g) > max_elem))
    if max_norm > 0:
        norm = np.sqrt(np.sum(g * g))
        factor = min(1.0, max_norm / norm)
        return g * factor, bool(norm > max_norm), 0
    return g, False, 0


# ----------------------------------------------------------------------------
# algorithms: one object per parameter, holding that parameter's state.
# ``step(g, hv=None)`` takes the clipped gradient and returns the step s.


class SGD:
    """s = alpha g"""

    needs_hv = False

    def __init__(self, shape, dtype, hyper):
        self.alpha = hyper['learning_rate']

    def step(self, g, hv=None):
        return self.alpha * g


class NAG(SGD):
    """SGD; the Nesterov momentum is applied by the caller (always on)."""


class RProp:
    """iRprop-.

    t = g * g_prev ; step *= 1 (t == 0), rprop_increase (t > 0),
    rprop_decrease (t < 0) ; step = clip(step, min_step, max_step) ;
    g = 0 where t < 0 ; s = sign(g) step ; g_prev = g.
    Steps start at learning_rate, g_prev at 0.
    """

    needs_hv = False

    def __init__(self, shape, dtype, hyper):
        self.inc = hyper['rprop_increase']
        self.dec = hyper['rprop_decrease']
        self.min_step = hyper['rprop_min_step']
        self.max_step = hyper['rprop_max_step']
        self.steps = np.full(shape, hyper['learning_rate'], dtype=dtype)
        self.g_prev = np.zeros(shape, dtype=dtype)
        self.n_min_bound = 0  # how many elements the bounds changed
        self.n_max_bound = 0

    def step(self, g, hv=None):
        t = g * self.g_prev
        factor = np.where(t > 0, self.inc, np.where(t < 0, self.dec, 1.0))
        raw = self.steps * factor
        self.n_min_bound += int(np.sum(raw < self.min_step))
        self.n_max_bound += int(np.sum(raw > self.max_step))
        self.steps = np.clip(raw, self.min_step, self.max_step).astype(g.dtype)
        g = np.where(t < 0, 0.0, g).astype(g.dtype)
        self.g_prev = g
        return np.sign(g) * self.steps


class ADAGRAD:
    """G += g^2 ; s = alpha g / sqrt(G + eps)"""

    needs_hv = False

    def __init__(self, shape, dtype, hyper):
        self.alpha = hyper['learning_rate']
        self.eps = hyper['rms_regularizer']
        self.G = np.zeros(shape, dtype=dtype)

    def step(self, g, hv=None):
        self.G = self.G + g * g
        return self.alpha * g / np.sqrt(self.G + self.eps)


class RMSProp:
    """Graves' centred form.

    f = gamma f + (1 - gamma) g ; G = gamma G + (1 - gamma) g^2 ;
    s = alpha g / sqrt(G - f^2 + eps)
    """

    needs_hv = False

    def __init__(self, shape, dtype, hyper):
        self.alpha = hyper['learning_rate']
        self.eps = hyper['rms_regularizer']
        self.gamma = halflife_to_gamma(hyper['rms_halflife'])
        self.f = np.zeros(shape, dtype=dtype)
        self.G = np.zeros(shape, dtype=dtype)

    def step(self, g, hv=None):
        gam = self.gamma
        self.f = gam * self.f + (1 - gam) * g
        self.G = gam * self.G + (1 - gam) * g * g
        return self.alpha * g / np.sqrt(self.G - self.f * self.f + self.eps)


class ADADELTA:
    """G = gamma G + (1 - gamma) g^2 ; s = sqrt(X + eps) / sqrt(G + eps) g ;
    X = gamma X + (1 - gamma) s^2 (no learning rate)"""

    needs_hv = False

    def __init__(self, shape, dtype, hyper):
        self.eps = hyper['rms_regularizer']
        self.gamma = halflife_to_gamma(hyper['rms_halflife'])
        self.G = np.zeros(shape, dtype=dtype)
        self.X = np.zeros(shape, dtype=dtype)

    def step(self, g, hv=None):
        gam = self.gamma
        self.G = gam * self.G + (1 - gam) * g * g
        s = np.sqrt(self.X + self.eps) / np.sqrt(self.G + self.eps) * g
        self.X = gam * self.X + (1 - gam) * s * s
        return s


class ESGD:
    """Equilibrated SGD: r ~ N(0, 1), Hr = H_pp r ;
    D = gamma D + (1 - gamma) (Hr)^2 ; s = alpha g / (sqrt(D) + eps)"""

    needs_hv = True

    def __init__(self, shape, dtype, hyper):
        self.alpha = hyper['learning_rate']
        self.eps = hyper['rms_regularizer']
        self.gamma = halflife_to_gamma(hyper['rms_halflife'])
        self.D = np.zeros(shape, dtype=dtype)

    def step(self, g, hv=None):
        gam = self.gamma
        self.D = gam * self.D + (1 - gam) * hv * hv
        return self.alpha * g / (np.sqrt(self.D) + self.eps)


class Adam:
    """t += 1 ; m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g^2 ;
    s = alpha (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),
    b1, b2 = exp(-ln 2 / beta1_halflife), exp(-ln 2 / beta2_halflife)"""

    needs_hv = False

    def __init__(self, shape, dtype, hyper):
        self.alpha = hyper['learning_rate']
        self.eps = hyper['rms_regularizer']
        self.b1 = halflife_to_gamma(hyper['beta1_halflife'])
        self.b2 = halflife_to_gamma(hyper['beta2_halflife'])
        self.t = 0
        self.m = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)

    def step(self, g, hv=None):
        self.t += 1
        b1, b2, t = self.b1, self.b2, self.t
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        return self.alpha * (self.m / (1 - b1 ** t)) / (
            np.sqrt(self.v / (1 - b2 ** t)) + self.eps)


ALGORITHMS = dict(sgd=SGD, nag=NAG, rprop=RProp, adagrad=ADAGRAD,
                  rmsprop=RMSProp, adadelta=ADADELTA, esgd=ESGD, adam=Adam)


# ----------------------------------------------------------------------------
# the optimizer: clipping + algorithm + momentum / Nesterov, for all params


class Reference:
    """Reference optimizer over a list of NumPy parameter arrays.

    ``hyper`` takes the library's keyword names (see ``DEFAULTS``).  For
    ESGD, ``seed`` seeds ``np.random.default_rng`` from which one
    ``normal(size=p.shape)`` (float64) is drawn per parameter per step, in
    parameter order.  Counters record how often clipping bound.
    """

    def __init__(self, algo, params, seed=None, **hyper):
        unknown = set(hyper) - set(DEFAULTS)
        if unknown:
            raise TypeError('unknown hyperparameters %s' % sorted(unknown))
        self.algo = algo.lower()
        self.hyper = dict(DEFAULTS, **hyper)
        self.params = [np.array(p, copy=True) for p in params]
        self.dtypes = [p.dtype for p in self.params]
        cls = ALGORITHMS[self.algo]
        self.states = [cls(p.shape, p.dtype, self.hyper) for p in self.params]
        self.velocities = [np.zeros_like(p) for p in self.params]
        self.mu = self.hyper['momentum']
        self.nesterov = bool(self.hyper['nesterov']) or self.algo == 'nag'
        self.rng = np.random.default_rng(seed) if cls.needs_hv else None
        self.n_steps = 0
        self.n_norm_bound = 0   # (step, param) pairs where norm rescaling bound
        self.n_elem_clipped = 0  # elements changed by element clipping
        self.n_elem_total = 0    # elements seen while element clipping is on

    def step(self, grads, hvp=None):
        """One update.  ``grads``: gradients at the current parameters, one
        per parameter; ``hvp(i, r)``: Hessian-vector product for param i."""
        h = self.hyper
        new = []
        for i, (p, g, state) in enumerate(zip(self.params, grads, self.states)):
            dtype = p.dtype
            g = np.asarray(g, dtype=dtype)
            g, norm_bound, n_clipped = clip_gradient(
                g, h['max_gradient_norm'], h['max_gradient_elem'])
            g = g.astype(dtype)
            self.n_norm_bound += norm_bound
            self.n_elem_clipped += n_clipped
            if h['max_gradient_elem'] > 0:
                self.n_elem_total += g.size
            hv = None
            if state.needs_hv:
                r = self.rng.normal(size=p.shape)  # float64 draw
                hv = np.asarray(hvp(i, r.astype(dtype)), dtype=dtype)
            s = np.asarray(state.step(g, hv), dtype=dtype)
            if self.mu == 0 and not self.nesterov:
                new.append((p - s).astype(dtype))
                continue
            v = (self.mu * self.velocities[i] - s).astype(dtype)
            self.velocities[i] = v
            if self.nesterov:
                new.append((p + self.mu * v - s).astype(dtype))
            else:
                new.append((p + v).astype(dtype))
        self.params = new
        self.n_steps += 1
        return self.params


# ----------------------------------------------------------------------------
# test problems


class LeastSquares:
    """A bilinear least-squares model fed with data.

    Three parameters of different shapes: ``W`` (3 x 2 matrix), ``b``
    (2-vector) and ``c`` (0-d scalar); inputs ``X`` (n x 3), ``Y`` (n x 2):

        R = c (X W) + b - Y ;  loss = mean(R^2) = sum(R^2) / (n k)

    with k = 2 outputs.  Gradients:

        dW = 2 c X^T R / (n k) ; db = 2 sum_rows(R) / (n k) ;
        dc = 2 sum(X W * R) / (n k)

    Per-parameter Hessian blocks applied to r:

        H_WW r = 2 c^2 X^T (X r) / (n k) ; H_bb r = 2 n r / (n k) ;
        H_cc r = 2 sum((X W)^2) r / (n k)
    """

    names = ('W', 'b', 'c')
    n_in, n_out = 3, 2

    def __init__(self, seed=1234, n_batches=10, batch_size=20, noise=0.3):
        rng = np.random.default_rng(seed)
        n = n_batches * batch_size
        X = rng.normal(size=(n, self.n_in))
        W_true = rng.normal(size=(self.n_in, self.n_out)) * 1.5
        b_true = np.array([1.0, -2.0])
        c_true = 1.5
        Y = c_true * X @ W_true + b_true + noise * rng.normal(size=(n, self.n_out))
        self.batches = [(X[i * batch_size:(i + 1) * batch_size],
                         Y[i * batch_size:(i + 1) * batch_size])
                        for i in range(n_batches)]
        self.initial = [rng.normal(size=(self.n_in, self.n_out)) * 0.5,
                        np.array([0.3, -0.4]),
                        np.array(1.0)]

    def batch(self, k):
        """The batch used at step k (0-based) in the per-step data tests."""
        return self.batches[k % len(self.batches)]

    @staticmethod
    def _residual(params, batch):
        W, b, c = params
        X, Y = batch
        XW = X @ W
        return XW, c * XW + b - Y

    def loss(self, params, batch):
        _, R = self._residual(params, batch)
        return np.mean(R * R)

    def grads(self, params, batch):
        W, b, c = params
        X, Y = batch
        XW, R = self._residual(params, batch)
        z = 2.0 / R.size
        return [z * c * X.T @ R, z * R.sum(axis=0), np.array(z * np.sum(XW * R))]

    def hvp(self, params, batch, i, r):
        W, b, c = params
        X, Y = batch
        z = 2.0 / (X.shape[0] * self.n_out)
        if i == 0:
            return z * c * c * X.T @ (X @ r)
        if i == 1:
            return z * X.shape[0] * r
        XW = X @ W
        return z * np.sum(XW * XW) * r


class Rosenbrock:
    """2-d Rosenbrock with one 2-vector parameter ``xy`` and no inputs:

        loss = (1 - x)^2 + 100 (y - x^2)^2
        grad = [-2 (1 - x) - 400 x (y - x^2), 200 (y - x^2)]
        H    = [[2 - 400 y + 1200 x^2, -400 x], [-400 x, 200]]
    """

    names = ('xy',)

    def __init__(self, start=(-1.2, 1.0)):
        self.initial = [np.array(start, dtype=float)]

    def batch(self, k):
        return ()

    def loss(self, params, batch=()):
        x, y = params[0]
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2

    def grads(self, params, batch=()):
        x, y = params[0]
        return [np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])]

    def hessian(self, params):
        x, y = params[0]
        return np.array([[2 - 400 * y + 1200 * x * x, -400 * x],
                         [-400 * x, 200.0]])

    def hvp(self, params, batch, i, r):
        return self.hessian(params) @ r


# ----------------------------------------------------------------------------
# driver


class Trajectory:
    """Parameters after each step, and the loss before each step."""

    def __init__(self, params, losses, opt):
        self.params = params   # params[k] = list of arrays after k steps
        self.losses = losses   # losses[k] = loss at step k (before update k+1)
        self.opt = opt         # the Reference, for its clipping counters

    def final(self):
        return self.params[-1]


def run_reference(problem, algo, n_steps, batch_for_step=None, seed=None,
                  dtype=np.float64, **hyper):
    """Run ``n_steps`` reference updates on ``problem``.

    ``batch_for_step(k)`` gives the data of step k (default:
    ``problem.batch``).  With a non-float64 ``dtype`` the parameters and the
    data are cast to it (gradients are then computed in that dtype too).
    """
    if batch_for_step is None:
        batch_for_step = problem.batch
    params = [np.asarray(p, dtype=dtype) for p in problem.initial]
    opt = Reference(algo, params, seed=seed, **hyper)
    trajectory = [[p.copy() for p in opt.params]]
    losses = []
    for k in range(n_steps):
        batch = tuple(np.asarray(a, dtype=dtype) for a in batch_for_step(k))
        current = opt.params
        losses.append(problem.loss(current, batch))
        grads = problem.grads(current, batch)
        opt.step(grads, lambda i, r: problem.hvp(current, batch, i, r))
        trajectory.append([p.copy() for p in opt.params])
    return Trajectory(trajectory, losses, opt)
