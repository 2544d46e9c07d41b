"""The NumPy-reference math table in PyTensor's default backend, as users run it.

``test_math.py`` and ``test_modern.py`` check every algorithm step by step
against ``numpy_reference`` in the suite's FAST_COMPILE mode. Here the same
references check the steps that ``iterate()`` compiles in PyTensor's default
mode (Numba on PyTensor 3, the C VM on 2.x): once with every downhill speed-up
on (graph rewrites, fast tanh, lean call: what a user gets), once with them
all off (stock PyTensor, :func:`downhill.compile.use_speedups`). Each
algorithm runs three momentum/clipping configurations on both problems
(least squares with data, Rosenbrock without) with the speed-ups, one of
them without, 50 updates each, compared after every update.

Tolerance (rtol 1e-6 on the parameters and on their displacement from the
start, as in the FAST_COMPILE table): the backend and the reference compute
the same formulas in other operation orders (fused loops, contracted
multiply-adds, sums in another order), a few ulp (~1e-15 relative) per
operation and step. Over 50 steps such differences grow at most by the
product of the steps' Jacobian norms, below 1e4 on these problems (a
Rosenbrock Hessian of condition ~2.5e3 at these step sizes), so honest
rounding stays below ~1e-10; a wrong formula (a momentum, a clipping, a
bias correction) moves the trajectory by more than 1e-4
(``test_reference_discriminates``). 1e-6 sits between the two.
"""

import numpy as np
import pytest

import downhill
from downhill import compile as compiling
import test_math as core
import test_modern as modern

pytestmark = pytest.mark.compiled

N_STEPS = 50

#: (momentum, clipping): each choice of either appears once per algorithm.
CORE_CONFIGS = [('plain', 'noclip'), ('momentum', 'normclip'), ('nesterov', 'elemclip')]
MODERN_CONFIGS = [('plain', 'noclip'), ('momentum', 'normclip'), ('nesterov', 'noclip')]

def backend_configs(configs):
    """(momentum, clipping, speed-ups) triples: every configuration with the speed-ups, and the
    second (momentum, norm clipping) without them too (stock PyTensor, which the FAST_COMPILE
    table checks as well: one configuration per algorithm and problem is enough there)."""
    triples = [(mom, clip, True) for mom, clip in configs] + [(*configs[1], False)]
    return pytest.mark.parametrize('mom,clip,speedups', triples,
                                   ids=[f'{m}-{c}-{"speedups" if on else "stock"}' for m, c, on in triples])


def iterate_steps(problem, algo, hyper, speedups, esgd_seed=None):
    """Parameter values after each of N_STEPS iterate() updates on problem.batch(0), and the losses."""
    with compiling.use_speedups(speedups):
        loss, params, inputs = core.make_graph(problem)
        opt = downhill.build(algo, loss, params=params, inputs=inputs)
        if esgd_seed is not None:
            opt.rng.set_value(np.random.default_rng(esgd_seed))
        train = [list(problem.batch(0))] if inputs else None
        path, losses = [], []
        for tm, _ in opt.iterate(train, max_updates=N_STEPS, patience=10 ** 9,
                                 validate_every=10 ** 9, **hyper):
            path.append([p.get_value() for p in params])
            losses.append(tm['loss'])
        # the speed-ups were what was asked: the lean call replaces PyTensor's Function
        step = opt._compiled_step()
        if not speedups:
            assert hasattr(step, 'maker')
        elif compiling._compat.PYTENSOR_VERSION >= (3,):
            assert not hasattr(step, 'maker')
    assert len(path) == N_STEPS
    return path, losses


def compare(label, problem, path, losses, want, want_losses):
    for k in range(N_STEPS):
        for name, got, expected, start in zip(problem.names, path[k], want[k + 1], want[0]):
            np.testing.assert_allclose(got, expected, rtol=core.RTOL, atol=core.ATOL,
                                       err_msg=f'{label}: {name} after step {k + 1}')
            # the displacement too: rtol relative to how far the parameters moved
            np.testing.assert_allclose(got - start, expected - start, rtol=core.RTOL, atol=core.ATOL,
                                       err_msg=f'{label}: displacement of {name} after step {k + 1}')
        np.testing.assert_allclose(losses[k], want_losses[k], rtol=core.RTOL,
                                   err_msg=f'{label}: loss reported at step {k + 1}')


@pytest.mark.parametrize('problem_name', ['ls', 'rb'])
@backend_configs(CORE_CONFIGS)
@pytest.mark.parametrize('algo', core.ALGOS)
def test_core_algorithms(algo, mom, clip, problem_name, speedups):
    hyper = core.base_hyper(problem_name, algo, core.MOMENTUM[mom], core.CLIPPING[problem_name][clip])
    problem = core.make_problem(problem_name)
    batch = list(problem.batch(0))
    traj = core.ref.run_reference(problem, algo, N_STEPS, lambda k: batch, seed=core.SEED, **hyper)
    core.assert_moved(traj, 0.05)
    path, losses = iterate_steps(problem, algo, hyper, speedups,
                                         core.SEED if algo == 'esgd' else None)
    compare(f'{algo}/{mom}/{clip}/{problem_name} speedups={speedups}', problem, path, losses,
            traj.params, traj.losses)


@pytest.mark.parametrize('problem_name', ['ls', 'rb'])
@backend_configs(MODERN_CONFIGS)
@pytest.mark.parametrize('variant', list(modern.VARIANTS))
def test_adam_family(variant, mom, clip, problem_name, speedups):
    algo, hyper = modern.variant_hyper(variant, problem_name, modern.MOMENTUM[mom],
                                       modern.CLIPPING[problem_name][clip])
    problem = core.make_problem(problem_name)
    batch = list(problem.batch(0))
    want, want_losses = modern.run_reference(problem, algo, N_STEPS, lambda k: batch, **hyper)
    assert modern.moved(want) > 0.05
    path, losses = iterate_steps(problem, algo, hyper, speedups)
    compare(f'{variant}/{mom}/{clip}/{problem_name} speedups={speedups}', problem, path, losses,
            want, want_losses)
