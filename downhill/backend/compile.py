"""Compiling the optimizer's functions: which mode, a quick start, a lean call.

Three things decide how soon the first update happens and how fast each
later one runs:

- **The mode.** PyTensor's default (Numba on PyTensor 3, the C VM on 2.x)
  makes the fastest step but compiles it for 10-20 s when its on-disk cache
  is cold, and still spends about a second loading it when warm.
  ``FAST_COMPILE`` (Python ``perform`` methods, few rewrites) is ready in a
  fraction of a second but runs each step 50-100x slower.
- **A quick start** (:class:`Background`, off by default): the first
  :data:`QUICK_UPDATES` updates run through a Python-linker version
  (:func:`downhill.backend.quick.quick_mode`) of the step while the final version
  compiles in a daemon thread; the next update waits for it if it is not
  ready yet, and every later one uses it. The switch comes at that update
  whatever the compiler's speed, so a run repeats bit for bit, cold or warm
  cache, loaded or idle machine; the two versions round differently (the
  order of reductions, contracted multiply-adds), so a quick-start run
  differs from a ``quick_start=False`` run in the last bits.
- **A lean call** (:func:`downhill._compat.lean_caller`): a plain Python
  function that hands the arrays straight to the compiled Numba kernel and
  stores the updated values, skipping ``Function.__call__``'s general
  bookkeeping (~2-3 us of the ~8 us of a 2-parameter Adam step).
"""

import atexit
import contextlib
import importlib.util
import logging
import os
import threading
import time

import numpy as np
import pytensor

from .. import _compat
from .fast_tanh import calls_libm_tanh, replace_for_mode  # noqa: F401 -- the seam's too
from .fusion import mode_with_fusion
from .quick import quick_mode

log = logging.getLogger('downhill')

# Background compilations run one at a time: two would only compete for the
# GIL (PyTensor's rewrites and Numba's typing are Python code) and PyTensor's
# compilation is not documented to be thread-safe against itself.
_BACKGROUND_LOCK = threading.Lock()


#: The environment variable that turns every backend speed-up off when it is ``0``.
SPEEDUPS_VARIABLE = 'DOWNHILL_SPEEDUPS'

_SPEEDUPS = None  # set by use_speedups(); None: from the environment


def speedups():
    """Whether downhill's backend speed-ups are on (the default).

    They are downhill's graph rewrites (:mod:`downhill.backend.fusion`), the faster
    ``tanh`` (:mod:`downhill.backend.fast_tanh`), the lean call and the precompiled
    first call (:func:`downhill._compat.lean_caller`,
    :func:`~downhill._compat.precompile`) and glibc's allocator setting
    (:func:`keep_freed_memory`). Off (``DOWNHILL_SPEEDUPS=0`` in the
    environment, or inside :func:`use_speedups` ``(False)``), downhill
    compiles with stock PyTensor and calls ``Function`` objects as they are.
    Read when a function is compiled: a step compiled before keeps its own.
    """
    if _SPEEDUPS is not None:
        return _SPEEDUPS
    return os.environ.get(SPEEDUPS_VARIABLE, '1') != '0'


@contextlib.contextmanager
def use_speedups(on):
    """Within the block, compile with (True) or without (False) the backend speed-ups."""
    global _SPEEDUPS
    before, _SPEEDUPS = _SPEEDUPS, bool(on)
    try:
        yield
    finally:
        _SPEEDUPS = before


def prepare(mode, fast_tanh, *groups):
    """``(mode, *groups)`` as downhill compiles them: the one seam to the speed-ups.

    Each group is a list of expressions; with the speed-ups on, ``tanh`` is
    replaced in all of them together (when ``fast_tanh``) and ``mode`` gets
    downhill's rewrites (when it is a Numba mode).
    """
    if not speedups():
        return (mode, *groups)
    if fast_tanh:
        groups = replace_for_mode(mode, *groups)
    return (mode_with_fusion(mode), *groups)


#: How many calls of each function a quick start runs in the quick mode: the
#: step's first updates (and the validations before the last of them). A count,
#: not a time, so that where the switch falls never depends on how fast the
#: compiler ran.
QUICK_UPDATES = 50

#: Parameters larger than this (bytes, all together) skip the quick start: see :func:`quick_start_fits`.
QUICK_START_MAX_BYTES = 4 << 20


