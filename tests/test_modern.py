"""AdamW, Adamax, NAdam, Adam's amsgrad and every algorithm's weight_decay,
step by step against an independent NumPy implementation.

As in ``test_math.py``: float64, ``N_STEPS`` updates, and after every single
update each parameter (and the loss the step returns) is compared with the
reference at rtol 1e-6, on the two problems of ``numpy_reference`` (a
bilinear least-squares model fed a new batch every step, and Rosenbrock),
through ``get_updates()`` + ``pytensor.function`` and through
``iterate()``. The reference equations are written here from the papers
(and torch's ``AdamW``/``NAdam``/``amsgrad`` code, which the docstrings say
these follow); the core algorithms' states come from ``numpy_reference``.
"""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
import numpy_reference as ref
from test_math import compile_step, make_graph, make_problem

N_STEPS = 50
RTOL = 1e-6
ATOL = 1e-12
SEED = 20240531

# ----------------------------------------------------------------------------
# the reference


class _MomentsRef:
    """The hyperparameters and counter the Adam family shares."""

    needs_hv = False

    def __init__(self, shape, dtype, hyper):
        self.alpha = hyper['learning_rate']
        self.eps = hyper['rms_regularizer']
        self.b1 = ref.halflife_to_gamma(hyper['beta1_halflife'])
        self.b2 = ref.halflife_to_gamma(hyper['beta2_halflife'])
        self.t = 0
        self.m = np.zeros(shape, dtype)


class AdamRef(_MomentsRef):
    """t += 1 ; m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g^2 ;
    amsgrad: vmax = max(vmax, v), used in place of v ;
    s = alpha (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)"""

    def __init__(self, shape, dtype, hyper):
        super().__init__(shape, dtype, hyper)
        self.amsgrad = hyper['amsgrad']
        self.v = np.zeros(shape, dtype)
        self.vmax = np.zeros(shape, dtype)

    def step(self, g, p):
        self.t += 1
        b1, b2, t = self.b1, self.b2, self.t
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        v = self.v
        if self.amsgrad:
            self.vmax = np.maximum(self.vmax, self.v)
            v = self.vmax
        return self.alpha * (self.m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + self.eps)


class AdamWRef(AdamRef):
    """torch.optim.AdamW: p <- p (1 - alpha lambda), then the Adam step,
    i.e. s = Adam's s + alpha lambda p."""

    def __init__(self, shape, dtype, hyper):
        super().__init__(shape, dtype, hyper)
        self.decay = hyper['weight_decay']

    def step(self, g, p):
        return super().step(g, p) + self.alpha * self.decay * p


class AdamaxRef(_MomentsRef):
    """Kingma & Ba, algorithm 2: m = b1 m + (1 - b1) g ; u = max(b2 u, |g|) ;
    s = alpha / (1 - b1^t) m / (u + eps)"""

    def __init__(self, shape, dtype, hyper):
        super().__init__(shape, dtype, hyper)
        self.u = np.zeros(shape, dtype)

    def step(self, g, p):
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.u = np.maximum(self.b2 * self.u, np.abs(g))
        return self.alpha / (1 - self.b1 ** self.t) * self.m / (self.u + self.eps)


class NAdamRef(_MomentsRef):
    """torch.optim.NAdam (Dozat 2016, algorithm 2):
    mu_t = b1 (1 - 0.5 * 0.96^(t psi)), mu_{t+1} likewise, P *= mu_t ;
    m, v as Adam ; d = sqrt(v / (1 - b2^t)) + eps ;
    s = alpha [(1 - mu_t) / (1 - P) g + mu_{t+1} / (1 - P mu_{t+1}) m] / d"""

    def __init__(self, shape, dtype, hyper):
        super().__init__(shape, dtype, hyper)
        self.psi = hyper['momentum_decay']
        self.product = 1.0
        self.v = np.zeros(shape, dtype)

    def step(self, g, p):
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        mu = b1 * (1 - 0.5 * 0.96 ** (t * self.psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * self.psi))
        self.product *= mu
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        denom = np.sqrt(self.v / (1 - b2 ** t)) + self.eps
        return self.alpha * ((1 - mu) / (1 - self.product) * g
                             + mu_next / (1 - self.product * mu_next) * self.m) / denom


MODERN = dict(adamw=AdamWRef, adamax=AdamaxRef, nadam=NAdamRef, adam=AdamRef)
DEFAULTS = dict(ref.DEFAULTS, weight_decay=0.0, amsgrad=False, momentum_decay=0.004)


