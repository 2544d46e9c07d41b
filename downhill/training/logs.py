"""The ``downhill`` logger: how the library reports progress.

The library only logs; it never prints. When the application has configured
no logging at all, a handler on the ``downhill`` logger sends INFO lines to
stderr so that a script shows progress out of the box (as PyMC does). Silence
it the usual way: ``logging.getLogger('downhill').setLevel(logging.WARNING)``,
or configure logging before importing downhill.
"""

import contextlib
import logging
import math
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


class StatusLine:
    """One rate-limited line on stderr, rewritten in place (a terminal's or a notebook's)."""

    def __init__(self, enabled=None, interval=0.2, stream=None):
        if enabled is None:
            enabled = live_stream(sys.stderr if stream is None else stream)
        self.enabled = enabled
        self.interval = interval
        self._stream = stream
        self._last = -math.inf
        self._width = 0

    def __call__(self, text, force=False):
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        pad = max(0, self._width - len(text))
        self._width = len(text)
        click.echo('\r' + text + ' ' * pad, nl=False, err=self._stream is None, file=self._stream)

    def clear(self):
        if self.enabled and self._width:
            click.echo('\r' + ' ' * self._width + '\r', nl=False, err=self._stream is None,
                       file=self._stream)
            self._width = 0


def live_stream(stream):
    """Whether ``stream`` shows a line rewritten in place: a terminal, or a Jupyter notebook."""
    if hasattr(stream, 'isatty') and stream.isatty():
        return True
    return 'ipykernel' in sys.modules and type(stream).__module__.startswith('ipykernel')


class _DefaultHandler(logging.StreamHandler):
    """The out-of-the-box handler: steps aside once the application configures logging.

    An application that calls ``logging.basicConfig()`` after importing
    downhill gets each line from its own root handler (the record propagates
    there); writing it here too would show every line twice. On a terminal
    or in a notebook it also keeps the progress line (:attr:`status`), which
    it clears before each log line.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self.status = StatusLine(live_stream(stream), interval=0.1, stream=stream)

    def showing(self):
        return self in log.handlers and not (log.propagate and logging.root.handlers)

    def emit(self, record):
        if not self.showing():
            return
        self.status.clear()
        super().emit(record)


_DEFAULT = []


def install_default_handler():
    """Give the logger a stderr handler unless the application configured logging."""
    if logging.root.handlers or log.handlers:
        return
    handler = _DefaultHandler(sys.stderr)
    handler.setFormatter(_Formatter(sys.stderr))
    log.addHandler(handler)
    _DEFAULT.append(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


def live_status():
    """The progress line of the default handler, when it is what shows downhill's log live."""
    for handler in _DEFAULT:
        if handler.showing() and handler.status.enabled:
            return handler.status
    return None


@contextlib.contextmanager
def quiet():
    """Within the block, downhill logs warnings and errors only (for runs nested in a tool)."""
    old = log.level
    if log.getEffectiveLevel() < logging.WARNING:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(old)


def format_monitors(monitors):
    """``name=value`` pairs, six significant digits."""
    return ' '.join(f'{k}={v:.6g}' for k, v in monitors.items())


class Progress:
    """Per-iteration progress: one line rewritten in place, or rate-limited log lines.

    On a terminal or in a notebook, where the default handler shows the log,
    each iteration rewrites one status line (at most every 0.1 s) and writes
    no log line. Elsewhere (a file, a pipe, the application's own logging)
    every iteration is logged at DEBUG and at INFO at most one line per
    ``interval`` seconds (plus the first iterations), so that neither the
    loop nor the log is flooded. A call returns the ``time.monotonic()`` at
    which the next update can be due: the loop skips the calls before it, at
    the cost of one clock read per iteration. A change of the logger's level
    is seen within ``interval``.
    """

    def __init__(self, label, interval=5.0, first=3):
        self.label = label
        self.interval = interval
        self.first = first
        self._last = -float('inf')
        self.status = live_status()

    def __call__(self, iteration, monitors):
        now = time.monotonic()
        if not log.isEnabledFor(logging.INFO):
            return now + self.interval
        if log.isEnabledFor(logging.DEBUG):
            log.debug('%s %d %s', self.label, iteration, format_monitors(monitors))
            return 0.0
        if self.status is not None:
            self.status(f'{self.label} {iteration} {format_monitors(monitors)}')
            return now + self.status.interval
        if iteration <= self.first or now - self._last >= self.interval:
            self._last = now
            log.info('%s %d %s', self.label, iteration, format_monitors(monitors))
        return 0.0 if iteration < self.first else self._last + self.interval

    def close(self):
        if self.status is not None:
            self.status.clear()