def quick_start_fits(params):
    """Whether a quick start is worth its memory for ``params`` (shared variables).

    The quick start's Python-linker step evaluates the graph one operation at
    a time, nothing fused or in place, and its temporaries stay in the heap:
    Adam on a 10^6 dimensional Rosenbrock function peaked at 15
    parameter-sized arrays with it and 5 without (``benchmarks/RESULTS_scale.md``;
    3.5 since the update is folded into the loop, :mod:`downhill.backend.stencil`).
    Up to :data:`QUICK_START_MAX_BYTES` of parameters that is a few tens of
    MB at most, once; above it downhill compiles the final step before the
    first update instead (and says so in the log), so the memory stays that
    of the compiled step.
    """
    size = sum(np.asarray(p.get_value(borrow=True)).nbytes for p in params)
    if size <= QUICK_START_MAX_BYTES:
        return True
    log.info('no quick start: the parameters take %.1f MiB (more than %.0f MiB); compiling the '
             'step before the first update', size / 2 ** 20, QUICK_START_MAX_BYTES / 2 ** 20)
    return False


#: The package each JIT linker of PyTensor compiles with (by the linker's class name).
LINKER_PACKAGES = {'NumbaLinker': 'numba', 'JAXLinker': 'jax', 'PytorchLinker': 'torch',
                   'MLXLinker': 'mlx'}


def check_mode(mode):
    """``mode`` if PyTensor can compile with it here; a clear error otherwise.

    ``mode``: None (PyTensor's configured mode), a mode name or a ``Mode``.
    A mode whose linker needs a package that is not installed (``'PYTORCH'``
    without torch) is refused now, naming the package, rather than at the
    first compile, after the work of building the updates.
    """
    try:
        _compat.compiles_quickly(mode)
        linker = type(_compat.get_mode(mode).linker).__name__
    except Exception as err:  # noqa: BLE001 -- any failure here means PyTensor cannot use it
        raise ValueError(f"mode must be None, a PyTensor mode name ('NUMBA', 'FAST_RUN', 'CVM', "
                         f"'JAX', 'FAST_COMPILE', ...) or a pytensor Mode, got {mode!r} "
                         f"({type(err).__name__}: {err})") from err
    package = LINKER_PACKAGES.get(linker)
    if package is not None and importlib.util.find_spec(package) is None:
        given = f'mode={mode!r}' if mode is not None else f'the configured mode ({pytensor.config.mode!r})'
        raise ValueError(f'{given} compiles with {package}, which is not installed: '
                         f'install {package} or choose another mode')
    return mode


def is_quick(mode):
    """Whether ``mode`` compiles in well under a second (no C, Numba or JAX code)."""
    return _compat.compiles_quickly(mode)