class Reference:
    """Clipping, then weight decay (g + lambda p; not for AdamW, whose decay is
    decoupled), then the algorithm's step, then momentum / Nesterov."""

    def __init__(self, algo, params, seed=None, **hyper):
        unknown = set(hyper) - set(DEFAULTS)
        if unknown:
            raise TypeError('unknown hyperparameters %s' % sorted(unknown))
        self.algo = algo
        if algo == 'adamw':
            hyper.setdefault('weight_decay', 0.01)  # AdamW's own default
        self.hyper = h = dict(DEFAULTS, **hyper)
        self.params = [np.array(p, copy=True) for p in params]
        if algo in MODERN:
            self.states = [MODERN[algo](p.shape, p.dtype, h) for p in self.params]
            self.needs_hv = False
        else:
            cls = ref.ALGORITHMS[algo]
            self.states = [cls(p.shape, p.dtype, h) for p in self.params]
            self.needs_hv = cls.needs_hv
        self.velocities = [np.zeros_like(p) for p in self.params]
        self.mu = h['momentum']
        self.nesterov = bool(h['nesterov']) or algo == 'nag'
        self.rng = np.random.default_rng(seed) if self.needs_hv else None
        self.coupled_decay = 0.0 if algo == 'adamw' else h['weight_decay']

    def step(self, grads, hvp=None):
        h = self.hyper
        new = []
        for i, (p, g, state) in enumerate(zip(self.params, grads, self.states)):
            g, _, _ = ref.clip_gradient(np.asarray(g, p.dtype), h['max_gradient_norm'],
                                        h['max_gradient_elem'])
            g = g + self.coupled_decay * p
            if self.algo in MODERN:
                s = state.step(g, p)
            else:
                hv = None
                if self.needs_hv:
                    r = self.rng.normal(size=p.shape)
                    hv = np.asarray(hvp(i, r), p.dtype)
                s = state.step(g, hv)
            if self.mu == 0 and not self.nesterov:
                new.append(p - s)
                continue
            v = self.mu * self.velocities[i] - s
            self.velocities[i] = v
            new.append(p + self.mu * v - s if self.nesterov else p + v)
        self.params = new
        return self.params


def run_reference(problem, algo, n_steps, batch_for_step=None, seed=None, **hyper):
    batch_for_step = batch_for_step or problem.batch
    opt = Reference(algo, [np.asarray(p, float) for p in problem.initial], seed=seed, **hyper)
    params, losses = [[p.copy() for p in opt.params]], []
    for k in range(n_steps):
        batch = batch_for_step(k)
        current = opt.params
        losses.append(problem.loss(current, batch))
        opt.step(problem.grads(current, batch), lambda i, r: problem.hvp(current, batch, i, r))
        params.append([p.copy() for p in opt.params])
    return params, losses


# ----------------------------------------------------------------------------
# the library side


def check_step(label, k, params, names, expected, initial):
    for i, (name, p, want) in enumerate(zip(names, params, expected)):
        got = p.get_value()
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL,
                                   err_msg=f'{label}: {name} after step {k}')
        np.testing.assert_allclose(got - initial[i], want - initial[i], rtol=RTOL, atol=ATOL,
                                   err_msg=f'{label}: displacement of {name} after step {k}')


def run_get_updates(problem_name, algo, hyper, label, n_steps=N_STEPS):
    problem = make_problem(problem_name)
    loss, params, inputs = make_graph(problem)
    opt = downhill.build(algo, loss, params=params, inputs=inputs)
    step = compile_step(inputs, loss, list(opt.get_updates(**hyper)))
    if algo == 'esgd':
        opt.rng.set_value(np.random.default_rng(SEED))
    want, losses = run_reference(problem, algo, n_steps, seed=SEED, **hyper)
    for k in range(n_steps):
        got = step(*problem.batch(k))
        np.testing.assert_allclose(got, losses[k], rtol=RTOL, err_msg=f'{label}: loss at step {k + 1}')
        check_step(label, k + 1, params, problem.names, want[k + 1], want[0])
    return want


def moved(traj):
    return max(np.max(np.abs(a - b)) for a, b in zip(traj[-1], traj[0]))


def rel_diff(a, b):
    return max(np.max(np.abs(x - y) / (np.abs(y) + 1e-3)) for pa, pb in zip(a, b) for x, y in zip(pa, pb))


LEARNING_RATES = {'ls': dict(adamw=0.02, adamax=0.05, nadam=0.02, adam=0.02),
                  'rb': dict(adamw=0.01, adamax=0.02, nadam=0.01, adam=0.01)}
MOMENTUM = {'plain': {}, 'momentum': dict(momentum=0.9), 'nesterov': dict(momentum=0.9, nesterov=True)}
CLIPPING = {'ls': {'noclip': {}, 'normclip': dict(max_gradient_norm=1.0)},
            'rb': {'noclip': {}, 'normclip': dict(max_gradient_norm=50.0)}}
VARIANTS = {
    'adamw': dict(weight_decay=0.3),
    'adamax': {},
    'nadam': {},
    'amsgrad': dict(amsgrad=True),
}


