"""The training loop: validate when due, run an iteration, checkpoint, yield; stop and finish.

:class:`Run` is one call of :meth:`Optimizer.iterate <downhill.optimizer.base.Optimizer.iterate>`.
It knows no algorithm: it drives the optimizer through this protocol

- ``opt._train_runner(step, feed, data, names)``: a function running one
  iteration (one pass of the compiled step over the training data, or what
  a full-batch method calls an iteration), returning its monitors; it may
  raise :class:`StopTraining` with the reason to stop;
- ``opt._feeder(where)``, ``opt._monitor_names``: checking batches, naming monitors;
- ``opt._project_start()``, ``opt._snapshot()``, ``opt.set_params('best')``,
  ``opt._best_params``: the start put on its constraints, the best parameters;
- ``opt._states``, ``opt._validation_hooks``, ``opt.patience``,
  ``opt.validate_every``, ``opt.min_improvement``, ``opt.on_nonfinite``,
  ``opt._params``: what a validation and a checkpoint read;
- ``opt._settings()``/``opt._restore_settings()``: what :class:`Undo` puts back.

The states of a run, as :meth:`Run.updates` goes through them: *validating*
(before the first update and every ``validate_every`` iterations), *training*
(one iteration), *checkpointing* (every ``checkpoint_every`` iterations),
yielding to the caller, and at the end *finishing* (the final checkpoint, a
validation of the last update, the best parameters restored). Ctrl-C and
SIGTERM are held to the end of an iteration (:mod:`downhill.training.interrupts`).
"""

import logging
import math
import time

import numpy as np

from ..core import graph, nonfinite
from ..core.stopping import StopTraining
from . import checkpoint as checkpoints, interrupts
from .dataset import Dataset, Passes
from .feed import pass_runner
from .logs import IMPROVED, Progress, format_monitors

log = logging.getLogger('downhill')


