"""The ``downhill`` logger: how the library reports progress.

The library only logs; it never prints. When the application has configured
no logging at all, a handler on the ``downhill`` logger sends INFO lines to
stderr so that a script shows progress out of the box (as PyMC does). Silence
it the usual way: ``logging.getLogger('downhill').setLevel(logging.WARNING)``,
or configure logging before importing downhill.
"""

import logging
import sys
import time

import click

log = logging.getLogger('downhill')

IMPROVED = ' *'


class _Formatter(logging.Formatter):
    """Marks improved validations in colour when the stream is a terminal."""

    def __init__(self, stream):
        super().__init__('%(asctime)s downhill %(message)s', '%H:%M:%S')
        self._colour = hasattr(stream, 'isatty') and stream.isatty()

    def format(self, record):
        text = super().format(record)
        if self._colour and text.endswith(IMPROVED):
            text = text[:-len(IMPROVED)] + click.style(IMPROVED, fg='green', bold=True)
        return text


class _DefaultHandler(logging.StreamHandler):
    """The out-of-the-box handler: steps aside once the application configures logging.

    An application that calls ``logging.basicConfig()`` after importing
    downhill gets each line from its own root handler (the record propagates
    there); writing it here too would show every line twice.
    """

    def emit(self, record):
        if log.propagate and logging.root.handlers:
            return
        super().emit(record)


def install_default_handler():
    """Give the logger a stderr handler unless the application configured logging."""
    if logging.root.handlers or log.handlers:
        return
    handler = _DefaultHandler(sys.stderr)
    handler.setFormatter(_Formatter(sys.stderr))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def format_monitors(monitors):
    """``name=value`` pairs, six significant digits."""
    return ' '.join(f'{k}={v:.6g}' for k, v in monitors.items())


class Progress:
    """Rate-limited per-iteration lines.

    Every iteration is logged at DEBUG; at INFO at most one line per
    ``interval`` seconds (plus the first iterations), so a loop making
    thousands of updates a second is not slowed by its own log. A call
    returns the ``time.monotonic()`` at which the next line can be due: the
    loop skips the calls before it, at the cost of one clock read per
    iteration. A change of the logger's level is seen within ``interval``.
    """

    def __init__(self, label, interval=0.1, first=3):
        self.label = label
        self.interval = interval
        self.first = first
        self._last = -float('inf')

    def __call__(self, iteration, monitors):
        now = time.monotonic()
        if not log.isEnabledFor(logging.INFO):
            return now + self.interval
        if log.isEnabledFor(logging.DEBUG):
            log.debug('%s %d %s', self.label, iteration, format_monitors(monitors))
            return 0.0
        if iteration <= self.first or now - self._last >= self.interval:
            self._last = now
            log.info('%s %d %s', self.label, iteration, format_monitors(monitors))
        return 0.0 if iteration < self.first else self._last + self.interval