def variant_hyper(variant, problem_name, *configs):
    algo = 'adam' if variant == 'amsgrad' else variant
    hyper = dict(learning_rate=LEARNING_RATES[problem_name][algo], **VARIANTS[variant])
    for c in configs:
        hyper.update(c)
    return algo, hyper


# ----------------------------------------------------------------------------
# the new algorithms: every momentum / clipping mix, both problems


@pytest.mark.parametrize('problem_name', ['ls', 'rb'])
@pytest.mark.parametrize('clip', ['noclip', 'normclip'])
@pytest.mark.parametrize('mom', list(MOMENTUM))
@pytest.mark.parametrize('variant', list(VARIANTS))
def test_matches_reference(variant, mom, clip, problem_name):
    algo, hyper = variant_hyper(variant, problem_name, MOMENTUM[mom], CLIPPING[problem_name][clip])
    traj = run_get_updates(problem_name, algo, hyper, f'{variant}/{mom}/{clip}/{problem_name} {hyper}')
    assert moved(traj) > 0.05


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_iterate_matches_reference(variant):
    algo, hyper = variant_hyper(variant, 'rb', MOMENTUM['momentum'])
    problem = make_problem('rb')
    loss, params, inputs = make_graph(problem)
    opt = downhill.build(algo, loss, params=params)
    want, losses = run_reference(problem, algo, N_STEPS, **hyper)
    n = 0
    for n, (train, _) in enumerate(opt.iterate(None, max_updates=N_STEPS, patience=10 ** 9,
                                               validate_every=10 ** 9, **hyper), 1):
        check_step(f'iterate {variant}', n, params, problem.names, want[n], want[0])
        np.testing.assert_allclose(train['loss'], losses[n - 1], rtol=RTOL)
    assert n == N_STEPS


NON_DEFAULT = {
    'adamw': dict(learning_rate=0.03, beta1_halflife=3, beta2_halflife=20, rms_regularizer=1e-2,
                  weight_decay=0.5),
    'adamax': dict(learning_rate=0.03, beta1_halflife=3, beta2_halflife=5, rms_regularizer=1e-2),
    'nadam': dict(learning_rate=0.03, beta1_halflife=3, beta2_halflife=20, rms_regularizer=1e-2,
                  momentum_decay=0.5),
    'adam': dict(learning_rate=0.03, beta1_halflife=3, beta2_halflife=5, amsgrad=True),
}


@pytest.mark.parametrize('algo', list(NON_DEFAULT))
def test_non_default_hyperparameters(algo):
    hyper = NON_DEFAULT[algo]
    problem = make_problem('ls')
    traj, _ = run_reference(problem, algo, N_STEPS, **hyper)
    # each value changes the trajectory by far more than the tolerance
    for key in hyper:
        other, _ = run_reference(problem, algo, N_STEPS, **{k: v for k, v in hyper.items() if k != key})
        assert rel_diff(traj, other) > 1e-4, key
    run_get_updates('ls', algo, hyper, f'non-default {algo} {hyper}')


@pytest.mark.parametrize('algo', ['adamw', 'adamax', 'nadam'])
def test_default_hyperparameters(algo):
    assert moved(run_get_updates('rb', algo, {}, f'defaults {algo}')) > 1e-3


def test_adamw_without_decay_is_adam():
    adam = run_get_updates('ls', 'adam', dict(learning_rate=0.02), 'adam')
    adamw = run_get_updates('ls', 'adamw', dict(learning_rate=0.02, weight_decay=0), 'adamw 0')
    assert rel_diff(adam, adamw) == 0
    decayed = run_get_updates('ls', 'adamw', dict(learning_rate=0.02), 'adamw default decay')
    assert rel_diff(decayed, adam) > 1e-4  # the default 0.01 is on


def test_amsgrad_binds():
    """On Rosenbrock the second moment falls at times, so amsgrad changes the path."""
    problem = make_problem('rb')
    plain, _ = run_reference(problem, 'adam', N_STEPS, learning_rate=0.01)
    ams, _ = run_reference(problem, 'adam', N_STEPS, learning_rate=0.01, amsgrad=True)
    assert rel_diff(plain, ams) > 1e-4


# ----------------------------------------------------------------------------
# weight_decay for every algorithm

ALL = ref.ALGOS + ('adamax', 'nadam')
CORE_RATES = dict(sgd=0.05, nag=0.05, rprop=0.01, adagrad=0.1, rmsprop=0.01, adadelta=0.5,
                  esgd=0.02, adam=0.02, adamax=0.05, nadam=0.02)


