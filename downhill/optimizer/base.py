"""The Optimizer base class: building, compiling and running an update step.

An algorithm (a subclass) only says how to turn one parameter's gradient into
a step, in :meth:`Optimizer._get_updates_for`. This class does everything
else: finding parameters and inputs, gradients and their clipping, momentum,
compiling, feeding data, monitoring, early stopping and logging.
"""

import collections
import collections.abc
import logging
import os
import time

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Constant, Variable
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.tensor.sharedvar import TensorSharedVariable

from ..backend import compile as compiling
from ..backend.fast_tanh import calls_libm_tanh
from ..core import graph, hyperparams, nonfinite, schedules, transforms
from ..training import checkpoint as checkpoints, feed, loop
from ..training.dataset import as_dataset
from ..training.feed import pass_runner
from ..training.loop import StopTraining  # noqa: F401 -- where algorithms import it from
from . import registry
from .registry import algorithm_names, algorithms, lookup  # noqa: F401 -- the public names, here too

log = logging.getLogger('downhill')

#: Keywords of the training loop; accepted (and ignored) by get_updates too.
LOOP_KEYWORDS = ('patience', 'validate_every', 'min_improvement', 'max_updates', 'batch_size',
                 'checkpoint', 'checkpoint_every')
#: Old names of ``max_gradient_elem``.
CLIP_SYNONYMS = ('max_gradient_clip', 'gradient_clip')

def build(algo, loss, params=None, inputs=None, updates=(), monitors=(),
          monitor_gradients=False, mode=None, constraints=None, quick_start=False,
          fast_tanh=True):
    """Construct an optimizer by name.

    Parameters
    ----------
    algo : str or Optimizer subclass
        The algorithm, by name (case-insensitive; ``-`` and ``_`` are
        ignored): ``'sgd'``, ``'nag'``, ``'rprop'``, ``'rmsprop'``,
        ``'adagrad'``, ``'adadelta'``, ``'esgd'``, ``'adam'`` (AMSGrad with
        ``amsgrad=True``), ``'adamw'``, ``'adamax'``, ``'nadam'``, the
        full-batch ``'lbfgs'``, ``'bfgs'`` and ``'newton-cg'``, or the
        lower-cased name of any other subclass of :class:`Optimizer`; or the
        subclass itself.
    loss : scalar PyTensor expression
        The loss to minimize.
    params : list of shared variables, optional
        What to optimize. Default: every float shared variable the loss
        depends on (except those that ``updates`` update).
    inputs : list of symbolic variables, optional
        The loss's data inputs, in the order batches give their arrays.
        Default: every non-shared, non-constant root of the loss (and
        monitors), in graph order; pass it explicitly when there are several.
    updates : sequence of (shared, expression) pairs or dict, optional
        Extra updates compiled into every training step (internal state of
        the loss).
    monitors : dict or sequence of (name, scalar expression) pairs, optional
        Values to compute at every step and validation, after ``'loss'``.
    monitor_gradients : bool, optional
        Add ``grad(NAME)``, the squared L2 norm of each parameter's gradient.
    mode : str or pytensor Mode, optional
        The compile mode of the training step and the evaluation function
        (default: PyTensor's configured mode, Numba on PyTensor 3), e.g.
        ``'NUMBA'``, ``'CVM'``, ``'JAX'`` or ``'FAST_COMPILE'``.
    constraints : dict, optional
        Maps a parameter to a projection or proximal operator (or a list of
        them, applied in order) from :mod:`downhill.prox`, or any callable
        ``(new_value, step_size) -> expression``, applied to the parameter's
        new value inside every update. With regularizers (``prox.l1``...),
        the ``'loss'`` monitor is the composite objective; see
        :mod:`downhill.prox`.
    quick_start : bool, optional
        When ``mode`` compiles code (Numba, C, JAX), run the first
        :data:`downhill.compile.QUICK_UPDATES` (50) updates through a
        Python-linker version of each function while the final one compiles
        in a background thread; the next update waits for it if it is not
        ready yet (default False: compile before the first update). The
        switch falls on that update whatever the compiler's speed, so a run
        repeats bit for bit either way, but the two versions round
        differently: a quick-start run and a ``quick_start=False`` run differ
        in the last bits. Parameters over 4 MiB never get a quick start
        (:func:`downhill.compile.quick_start_fits`). See :mod:`downhill.compile`.
    fast_tanh : bool, optional
        Compute every float32 ``tanh`` with :func:`downhill.fast_tanh.rational_tanh`
        (default True): a rational function evaluated in float64, correctly
        rounded for all but 2 in a million inputs, several times faster than the
        scalar C-library call PyTensor's Numba and C backends make, which is
        off by up to 2 ulp; and every float64 ``tanh`` with
        :func:`downhill.fast_tanh.exp_tanh` (a rational function or one ``exp``,
        3x faster, within 1.34 ulp where PyTensor's is off by up to 2.09).
        False keeps PyTensor's ``tanh``; the JAX, PyTorch and MLX modes are
        never changed.

    Returns
    -------
    Optimizer
    """
    return Optimizer.build(algo, loss, params=params, inputs=inputs, updates=updates,
                           monitors=monitors, monitor_gradients=monitor_gradients, mode=mode,
                           constraints=constraints, quick_start=quick_start, fast_tanh=fast_tanh)


