"""What an optimizer does with its updates: train (the loop of :mod:`downhill.training`), evaluate, save, load, set parameters.
"""

import logging
import os

import numpy as np

from ..core import graph, hyperparams, nonfinite
from ..training import checkpoint as checkpoints, loop
from ..training.dataset import all_batches, as_dataset
from ..training.feed import pass_runner

from .updates import _assign

log = logging.getLogger('downhill')


class Training:
    """The training side of :class:`~downhill.optimizer.base.Optimizer`."""

    #: Whether each iteration uses every batch of the training data (a
    #: full-batch method): the loop then draws them all once, before the first.
    takes_all_batches = False


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

        The file (see :mod:`downhill.training.checkpoint`) holds the parameters, the
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
            and logs them, and continues. See :mod:`downhill.core.nonfinite`.
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
        if self.takes_all_batches:  # a full-batch method: every batch, drawn once, each iteration
            train = as_dataset(all_batches(train), 'train')
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