@pytest.mark.parametrize('config', ['plain', 'nesterov+normclip', 'momentum+elemclip'])
@pytest.mark.parametrize('algo', ALL)
def test_weight_decay(algo, config):
    hyper = dict(learning_rate=CORE_RATES[algo], weight_decay=0.2)
    if algo == 'adadelta':
        hyper['rms_regularizer'] = 1e-4
    if 'nesterov' in config:
        hyper.update(momentum=0.9, nesterov=True)
    if 'momentum' in config:
        hyper.update(momentum=0.9)
    if 'normclip' in config:
        hyper.update(max_gradient_norm=1.0)
    if 'elemclip' in config:
        hyper.update(max_gradient_elem=0.5)
    traj = run_get_updates('ls', algo, hyper, f'{algo} {hyper}')
    if algo != 'rprop':  # only gradient signs: a small decay may not flip any
        without, _ = run_reference(make_problem('ls'), algo, N_STEPS, seed=SEED,
                                   **dict(hyper, weight_decay=0))
        assert rel_diff(traj, without) > 1e-4


def test_weight_decay_zero_adds_nothing_to_the_graph():
    problem = make_problem('ls')
    loss, params, inputs = make_graph(problem)
    opt = downhill.build('adam', loss, params=params, inputs=inputs)

    def inputs_of(updates):
        return {v.name for v in downhill._compat.graph_inputs([e for _, e in updates])}

    plain = opt.get_updates(learning_rate=0.01)
    key = opt._graph_key()
    zero = opt.get_updates(learning_rate=0.01, weight_decay=0)
    assert opt._graph_key() == key
    assert '_weight_decay' not in inputs_of(plain) | inputs_of(zero)
    decayed = opt.get_updates(learning_rate=0.01, weight_decay=0.1)
    assert opt._graph_key() != key
    assert '_weight_decay' in inputs_of(decayed)


def test_weight_decay_changes_reuse_the_compiled_step():
    x = pytensor.shared(np.array([1.0, -2.0]), name='x')
    opt = downhill.build('sgd', pt.sqr(x).sum())
    list(opt.iterate(None, max_updates=1, weight_decay=0.1))
    list(opt.iterate(None, max_updates=1, weight_decay=0.5))
    assert len(opt._step_fns) == 1
    assert opt.weight_decay == 0.5
    with pytest.raises(ValueError, match='weight_decay must be >= 0'):
        opt.get_updates(weight_decay=-1)


# ----------------------------------------------------------------------------
# registry, attributes, float32


def test_registered_and_exported():
    for name, cls in [('adamw', downhill.AdamW), ('adamax', downhill.Adamax), ('nadam', downhill.NAdam)]:
        assert downhill.algorithms()[name] is cls
        assert cls.__doc__ and '.. math::' in cls.__doc__ and 'References' in cls.__doc__


def test_attributes():
    x = pytensor.shared(np.array([1.0, -2.0]), name='x')
    opt = downhill.build('adamw', pt.sqr(x).sum())
    opt.get_updates()
    assert opt.weight_decay == 0.01
    opt.get_updates(weight_decay=0.2, amsgrad=True, beta1_halflife=3)
    assert opt.weight_decay == 0.2 and opt.amsgrad is True
    assert opt.beta1.eval() == pytest.approx(math.exp(-math.log(2) / 3))
    opt = downhill.build('nadam', pt.sqr(x).sum())
    opt.get_updates(momentum_decay=0.01)
    assert opt.momentum_decay.eval() == 0.01
    with pytest.raises(TypeError, match="'amsgrad'"):
        opt.get_updates(amsgrad=True)  # NAdam has no amsgrad


@pytest.mark.parametrize('algo', ['adamw', 'adamax', 'nadam', 'adam'])
def test_float32_stays_float32(algo):
    with pytensor.config.change_flags(floatX='float64'):
        problem = make_problem('ls')
        loss, params, inputs = make_graph(problem, 'float32')
        opt = downhill.build(algo, loss, params=params, inputs=inputs)
        extra = dict(amsgrad=True) if algo == 'adam' else {}
        for config in [{}, dict(momentum=0.9, nesterov=True, weight_decay=0.1), extra]:
            for var, expr in opt.get_updates(learning_rate=0.02, **config):
                assert expr.type.dtype == var.type.dtype, (algo, var, expr.type)
        updates = opt.get_updates(learning_rate=0.02, momentum=0.9, weight_decay=0.1, **extra)
        step = compile_step(inputs, loss, list(updates))
        want, _ = run_reference(problem, algo, 20, learning_rate=0.02, momentum=0.9,
                                weight_decay=0.1, **extra)
        for k in range(20):
            step(*(a.astype('float32') for a in problem.batch(k)))
            for name, p, w in zip(problem.names, params, want[k + 1]):
                assert p.get_value().dtype == np.float32
                np.testing.assert_allclose(p.get_value(), w, rtol=1e-3, atol=1e-5, err_msg=name)
