"""Maximum a posteriori (MAP) points of PyMC models, found with downhill.

PyMC is an optional dependency: this module imports it only when
:func:`find_map` is called (``pip install pymc`` to get it).
"""

import logging
import time

import numpy as np
import pytensor
from pytensor.graph.replace import graph_replace

from .base import build

log = logging.getLogger('downhill')

#: Learning rates (step sizes in the unconstrained space) used by find_map when
#: none is given. ``None``: the algorithm's own default.
DEFAULT_LEARNING_RATES = {
    'adam': 0.1, 'rmsprop': 0.01, 'adagrad': 0.5, 'rprop': 0.01,
    'esgd': 0.1, 'sgd': None, 'nag': None, 'adadelta': None,
}
#: Other hyperparameters find_map sets when they are not given.
DEFAULT_HYPERS = {'rprop': {'rprop_increase': 1.2, 'rprop_decrease': 0.5}}


def _import_pymc():
    try:
        import pymc
    except ImportError as err:
        raise ImportError(
            'downhill.pymc needs PyMC, which is not installed; install it with: pip install pymc'
        ) from err
    return pymc


class _Problem:
    """A model's negative log-posterior as a function of shared variables."""

    def __init__(self, pm, model, start, vars, jacobian, monitors, seed):
        from pymc.initial_point import make_initial_point_fn
        from pymc.pytensorf import collect_default_updates, reseed_rngs
        from pymc.util import get_value_vars_from_user_vars

        self.model = model
        if vars is None:
            free = list(model.continuous_value_vars)
            if not free:
                raise ValueError('the model has no unobserved continuous variables to optimize')
        else:
            free = get_value_vars_from_user_vars(vars, model)
            discrete = [v.name for v in free if v in model.discrete_value_vars]
            if discrete:
                raise ValueError(f'find_map optimizes continuous variables only; {", ".join(discrete)} '
                                 'is discrete: leave it out of vars (it then stays at its start value)')
        ipfn = make_initial_point_fn(model=model, jitter_rvs=set(), return_transformed=True,
                                     overrides=start)
        self.start = ipfn(seed)
        model.check_start_vals(self.start)

        # One shared variable per value variable, of the same type (so the
        # replacement is exact); those not in ``free`` stay at their start value.
        self.shared = {}
        for value_var in model.value_vars:
            self.shared[value_var] = pytensor.shared(
                np.array(self.start[value_var.name], dtype=value_var.dtype),
                name=value_var.name, shape=value_var.type.shape)
        self.params = [self.shared[v] for v in free]
        self.free = free

        names, exprs = [], []
        pairs = list(monitors.items()) if isinstance(monitors, dict) else list(monitors or ())
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise TypeError(f'monitors[{i}] must be a (name, expression) pair, got {pair!r}')
            name, expr = pair
            if isinstance(expr, str):
                expr = model[expr]
            names.append(name)
            exprs.append(expr)
        if exprs:
            exprs = model.replace_rvs_by_values(exprs)

        logp = model.logp(jacobian=jacobian)
        replaced = graph_replace([logp] + list(exprs), self.shared, strict=True)
        self.loss = -replaced[0]
        self.loss.name = 'neg_logp'
        self.monitors = list(zip(names, replaced[1:]))

        # pm.Minibatch draws its row indices inside an OpFromGraph, where a walk
        # for RandomVariable nodes does not see them: ask PyMC for the updates.
        self.rng_updates = list(collect_default_updates(outputs=[self.loss] + replaced[1:]).items())
        if self.rng_updates and seed is not None:
            reseed_rngs([rng for rng, _ in self.rng_updates], seed)
        self.stochastic = bool(self.rng_updates)

    def point(self, include_transformed, mode):
        """The current values in PyMC's format, as ``pm.find_MAP`` returns them."""
        from pymc.util import get_default_varnames

        model = self.model
        outs = get_default_varnames(model.unobserved_value_vars, include_transformed)
        fn = model.compile_fn(outs, inputs=model.value_vars, mode=mode)
        values = {v.name: self.shared[v].get_value() for v in model.value_vars}
        return {var.name: value for var, value in zip(outs, fn(values))}


def _mode(pm, model, mode):
    """``mode`` with PyMC's rewrite of parameter checks, as PyMC compiles logp."""
    from pytensor.compile.mode import Mode, get_mode

    mode = get_mode(mode)
    check = 'local_check_parameter_to_ninf_switch' if model.check_bounds else 'local_remove_check_parameter'
    return Mode(linker=mode.linker, optimizer=mode.provided_optimizer.including(check))


def find_map(model=None, algo='adam', start=None, vars=None, *, jacobian=False,
             include_transformed=True, return_monitors=False, monitors=(),
             monitor_gradients=False, max_updates=None, patience=5, validate_every=10,
             min_improvement=1e-10, anneal=3, anneal_factor=0.1, seed=None, progressbar=True,
             mode=None, **kwargs):
    """Find the maximum a posteriori point of a PyMC model with a downhill algorithm.

    Minimizes the model's negative log-posterior over its free continuous
    variables in PyMC's unconstrained (transformed) space, then maps the
    result back, like :func:`pymc.find_MAP`.
    """
    pm = _import_pymc()
    model = pm.modelcontext(model)
    quiet = not progressbar
    old_level = log.level
    if quiet:
        log.setLevel(logging.WARNING)
    try:
        started = time.perf_counter()
        problem = _Problem(pm, model, start, vars, jacobian, monitors, seed)
        compile_mode = _mode(pm, model, mode)
        opt = build(algo, problem.loss, params=problem.params, inputs=[],
                    updates=problem.rng_updates, monitors=problem.monitors,
                    monitor_gradients=monitor_gradients, mode=compile_mode)
        key = type(opt).__name__.lower()
        if kwargs.get('learning_rate') is None:
            kwargs.pop('learning_rate', None)
            if DEFAULT_LEARNING_RATES.get(key) is not None:
                kwargs['learning_rate'] = DEFAULT_LEARNING_RATES[key]
        for name, value in DEFAULT_HYPERS.get(key, {}).items():
            kwargs.setdefault(name, value)
        if max_updates is None:
            max_updates = 20000
        history = []
        for stage in range(anneal + 1):
            left = max_updates - len(history)
            if left <= 0:
                break
            before = len(history)
            for pair in opt.iterate(None, None, max_updates=left, patience=patience,
                                    validate_every=validate_every, min_improvement=min_improvement,
                                    **kwargs):
                history.append(pair)
            log.info('find_map stage %d: %d updates, learning_rate=%s', stage, len(history) - before,
                     kwargs.get('learning_rate'))
            if 'learning_rate' in kwargs:
                kwargs['learning_rate'] = kwargs['learning_rate'] * anneal_factor
            else:
                kwargs['learning_rate'] = float(opt.learning_rate.get_value()) * anneal_factor
        point = problem.point(include_transformed, mode)
        log.info('find_map: %d updates in %.2f s', len(history), time.perf_counter() - started)
    finally:
        if quiet:
            log.setLevel(old_level)
    if return_monitors:
        return point, history
    return point