class Optimizer:
    """Computes updates that iteratively minimize a loss, and runs them.

    Subclasses implement :meth:`_get_updates_for` and, for their own
    hyperparameters, :meth:`_prepare`. A subclass is registered under its
    lower-cased class name, so ``build('myalgo', ...)`` finds
    ``class MyAlgo(downhill.Optimizer)``.

    Parameters are those of :func:`downhill.build`.
    """

    #: The Python attributes (set in ``_prepare``) that change the shape of the
    #: update graph. A compiled step is reused when these (and the structural
    #: choices of the base class) are unchanged; numeric hyperparameters live in
    #: shared variables and never force a recompile. ``None`` (the default for
    #: user subclasses, whose ``_prepare`` may bake anything into the graph)
    #: means: compile anew on every call.
    _graph_attrs = None

    def __init_subclass__(cls, abstract=False, **kwargs):
        """Register the subclass by name; ``class X(Optimizer, abstract=True)`` for a base of others."""
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        old = registry.registered(cls.__name__)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            log.warning('algorithm %r: %s.%s replaces %s.%s', registry.key(cls.__name__),
                        cls.__module__, cls.__qualname__, old.__module__, old.__qualname__)
        registry.register(cls)

    @staticmethod
    def build(algo, loss, params=None, inputs=None, updates=(), monitors=(),
              monitor_gradients=False, mode=None, constraints=None, quick_start=False,
              fast_tanh=True):
        """Construct an optimizer by name; see :func:`downhill.build`."""
        cls = registry.lookup(algo)
        return cls(loss, params=params, inputs=inputs, updates=updates, monitors=monitors,
                   monitor_gradients=monitor_gradients, mode=mode, constraints=constraints,
                   quick_start=quick_start, fast_tanh=fast_tanh)

    def __init__(self, loss, params=None, inputs=None, updates=(), monitors=(),
                 monitor_gradients=False, mode=None, constraints=None, quick_start=False,
                 fast_tanh=True):
        graph.check_loss(loss)
        self._loss = loss
        self._mode = compiling.check_mode(mode)
        quick_start = hyperparams.flag('quick_start', quick_start)  # checked before any work
        self._fast_tanh = hyperparams.flag('fast_tanh', fast_tanh) and calls_libm_tanh(mode)
        self._updates = self._check_updates(updates)
        self._params = self._check_params(loss, params, [v for v, _ in self._updates])
        self._quick_start = (quick_start and not compiling.is_quick(mode)
                             and compiling.quick_start_fits(self._params))
        self._monitor_names, monitor_exprs = self._check_monitors(monitors)
        self._monitor_exprs = [loss] + monitor_exprs
        self._inputs = self._check_inputs(inputs, self._monitor_exprs)
        self._grads = pytensor.grad(loss, self._params)
        self._raw_grads = dict(zip(self._params, self._grads))
        if monitor_gradients:
            unnamed = 0
            for param, grad in zip(self._params, self._grads):
                name = param.name
                if not name:
                    name = f'unnamed{unnamed}'
                    unnamed += 1
                    log.info('parameter %s has no name; its gradient monitor is grad(%s)', param, name)
                self._monitor_names.append(f'grad({name})')
                self._monitor_exprs.append(pt.sqr(grad).sum())
        self._constraints = self._check_constraints(constraints)
        self._add_regularizer_monitors()
        self._hypers = {}           # name -> float64 shared scalar
        self._states = {}           # (param, name) -> shared state variable
        self._state_inits = {}      # (param, name) -> initial fill value (or callable)
        self._hyper_exprs = {}      # name -> symbolic value of a scheduled hyperparameter
        self._schedules = {}        # name -> the Schedule it follows
        self._validation_hooks = []  # host-side parts of schedules (reduce_on_plateau)
        self._step_sizes = {}       # param -> per-element step size of the last update built
        #: Updates made so far: every training step adds 1. Schedules read it.
        #: Algorithm state (key ``(None, 'update_count')``): ``reset=True`` zeroes it.
        self.update_count = pytensor.shared(np.int64(0), name='update_count')
        self._states[(None, 'update_count')] = self.update_count
        self._state_inits[(None, 'update_count')] = 0
        self._step_fns = {}         # graph key -> compiled training step
        self._eval_fn = None
        self._best_params = [p.get_value() for p in self._params]
        self.on_nonfinite = 'stop'
        self._loop_state = None     # the counters of the latest run of the loop (for save())
        self._resume = None         # a checkpoint loaded by load(), for the next iterate()
        self._prepare()

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _check_updates(updates):
        pairs = list(updates.items()) if isinstance(updates, dict) else list(updates or ())
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise TypeError(f'updates[{i}] must be a (shared variable, expression) pair, got {pair!r}')
            if not isinstance(pair[0], SharedVariable):
                raise TypeError(f'updates[{i}]: {pair[0]!r} is not a shared variable')
        return [tuple(p) for p in pairs]

    @staticmethod
    def _check_params(loss, params, updated):
        if params is None:
            params = graph.find_params(loss, exclude=updated)
            if not params:
                raise ValueError(
                    'the loss depends on no float shared variables to optimize; create the '
                    'parameters with pytensor.shared(...) or pass params=[...]')
            return params
        if isinstance(params, Variable):
            params = [params]
        if not isinstance(params, collections.abc.Iterable) or isinstance(params, (str, bytes)):
            raise TypeError(f'params must be a shared variable or a list of them, got '
                            f'{hyperparams.shown(params)}')
        params = list(params)
        if not params:
            raise ValueError('params is empty: there is nothing to optimize')
        roots = set(graph._compat.graph_inputs([loss]))
        for i, p in enumerate(params):
            if not isinstance(p, TensorSharedVariable):
                raise TypeError(
                    f'params[{i}] ({graph.describe(p)}) is a {type(p).__name__}, not a shared '
                    'variable; parameters must be created with pytensor.shared(...)')
            if not str(p.dtype).startswith('float'):
                raise TypeError(f'params[{i}] ({graph.describe(p)}) has dtype {p.dtype}; '
                                'only float32/float64 parameters can be optimized')
            if p not in roots:
                raise ValueError(f'params[{i}] ({graph.describe(p)}) does not affect the loss, '
                                 'so it has no gradient')
            if any(p is q for q in params[:i]):
                raise ValueError(f'params[{i}] ({graph.describe(p)}) is listed twice')
        return params

    @staticmethod
    def _check_monitors(monitors):
        pairs = list(monitors.items()) if isinstance(monitors, dict) else list(monitors or ())
        names, exprs = ['loss'], []
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise TypeError(f'monitors[{i}] must be a (name, expression) pair, got {pair!r}')
            name, expr = pair
            if not isinstance(name, str):
                raise TypeError(f'monitors[{i}]: the name must be a str, got {name!r}')
            if name in names:
                raise ValueError(f'monitor name {name!r} is used twice')
            if isinstance(expr, (int, float, np.number)):
                expr = pt.constant(expr)
            if not isinstance(expr, Variable) or getattr(expr.type, 'ndim', None) != 0:
                raise ValueError(f'monitor {name!r} must be a scalar expression, got {expr!r}')
            names.append(name)
            exprs.append(expr)
        return names, exprs

    @staticmethod
    def _check_inputs(inputs, outputs):
        found = []
        for expr in outputs:
            for var in graph.find_inputs(expr):
                if var not in found:
                    found.append(var)
        if inputs is None:
            found = graph.creation_order(found)
            if len(found) > 1:
                log.info('inputs found in the graph, in the order they were created: %s (pass '
                         'inputs=[...] to choose the order in which batches give their arrays)',
                         ', '.join(graph.describe(v) for v in found))
            return found
        if isinstance(inputs, Variable):
            inputs = [inputs]
        inputs = list(inputs)
        for i, var in enumerate(inputs):
            if not isinstance(var, Variable) or isinstance(var, (SharedVariable, Constant)):
                raise TypeError(f'inputs[{i}] must be a symbolic input variable (e.g. pt.matrix()), '
                                f'got {type(var).__name__} {var!r}')
        missing = [v for v in found if v not in inputs]
        if missing:
            raise ValueError(f'the loss or monitors need inputs that are not in inputs=: '
                             f'{", ".join(graph.describe(v) for v in missing)}')
        return inputs

    def _check_constraints(self, constraints):
        """``{param: [op, ...]}`` from the ``constraints=`` mapping, checked."""
        if constraints is None:
            return {}
        import collections.abc
        if not isinstance(constraints, collections.abc.Mapping):
            raise TypeError('constraints must be a dict mapping parameters to operators from '
                            f'downhill.prox (or lists of them), got {type(constraints).__name__}')
        names = ', '.join(graph.describe(p) for p in self._params)
        out = {}
        for key, ops in constraints.items():
            if not any(key is p for p in self._params):
                what = graph.describe(key) if isinstance(key, Variable) else repr(key)
                raise ValueError(f'constraints: {what} is not one of the parameters being '
                                 f'optimized ({names})')
            ops = [ops] if callable(ops) else ops
            if not isinstance(ops, (list, tuple)):
                raise TypeError(f'constraints[{graph.describe(key)}] must be an operator from '
                                f'downhill.prox, a callable or a list of them, got {ops!r}')
            for i, op in enumerate(ops):
                if not callable(op):
                    raise TypeError(f'constraints[{graph.describe(key)}][{i}] is {op!r}, not a '
                                    'callable (new_value, step_size) -> expression')
            if ops:
                out[key] = list(ops)
        return out

    def _add_regularizer_monitors(self):
        """Make ``'loss'`` the composite objective when constraints carry regularizers.

        Adds ``'raw_loss'`` (the loss itself) and one monitor per regularizer
        (``'l1(w)'``) after the others; validation then compares loss +
        regularizers.
        """
        names, values = [], []
        for param, ops in self._constraints.items():
            for op in ops:
                penalty = getattr(op, 'penalty', None)
                value = penalty(param) if callable(penalty) else None
                if value is None:
                    continue
                if not isinstance(value, Variable) or getattr(value.type, 'ndim', None) != 0:
                    raise ValueError(f'the penalty of constraint {op!r} on {graph.describe(param)} '
                                     f'must be a scalar expression, got {value!r}')
                label = getattr(op, 'name', None) or type(op).__name__
                names.append(f'{label}({param.name or graph.describe(param)})')
                values.append(value)
        if not values:
            return
        names = ['raw_loss'] + names
        for name in names:
            if name in self._monitor_names or names.count(name) > 1:
                raise ValueError(f'monitor name {name!r} is used twice (the composite loss of '
                                 'proximal regularizers adds it)')
        total = self._loss
        for value in values:
            total = total + value
        self._monitor_names.extend(names)
        self._monitor_exprs[0] = total
        self._monitor_exprs.extend([self._loss] + values)

    # --------------------------------------------------------- hyperparameters

    def _valid_keywords(self):
        import inspect
        names = set(LOOP_KEYWORDS) | set(CLIP_SYNONYMS) | {'reset'}
        for klass in type(self).__mro__:
            prepare = klass.__dict__.get('_prepare')
            if prepare is not None:
                for p in inspect.signature(prepare).parameters.values():
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != 'self':
                        names.add(p.name)
        return names

    def _set_hyper(self, name, value, attr=True):
        """Hold a numeric hyperparameter in a float64 shared scalar named ``name``.

        The compiled step reads the shared value, so changing it never
        recompiles; each parameter sees it cast to its own dtype. With
        ``attr`` (the default) it is also the attribute ``name``.
        """
        var = self._hypers.get(name)
        if var is None:
            var = self._hypers[name] = pytensor.shared(np.float64(value), name=name)
        else:
            var.set_value(np.float64(value))
        if attr:
            setattr(self, name, var)
        return var

    def _hyper(self, name, param):
        """The hyperparameter ``name`` (a number or a schedule's value) as a scalar of ``param``'s dtype."""
        value = self._hyper_exprs.get(name)
        if value is None:
            value = self._hypers[name]
        return transforms.as_dtype(value, param.dtype)

    def _set_schedulable(self, name, value, label):
        """A hyperparameter given as a number or a :class:`~downhill.schedules.Schedule`.

        A number is held by :meth:`_set_hyper`. A schedule's numbers are held
        in shared scalars ``name.NUMBER`` and its value is an expression of
        :attr:`update_count`. Returns the shared variable or the expression.
        """
        if isinstance(value, schedules.Schedule):
            shared = {k: self._set_hyper(f'{name}.{k}', v, attr=False)
                      for k, v in value.numbers().items()}
            value._bind(self, label, shared)
            expr = pt.cast(value.symbolic(pt.cast(self.update_count, 'float64'), shared), 'float64')
            self._hyper_exprs[name] = expr
            self._schedules[name] = value
            self._validation_hooks.extend(value.observers())
            return expr
        self._hyper_exprs.pop(name, None)
        self._schedules.pop(name, None)
        return self._set_hyper(name, hyperparams.number(label, value, low=0, finite=True), attr=False)

    def _current(self, name):
        """The value of hyperparameter ``name`` that the next update will use, as a float."""
        expr = self._hyper_exprs.get(name)
        if expr is None:
            return float(self._hypers[name].get_value())
        return float(pytensor.function([], expr, mode='FAST_COMPILE')())

    def _uses_momentum(self):
        return '_momentum' in self._schedules or self.momentum != 0

    def _prepare(self, learning_rate=1e-4, momentum=0, nesterov=False,
                 max_gradient_norm=0, max_gradient_elem=0, weight_decay=0, **unknown):
        """Set the hyperparameters common to every algorithm.

        Subclasses read their own keywords in their own ``_prepare`` and pass
        the rest on; whatever reaches this method unread is an error.
        ``learning_rate`` and ``momentum`` may be schedules
        (:mod:`downhill.schedules`); then the attribute is an expression
        (``opt.learning_rate.eval()`` is the value the next update uses).
        """
        for old in CLIP_SYNONYMS:
            if old in unknown:
                # checked under the name the caller wrote, then used as max_gradient_elem
                value = hyperparams.number(old, unknown.pop(old), low=0)
                if not max_gradient_elem:
                    max_gradient_elem = value
        hyperparams.reject_unknown(f'{type(self).__name__}', unknown, self._valid_keywords())
        self._validation_hooks = []
        self.learning_rate = self._set_schedulable('learning_rate', learning_rate, 'learning_rate')
        if isinstance(momentum, schedules.Schedule):
            self.momentum = self._set_schedulable('_momentum', momentum, 'momentum')
        else:
            self.momentum = hyperparams.number('momentum', momentum, low=0, finite=True)
            hyperparams.warn_if(self.momentum >= 1, 'momentum=%s >= 1 makes the velocity grow '
                                'without bound', self.momentum)
            self._set_schedulable('_momentum', self.momentum, 'momentum')
        self.nesterov = hyperparams.flag('nesterov', nesterov)
        self.max_gradient_norm = hyperparams.number('max_gradient_norm', max_gradient_norm, low=0)
        self.max_gradient_elem = hyperparams.number('max_gradient_elem', max_gradient_elem, low=0)
        self._set_hyper('_max_gradient_norm', self.max_gradient_norm)
        self._set_hyper('_max_gradient_elem', self.max_gradient_elem)
        self.weight_decay = hyperparams.number('weight_decay', weight_decay, low=0, finite=True)
        self._set_hyper('_weight_decay', self.weight_decay)

    def _graph_key(self):
        """What the shape of the update graph depends on (see ``_graph_attrs``)."""
        if self._graph_attrs is None:
            return object()  # never equal to another: always compile anew
        return (self._uses_momentum(), self.nesterov, self.max_gradient_elem > 0,
                self.max_gradient_norm > 0, self.weight_decay > 0,
                tuple(sorted((k, s.structure()) for k, s in self._schedules.items())),
                tuple(getattr(self, a) for a in self._graph_attrs))

    # ------------------------------------------------------------------- state

    def _state(self, param, name, init=0.0, shape=None):
        """A shared variable of algorithm state for ``param``, created once.

        Its value starts as (and :meth:`reset_state` sets it to) ``init``, a
        number or a callable returning one, broadcast to ``param``'s shape (or
        ``shape``). The same variable is returned on every call, so state
        carries over between calls of :meth:`iterate`.
        """
        key = (param, name)
        var = self._states.get(key)
        if var is None:
            if shape is None:
                shape = param.get_value(borrow=True).shape
                static = param.type.shape
            else:
                static = tuple(shape)
            value = np.full(shape, init() if callable(init) else init, dtype=param.dtype)
            var = pytensor.shared(value, name=f'{param.name or "param"}.{name}', shape=static)
            self._states[key] = var
        # (a variable made by load() learns its algorithm's start value here, for reset_state)
        self._state_inits[key] = init
        return var

    def _host_state(self):
        """Algorithm state kept in Python rather than in shared variables, for checkpoints.

        A dict of name -> NumPy array (numbers, no objects), empty by default.
        An algorithm that keeps state on the host (a quasi-Newton history, say)
        returns it here and takes it back in :meth:`_restore_host_state`, so
        that a resumed run continues exactly.
        """
        return {}

    def _restore_host_state(self, arrays):
        """Take back what :meth:`_host_state` returned (read from a checkpoint)."""

    def reset_state(self):
        """Set every piece of algorithm state (moments, velocities, counters) to its start."""
        for key, var in self._states.items():
            init = self._state_inits[key]
            old = var.get_value(borrow=True)
            var.set_value(np.full(old.shape, init() if callable(init) else init, dtype=old.dtype))

    # ----------------------------------------------------------------- updates

    def _differentiate(self):
        """Each parameter with its gradient, clipped or rescaled as configured."""
        for param, grad in zip(self._params, self._grads):
            if self.max_gradient_elem > 0:
                grad = transforms.clip_gradient_elements(grad, self._hyper('_max_gradient_elem', param))
            elif self.max_gradient_norm > 0:
                grad = transforms.rescale_gradient_norm(grad, self._hyper('_max_gradient_norm', param))
            if self.weight_decay > 0 and not getattr(self, '_decoupled_weight_decay', False):
                grad = transforms.add_weight_decay(grad, param, self._hyper('_weight_decay', param))
            yield param, grad

    def get_updates(self, **kwargs):
        """The (shared variable, expression) pairs of one optimization step.

        Keyword arguments set hyperparameters, as for :meth:`iterate`. The
        pairs can be compiled into any function, e.g.
        ``pytensor.function([x], loss, updates=opt.get_updates(learning_rate=0.1))``.

        Numeric hyperparameters are read from shared variables held by this
        optimizer: a later call that changes them changes them for every
        function compiled from this optimizer's updates.

        The pairs include the constraints given to :func:`downhill.build`
        and the increment of :attr:`update_count` (which schedules read), so
        a function compiled from them behaves like a step of
        :meth:`iterate`. With a constraint and momentum, whatever the
        constraint changes in the parameter is also added to the stored
        velocity: with classical momentum the velocity is then the actual
        move :math:`p_{t+1} - p_t` (projected heavy-ball), so it never
        accumulates motion that the constraint undoes.

        With ``on_nonfinite='skip'`` every pair is guarded as in
        :meth:`iterate` (see :mod:`downhill.nonfinite`): a step with a
        non-finite loss or gradient changes nothing.

        Returns
        -------
        list of (shared variable, expression) pairs
        """
        for name in LOOP_KEYWORDS:
            kwargs.pop(name, None)
        kwargs.pop('reset', None)
        settings = self._settings()
        try:
            policy = hyperparams.choice('on_nonfinite', kwargs.pop('on_nonfinite', 'stop'),
                                        nonfinite.POLICIES)
            self._prepare(**kwargs)
            pairs = self._build_updates()
        except BaseException:
            self._restore_settings(settings)
            raise
        return self._guard(pairs) if policy == 'skip' else pairs

    def _build_updates(self):
        pairs = []
        self._step_sizes = {}
        for param, grad in self._differentiate():
            # run the algorithm's generator to the end first: it records the step size
            for var, expr in list(self._get_updates_for(param, grad)):
                if var is not param:
                    pairs.append((var, _as_type(expr, var)))
                    continue
                step = _as_type(expr, param)
                if not self._uses_momentum():
                    pairs.append((param, self._constrain(param, param - step)))
                    continue
                velocity = self._state(param, 'velocity')
                rule = transforms.nesterov_step if self.nesterov else transforms.momentum_step
                new_velocity, new_param = rule(param, step, velocity, self._hyper('_momentum', param))
                if param in self._constraints:
                    constrained = self._constrain(param, new_param)
                    new_velocity = new_velocity + (constrained - new_param)
                    new_param = constrained
                pairs.append((velocity, new_velocity))
                pairs.append((param, new_param))
        pairs.extend(self._finish_updates())
        pairs.append((self.update_count, self.update_count + 1))
        return pairs

    def _set_step_size(self, param, size):
        """Record the per-element step size of ``param``'s update, for proximal operators.

        An algorithm whose step is :math:`s = D \\odot d` for a search
        direction :math:`d` (the gradient or its running mean) and a positive
        diagonal preconditioner :math:`D` (the learning rate included) calls
        this with :math:`D`, an expression in the new state, from
        :meth:`_get_updates_for`. The default is the learning rate.
        """
        self._step_sizes[param] = size

    def _step_size(self, param):
        size = self._step_sizes.get(param)
        return self._hyper('learning_rate', param) if size is None else _as_type(size, param)

    def _project_start(self):
        """Put each constrained parameter on its constraints before the first validation.

        So that the best parameters a run keeps (the start, if no update
        improves on it) are feasible. Each constraint is applied with a step
        size of 0: projections project, proximal operators of regularizers
        (``prox.l1``...) leave the value as it is.
        """
        if not self._constraints:
            return
        params = list(self._constraints)
        project = getattr(self, '_projection', None)
        if project is None:  # compiled once: a later call of iterate() compiles nothing
            zero = {p: pt.as_tensor_variable(np.zeros((), dtype=p.dtype)) for p in params}
            projected = []
            for param in params:
                value = param
                for op in self._constraints[param]:
                    value = _as_type(op(value, zero[param]), param)
                projected.append(value)
            project = self._projection = pytensor.function([], projected, mode='FAST_COMPILE',
                                                           name='projection')
        values = project()
        for param, value in zip(params, values):
            old = param.get_value(borrow=True)
            if not np.array_equal(old, value):
                log.info('%s: the start of %s is not on its constraints; projected onto them '
                         '(largest change %.3g)', type(self).__name__, graph.describe(param),
                         float(np.max(np.abs(np.asarray(old, dtype=float) - value))))
                _assign(param, value)

    def _constrain(self, param, value):
        """``value`` (the parameter's new value) after the constraints on ``param``."""
        ops = self._constraints.get(param)
        if not ops:
            return value
        size = self._step_size(param)
        for op in ops:
            out = op(value, size)
            if not isinstance(out, Variable):
                out = pt.as_tensor_variable(out)
            if getattr(out.type, 'ndim', None) != param.type.ndim:
                raise ValueError(f'constraint {op!r} on {graph.describe(param)} returned an '
                                 f'expression with {getattr(out.type, "ndim", "?")} dimensions; '
                                 f'the parameter has {param.type.ndim}')
            value = param.type.filter_variable(_as_type(out, param), allow_convert=True)
        return value

    def _get_updates_for(self, param, grad):
        """Yield the update pairs for one parameter.

        For ``var is param`` the expression is the step ``s`` (the library
        subtracts it, applying momentum if set); for any other variable (the
        algorithm's own state, usually made with :meth:`_state`) it is that
        variable's new value.
        """
        raise NotImplementedError(f'{type(self).__name__} must implement _get_updates_for(param, grad)')

    def _finish_updates(self):
        """Updates that belong to no single parameter (none by default)."""
        return ()

    # --------------------------------------------------------------- compiling

    def _function(self, updates, name):
        """Compile ``self._inputs`` -> monitors with ``updates``, as :mod:`downhill.compile` decides.

        Every explicit input reaches the function through :func:`downhill.training.feed.feeder`
        (exact dtype, ndim and static shape), so for dense tensor inputs
        PyTensor's own per-call validation, which also walks every
        shared-variable container, is skipped (``trust_input``, lean call).
        """
        rngs = graph.random_updates(self._monitor_exprs + [e for _, e in updates],
                                    already=[v for v, _ in updates])
        inputs, outputs, updates = list(self._inputs), list(self._monitor_exprs), updates + rngs

        def make(mode):
            mode, outs, news = compiling.prepare(mode, self._fast_tanh, outputs, [e for _, e in updates])
            return pytensor.function(inputs, outs, updates=list(zip([v for v, _ in updates], news)),
                                     mode=mode, on_unused_input='ignore', name=name)
        lean = all(type(v.type).__name__ == 'TensorType' for v in inputs)
        return compiling.compile_function(make, self._mode, len(inputs), lean, self._quick_start, name)

    def _guard(self, pairs):
        """``pairs`` applied only when the loss, gradients and new parameters are finite."""
        counter = self._states.get(nonfinite.SKIPPED)
        if counter is None:
            counter = self._states[nonfinite.SKIPPED] = nonfinite.make_counter()
            self._state_inits[nonfinite.SKIPPED] = 0
        return nonfinite.guard(pairs, self._loss, self._grads, self._params, counter)

    def _compiled_step(self):
        skip = self.on_nonfinite == 'skip'
        key = (self._graph_key(), skip)
        fn = self._step_fns.get(key)
        if fn is None:
            compiling.keep_freed_memory()
            started = time.perf_counter()
            updates = list(self._updates) + self._build_updates()
            fn = self._function(self._guard(updates) if skip else updates, type(self).__name__)
            log.debug('compiled %s step in %.2f s', type(self).__name__, time.perf_counter() - started)
            if self._graph_attrs is not None:
                self._step_fns[key] = fn
        return fn

    def _compiled_eval(self):
        if self._eval_fn is None:
            fn = self._eval_fn = self._function([], 'evaluation')
            # the step's final version is needed first: compile this one after it
            steps = [s for s in self._step_fns.values() if isinstance(s, compiling.Background)]
            if isinstance(fn, compiling.Background) and steps:
                fn.follow(steps[-1])
        return self._eval_fn

    @property
    def best_loss(self):
        """The best validation loss of the current or last :meth:`iterate` run (None before one).

        It counts the validation after the last update too, so it is the loss
        of the parameters a finished run leaves in place.
        """
        state = getattr(self, '_loop_state', None)
        return None if state is None else state.best_loss

    def wait_compiled(self, timeout=None):
        """Block until the steps compiling in the background are ready.

        With ``quick_start`` (see :func:`downhill.build`) the first updates run
        through a quickly compiled version of the step while the final one
        compiles in a background thread; this waits for it (at most
        ``timeout`` seconds in all) and re-raises an error the compilation
        raised. Returns whether everything is compiled.
        """
        deadline = None if timeout is None else time.perf_counter() + timeout
        done = True
        for fn in list(self._step_fns.values()) + [self._eval_fn]:
            if isinstance(fn, compiling.Background):
                left = None if deadline is None else max(0.0, deadline - time.perf_counter())
                done = fn.wait(left) is not None and done
        return done

    # -------------------------------------------------------------------- data

    def _feeder(self, where):
        """A function that checks and converts one batch of ``where`` for the compiled functions."""
        return feed.feeder(self._inputs, self._monitor_exprs, where)

    # ------------------------------------------------------------------ params

    def set_params(self, targets='best'):
        """Set the parameters' values.

        Parameters
        ----------
        targets : 'best' or sequence of arrays
            ``'best'`` (or None): the best parameters found so far (restored
            automatically at the end of :meth:`iterate`). Otherwise one array
            per parameter, in the order of the optimizer's parameters.
        """
        if targets is None or (isinstance(targets, str) and targets == 'best'):
            targets = self._best_params
        elif isinstance(targets, str):
            raise ValueError(f"targets must be 'best' or a list of arrays, got {targets!r}")
        targets = list(targets)
        if len(targets) != len(self._params):
            raise ValueError(f'set_params got {len(targets)} arrays for {len(self._params)} parameters')
        values = []
        for i, (param, target) in enumerate(zip(self._params, targets)):
            old = param.get_value(borrow=True)
            value = np.asarray(target)
            if value.dtype.kind not in 'biuf':
                raise TypeError(f'set_params: array {i} has dtype {value.dtype}, but parameter '
                                f'{graph.describe(param)} holds numbers ({old.dtype})')
            if value.shape != old.shape:
                raise ValueError(f'set_params: array {i} has shape {value.shape}, but parameter '
                                 f'{graph.describe(param)} has shape {old.shape}')
            values.append(value)
        for param, value in zip(self._params, values):
            _assign(param, value)

    def _snapshot(self):
        """The current parameters copied into the arrays of :attr:`_best_params`.

        Those arrays belong to the optimizer, so they are overwritten in place
        (no new parameter-sized allocation per improved validation); a copy is
        needed because compiled updates overwrite the borrowed buffers in place.
        An interrupt while copying finishes the copy first, so the best
        parameters are never a mix of two validations.
        """
        best = list(getattr(self, '_best_params', None) or ())[:len(self._params)]
        try:
            _copy_values(self._params, best)
        except KeyboardInterrupt:
            _copy_values(self._params, best)
            raise
        return best

    # ------------------------------------------------------------- checkpoints

    def save(self, path):
        """Write a checkpoint: everything needed to continue this optimization exactly.

        The file (see :mod:`downhill.checkpoint`) holds the parameters, the
        best parameters, every piece of algorithm state, the random
        generators' states, the hyperparameters, and, once :meth:`iterate`
        has run, the loop's counters and the position and shuffling state of
        its datasets. It is written atomically: a crash while writing leaves
        the previous file whole. Called between two iterations of
        :meth:`iterate`, it captures that point exactly; called after the
        loop has returned, the parameters are the restored best ones.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (any name; ``.npz`` is conventional).

        Returns
        -------
        str
            ``path``.
        """
        return checkpoints.save(self, _checkpoint_path(path), self._loop_state)

    def load(self, path):
        """Continue from the checkpoint at ``path`` (written by :meth:`save` or ``iterate``).

        Sets the parameters, best parameters, algorithm state and random
        generators now; the next :meth:`iterate` continues the loop's
        counters (iterations, validations, patience, the ``max_updates``
        budget) and puts its datasets where they were.

        Parameters
        ----------
        path : str or os.PathLike
            A checkpoint of an optimizer of the same algorithm built from the
            same loss.

        Raises
        ------
        ValueError
            When the file is truncated, corrupted or newer than this
            version reads, or does not fit this optimizer: the message names
            the part that differs (algorithm, a parameter's name, shape or
            dtype, a state entry). Nothing is changed then.
        """
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f'path must be a file path (str or os.PathLike), got {path!r}')
        ck = checkpoints.read(os.fsdecode(path))  # a read-only folder is fine to load from
        checkpoints.check(self, ck)
        checkpoints.restore(self, ck)
        self._resume = ck
        log.info('loaded checkpoint %s (iteration %d)', ck.path, ck.loop.iteration)

    # -------------------------------------------------------------- evaluating

    def evaluate(self, dataset):
        """Average each monitor over the batches of ``dataset`` at the current parameters.

        Parameters
        ----------
        dataset : Dataset, list of arrays, list of batches, callable or None
            Any form accepted by :meth:`iterate`.

        Returns
        -------
        collections.OrderedDict
            ``'loss'`` first, then the monitors, as Python floats.
        """
        data = as_dataset(dataset, 'valid')
        return pass_runner(self._compiled_eval(), self._feeder(data.name), data, self._monitor_names)()

    # ---------------------------------------------------------------- the loop

    def iterate(self, train=None, valid=None, max_updates=None, patience=5, validate_every=10,
                min_improvement=0, batch_size=32, reset=False, checkpoint=None,
                checkpoint_every=None, on_nonfinite='stop', **kwargs):
        """Optimize, yielding monitors after each iteration (one pass over ``train``).

        Parameters
        ----------
        train : Dataset, list of arrays, list of batches, callable, iterable or None
            Training data. A list of arrays becomes a :class:`Dataset` of
            ``batch_size`` rows; a list of lists is used as the batches, in
            order; ``None`` means the loss has no inputs (one update per
            iteration).
        valid : same forms as ``train``, optional
            Validation data (default: ``train``).
        max_updates : int, optional
            Stop after this many iterations (counted from the start of the
            run: a resumed run continues the count). When the last update
            came after the last validation, its parameters are validated too
            and kept if they are the best.
        patience : int
            Stop when more than this many validations in a row failed to
            improve. Default 5.
        validate_every : int
            Iterations between validations (one also runs before the first
            update). Default 10.
        min_improvement : float
            A validation improves when ``best - loss > best * min_improvement``.
        batch_size : int
            Rows per batch when ``train``/``valid`` are raw arrays.
        reset : bool
            Reset algorithm state (moments, velocities, counters) first;
            otherwise it carries over from the previous call.
        checkpoint : str or os.PathLike, optional
            A checkpoint file (see :meth:`save`). If it exists, the run
            resumes from it (parameters, state, counters, dataset positions);
            it is written every ``checkpoint_every`` iterations and when the
            loop stops. A Ctrl-C or SIGTERM, whenever it comes, stops the
            loop at the end of the current iteration (the final checkpoint
            is of that iteration); a second one stops at once, and the file
            keeps the last iteration written. When the loop stops because
            the parameters are no longer finite, the last good file is kept.
        checkpoint_every : int, optional
            Iterations between checkpoints (default: ``validate_every``).
        on_nonfinite : {'stop', 'skip'}
            When the loss, a monitor or a gradient becomes NaN or infinite:
            ``'stop'`` (default) stops, logs where, and restores the best
            parameters; ``'skip'`` makes the compiled step discard any update
            whose loss, gradients or new parameters are not finite, counts
            and logs them, and continues. See :mod:`downhill.nonfinite`.
        **kwargs
            Hyperparameters: ``learning_rate``, ``momentum``, ``nesterov``,
            ``max_gradient_norm``, ``max_gradient_elem`` and the algorithm's
            own. An unknown keyword is an error.

        Yields
        ------
        (train_monitors, valid_monitors) : pair of OrderedDict
            The training monitors averaged over this iteration's batches, and
            those of the latest validation.

        Raises
        ------
        TypeError, ValueError
            For a bad argument, before anything changes (the optimizer's
            shared variables keep their values).
        """
        undo = loop.Undo(self)
        try:
            run = self._start(train, valid, max_updates, patience, validate_every, min_improvement,
                              batch_size, reset, checkpoint, checkpoint_every, on_nonfinite, kwargs,
                              undo)
        except BaseException:
            undo.apply()
            raise
        return loop.Run(self, *run, undo).updates()

    def _start(self, train, valid, max_updates, patience, validate_every, min_improvement,
               batch_size, reset, checkpoint, checkpoint_every, on_nonfinite, kwargs, undo):
        """Check every argument, resume from a checkpoint if any, compile: the loop's arguments."""
        number = hyperparams.number
        max_updates = None if max_updates is None else number('max_updates', max_updates, low=0, integer=True)
        patience = number('patience', patience, low=0, integer=True)
        validate_every = number('validate_every', validate_every, low=1, integer=True)
        min_improvement = number('min_improvement', min_improvement, low=0, finite=True)
        checkpoint = None if checkpoint is None else _checkpoint_path(checkpoint)
        checkpoint_every = validate_every if checkpoint_every is None else number(
            'checkpoint_every', checkpoint_every, low=1, integer=True)
        reset = hyperparams.flag('reset', reset)
        self.on_nonfinite = hyperparams.choice('on_nonfinite', on_nonfinite, nonfinite.POLICIES)
        self.patience, self.validate_every, self.min_improvement = patience, validate_every, min_improvement
        self._prepare(**kwargs)
        train = as_dataset(train, 'train', batch_size)
        valid = train if valid is None else as_dataset(valid, 'valid', batch_size)
        for data in (train, valid):
            if getattr(data, 'iteration_size', 1) == 0:
                raise ValueError(f'{data.name} has iteration_size 0: it would never produce a batch')
        resume, loaded = self._resume, False
        if checkpoint is not None and os.path.exists(checkpoint):
            resume, loaded = checkpoints.read(checkpoint), True
        if resume is not None:
            checkpoints.check_data(resume, 'train', train)
            checkpoints.check_data(resume, 'valid', valid)
            if reset:
                log.warning('reset=True is ignored: resuming from the checkpoint %s', resume.path)
        elif reset:
            undo.keep(self._states.values())
            self.reset_state()
        step = self._compiled_step()
        if self.on_nonfinite == 'skip' and nonfinite.SKIPPED not in self._states:
            raise ValueError(f"on_nonfinite='skip' needs a compiled step whose updates can be "
                             f"guarded; {type(self).__name__} has none (use 'stop')")
        evaluate = self._compiled_eval()
        if checkpoint is not None and not self.wait_compiled(0):
            # Every update of a checkpointed run goes through the same compiled code, so that
            # a resumed run repeats it bit for bit (a quick-start step may round differently).
            log.info('%s: checkpoint= given, so compiling the final step before the first update',
                     type(self).__name__)
            self.wait_compiled()
        if loaded:
            checkpoints.check(self, resume)
        self._log_hyperparameters(kwargs)
        if resume is None:
            state = checkpoints.LoopState()
        else:
            if loaded:  # put back if this call fails before its first update
                undo.keep([*self._params, *self._states.values()])
            with checkpoints.whole_or_nothing(self):
                if loaded:
                    checkpoints.restore(self, resume)
                checkpoints.restore_data(resume, 'train', train)
                if valid is not train:
                    checkpoints.restore_data(resume, 'valid', valid)
                checkpoints.restore_hooks(resume, self._validation_hooks)
            checkpoints.compare_hyperparameters(resume, self)
            state = resume.loop
            log.info('resuming from %s at iteration %d', resume.path, state.iteration)
        self._resume = None
        state.train, state.valid = train, valid
        self._loop_state = state
        return step, evaluate, train, valid, max_updates, state, (checkpoint, checkpoint_every), resume is not None

    #: Attributes that _restore_settings leaves alone: caches of what was built.
    _KEEP_ON_ERROR = frozenset(['_states', '_state_inits', '_step_fns', '_eval_fn', '_hypers',
                                '_projection'])

    def _settings(self):
        """The optimizer's settings, to put back if a call fails before the loop starts."""
        attrs = {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in vars(self).items()
                 if k not in self._KEEP_ON_ERROR}
        return attrs, {name: var.get_value() for name, var in self._hypers.items()}

    def _restore_settings(self, settings):
        attrs, values = settings
        for name in [k for k in vars(self) if k not in self._KEEP_ON_ERROR and k not in attrs]:
            delattr(self, name)
        vars(self).update(attrs)
        for name, value in values.items():
            self._hypers[name].set_value(value)

    def _log_hyperparameters(self, given):
        if not log.isEnabledFor(logging.INFO):
            return
        names = ['learning_rate', 'momentum', 'nesterov', 'patience', 'validate_every',
                 'min_improvement', 'max_gradient_norm', 'max_gradient_elem']
        names += [k for k in given if k not in names and k not in CLIP_SYNONYMS]
        shown = []
        for name in names:
            value = given.get(name, getattr(self, name, None))
            if isinstance(value, SharedVariable):
                value = value.get_value()
            if value is not None:
                shown.append(f'{name}={value:g}' if isinstance(value, (float, np.floating)) else f'{name}={value}')
        log.info('%s: %s', type(self).__name__, ' '.join(shown))

    def _train_runner(self, step, feed, train, names):
        """A function of no arguments that runs one training iteration and returns its monitors.

        One pass of ``step`` over ``train`` here; an algorithm whose iteration
        is not one update per batch (a full-batch method) overrides this.
        """
        return pass_runner(step, feed, train, names)

    def minimize(self, *args, **kwargs):
        """Run :meth:`iterate` to the end and return its last pair of monitors.

        A KeyboardInterrupt stops cleanly and keeps the best parameters.
        """
        result = None
        iterator = self.iterate(*args, **kwargs)
        try:
            for result in iterator:
                pass
        except KeyboardInterrupt:
            log.info('interrupted; restoring the best parameters')
            iterator.close()
            self.set_params('best')
        return result