class Run:
    """One run of the loop over an optimizer ``opt`` (see the module's protocol).

    ``step``/``evaluate``: the compiled training step and evaluation
    function; ``train``/``valid``: the data (from
    :func:`~downhill.training.dataset.as_dataset`); ``state``: the
    :class:`~downhill.training.checkpoint.LoopState` to continue (resumed or
    new); ``checkpoint``: ``(path or None, every)``; ``undo``: an
    :class:`Undo` applied if the run fails before its first update.
    """

    def __init__(self, opt, step, evaluate, train, valid, max_updates, state, checkpoint,
                 resumed, undo):
        self.opt, self.step, self.evaluate = opt, step, evaluate
        self.train, self.valid, self.max_updates, self.state = train, valid, max_updates, state
        self.path, self.every = checkpoint
        self.resumed, self.undo = resumed, undo
        self.label = type(opt).__name__
        self.signals = interrupts.Interrupts(enabled=self.path is not None)
        self.skipped = opt._states.get(nonfinite.SKIPPED)
        self.skipped_at_start = 0 if self.skipped is None else int(self.skipped.get_value())

    # ------------------------------------------------------------ the states

    def updates(self):
        """The loop, as a generator of ``(training monitors, latest validation monitors)``."""
        opt, state, signals = self.opt, self.state, self.signals
        progress, progress_due, clock = Progress(self.label), 0.0, time.monotonic
        stop_on_nonfinite = opt.on_nonfinite == 'stop'
        isfinite = math.isfinite
        skipped, skip_log = self.skipped, nonfinite.SkipLog(self.label, self.skipped_at_start)
        reason, validate_last = None, False
        validate_every, max_updates, path, every = opt.validate_every, self.max_updates, self.path, self.every
        # the counters are locals in the hot path, copied to ``state`` (what save() reads) each time
        iteration, validation = state.iteration, state.validation
        signals.install()
        signals.active = True
        # the iteration at which max_updates or a validation comes next: until
        # then, one comparison per iteration stands for both
        due = iteration
        try:
            run_train, run_valid = self._start()
            # a runner for a step still compiling is replaced by the final one's
            # own runner as soon as that is ready, so no switch is left in the loop
            settle = getattr(run_train, 'settled', None)
            while True:
                if iteration >= due:                                  # -- validating
                    if max_updates is not None and iteration >= max_updates:
                        reason, validate_last = f'max_updates={max_updates} reached', True
                        break
                    if not signals.terminate and iteration % validate_every == 0:
                        reason, validation = self._validate(run_valid, iteration, validation,
                                                            stop_on_nonfinite)
                        if reason is not None:
                            break
                    due = iteration - iteration % validate_every + validate_every
                    if max_updates is not None:
                        due = min(due, max_updates)
                if signals.terminate:
                    reason = signals.reason
                    break
                try:                                                  # -- training
                    training = run_train()
                except KeyboardInterrupt:
                    reason = 'interrupted'
                    break
                except StopTraining as stop:
                    reason, validate_last = str(stop), True
                    break
                if settle is not None:
                    final = settle()
                    if final is not None:
                        run_train, settle = final, None
                iteration += 1
                state.iteration = iteration
                self.undo = None  # an update was made: from now on, a failure keeps the best parameters
                if clock() >= progress_due:
                    progress_due = progress(iteration, training)
                if stop_on_nonfinite:
                    # one sum is non-finite if any monitor is: the cheap test first
                    if not isfinite(sum(training.values())):
                        reason = self._nonfinite(training, iteration)
                        if reason is not None:
                            break
                elif skipped is not None:
                    skip_log(iteration, int(skipped.get_value(borrow=True)))
                if path is not None and iteration % every == 0:       # -- checkpointing
                    self.write_checkpoint()
                signals.active = False
                try:
                    yield training, validation
                except GeneratorExit:
                    self._closed()
                    raise
                signals.active = True
            # still with the handlers: a Ctrl-C now waits for the final checkpoint
            self._finish(reason, validate_last, run_valid)            # -- finishing
        except BaseException as err:
            self._failed(err)
            raise
        finally:
            signals.uninstall()
            state.release()
            progress.close()

    def _nonfinite(self, training, iteration):
        bad = nonfinite.first_nonfinite(training)
        return None if bad is None else nonfinite.reason('training', bad, training[bad], iteration)

    def _closed(self):
        """The caller stopped iterating: a clean point to save."""
        self.signals.active = True
        if self.path is not None:
            self.write_checkpoint()

    def _start(self):
        """The runners of this run, and the start: projected onto the constraints, the best so far."""
        opt = self.opt
        self.undo.keep_data(self.train, self.valid)
        names = opt._monitor_names
        run_train = opt._train_runner(self.step, opt._feeder(self.train.name), self.train, names)
        run_valid = pass_runner(self.evaluate, opt._feeder(self.valid.name), self.valid, names)
        if not self.resumed:
            self.undo.keep(opt._constraints)
            opt._project_start()
            self.undo.keep_arrays(getattr(opt, '_best_params', None) or ())  # overwritten in place
            opt._best_params = opt._snapshot()
        return run_train, run_valid

    def _validate(self, run_valid, iteration, validation, stop_on_nonfinite):
        """Validate at ``iteration`` unless done already (a resumed run): ``(reason to stop, monitors)``."""
        state = self.state
        if state.validated_at == iteration:
            return None, validation
        try:
            validation = run_valid()
        except KeyboardInterrupt:
            return 'interrupted', validation
        state.validation, state.validated_at = validation, iteration
        return self._count(validation, stop_on_nonfinite), validation

    def _count(self, validation, stop_on_nonfinite):
        """Count one validation: improvement, patience, hooks. Returns why to stop, or None."""
        opt, state = self.opt, self.state
        loss = validation['loss']
        improved = self._improves(loss)
        if improved:
            state.best_loss, state.best_at, state.failures = loss, state.iteration, 0
            opt._best_params = opt._snapshot()
        else:
            state.failures += 1
        log.info('validation %d %s%s', state.iteration, format_monitors(validation),
                 IMPROVED if improved else '')
        bad = nonfinite.first_nonfinite(validation)
        if bad is not None:
            if stop_on_nonfinite:
                return nonfinite.reason('validation', bad, validation[bad], state.iteration)
            log.warning('validation monitor %r is %s at iteration %d', bad, validation[bad], state.iteration)
        for hook in opt._validation_hooks:
            hook(validation)
        if state.failures > opt.patience:
            return (f'patience exhausted: {state.failures} validations in a row without '
                    f'improvement (patience={opt.patience})')
        return None

    def _improves(self, loss):
        # a NaN is never an improvement, not even as the first result
        best = self.state.best_loss
        return not math.isnan(loss) and (best is None or best - loss > abs(best) * self.opt.min_improvement)

    def write_checkpoint(self, final=False):
        """Write the checkpoint, unless the parameters are not finite (then keep the last one)."""
        opt = self.opt
        for param in opt._params:
            if not np.isfinite(param.get_value(borrow=True)).all():
                log.warning('not writing checkpoint %s: parameter %s is not finite; the file keeps '
                            'the last good state', self.path, graph.describe(param))
                return
        started = time.perf_counter()
        checkpoints.save(opt, self.path, self.state)
        log.log(logging.INFO if final else logging.DEBUG, 'wrote checkpoint %s (iteration %d) in %.3f s',
                self.path, self.state.iteration, time.perf_counter() - started)

    def _finish(self, reason, validate_last, run_valid):
        """End a run: the final checkpoint, the last validation, the best parameters."""
        state, skipped = self.state, self.skipped
        if skipped is not None and int(skipped.get_value()) > self.skipped_at_start:
            reason += (f'; {int(skipped.get_value()) - self.skipped_at_start} updates skipped for '
                       'non-finite values')
        if self.path is not None and not self.signals.abandoned:
            self.write_checkpoint(final=True)
        if validate_last and state.validated_at != state.iteration:
            self._validate_last_update(run_valid)
        level = logging.WARNING if reason.startswith(nonfinite.PREFIX) else logging.INFO
        log.log(level, '%s stopped after %d iterations: %s; restoring the best parameters '
                '(validation loss %s at iteration %d)', self.label, state.iteration, reason,
                'n/a' if state.best_loss is None else f'{state.best_loss:.6g}', state.best_at)
        self.opt.set_params('best')

    def _validate_last_update(self, run_valid):
        """Validate the parameters of the last update when the run ended between validations.

        That is, when it reached ``max_updates`` or its algorithm said it had
        converged (:class:`StopTraining`).

        Otherwise ``max_updates`` below ``validate_every`` would restore the
        parameters from before training. This validation only decides which
        parameters are kept: no hook, patience count or checkpoint sees it,
        and the validation data's position and the random streams are put
        back, so that a run resumed from the checkpoint is not changed by it.
        Data that cannot be put back (a callable, an arbitrary iterable) is
        not read again.
        """
        opt, state, valid = self.opt, self.state, self.valid
        if isinstance(valid, Passes) or getattr(valid, '_callable', None) is not None:
            return
        position = valid.state() if isinstance(valid, Dataset) else None
        streams = [(rng, rng.get_value()) for rng, _ in graph.random_updates(opt._monitor_exprs)]
        try:
            validation = run_valid()
        finally:
            if position is not None:
                valid.restore(position)
            for rng, value in streams:
                rng.set_value(value)
        improved = self._improves(validation['loss'])
        log.info('validation %d %s%s (after the last update)', state.iteration,
                 format_monitors(validation), IMPROVED if improved else '')
        if improved:
            state.best_loss, state.best_at = validation['loss'], state.iteration
            opt._best_params = opt._snapshot()

    def _failed(self, err):
        """An exception ends the run: put everything back before the first update, else keep the best."""
        if self.undo is not None and isinstance(err, Exception):
            log.error('%s stopped by %s before its first update; putting everything back',
                      self.label, type(err).__name__)
            self.undo.apply()
        elif not isinstance(err, GeneratorExit):
            log.error('%s stopped by %s at iteration %d; restoring the best parameters',
                      self.label, type(err).__name__, self.state.iteration)
            self.opt.set_params('best')


class Undo:
    """What a call of ``iterate()`` changed before its first update, to put back.

    The settings (attributes and hyperparameters) are recorded at once; the
    values of shared variables, arrays and data positions only just before
    the call changes them (a reset, a resumed checkpoint, a projection of the
    start, the best parameters), so that a call that changes nothing copies
    no parameter.
    """

    def __init__(self, opt):
        self.opt, self.settings = opt, opt._settings()
        self.values, self.positions, self.arrays = {}, [], []

    def keep(self, variables):
        for var in variables:
            if id(var) not in self.values:
                self.values[id(var)] = var, var.get_value()

    def keep_arrays(self, arrays):
        self.arrays = [(array, array.copy()) for array in arrays]

    def keep_data(self, *datasets):
        datasets = {id(d): d for d in datasets if isinstance(d, Dataset)}.values()
        self.positions = [(d, d.state()) for d in datasets]

    def apply(self):
        for var, value in self.values.values():
            var.set_value(value)
        for data, position in self.positions:
            data.restore(position)
        for array, value in self.arrays:
            np.copyto(array, value)
        self.opt._restore_settings(self.settings)


__all__ = ['Run', 'Undo']
