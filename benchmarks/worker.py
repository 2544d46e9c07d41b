"""One measurement in one process: ``python -m benchmarks.worker CONFIG_JSON``.

The orchestrator (:mod:`benchmarks.run`) starts one of these per
implementation and phase, so that no library's imports, caches, thread pools
or flags touch another's. The configuration is a JSON object:

``impl``
    ``downhill`` (``Optimizer.iterate``), ``raw`` (one ``pytensor.function``
    with the updates written by hand), ``torch`` or ``jax`` (optional peers).
``problem``, ``size``
    See :mod:`benchmarks.problems`.
``phase``
    ``first``: imports, then build + compile + the first update, and exit
    (used with an empty compile cache for the cold time). ``full``: also the
    check steps, warm-up and timed windows.
``mode``
    PyTensor compile mode (``null`` = PyTensor's default).
``target_s``, ``windows``, ``warmup_s``
    Each timed window lasts about ``target_s``; ``windows`` of them per
    variant, variants alternating window by window.
``variants``
    Extra ways to run the same build: ``trust`` (the compiled function(s)
    with ``trust_input = True``).
``out``, ``params_out``
    Where to write the result (JSON) and the parameters after the check
    steps (``.npz``).
``downhill_path``
    Prepended to ``sys.path`` (measure another checkout of downhill).

The result JSON holds ``import_s``, ``first_s`` (build + compile + first
update with its loss fetched, imports excluded), ``ready_s`` (phase
``first``: from the build until the final step is compiled; with downhill's
quick start the updates before run through a quickly compiled version), ``rates`` (updates/s per
window, per variant, wall clock), ``cpu_rates`` (updates per CPU-second of
the whole process, all its threads: on a shared machine a neighbour's load
drops out of these, mostly), ``steps_per_window``, ``final_loss``, ``rss_import_mb``
(high-water mark after the imports) and ``rss_peak_mb`` (at the end).
"""

import json
import os
import resource
import sys
import time

import numpy as np


def _hwm_mb():
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Runner:
    """Build, first update, and a ``steps(n)`` that makes ``n`` more updates."""

    variants = ('base',)

    def __init__(self, cfg, problems):
        self.cfg = cfg
        self.P = problems
        self.problem = cfg['problem']
        self.size = cfg.get('size', 'full')
        self.algo, self.dtype = problems.PROBLEMS[self.problem]
        data = problems.make(self.problem, self.size)
        self.batches = data['batches']
        self.sched = problems.Schedule(self.batches)
        self.done = 0  # updates made so far

    def imports(self):
        pass

    def build(self):
        """Build, compile and make the first update; return its loss."""
        raise NotImplementedError

    def steps(self, n, variant='base'):
        raise NotImplementedError

    def params(self):
        raise NotImplementedError

    def granularity(self):
        """Updates per call of ``steps`` must be a multiple of this."""
        return 1

    def ready(self):
        """Block until everything compiling in the background is compiled."""


class RawRunner(Runner):
    """One compiled ``pytensor.function(inputs, loss, updates=...)``, called in a loop."""

    variants = ('base', 'trust')

    def imports(self):
        import pytensor  # noqa: F401
        import pytensor.tensor  # noqa: F401

    def build(self):
        import pytensor
        loss, params, inputs = self.P.symbolic(self.problem, self.size)
        grads = pytensor.grad(loss, params)
        updates = self.P.raw_updates(self.problem, params, grads)
        self.fn = pytensor.function(inputs, loss, updates=updates, mode=self.cfg.get('mode'))
        self._params = params
        first = self.fn(*self.batches[0])
        self.sched.cursor = 1 % len(self.batches)
        self.done = 1
        return float(first)

    def steps(self, n, variant='base'):
        fn = self.fn
        fn.trust_input = variant == 'trust'
        if len(self.batches) == 1:
            batch = self.batches[0]
            for _ in range(n):
                fn(*batch)
        else:
            self.sched.pass_len = n
            for batch in self.sched:
                fn(*batch)
        self.done += n

    def params(self):
        return [p.get_value() for p in self._params]


