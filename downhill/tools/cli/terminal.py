"""The command's terminal: the logger through click, the -v/-q and --mode options, tables."""

import contextlib
import logging
import math

import click

log = logging.getLogger('downhill')


class _EchoHandler(logging.Handler):
    """Log records through click.echo to the stderr of the moment (works under CliRunner)."""

    def __init__(self, status=None):
        super().__init__()
        self.status = status
        self.setFormatter(logging.Formatter('%(asctime)s downhill %(message)s', '%H:%M:%S'))

    def emit(self, record):
        try:
            if self.status is not None:
                self.status.clear()
            click.echo(self.format(record), err=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@contextlib.contextmanager
def _logging(level, status=None):
    """Route the ``downhill`` logger through click at ``level`` for one command."""
    saved = (list(log.handlers), log.level, log.propagate)
    handler = _EchoHandler(status)
    for h in saved[0]:
        log.removeHandler(h)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        for h in saved[0]:
            log.addHandler(h)
        log.setLevel(saved[1])
        log.propagate = saved[2]


def _level(verbose, quiet, default=logging.WARNING):
    if quiet:
        return logging.ERROR
    if verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return min(default, logging.INFO)
    return default


def _verbosity(f):
    f = click.option('-q', '--quiet', is_flag=True, help='Only print errors.')(f)
    f = click.option('-v', '--verbose', count=True,
                     help="Log the library's progress (INFO); -vv for every iteration (DEBUG).")(f)
    return f


def _mode(name):
    """A PyTensor compile mode from the --mode option."""
    if name is None or name == 'default':
        return None
    if name.lower() == 'python':
        from pytensor.compile.mode import Mode
        return Mode(linker='py', optimizer='fast_run')
    return name


_MODE_HELP = ("PyTensor compile mode: 'python' (graph rewrites, Python linker: no compiler, "
              "quick to start), 'default' (PyTensor's configured mode), or any PyTensor mode "
              "name such as FAST_RUN, NUMBA, C or FAST_COMPILE.")


# ---------------------------------------------------------------- tables

def _fmt(value, spec='.4g'):
    if value is None:
        return '-'
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _table(rows, headers, align):
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    def line(items):
        return '  '.join(s.ljust(w) if a == '<' else s.rjust(w)
                         for s, w, a in zip(items, widths, align)).rstrip()
    out = [line(headers), line(['-' * w for w in widths])]
    out.extend(line(r) for r in cells)
    return '\n'.join(out)