class Background:
    """A compiled function that is a quick-to-compile version for its first calls.

    ``compile_final`` runs in a daemon thread (an ``atexit`` hook waits for it,
    so that no compiler is cut off mid-way at exit); it must not call
    PyTensor's compiler, which changes process-wide flags while it runs
    (:func:`compile_function` passes the JIT's compile of a function
    PyTensor has compiled already). The first
    ``quick_calls`` calls run the ``quick`` version; the next one waits for
    the final function if it is not ready and every later call runs it. The
    switch is made by counting calls, never by the clock: a final function
    that is ready early waits for its turn, so the same calls always run the
    same code. :meth:`wait` switches at once, and so does a leader (see
    :meth:`follow`) switching. An exception raised while compiling is raised
    again in the caller's thread at the switch (or by :meth:`wait`): the same
    error a synchronous compile would have raised, only later.

    Parameters
    ----------
    quick : callable
        The function to run meanwhile (compiled already).
    compile_final : callable
        ``compile_final(sample)`` finishes and returns the final function;
        ``sample`` holds the arguments of the first call (so that code
        compiled for their types is ready before the final function's first
        call), or ``()``.
    name : str
        For log messages and the thread's name.
    quick_calls : int
        How many calls run ``quick`` (default :data:`QUICK_UPDATES`).
    """

    def __init__(self, quick, compile_final, name, quick_calls=None):
        self.quick = quick
        self.final = None
        self.name = name
        self.quick_calls = QUICK_UPDATES if quick_calls is None else quick_calls
        self.calls = 0
        #: Whether calls now run the final function (set at the switch, never undone).
        self.switched = False
        self._leader = None
        self.seconds = None
        self._error = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(compile_final,),
                                        name=f'downhill-compile-{name}', daemon=True)
        self._started = False
        self._followers = []
        #: While compiling, the quick function's calls are followed by a sleep
        #: of this many times their duration, taken before the next call (the
        #: caller gets each result, the first update above all, without
        #: waiting). The compiler (PyTensor's rewrites, Numba's typing) needs
        #: the GIL too, and a thread that keeps it busy slows a compile that
        #: releases it often (every LLVM call through ctypes) by 3x or more;
        #: the final step is worth 50-100 quick ones, so the compiler comes first.
        self.yield_share = 4.0
        #: The calls of one sleep: quick calls shorter than this many seconds
        #: add up to it before the sleep they owe is taken. Each sleep hands
        #: the GIL over and back, which can cost the waking thread several ms:
        #: with a sleep per call, a thread of 1000 short calls kept 4% of its
        #: speed next to a compile, with one per ms of calls 14%, the compile
        #: taking 6% longer (``python -m benchmarks.gil_compile duty4|burst4``).
        self.burst = 0.001
        self._owed = 0.0
        #: The arguments of the first call (the final function is compiled for their types).
        self.sample = None
        #: Start compiling at the first call (else only when :meth:`start`,
        #: :meth:`wait` or another ``Background`` this one follows starts it).
        self.autostart = True

    def follow(self, other):
        """Compile once ``other`` (a Background) has compiled, and switch when it switches."""
        self.autostart = False
        self._leader = other
        if other._done.is_set():
            self.start()
        else:
            other._followers.append(self)

    def kick(self):
        """Start compiling if this one starts on its own (see ``autostart``)."""
        if self.autostart:
            self.start()

    def start(self):
        """Start compiling the final function (once; later calls do nothing).

        Called after the first call of the quick function, so that the first
        update does not share the GIL with the compiler (PyTensor's rewrites
        and Numba's type inference are Python code).
        """
        if not self._started:
            self._started = True
            _RUNNING.add(self)
            self._thread.start()

    def _run(self, compile_final):
        try:
            with _BACKGROUND_LOCK:
                started = time.perf_counter()
                final = compile_final(self.sample or ())
        except BaseException as err:  # noqa: BLE001 -- re-raised in the caller's thread
            self._error = err
            log.debug('compiling %s in the background failed: %s: %s', self.name,
                      type(err).__name__, err)
        else:
            self.seconds = time.perf_counter() - started
            self.final = final
            log.debug('compiled %s in the background in %.2f s', self.name, self.seconds)
        finally:
            self._done.set()
            for other in self._followers:
                other.start()
            _RUNNING.discard(self)  # after the followers joined, for the exit hook

    def ready(self):
        """The final function once it is compiled, else None; raises if compiling it failed."""
        final = self.final
        if final is None and self._error is not None:
            raise self._error
        return final

    def settled(self):
        """The final function once calls run it (after the switch), else None."""
        return self.final if self.switched else None

    def current(self):
        """The function the next call runs."""
        return self.settled() or self.quick

    def wait(self, timeout=None):
        """Block until the final function is compiled (or ``timeout`` seconds); return it or None.

        Once it is there, every later call runs it (the switch).
        """
        self.start()
        self._done.wait(timeout)
        final = self.ready()
        if final is not None:
            self.switched = True
        return final

    def __call__(self, *args):
        if self.switched:
            return self.final(*args)
        if self.calls >= self.quick_calls or (self._leader is not None and self._leader.switched):
            return self.wait()(*args)  # no timeout: the final function, or its compile error
        self.calls += 1
        if self._owed and self._owed >= self.burst * self.yield_share:
            # leave the GIL to the compiler for as long as the last calls held it (yield_share);
            # the pause only changes when the compiler is done, never which code runs
            self._done.wait(self._owed)
            self._owed = 0.0
        started = time.perf_counter()
        out = self.quick(*args)
        if self.sample is None:
            self.sample = args
        self.kick()
        if self._started and not self._done.is_set():
            self._owed += (time.perf_counter() - started) * self.yield_share
        return out


#: The Backgrounds compiling now (waited for at exit).
_RUNNING = set()


@atexit.register
def _wait_for_compilers():
    # A daemon thread still compiling when the interpreter finalizes can be
    # cut off inside native code (JAX's compiler aborted the process that way).
    while _RUNNING:  # a follower starts when its leader is done
        next(iter(_RUNNING))._done.wait()


def current(fn):
    """``fn`` itself, or the function a :class:`Background` ``fn`` runs now."""
    return fn.current() if isinstance(fn, Background) else fn