def _checkpoint_path(path):
    """``path`` as a str, refused now if a checkpoint could not be written there later."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f'checkpoint must be a file path (str or os.PathLike), got {path!r}')
    path = os.fsdecode(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f'checkpoint {path!r}: the folder {folder!r} does not exist')
    if not os.access(folder, os.W_OK):
        raise ValueError(f'checkpoint {path!r}: the folder {folder!r} is not writable')
    if os.path.isdir(path):
        raise ValueError(f'checkpoint {path!r} is a folder, not a file')
    return path


def _copy_values(params, out):
    """Copy each parameter's value into the same-shaped array of list ``out`` (appended if missing)."""
    for i, param in enumerate(params):
        value = param.get_value(borrow=True)
        if i < len(out) and _can_copy_into(out[i], value):
            np.copyto(out[i], value)
        elif i < len(out):
            out[i] = np.array(value, copy=True)
        else:
            out.append(np.array(value, copy=True))


def _can_copy_into(dest, value):
    return (type(dest) is np.ndarray and dest.shape == value.shape and dest.dtype == value.dtype
            and dest.flags.writeable and not np.may_share_memory(dest, value))


def _assign(param, value):
    """Give shared ``param`` the values of array ``value`` (checked to have its shape).

    Copied into the parameter's own buffer when it can be (a NumPy array of
    the same shape, writeable, not overlapping ``value``), so setting the
    parameters allocates nothing; otherwise a converted copy replaces it.
    """
    storage = param.get_value(borrow=True)
    if storage is value:
        return
    if (type(storage) is np.ndarray and storage.shape == value.shape and storage.flags.writeable
            and not np.may_share_memory(storage, value)):
        np.copyto(storage, value, casting='unsafe')
        param.set_value(storage, borrow=True)
    else:
        param.set_value(np.array(value, dtype=storage.dtype, copy=True), borrow=True)


def _as_type(expr, var):
    """``expr`` with ``var``'s dtype (a safety net for user algorithms)."""
    if not isinstance(expr, Variable):
        expr = pt.as_tensor_variable(np.asarray(expr, dtype=var.dtype))
    return expr if expr.dtype == var.dtype else pt.cast(expr, var.dtype)