class DownhillRunner(Runner):
    """``downhill.build(...)`` and ``Optimizer.iterate()``, one ``next()`` per pass.

    downhill's defaults: with a mode that compiles code (Numba) the first
    updates run through a quickly compiled version of the step while the
    final one compiles in a background thread (``quick_start``); ``ready``
    waits for it. ``quick_start`` in the configuration (default true) sets it.

    ``train`` is ``None`` (Rosenbrock), a list holding the one batch
    (matfact) or a :class:`~benchmarks.problems.Schedule` yielding the batches
    in order (mlp; its pass length is set before each pass, so a timed window
    is a whole number of 156-batch epochs). ``valid`` is the first batch (the
    default, ``train``, for the full-batch problems). ``validate_every`` and
    ``patience`` are huge, so only the validation before the first update runs.
    """

    variants = ('base',)

    def imports(self):
        import pytensor  # noqa: F401
        import downhill  # noqa: F401
        import logging
        logging.getLogger('downhill').setLevel(logging.WARNING)
        self.version = getattr(downhill, '__version__', '?')
        self.location = os.path.dirname(downhill.__file__)

    def build(self):
        import downhill
        loss, params, inputs = self.P.symbolic(self.problem, self.size)
        kw = {}
        if self.cfg.get('quick_start') is not None:
            kw['quick_start'] = bool(self.cfg['quick_start'])
        self.opt = downhill.build(self.algo, loss=loss, params=params, inputs=inputs,
                                  mode=self.cfg.get('mode'), **kw)
        self._params = params
        if not inputs:
            train = valid = None
            self.per_pass = None
        elif len(self.batches) == 1:
            train = valid = [list(self.batches[0])]
            self.per_pass = None
        else:
            train, valid = self.sched, [list(self.batches[0])]
            self.per_pass = len(self.batches)
            self.sched.pass_len = 1
        self.it = self.opt.iterate(train, valid, validate_every=10 ** 9, patience=10 ** 9,
                                   **self.P.downhill_kwargs(self.problem))
        monitors, _ = next(self.it)
        self.done = 1
        return float(monitors['loss'])

    def granularity(self):
        return self.per_pass or 1

    def ready(self):
        wait = getattr(self.opt, 'wait_compiled', None)
        if wait is not None:
            wait()

    def steps(self, n, variant='base'):
        it = self.it
        if self.per_pass is None:
            for _ in range(n):
                next(it)
        else:
            if n % self.per_pass:
                self.sched.pass_len = n  # one odd-sized pass (check steps)
                next(it)
            else:
                self.sched.pass_len = self.per_pass
                for _ in range(n // self.per_pass):
                    next(it)
        self.done += n

    def params(self):
        return [p.get_value() for p in self._params]


class NumpyRunner(Runner):
    """The same updates written in NumPy by hand (matfact and mlp: the matrix-heavy problems).

    Monitors on, as for the others: the loss is computed (and converted to a
    float) at every update.
    """

    def imports(self):
        if self.problem not in ('matfact', 'mlp'):
            raise ImportError(f'no hand-written NumPy version of {self.problem}')

    def build(self):
        self._params = [a.copy() for a in self.P.make(self.problem, self.size)['init']]
        copies = 2 if self.algo == 'adam' else 1
        self.state = [np.zeros_like(p) for _ in range(copies) for p in self._params]
        self.t = 0
        loss = self._update(*self.batches[0])
        self.sched.cursor = 1 % len(self.batches)
        self.done = 1
        return loss

    def _grads(self, *batch):
        if self.problem == 'matfact':
            (X,), (u, v) = batch, self._params
            r = u @ v - X
            n = r.size
            loss = float(np.mean(r * r) + 0.01 * np.mean(np.abs(u)) + 0.01 * np.mean(v * v))
            r *= 2.0 / n
            gu = r @ v.T + (0.01 / u.size) * np.sign(u)
            gv = u.T @ r + (0.02 / v.size) * v
            return loss, [gu, gv]
        x, y = batch
        W1, b1, W2, b2 = self._params
        h = np.tanh(x @ W1 + b1)
        r = h @ W2 + b2 - y
        loss = float(np.mean(r * r))
        d = (2.0 / r.size) * r
        dh = (d @ W2.T) * (1 - h * h)
        return loss, [x.T @ dh, dh.sum(0), h.T @ d, d.sum(0)]

    def _update(self, *batch):
        loss, grads = self._grads(*batch)
        hp = self.P.hyper(self.problem)
        dt = self._params[0].dtype.type
        if self.algo == 'sgd':
            mu, lr = dt(hp['momentum']), dt(hp['lr'])
            for p, vel, g in zip(self._params, self.state, grads):
                vel *= mu
                vel -= lr * g
                p += vel
            return loss
        self.t += 1
        b1, b2, eps, lr = (dt(hp[k]) for k in ('b1', 'b2', 'adam_eps', 'lr'))
        c1, c2 = dt(1 - hp['b1'] ** self.t), dt(1 - hp['b2'] ** self.t)
        n = len(self._params)
        for p, m, v, g in zip(self._params, self.state[:n], self.state[n:], grads):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= lr * (m / c1) / (np.sqrt(v / c2) + eps)
        return loss

    def steps(self, n, variant='base'):
        if len(self.batches) == 1:
            batch = self.batches[0]
            for _ in range(n):
                self._update(*batch)
        else:
            self.sched.pass_len = n
            for batch in self.sched:
                self._update(*batch)
        self.done += n

    def params(self):
        return [p.copy() for p in self._params]


def _runner(cfg, problems):
    impl = cfg['impl']
    if impl == 'numpy':
        return NumpyRunner(cfg, problems)
    if impl == 'raw':
        return RawRunner(cfg, problems)
    if impl == 'downhill':
        return DownhillRunner(cfg, problems)
    if impl in ('torch', 'jax'):
        from . import peers
        return peers.runner(impl, cfg, problems, Runner)
    raise ValueError(f'unknown impl {impl!r}')


def _versions():
    out = {'python': sys.version.split()[0], 'numpy': np.__version__}
    for name in ('pytensor', 'numba', 'torch', 'jax', 'optax'):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, '__version__', '?')
    try:
        import pytensor
        out['pytensor_mode'] = str(pytensor.config.mode)
        out['pytensor_linker'] = str(pytensor.config.linker)
        out['blas__ldflags'] = str(pytensor.config.blas__ldflags)
        out['base_compiledir'] = str(pytensor.config.base_compiledir)
    except Exception:  # noqa: BLE001 -- a peer venv may have no PyTensor
        pass
    return out