def compile_function(make, mode, n_args, lean, quick_start, name):
    """Compile with ``make(mode)`` (a ``pytensor.function`` call), as the options ask.

    Parameters
    ----------
    make : callable
        ``make(mode)`` returns a compiled ``pytensor`` ``Function``.
    mode : str, Mode or None
        The mode of the final function (None: PyTensor's configured mode).
    n_args : int
        The number of explicit inputs (the rest are shared variables).
    lean : bool
        Whether every explicit input is checked and converted by the caller
        (exact dtype, ndim and static shape), so the function may skip
        PyTensor's own input checks (``trust_input``, the lean call).
    quick_start : bool
        Whether to start with :func:`quick_mode` and compile ``mode`` in the
        background when ``mode`` is slow to compile.
    name : str
        For log messages.

    Returns
    -------
    callable
        The compiled function, or a :class:`Background` one.
    """
    def final(sample=None):
        started = time.perf_counter()
        fn = make(mode)
        if sample is not None and len(sample) == n_args and speedups():
            _compat.precompile(fn, sample)
        log.debug('compiled %s in %.2f s (mode %s)', name, time.perf_counter() - started, mode)
        return _fast_path(fn, n_args, lean)

    if not quick_start or is_quick(mode):
        return final()
    # PyTensor's compile changes process-wide flags while it runs (config.mode during its
    # rewrites; traceback__limit, compute_test_value while linking), so it runs here, in the
    # caller's thread: what a thread may do is the JIT's compile of the kernel at its first call.
    started = time.perf_counter()
    fn = make(mode)
    log.debug('compiled %s in %.2f s (mode %s)', name, time.perf_counter() - started, mode)
    if not _compat.compiles_at_first_call(fn):  # the C backend: nothing is left to compile
        return _fast_path(fn, n_args, lean)
    started = time.perf_counter()
    quick = _fast_path(make(quick_mode()), n_args, lean)
    log.debug('compiled %s in %.2f s (Python linker, for the first updates)', name,
              time.perf_counter() - started)

    def machine_code(sample):
        if sample is not None and len(sample) == n_args and speedups():
            _compat.precompile(fn, sample)
        return _fast_path(fn, n_args, lean)
    return Background(quick, machine_code, name)


def _fast_path(fn, n_args, lean):
    if not lean or not speedups():
        return fn
    fn.trust_input = True
    return _compat.lean_caller(fn, n_args) or fn


_FREED_MEMORY_KEPT = None


def keep_freed_memory_if_asked():
    """:func:`keep_freed_memory` when the environment asks for it (``DOWNHILL_KEEP_FREED_MEMORY=1``).

    Called before a step is first compiled. The allocator's settings are the
    whole process's, so downhill changes them only when asked: by this
    variable, or by calling :func:`keep_freed_memory` yourself.
    """
    if os.environ.get('DOWNHILL_KEEP_FREED_MEMORY', '0') == '1':
        return keep_freed_memory()
    return False


def keep_freed_memory(mmap_threshold=32 << 20, trim_threshold=256 << 20):
    """On glibc, keep freed memory in the process instead of handing it back to the kernel.

    A compiled step allocates its large temporaries afresh at every call. By
    default glibc serves blocks of a few MB with mmap or at the top of the
    heap and returns them to the kernel when they are freed, so every call
    page-faults them in again; on the float64 matrix-factorisation benchmark
    that tripled the time of a step (benchmarks/repro_numba_multioutput.py).
    This asks glibc (``mallopt``) to serve blocks under ``mmap_threshold`` from
    the heap and to keep up to ``trim_threshold`` of freed memory. It changes
    the whole process's allocator, so downhill never calls it unasked (see
    :func:`keep_freed_memory_if_asked`). Done once per process; nothing
    happens off glibc, with the speed-ups off, when
    ``DOWNHILL_KEEP_FREED_MEMORY=0``, or when the environment already sets
    glibc's own ``MALLOC_*_`` variables. Returns whether the setting was made.
    """
    global _FREED_MEMORY_KEPT
    if _FREED_MEMORY_KEPT is not None or not speedups():
        return bool(_FREED_MEMORY_KEPT)
    import ctypes
    import sys
    _FREED_MEMORY_KEPT = False
    if (not sys.platform.startswith('linux')
            or os.environ.get('DOWNHILL_KEEP_FREED_MEMORY', '1') == '0'
            or any(k in os.environ for k in ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_',
                                             'MALLOC_TOP_PAD_'))):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    _FREED_MEMORY_KEPT = bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))
                              and mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
    return _FREED_MEMORY_KEPT
