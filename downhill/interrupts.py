"""Signals while the training loop runs: stop cleanly, never in the middle of a step.

A compiled step writes several shared variables one after the other (the
parameter, its velocity, the moments, the update counter). A
KeyboardInterrupt raised between two of those writes would leave them
inconsistent, and a checkpoint written then could not be resumed exactly. So
while a loop that writes checkpoints runs in the main thread:

- SIGINT (Ctrl-C) raises KeyboardInterrupt as usual, except inside a step,
  where it is held until the step returns;
- SIGTERM asks the loop to stop after the current iteration (it then writes
  its final checkpoint and returns); a second SIGTERM acts like Ctrl-C.

The handlers are installed when the loop starts and removed (the previous
ones put back) when it ends. While the caller's code runs between two yielded
iterations they act like the handlers they replaced: SIGINT raises
KeyboardInterrupt at once, SIGTERM goes to the previous handler (by default,
the process ends). Switching between the two costs an attribute write per
iteration, not a ``signal.signal`` call (about 3 us each).
"""

import os
import signal
import threading


class Interrupts:
    """The signal handlers of one run of the training loop.

    Parameters
    ----------
    enabled : bool
        Install handlers at all (also requires running in the main thread).
    """

    def __init__(self, enabled):
        self.enabled = bool(enabled) and threading.current_thread() is threading.main_thread()
        #: True once a SIGTERM arrived: the loop stops after this iteration.
        self.terminate = False
        #: True while the loop's own code runs (False while the caller's runs).
        self.active = False
        self._busy = False
        self._pending = False
        self._saved = None

    def install(self):
        """Put our handlers in place (a no-op when disabled or already installed)."""
        if not self.enabled or self._saved is not None:
            return
        saved = {}
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            saved[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_interrupt)
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
            saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_terminate)
        self._saved = saved

    def uninstall(self):
        """Put the previous handlers back."""
        if self._saved is None:
            return
        for signum, old in self._saved.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)
        self._saved = None

    def wrap(self, step):
        """``step`` made atomic with respect to SIGINT (``step`` itself when disabled).

        The result calls ``step`` and passes any attribute through, so an
        algorithm whose step is an object (a full-batch objective) still
        sees its methods.
        """
        return _AtomicStep(self, step) if self.enabled else step

    def _on_interrupt(self, signum, frame):
        if self._busy and self.active:
            self._pending = True
            return
        raise KeyboardInterrupt

    def _on_terminate(self, signum, frame):
        if not self.active:
            self._previous_terminate(signum, frame)
            return
        if self.terminate:
            self._on_interrupt(signum, frame)
        self.terminate = True

    def _previous_terminate(self, signum, frame):
        old = self._saved.get(signal.SIGTERM)
        if callable(old):
            old(signum, frame)
            return
        # the default action: end the process, as if we were not here
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


class _AtomicStep:
    """A compiled step during which a SIGINT is held back (see :meth:`Interrupts.wrap`)."""

    def __init__(self, signals, step):
        self._signals, self._step = signals, step

    def __call__(self, *args):
        signals = self._signals
        signals._busy = True
        try:
            return self._step(*args)
        finally:
            signals._busy = False
            if signals._pending:
                signals._pending = False
                raise KeyboardInterrupt

    def __getattr__(self, name):
        return getattr(self._step, name)
