"""Signals while the training loop runs: stop cleanly, at the end of an iteration.

A checkpoint is only exact at the end of an iteration: the parameters, the
algorithm state, the counters and the data's position all belong to the
same completed iteration. So while a loop that writes checkpoints runs in
the main thread:

- SIGINT (Ctrl-C) and SIGTERM ask the loop to stop after the current
  iteration: it finishes its pass (or its validation, or the checkpoint it
  is writing), writes its final checkpoint, restores the best parameters
  and returns. A Ctrl-C is never lost, whatever the loop is doing.
- A second SIGINT (or SIGTERM) stops at once with a KeyboardInterrupt: the
  best parameters are kept and the checkpoint file keeps the last iteration
  written (a half-done iteration is never saved).

The handlers are installed when the loop starts and removed (the previous
ones put back) when it ends. While the caller's code runs between two yielded
iterations they act like the handlers they replaced: SIGINT raises
KeyboardInterrupt at once, SIGTERM goes to the previous handler (by default,
the process ends). Switching between the two costs an attribute write per
iteration, not a ``signal.signal`` call (about 3 us each).
"""

import logging
import os
import signal
import threading

log = logging.getLogger('downhill')


class Interrupts:
    """The signal handlers of one run of the training loop.

    Parameters
    ----------
    enabled : bool
        Install handlers at all (also requires running in the main thread).
    """

    def __init__(self, enabled):
        self.enabled = bool(enabled) and threading.current_thread() is threading.main_thread()
        #: True once a SIGINT or SIGTERM arrived: the loop stops after this iteration.
        self.terminate = False
        #: Why: ``'interrupted'`` (SIGINT) or ``'SIGTERM received'``.
        self.reason = None
        #: True once a second signal stopped the loop at once, in the middle of an iteration.
        self.abandoned = False
        #: True while the loop's own code runs (False while the caller's runs).
        self.active = False
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

    def _on_interrupt(self, signum, frame):
        if not self.active:
            raise KeyboardInterrupt
        self._stop('interrupted', 'Ctrl-C')

    def _on_terminate(self, signum, frame):
        if not self.active:
            self._previous_terminate(signum, frame)
            return
        self._stop('SIGTERM received', 'SIGTERM')

    def _stop(self, reason, name):
        if self.terminate:
            self.abandoned = True
            raise KeyboardInterrupt
        self.terminate, self.reason = True, reason
        log.warning('%s: stopping after this iteration (again to stop at once, without a final '
                    'checkpoint)', name)

    def _previous_terminate(self, signum, frame):
        old = self._saved.get(signal.SIGTERM)
        if callable(old):
            old(signum, frame)
            return
        # the default action: end the process, as if we were not here
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