def measure(cfg):
    from . import problems as P
    result = {'impl': cfg['impl'], 'problem': cfg['problem'], 'phase': cfg['phase']}
    runner = _runner(cfg, P)
    started = time.perf_counter()
    try:
        runner.imports()
    except ImportError as err:
        result['skipped'] = f'import failed: {type(err).__name__}: {err}'
        return result
    result['import_s'] = time.perf_counter() - started
    result['rss_import_mb'] = _hwm_mb()
    started = time.perf_counter()
    result['first_loss'] = runner.build()
    result['first_s'] = time.perf_counter() - started
    if getattr(runner, 'location', None):
        result['downhill'] = {'version': runner.version, 'location': runner.location}
    if cfg['phase'] == 'first':
        # time until the final (fully compiled) step is ready, from the start of the build;
        # the process idles meanwhile (a run would keep updating with the quick version)
        runner.ready()
        result['ready_s'] = time.perf_counter() - started
        result['versions'] = _versions()
        result['rss_peak_mb'] = _hwm_mb()
        return result

    # correctness: the parameters after the check steps from the common start
    check = cfg.get('check_steps') or P.CHECK_STEPS[cfg['problem']]
    if check > runner.done:
        runner.steps(check - runner.done)
    params = runner.params()
    runner.ready()  # the timed windows measure the final step
    result['check_steps'] = runner.done
    result['final_loss'] = P.eval_loss(cfg['problem'], params, runner.size)
    if cfg.get('params_out'):
        np.savez(cfg['params_out'], *params)

    # The main thread only (threads already started, such as BLAS pools, keep their CPUs):
    # every implementation gets the same share of each CPU across the rounds.
    if cfg.get('pin_cpu') is not None:
        os.sched_setaffinity(0, {cfg['pin_cpu']})
        result['cpu'] = cfg['pin_cpu']

    # warm-up and calibration: window = about target_s
    gran = runner.granularity()
    variants = [v for v in runner.variants if v == 'base' or v in cfg.get('variants', ())]
    n = gran
    warm_until = time.perf_counter() + cfg.get('warmup_s', 0.3)
    while True:
        for v in variants:
            t0 = time.perf_counter()
            runner.steps(n, v)
            dt = time.perf_counter() - t0
        if time.perf_counter() >= warm_until and dt >= 0.02:
            break
        if dt < 0.02:
            n *= 2
    per_step = dt / n
    n = max(gran, int(round(cfg.get('target_s', 0.2) / per_step / gran)) * gran)
    rates = {v: [] for v in variants}
    cpu_rates = {v: [] for v in variants}
    for _ in range(cfg.get('windows', 7)):
        for v in variants:
            c0, t0 = time.process_time(), time.perf_counter()
            runner.steps(n, v)
            t1, c1 = time.perf_counter(), time.process_time()
            rates[v].append(n / (t1 - t0))
            cpu_rates[v].append(n / max(c1 - c0, 1e-9))
    result['steps_per_window'] = n
    result['rates'] = rates
    result['cpu_rates'] = cpu_rates
    result['median'] = {v: float(np.median(r)) for v, r in rates.items()}
    result['cpu_median'] = {v: float(np.median(r)) for v, r in cpu_rates.items()}
    result['rss_peak_mb'] = _hwm_mb()
    result['versions'] = _versions()
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cfg = json.loads(argv[0])
    if cfg.get('downhill_path'):
        sys.path.insert(0, cfg['downhill_path'])
    try:
        result = measure(cfg)
    except Exception as err:  # noqa: BLE001 -- reported in the table, not a crash of the run
        import traceback
        result = {'impl': cfg.get('impl'), 'problem': cfg.get('problem'), 'phase': cfg.get('phase'),
                  'error': f'{type(err).__name__}: {err}', 'traceback': traceback.format_exc()}
    with open(cfg['out'], 'w') as f:
        json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
