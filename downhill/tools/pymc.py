"""Maximum a posteriori (MAP) points of PyMC models, found with downhill.

PyMC is an optional dependency: this module imports it only when
:func:`find_map` is called (``pip install pymc`` to get it).
"""

import contextlib
import logging
import time

import numpy as np
import pytensor
from pytensor.graph.replace import graph_replace

from ..optimizer.base import build
from ..optimizer.registry import algorithm_names, lookup
from ..training.logs import live_status, quiet
from ..algorithms.second_order import FullBatchOptimizer
from .pymc_updates import halflife, updates  # noqa: F401 -- downhill.pymc.updates: an obj_optimizer for pm.fit

log = logging.getLogger('downhill')

#: Learning rates (step sizes in the unconstrained space) used by find_map when
#: none is given. ``None``: the algorithm's own default.
DEFAULT_LEARNING_RATES = {
    'adam': 0.1, 'adamax': 0.1, 'adamw': 0.1, 'nadam': 0.1, 'rmsprop': 0.01, 'adagrad': 0.5,
    'rprop': 0.01, 'esgd': 0.1, 'sgd': None, 'nag': None, 'adadelta': None,
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

    def __init__(self, model, start, vars, jacobian, monitors, seed):
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


def _mode(model, mode):
    """``mode`` with PyMC's rewrite of parameter checks, as PyMC compiles logp."""
    from pytensor.compile.mode import Mode, get_mode

    mode = get_mode(mode)
    check = 'local_check_parameter_to_ninf_switch' if model.check_bounds else 'local_remove_check_parameter'
    return Mode(linker=mode.linker, optimizer=mode.provided_optimizer.including(check))


#: find_map's patience (validations without improvement) for a loss without random draws.
PATIENCE = 5

#: find_map's patience for a mini-batch (``pm.Minibatch``) loss: each validation sees one random
#: batch, so a run of 5 unlucky batches is no sign of convergence. With 5, a logistic regression
#: on 200,000 rows in batches of 256 stopped after 460 updates, 3.1 posterior sd from the
#: full-batch MAP; with 50, after 4,540 updates (3.6 s), within 0.49 sd (docs/pymc.rst).
MINIBATCH_PATIENCE = 50


def find_map(model=None, algo='adam', start=None, vars=None, *, jacobian=False, include_transformed=True,
             return_monitors=False, monitors=(), monitor_gradients=False, max_updates=20000,
             patience=None, validate_every=10, min_improvement=0, anneal=3, anneal_factor=0.1,
             seed=None, progressbar=True, mode=None, **kwargs):
    """Find the maximum a posteriori (MAP) point of a PyMC model with a downhill algorithm.

    A drop-in alternative to :func:`pymc.find_MAP`: the negative log-posterior
    is minimized over the free continuous variables in PyMC's unconstrained
    space, from ``model.initial_point()`` (or ``start``), in stages of
    :meth:`downhill.Optimizer.iterate` with a falling learning rate (see
    :doc:`/pymc`, also for ``pm.Minibatch`` models), in ``pm.find_MAP``'s format.

    Parameters
    ----------
    model, vars : pymc.Model, list of random variables, optional
        The model (default: the enclosing ``with`` block's) and the variables
        to optimize (default: every free continuous one).
    algo : str
        A downhill algorithm (``'adam'``, the default; any other, full-batch
        ``'lbfgs'``, ``'bfgs'`` and ``'newton-cg'`` too; or a registered
        :class:`downhill.Optimizer` subclass), or a ``pm.find_MAP`` method that
        has a counterpart (:data:`FIND_MAP_METHODS`: ``'L-BFGS-B'`` is
        ``'lbfgs'``...; the log says so). The others are refused, naming the ones to use.
    start : dict, optional
        Starting values by name, as for ``pm.find_MAP`` (transformed ones under
        the value variable's name, e.g. ``sigma_log__``); the rest come from the
        model's initial point. Variables not optimized stay at these values.
    jacobian : bool
        Add the log-Jacobian of the transforms: ``False`` (as ``pm.find_MAP``) is the constrained
        mode, ``True`` the mode in the unconstrained space (which exists where the other is on a boundary).
    include_transformed, return_monitors : bool
        Also return the transformed values (``sigma_log__``), as ``pm.find_MAP``; return
        ``(point, history)``, the ``(train_monitors, valid_monitors)`` pair of every update.
    monitors, monitor_gradients : dict or sequence of (name, expression) pairs, bool
        Scalars computed at every update after ``'loss'`` (-logp): expressions of
        the model's variables or names of scalar ones; and ``grad(NAME)``, the
        squared gradient norm of each value variable.
    max_updates, patience, validate_every, min_improvement : int, int, int, float
        The budget of updates over all stages (20000), and when a stage stops
        (:meth:`downhill.Optimizer.iterate`): :data:`PATIENCE`
        (:data:`MINIBATCH_PATIENCE` when the model draws mini-batches), 10, 0.
    anneal, anneal_factor : int, float
        How many times the learning rate is multiplied by ``anneal_factor``:
        3 and 0.1 (0: one stage, as always for the full-batch methods).
    seed, progressbar : int or None, bool
        The seed of the initial point and of the ``pm.Minibatch`` draws; ``False``
        silences the ``downhill`` logger's progress during the call.
    mode : str or pytensor Mode, optional
        The compile mode (default: PyTensor's), with PyMC's rewrite of parameter checks to ``-inf``.
    **kwargs
        The algorithm's hyperparameters, as for :meth:`~downhill.Optimizer.iterate`
        (unknown ones are errors); unless given, ``learning_rate`` is from
        :data:`DEFAULT_LEARNING_RATES`, and RProp's ``rprop_increase=1.2, rprop_decrease=0.5``.

    Returns
    -------
    dict, or (dict, list)
        The MAP point by name, as ``pm.find_MAP``: every free random variable
        (constrained), its transformed value and every deterministic; with
        ``return_monitors=True`` also the history.

    Raises
    ------
    ImportError
        When PyMC is not installed.
    """
    model = _import_pymc().modelcontext(model)
    with _progress(progressbar):
        started = time.perf_counter()
        algo = _algorithm(algo)
        problem = _Problem(model, start, vars, jacobian, monitors, seed)
        opt = _optimizer(algo, problem, monitor_gradients, _mode(model, mode))
        _default_hyperparameters(type(opt).__name__.lower(), kwargs)
        if patience is None:
            patience = MINIBATCH_PATIENCE if problem.stochastic else PATIENCE
        history = _run_stages(opt, problem.params, problem.stochastic, kwargs, max_updates,
                              patience, validate_every, min_improvement, anneal, anneal_factor)
        point = problem.point(include_transformed, mode)
        _log_done(problem, history, started)
    return (point, history) if return_monitors else point


@contextlib.contextmanager
def _progress(progressbar):
    """``progressbar=False``: the ``downhill`` logger at WARNING for the call, then as it was."""
    quiet = not progressbar
    old_level = log.level
    if quiet:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        if quiet:
            log.setLevel(old_level)


def _optimizer(algo, problem, monitor_gradients, mode):
    """The optimizer of the model's -logp (refusing a full-batch method on mini-batches)."""
    _check_minibatch_algorithm(algo, problem)
    return build(algo, problem.loss, params=problem.params, inputs=[],
                 updates=problem.rng_updates, monitors=problem.monitors,
                 monitor_gradients=monitor_gradients, mode=mode)


def _default_hyperparameters(key, kwargs):
    """Fill in find_map's learning rate and other defaults for the algorithm ``key``, in place."""
    if kwargs.get('learning_rate') is None:
        kwargs.pop('learning_rate', None)
        if DEFAULT_LEARNING_RATES.get(key) is not None:
            kwargs['learning_rate'] = DEFAULT_LEARNING_RATES[key]
    for name, value in DEFAULT_HYPERS.get(key, {}).items():
        kwargs.setdefault(name, value)


def _log_done(problem, history, started):
    """One log line: the updates, the time and (without mini-batches) the best -logp."""
    if problem.stochastic:
        log.info('find_map: %d updates on mini-batches in %.2f s', len(history),
                 time.perf_counter() - started)
    else:
        log.info('find_map: %d updates in %.2f s, best -logp %.10g', len(history),
                 time.perf_counter() - started, min(v['loss'] for _, v in history))


#: ``pm.find_MAP``'s ``method`` names (SciPy's) that have a downhill algorithm, lower-cased.
FIND_MAP_METHODS = {'l-bfgs-b': 'lbfgs', 'bfgs': 'bfgs', 'newton-cg': 'newton-cg',
                    'trust-ncg': 'newton-cg'}

#: SciPy methods that ``pm.find_MAP`` accepts and downhill has no counterpart for.
_OTHER_SCIPY_METHODS = ('powell', 'nelder-mead', 'cg', 'tnc', 'slsqp', 'cobyla', 'cobyqa',
                        'trust-constr', 'dogleg', 'trust-exact', 'trust-krylov')


def _algorithm(algo):
    """``algo``, with a ``pm.find_MAP`` method name translated to downhill's (and said in the log)."""
    if not isinstance(algo, str):
        return algo
    name = algo.lower()
    if name in FIND_MAP_METHODS and FIND_MAP_METHODS[name] != name:
        log.info("find_map: pm.find_MAP's method %r is downhill's algo=%r", algo, FIND_MAP_METHODS[name])
        return FIND_MAP_METHODS[name]
    if name in _OTHER_SCIPY_METHODS:
        raise ValueError(f"algo={algo!r} is a method of pm.find_MAP (SciPy's) with no downhill "
                         f"counterpart; use one of downhill's algorithms ({', '.join(algorithm_names())}): "
                         "'lbfgs' for pm.find_MAP's default L-BFGS-B, 'adam' for a first-order fit")
    return algo


def _check_minibatch_algorithm(algo, problem):
    """Refuse a full-batch method on a model that draws mini-batches, naming both."""
    cls = lookup(algo)
    if problem.rng_updates and isinstance(cls, type) and issubclass(cls, FullBatchOptimizer):
        raise ValueError(f'algo={algo!r} is a full-batch method, whose line search needs the same '
                         'loss at every evaluation, but this model draws random mini-batches '
                         '(pm.Minibatch) or other random values; use a first-order algorithm '
                         "such as algo='adam'")


def _run_stages(opt, params, stochastic, kwargs, max_updates, patience, validate_every,
                min_improvement, anneal, anneal_factor):
    """Run ``opt`` in stages of falling learning rate; return every (train, valid) pair.

    A deterministic loss keeps the best parameters of each stage (what
    ``iterate`` restores). A stochastic (mini-batch) loss validates on a
    random mini-batch, so its "best" is mostly the luckiest batch: there each
    stage goes on from its last parameters instead, and the result is the
    average of the parameters over the last stage (Polyak-Ruppert averaging).
    """
    max_updates = int(max_updates)
    anneal = int(anneal)
    if max_updates < 1:
        raise ValueError(f'max_updates must be at least 1, got {max_updates}')
    if anneal < 0:
        raise ValueError(f'anneal must be >= 0, got {anneal}')
    if not 0 < anneal_factor <= 1:
        raise ValueError(f'anneal_factor must be in (0, 1], got {anneal_factor}')
    if isinstance(opt, FullBatchOptimizer):
        anneal = 0   # a line search or trust region sets its steps: no learning rate to lower
        validate_every = 1   # each iteration is a full pass: keep the best of every one
    history = []
    for stage in range(anneal + 1):
        left = max_updates - len(history)
        if left <= 0:
            break
        total, count = None, 0
        status = live_status()
        with quiet():  # each stage's validations would be hundreds of lines: one line per stage
            for pair in opt.iterate(None, None, max_updates=left, patience=patience,
                                    validate_every=validate_every, min_improvement=min_improvement,
                                    **kwargs):
                history.append(pair)
                if status is not None:
                    status(f'find_map stage {stage + 1}: update {len(history)} '
                           f'-logp {pair[0]["loss"]:.7g}')
                if stochastic:
                    values = [p.get_value() for p in params]
                    if total is None:
                        total = values
                    else:
                        for t, v in zip(total, values):
                            t += v
                    count += 1
        if status is not None:
            status.clear()
        best = opt.best_loss
        log.info('find_map: stage %d of at most %d: %d updates in all, best -logp %s', stage + 1,
                 anneal + 1, len(history), 'n/a' if best is None else f'{best:.7g}')
        if stochastic and count:
            last_stage = stage == anneal or len(history) >= max_updates
            opt.set_params([t / count for t in total] if last_stage else values)
        # a number or a schedule (its product with a number is a schedule)
        rate = kwargs.get('learning_rate')
        if rate is None:
            rate = opt._current('learning_rate')
        kwargs['learning_rate'] = rate * anneal_factor
    if len(history) >= max_updates:
        log.warning('find_map used its whole budget of max_updates=%d: the result may not have '
                    'converged (raise max_updates or the learning rate)', max_updates)
    return history
