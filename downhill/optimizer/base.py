"""The Optimizer base class: building, compiling and running an update step.

An algorithm (a subclass) only says how to turn one parameter's gradient into
a step, in :meth:`Optimizer._get_updates_for`. This class does everything
else: finding parameters and inputs, gradients and their clipping, momentum,
compiling, feeding data, monitoring, early stopping and logging.
"""

import logging
import time

import numpy as np
import pytensor
import pytensor.tensor as pt

from ..backend import compile as compiling
from ..core import graph, hyperparams
from ..training import feed
from ..core.stopping import StopTraining  # noqa: F401 -- where algorithms found it
from . import registry
from .hyperparameters import CLIP_SYNONYMS, LOOP_KEYWORDS, Hyperparameters  # noqa: F401
from .problem import ProblemChecks
from .training import Training
from .updates import UpdateAssembly
from .registry import algorithm_names, algorithms, lookup  # noqa: F401 -- the public names, here too

log = logging.getLogger('downhill')


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
        them, applied in order) from :mod:`downhill.core.prox`, or any callable
        ``(new_value, step_size) -> expression``, applied to the parameter's
        new value inside every update. With regularizers (``prox.l1``...),
        the ``'loss'`` monitor is the composite objective; see
        :mod:`downhill.core.prox`.
    quick_start : bool, optional
        When ``mode`` compiles code (Numba, C, JAX), run the first
        :data:`downhill.backend.compile.QUICK_UPDATES` (50) updates through a
        Python-linker version of each function while the final one compiles
        in a background thread; the next update waits for it if it is not
        ready yet (default False: compile before the first update). The
        switch falls on that update whatever the compiler's speed, so a run
        repeats bit for bit either way, but the two versions round
        differently: a quick-start run and a ``quick_start=False`` run differ
        in the last bits. Parameters over 4 MiB never get a quick start
        (:func:`downhill.backend.compile.quick_start_fits`). See :mod:`downhill.backend.compile`.
    fast_tanh : bool, optional
        Compute every float32 ``tanh`` with :func:`downhill.backend.fast_tanh.rational_tanh`
        (default True): a rational function evaluated in float64, correctly
        rounded for all but 2 in a million inputs, several times faster than the
        scalar C-library call PyTensor's Numba and C backends make, which is
        off by up to 2 ulp; and every float64 ``tanh`` with
        :func:`downhill.backend.fast_tanh.exp_tanh` (a rational function or one ``exp``,
        3x faster, within 1.34 ulp where PyTensor's is off by up to 2.09).
        False keeps PyTensor's ``tanh``; the JAX, PyTorch and MLX modes are
        never changed.

    Returns
    -------
    Optimizer
    """
    return registry.lookup(algo)(loss, params=params, inputs=inputs, updates=updates,
                                 monitors=monitors, monitor_gradients=monitor_gradients, mode=mode,
                                 constraints=constraints, quick_start=quick_start, fast_tanh=fast_tanh)


class Optimizer(ProblemChecks, Hyperparameters, UpdateAssembly, Training):
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
    def build(algo, loss, **kwargs):
        """Construct an optimizer by name; see :func:`downhill.build` (its keywords)."""
        return build(algo, loss, **kwargs)

    def __init__(self, loss, params=None, inputs=None, updates=(), monitors=(),
                 monitor_gradients=False, mode=None, constraints=None, quick_start=False,
                 fast_tanh=True):
        graph.check_loss(loss)
        self._loss = loss
        self._mode = compiling.check_mode(mode)
        quick_start = hyperparams.flag('quick_start', quick_start)  # checked before any work
        self._fast_tanh = hyperparams.flag('fast_tanh', fast_tanh) and compiling.calls_libm_tanh(mode)
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

    # --------------------------------------------------------------- compiling

    def _prepared(self, *groups):
        """``(mode, *groups)``: the mode and expressions as the backend compiles them (its one seam)."""
        return compiling.prepare(self._mode, self._fast_tanh, *groups)

    def _function(self, updates, name):
        """Compile ``self._inputs`` -> monitors with ``updates``, as :mod:`downhill.backend.compile` decides.

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

    def _compiled_step(self):
        skip = self.on_nonfinite == 'skip'
        key = (self._graph_key(), skip)
        fn = self._step_fns.get(key)
        if fn is None:
            compiling.keep_freed_memory_if_asked()
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
