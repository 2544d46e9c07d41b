"""Step-by-step checks of the compiled updates against a NumPy reference.

Every algorithm is run for ``N_STEPS`` updates in float64 and, after every
single update, all parameters (and the loss the step function returns) are
compared with ``numpy_reference`` (rtol 1e-6).  Covered:

* the ``get_updates()`` + ``pytensor.function`` path for all 8 algorithms x
  {no momentum, momentum 0.9, Nesterov momentum 0.9} x {no clipping,
  ``max_gradient_norm``, ``max_gradient_elem``}, on two losses: a bilinear
  least-squares model with three parameters of different shapes (matrix,
  vector, 0-d scalar) fed a different data batch at every step, and the 2-d
  Rosenbrock function (no inputs);
* the ``iterate()`` path (one configuration per algorithm);
* ESGD with each ``hv_method`` (rop, lop, grad), its random vectors
  reproduced from ``opt.rng``;
* non-default hyperparameters, all-default hyperparameters, both clipping
  keywords at once, the old clipping synonyms;
* float32 models under floatX=float64: update dtypes, parameters staying
  float32, and the trajectory staying close to the float64 reference.

The clipping thresholds are chosen so that they bind (asserted on the
reference run, so a test cannot pass vacuously), and
``test_reference_discriminates`` checks that the configurations differ from
each other by far more than the tolerance.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode
from pytensor.link.vm import VMLinker

import downhill
import numpy_reference as ref

N_STEPS = 50
RTOL = 1e-6
ATOL = 1e-12
SEED = 20240531  # seeds ESGD's random vectors, in the library and the reference

# When the session runs in FAST_COMPILE (conftest's default), the
# get_updates() functions below are compiled with FAST_COMPILE's Python linker
# but without graph rewrites: there are ~200 of them and the rewrites take
# most of the compile time.  In any other session mode (DOWNHILL_TEST_MODE)
# they use that mode.  The iterate() tests always compile through the
# library, i.e. with the session's mode.
_NO_REWRITE_MODE = Mode(VMLinker(use_cloop=False, c_thunks=False), optimizer=None)


def compile_step(inputs, loss, updates):
    mode = pytensor.config.mode
    if str(mode).upper() == 'FAST_COMPILE':
        mode = _NO_REWRITE_MODE
    return pytensor.function(inputs, loss, updates=updates, mode=mode)


ALGOS = ref.ALGOS

# learning rates (per algorithm) that move the parameters substantially in
# 50 steps without diverging.  ADADELTA has no learning rate: we pass one
# anyway (it must be ignored) and raise epsilon so that it moves.
LEARNING_RATES = {
    'ls': dict(sgd=0.05, nag=0.05, rprop=0.01, adagrad=0.1, rmsprop=0.01,
               adadelta=0.5, esgd=0.02, adam=0.02),
    'rb': dict(sgd=5e-4, nag=5e-4, rprop=0.01, adagrad=0.05, rmsprop=0.003,
               adadelta=0.5, esgd=0.05, adam=0.01),
}
EXTRA = {'adadelta': dict(rms_regularizer=1e-4)}

MOMENTUM = {
    'plain': {},
    'momentum': dict(momentum=0.9),
    'nesterov': dict(momentum=0.9, nesterov=True),
}
CLIPPING = {
    'ls': {'noclip': {},
           'normclip': dict(max_gradient_norm=1.0),
           'elemclip': dict(max_gradient_elem=0.5)},
    'rb': {'noclip': {},
           'normclip': dict(max_gradient_norm=50.0),
           'elemclip': dict(max_gradient_elem=20.0)},
}


# ----------------------------------------------------------------------------
# helpers


def make_problem(name):
    return ref.LeastSquares() if name == 'ls' else ref.Rosenbrock()


def make_graph(problem, dtype='float64'):
    """Symbolic version of a reference problem: (loss, params, inputs)."""
    params = [pytensor.shared(np.asarray(p, dtype=dtype), name=n)
              for n, p in zip(problem.names, problem.initial)]
    if isinstance(problem, ref.LeastSquares):
        W, b, c = params
        X = pt.matrix('X', dtype=dtype)
        Y = pt.matrix('Y', dtype=dtype)
        R = c * pt.dot(X, W) + b - Y
        return pt.mean(R * R), params, [X, Y]
    (xy,) = params
    x, y = xy[0], xy[1]
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2, params, []


def base_hyper(problem_name, algo, *configs):
    hyper = dict(learning_rate=LEARNING_RATES[problem_name][algo])
    hyper.update(EXTRA.get(algo, {}))
    for config in configs:
        hyper.update(config)
    return hyper


def check_params(label, step, params, names, expected, initial=None,
                 rtol=RTOL, atol=ATOL):
    """Compare parameter values with the reference; with ``initial``, also
    compare the displacement from there (so rtol is relative to how far the
    parameters moved, not only to their size)."""
    for i, (name, p, want) in enumerate(zip(names, params, expected)):
        got = p.get_value()
        np.testing.assert_allclose(
            got, want, rtol=rtol, atol=atol,
            err_msg='%s: parameter %r after step %d' % (label, name, step))
        if initial is not None:
            np.testing.assert_allclose(
                got - initial[i], want - initial[i], rtol=rtol, atol=atol,
                err_msg='%s: displacement of parameter %r after step %d'
                % (label, name, step))


def build(algo, problem, dtype='float64'):
    loss, params, inputs = make_graph(problem, dtype)
    opt = downhill.build(algo, loss, params=params, inputs=inputs)
    return opt, loss, params, inputs


def run_get_updates(problem_name, algo, hyper, label, n_steps=N_STEPS):
    """Compile get_updates(**hyper) and compare every step with the
    reference; returns the reference trajectory."""
    problem = make_problem(problem_name)
    opt, loss, params, inputs = build(algo, problem)
    updates = list(opt.get_updates(**hyper))
    if algo == 'esgd':
        opt.rng.set_value(np.random.default_rng(SEED))
    step = compile_step(inputs, loss, updates)
    traj = ref.run_reference(problem, algo, n_steps, seed=SEED, **hyper)
    for k in range(n_steps):
        got = step(*problem.batch(k))
        np.testing.assert_allclose(
            got, traj.losses[k], rtol=RTOL,
            err_msg='%s: loss returned at step %d' % (label, k + 1))
        check_params(label, k + 1, params, problem.names, traj.params[k + 1],
                     traj.params[0])
    return traj


def assert_moved(traj, minimum):
    moved = max(np.max(np.abs(a - b)) for a, b in zip(traj.final(), traj.params[0]))
    assert moved > minimum, 'parameters moved only %g' % moved


def assert_clipping_bound(traj, clip):
    opt = traj.opt
    if clip == 'normclip':
        assert opt.n_norm_bound > 0, 'max_gradient_norm never bound'
    elif clip == 'elemclip':
        assert opt.n_elem_clipped > 0, 'max_gradient_elem never bound'
        assert opt.n_elem_clipped < opt.n_elem_total, 'every element clipped'


def max_rel_diff(traj_a, traj_b):
    return max(np.max(np.abs(a - b) / (np.abs(b) + 1e-3))
               for pa, pb in zip(traj_a.params, traj_b.params)
               for a, b in zip(pa, pb))


# ----------------------------------------------------------------------------
# the main grid: get_updates() for every algorithm / momentum / clipping


@pytest.mark.parametrize('problem_name', ['ls', 'rb'])
@pytest.mark.parametrize('clip', ['noclip', 'normclip', 'elemclip'])
@pytest.mark.parametrize('mom', list(MOMENTUM))
@pytest.mark.parametrize('algo', ALGOS)
def test_get_updates_match_reference(algo, mom, clip, problem_name):
    hyper = base_hyper(problem_name, algo, MOMENTUM[mom],
                       CLIPPING[problem_name][clip])
    label = '%s/%s/%s/%s %s' % (algo, mom, clip, problem_name, hyper)
    traj = run_get_updates(problem_name, algo, hyper, label)
    assert_clipping_bound(traj, clip)
    assert_moved(traj, 0.05)


# ----------------------------------------------------------------------------
# the iterate() path: one configuration per algorithm (problems alternate)

ITERATE_CONFIGS = {
    'sgd': ('rb', 'momentum', 'normclip'),
    'nag': ('ls', 'momentum', 'elemclip'),
    'rprop': ('rb', 'nesterov', 'noclip'),
    'adagrad': ('ls', 'plain', 'normclip'),
    'rmsprop': ('rb', 'momentum', 'elemclip'),
    'adadelta': ('ls', 'nesterov', 'normclip'),
    'esgd': ('ls', 'nesterov', 'elemclip'),
    'adam': ('rb', 'plain', 'normclip'),
}


@pytest.mark.parametrize('algo', ALGOS)
def test_iterate_matches_reference(algo):
    problem_name, mom, clip = ITERATE_CONFIGS[algo]
    hyper = base_hyper(problem_name, algo, MOMENTUM[mom],
                       CLIPPING[problem_name][clip])
    if algo == 'esgd':
        hyper['hv_method'] = 'lop'
    label = 'iterate %s/%s/%s/%s %s' % (algo, mom, clip, problem_name, hyper)
    problem = make_problem(problem_name)
    opt, loss, params, inputs = build(algo, problem)
    if algo == 'esgd':
        opt.rng.set_value(np.random.default_rng(SEED))
    batch = list(problem.batch(0))  # the same single batch every iteration
    ref_hyper = {k: v for k, v in hyper.items() if k != 'hv_method'}
    traj = ref.run_reference(problem, algo, N_STEPS, lambda k: batch,
                             seed=SEED, **ref_hyper)
    assert_clipping_bound(traj, clip)
    assert_moved(traj, 0.05)
    n = 0
    for n, (train, valid) in enumerate(
            opt.iterate([batch], max_updates=N_STEPS, patience=10 ** 9,
                        validate_every=10 ** 9, **hyper), 1):
        assert n <= N_STEPS, 'iterate() did not stop after max_updates'
        check_params(label, n, params, problem.names, traj.params[n],
                     traj.params[0])
        np.testing.assert_allclose(
            train['loss'], traj.losses[n - 1], rtol=RTOL,
            err_msg='%s: training loss reported for iteration %d' % (label, n))
    assert n == N_STEPS


# ----------------------------------------------------------------------------
# ESGD: every Hessian-vector product method


@pytest.mark.parametrize('problem_name,mom,clip', [
    ('ls', 'momentum', 'normclip'), ('rb', 'nesterov', 'elemclip')])
@pytest.mark.parametrize('hv_method', ['rop', 'lop', 'grad'])
def test_esgd_hv_methods(hv_method, problem_name, mom, clip):
    hyper = base_hyper(problem_name, 'esgd', MOMENTUM[mom],
                       CLIPPING[problem_name][clip])
    label = 'esgd hv_method=%s %s/%s/%s' % (hv_method, problem_name, mom, clip)
    problem = make_problem(problem_name)
    opt, loss, params, inputs = build('esgd', problem)
    updates = list(opt.get_updates(hv_method=hv_method, **hyper))
    opt.rng.set_value(np.random.default_rng(SEED))
    step = compile_step(inputs, loss, updates)
    traj = ref.run_reference(problem, 'esgd', N_STEPS, seed=SEED, **hyper)
    assert_clipping_bound(traj, clip)
    for k in range(N_STEPS):
        step(*problem.batch(k))
        check_params(label, k + 1, params, problem.names, traj.params[k + 1],
                     traj.params[0])


# ----------------------------------------------------------------------------
# non-default and default hyperparameters

NON_DEFAULT = {
    'sgd': dict(learning_rate=0.02, momentum=0.5, nesterov=True),
    'nag': dict(learning_rate=0.02, momentum=0.5),
    'rprop': dict(learning_rate=0.05, rprop_increase=1.3, rprop_decrease=0.4,
                  rprop_min_step=0.01, rprop_max_step=0.1),
    'adagrad': dict(learning_rate=0.3, rms_regularizer=0.5),
    'rmsprop': dict(learning_rate=0.01, rms_halflife=5, rms_regularizer=1e-2),
    'adadelta': dict(learning_rate=123.0, rms_halflife=5, rms_regularizer=1e-4),
    'esgd': dict(learning_rate=0.05, rms_halflife=5, rms_regularizer=0.1),
    'adam': dict(learning_rate=0.02, beta1_halflife=3, beta2_halflife=20,
                 rms_regularizer=1e-2),
}


@pytest.mark.parametrize('algo', ALGOS)
def test_non_default_hyperparameters(algo):
    hyper = NON_DEFAULT[algo]
    problem = make_problem('ls')
    traj = ref.run_reference(problem, algo, N_STEPS, seed=SEED, **hyper)
    # every non-default value must change the reference trajectory by far
    # more than the tolerance, else this test would not show it is honoured
    for key in hyper:
        if key == 'learning_rate' and algo == 'adadelta':
            continue
        without = {k: v for k, v in hyper.items() if k != key}
        if key == 'momentum':
            without['momentum'] = 0.9
        other = ref.run_reference(problem, algo, N_STEPS, seed=SEED, **without)
        assert max_rel_diff(traj, other) > 1e-4, key
    if algo == 'rprop':
        assert traj.opt.states[0].n_min_bound > 0, 'rprop_min_step never bound'
        assert traj.opt.states[0].n_max_bound > 0, 'rprop_max_step never bound'
    run_get_updates('ls', algo, hyper, 'non-default %s %s' % (algo, hyper))


@pytest.mark.parametrize('algo', ALGOS)
def test_default_hyperparameters(algo):
    # Rosenbrock's large gradients make even learning_rate=1e-4 move
    traj = run_get_updates('rb', algo, {}, 'defaults %s' % algo)
    assert_moved(traj, 1e-3)


@pytest.mark.parametrize('algo,hyper,expected', [
    ('sgd', dict(max_gradient_norm=0.1, max_gradient_elem=0.5),
     dict(max_gradient_elem=0.5)),
    ('adam', dict(max_gradient_norm=0.1, max_gradient_elem=0.5),
     dict(max_gradient_elem=0.5)),
    ('sgd', dict(max_gradient_clip=0.5), dict(max_gradient_elem=0.5)),
    ('rmsprop', dict(gradient_clip=0.5), dict(max_gradient_elem=0.5)),
])
def test_clipping_keywords(algo, hyper, expected):
    """Element clipping wins over norm rescaling; old synonyms work."""
    lr = dict(learning_rate=LEARNING_RATES['ls'][algo])
    problem = make_problem('ls')
    opt, loss, params, inputs = build(algo, problem)
    step = compile_step(inputs, loss,
                        list(opt.get_updates(**dict(lr, **hyper))))
    traj = ref.run_reference(problem, algo, N_STEPS, **dict(lr, **expected))
    assert_clipping_bound(traj, 'elemclip')
    if 'max_gradient_norm' in hyper:  # norm rescaling alone would differ
        normed = ref.run_reference(problem, algo, N_STEPS, learning_rate=lr[
            'learning_rate'], max_gradient_norm=hyper['max_gradient_norm'])
        assert max_rel_diff(traj, normed) > 1e-4
    label = '%s %s' % (algo, hyper)
    for k in range(N_STEPS):
        step(*problem.batch(k))
        check_params(label, k + 1, params, problem.names, traj.params[k + 1],
                     traj.params[0])


# ----------------------------------------------------------------------------
# the reference itself: configurations must be distinguishable


@pytest.mark.parametrize('problem_name', ['ls', 'rb'])
@pytest.mark.parametrize('algo', ALGOS)
def test_reference_discriminates(algo, problem_name):
    """Switching momentum, Nesterov, clipping or ESGD's seed changes the
    reference trajectory by far more than RTOL, so the grid above really
    tells these configurations apart (NAG is Nesterov whatever the flag;
    RProp only sees gradient signs, so clipping cannot change it)."""
    problem = make_problem(problem_name)
    clips = CLIPPING[problem_name]

    def run(mom, clip, seed=SEED):
        hyper = base_hyper(problem_name, algo, MOMENTUM[mom], clips[clip])
        return ref.run_reference(problem, algo, N_STEPS, seed=seed, **hyper)

    plain = run('plain', 'noclip')
    assert max_rel_diff(plain, run('momentum', 'noclip')) > 1e-3
    nesterov_gap = max_rel_diff(run('momentum', 'noclip'), run('nesterov', 'noclip'))
    if algo == 'nag':
        assert nesterov_gap == 0
        sgd = ref.run_reference(problem, 'sgd', N_STEPS, **base_hyper(
            problem_name, 'sgd', MOMENTUM['nesterov']))
        assert max_rel_diff(sgd, run('nesterov', 'noclip')) == 0
    else:
        assert nesterov_gap > 1e-3
    for clip in ('normclip', 'elemclip'):
        gap = max_rel_diff(plain, run('plain', clip))
        if algo == 'rprop':
            assert gap == 0
        else:
            assert gap > 1e-4, clip
    if algo == 'esgd':
        assert max_rel_diff(plain, run('plain', 'noclip', seed=SEED + 1)) > 1e-4


# ----------------------------------------------------------------------------
# float32 models


def updates_dtypes(updates):
    """(name, variable dtype, expression dtype) of every update; non-tensor
    variables (a random generator) are described by their types."""
    return [(var.name or str(var), getattr(var.type, 'dtype', var.type),
             getattr(expr.type, 'dtype', expr.type))
            for var, expr in updates]


@pytest.mark.parametrize('algo', ALGOS)
def test_float32_model(algo):
    with pytensor.config.change_flags(floatX='float64'):
        problem = make_problem('ls')
        # update dtypes, for every momentum / clipping / hyperparameter mix
        configs = [dict(m, **c) for m in MOMENTUM.values()
                   for c in CLIPPING['ls'].values()] + [NON_DEFAULT[algo]]
        for config in configs:
            hyper = base_hyper('ls', algo, config)
            opt, loss, params, inputs = build(algo, problem, 'float32')
            mismatched = [u for u in updates_dtypes(opt.get_updates(**hyper))
                          if u[1] != u[2]]
            assert not mismatched, (
                'float32 model, %s %s: updates (variable, its dtype, '
                'expression dtype) that change dtype: %s' % (algo, hyper, mismatched))

        hyper = base_hyper('ls', algo, MOMENTUM['nesterov'],
                           CLIPPING['ls']['normclip'])
        opt, loss, params, inputs = build(algo, problem, 'float32')
        updates = list(opt.get_updates(**hyper))
        if algo == 'esgd':
            opt.rng.set_value(np.random.default_rng(SEED))
        step = compile_step(inputs, loss, updates)
        n_steps = 20
        traj = ref.run_reference(problem, algo, n_steps, seed=SEED, **hyper)
        label = 'float32 %s %s' % (algo, hyper)
        for k in range(n_steps):
            step(*(a.astype('float32') for a in problem.batch(k)))
            for name, p in zip(problem.names, params):
                assert p.get_value().dtype == np.float32, (
                    '%s: %s became %s' % (label, name, p.get_value().dtype))
            check_params(label, k + 1, params, problem.names,
                         traj.params[k + 1], rtol=1e-3, atol=1e-5)
