"""Compiling: the mode option, the quick start in the background, the lean call (downhill.compile)."""

import threading

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import compile as compiling


def factor_problem(seed=3):
    """A float64 least-squares factorization with a data input: (loss, [u, v], x, data)."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((12, 8))
    u = pytensor.shared(rng.standard_normal((12, 3)), name='u')
    v = pytensor.shared(rng.standard_normal((3, 8)), name='v')
    x = pt.matrix('x')
    loss = pt.sqr(x - pt.dot(u, v)).mean() + 0.01 * abs(u).mean()
    return loss, [u, v], x, data


def run(steps, hold=None, quick_start=True, mode=None):
    """Parameters after each of ``steps`` Adam updates; the final step held back for ``hold`` steps."""
    loss, params, x, data = factor_problem()
    opt = downhill.build('adam', loss, inputs=[x], mode=mode, quick_start=quick_start)
    release = threading.Event()
    if hold is not None:
        step = opt._compiled_step()
        assert isinstance(step, compiling.Background)
        start = step.start
        step.start = lambda: start() if release.is_set() else None
    path, used = [], []
    it = opt.iterate([[data]], learning_rate=0.01, max_updates=steps, validate_every=10 ** 6)
    for i, _ in enumerate(it):
        path.append([p.get_value() for p in params])
        step = opt._compiled_step()
        used.append(isinstance(step, compiling.Background) and step.final is None)
        if hold is not None and i + 1 == hold:
            release.set()
            step.start()
            assert opt.wait_compiled(timeout=600)
    return path, used


@pytest.mark.compiled
def test_switching_mid_run_keeps_the_trajectory():
    """Numba all along vs 5 quick (Python linker) updates then Numba: same numbers to 1e-12."""
    steps = 12
    reference, used = run(steps, quick_start=False)
    assert not any(used)
    switched, used = run(steps, hold=5)
    assert used == [True] * 5 + [False] * (steps - 5)  # the switch happened where asked
    quick, _ = run(steps, mode=compiling.quick_mode())  # entirely in the quick mode
    for a, b, c in zip(reference, switched, quick):
        for pa, pb, pc in zip(a, b, c):
            np.testing.assert_allclose(pb, pa, rtol=1e-12, atol=0)
            np.testing.assert_allclose(pc, pa, rtol=1e-12, atol=0)
    # and the parameters moved: the comparison is not between start values
    assert np.abs(reference[-1][0] - reference[0][0]).max() > 1e-3


@pytest.mark.compiled
def test_lean_call_matches_the_pytensor_function():
    """The lean caller of a Numba function returns and updates exactly what Function.__call__ does."""
    from downhill import _compat
    results = []
    for lean in (False, True):
        loss, params, x, data = factor_problem()
        g = pytensor.grad(loss, params)
        fn = pytensor.function([x], [loss, pt.sqr(g[0]).sum()],
                               updates=[(p, p - 0.1 * d) for p, d in zip(params, g)])
        call = _compat.lean_caller(fn, 1) if lean else fn
        if call is None and _compat.PYTENSOR_VERSION < (3,):
            pytest.skip('PyTensor 2.x functions keep the normal call (no lean caller)')
        assert call is not None
        outs = [[float(o) for o in call(data)] for _ in range(4)]
        results.append((outs, [p.get_value() for p in params]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


def test_large_parameters_skip_the_quick_start(monkeypatch, caplog):
    loss, params, x, data = factor_problem()
    assert downhill.build('sgd', loss, inputs=[x], mode='NUMBA', quick_start=True)._quick_start
    monkeypatch.setattr(compiling, 'QUICK_START_MAX_BYTES', 8 * (12 * 3 + 3 * 8) - 1)
    with caplog.at_level('INFO', logger='downhill'):
        opt = downhill.build('sgd', loss, inputs=[x], mode='NUMBA', quick_start=True)
    assert not opt._quick_start
    assert 'no quick start: the parameters take 0.0 MiB' in caplog.text


def test_quick_modes_compile_synchronously():
    """In a Python-linker mode (the test suite's FAST_COMPILE) nothing runs in the background."""
    loss, params, x, data = factor_problem()
    opt = downhill.build('sgd', loss, inputs=[x])
    list(opt.iterate([[data]], max_updates=2))
    assert not isinstance(opt._compiled_step(), compiling.Background)
    assert not isinstance(opt._compiled_eval(), compiling.Background)
    assert opt.wait_compiled(timeout=0)


def test_quick_start_false_compiles_synchronously():
    loss, params, x, data = factor_problem()
    opt = downhill.build('sgd', loss, inputs=[x], mode='CVM', quick_start=False)
    assert opt._quick_start is False
    with pytest.raises(TypeError, match='quick_start must be True or False'):
        downhill.build('sgd', loss, inputs=[x], quick_start='yes')
    # and compiling before the first update is the default
    assert downhill.build('sgd', loss, inputs=[x], mode='CVM')._quick_start is False


def test_unknown_mode_is_named():
    loss, params, x, data = factor_problem()
    with pytest.raises(ValueError, match="mode must be None, a PyTensor mode name.*got 'FASTEST'"):
        downhill.build('sgd', loss, inputs=[x], mode='FASTEST')


def make_background(fail=False, gate=None):
    """A Background over a tiny function whose 'final' version is FAST_COMPILE's (or fails).

    Both are compiled here, in the test's thread (PyTensor's compiler never
    runs in another one); the background part waits for ``gate``, as a JIT
    compiling the kernel would.
    """
    s = pytensor.shared(np.float64(0.0), name='s')

    def make(mode):
        return pytensor.function([], [s * 2], updates=[(s, s + 1)], mode=mode)
    final = make('FAST_COMPILE')

    def finish(sample):
        if gate is not None:
            gate.wait(10)
        if fail:
            raise RuntimeError('the compiler broke')
        return final
    fn = compiling.Background(make(compiling.quick_mode()), finish, 'test')
    return fn, s


def test_background_switches_and_keeps_state():
    gate = threading.Event()
    fn, s = make_background(gate=gate)
    assert fn._thread.daemon  # never keeps the process alive at exit
    assert not fn._started  # nothing starts before the first call
    assert float(fn()[0]) == 0.0  # quick version
    assert fn._started and fn.sample == ()
    assert float(fn()[0]) == 2.0  # still quick: the compiler waits for the gate
    assert fn.final is None
    gate.set()
    assert fn.wait(10) is not None
    assert float(fn()[0]) == 4.0  # final version, same shared state
    assert s.get_value() == 3.0


def record_pauses(monkeypatch, fn, release=None):
    """The list of the pauses ``fn`` (a Background) takes, none of them slept.

    ``release`` (an Event) is set in the first pause and the pause lasts
    until the compiler is done: the final function is ready as it ends.
    """
    waits, done = [], fn._done

    class Recording:
        def wait(self, timeout=None):
            waits.append(timeout)
            if release is None:
                return False
            release.set()
            return done.wait(10)

        def __getattr__(self, name):
            return getattr(done, name)
    monkeypatch.setattr(fn, '_done', Recording())
    return waits


def test_the_first_call_returns_without_yielding_and_later_ones_pause_for_the_compiler(monkeypatch):
    gate = threading.Event()
    fn, s = make_background(gate=gate)
    waits = record_pauses(monkeypatch, fn, release=gate)
    fn.burst = 0  # a sleep after every call
    assert float(fn()[0]) == 0.0  # quick version, returned at once
    owed = fn._owed
    assert waits == [] and owed > 0
    assert float(fn()[0]) == 2.0  # paused for the compiler, which finished meanwhile
    assert waits == [owed] and fn._owed == 0
    # the final function is ready but waits for its turn: the switch is counted in calls
    assert fn.final is not None and not fn.switched and fn.calls == 2
    assert s.get_value() == 2.0


def test_the_switch_falls_on_the_same_call_however_fast_the_compiler_is():
    """The final version runs from call quick_calls + 1 on, ready early or late (never by the clock)."""
    for delay in (0.0, 0.3):
        ran = []
        gate = threading.Event()

        def compile_final(sample):
            gate.wait(delay)
            return lambda i: ran.append(('final', i))
        fn = compiling.Background(lambda i: ran.append(('quick', i)), compile_final, 'test',
                                  quick_calls=3)
        fn(0)
        if delay == 0.0:
            fn._thread.join(10)  # compiled before the second call
        for i in range(1, 6):
            fn(i)
        assert ran == [('quick', 0), ('quick', 1), ('quick', 2),
                       ('final', 3), ('final', 4), ('final', 5)], delay
        assert fn.switched and fn.settled() is fn.final


def test_a_follower_switches_with_its_leader():
    leader = compiling.Background(lambda: 'quick', lambda sample: (lambda: 'final'), 'step', quick_calls=2)
    follower = compiling.Background(lambda: 'quick', lambda sample: (lambda: 'final'), 'eval', quick_calls=10 ** 9)
    follower.follow(leader)
    assert [leader(), follower(), leader(), follower()] == ['quick'] * 4
    assert leader() == 'final'  # the leader's third call switches it...
    assert follower() == 'final'  # ...and the follower's next call follows


def test_short_quick_calls_add_up_before_they_yield(monkeypatch):
    gate = threading.Event()
    fn, s = make_background(gate=gate)
    waits = record_pauses(monkeypatch, fn)
    fn.burst = 3600.0  # no call is that long: none yields
    for _ in range(5):
        fn()
    assert waits == [] and fn._owed > 0
    owed = fn._owed
    fn.burst = owed / fn.yield_share  # what the five calls owe now reaches a burst
    fn()
    assert waits == [owed] and s.get_value() == 6.0
    gate.set()
    fn._thread.join(10)  # the compile ends here, not in a later test
    assert fn.final is not None


def test_background_error_is_raised_in_the_callers_thread():
    fn, s = make_background(fail=True)
    fn.quick_calls = 2
    fn()  # the quick version runs; the final one fails to compile in the background
    fn._thread.join(10)
    fn()  # still the quick version's turn: the error waits for the switch, where it always comes
    with pytest.raises(RuntimeError, match='the compiler broke'):
        fn()
    with pytest.raises(RuntimeError, match='the compiler broke'):
        fn.wait(10)
    assert s.get_value() == 2.0


def test_follower_starts_after_its_leader():
    gate = threading.Event()
    first, _ = make_background(gate=gate)
    second, _ = make_background()
    second.follow(first)
    second()  # its own first call does not start it
    assert not second._started
    first()
    gate.set()
    assert first.wait(10) is not None
    assert second.wait(10) is not None


def play_numba(monkeypatch):
    """FAST_COMPILE plays Numba: slow to compile, its machine code compiled at the first call."""
    monkeypatch.setattr(compiling, 'is_quick', lambda mode: False)
    monkeypatch.setattr(downhill._compat, 'compiles_at_first_call', lambda fn: True)


def test_checkpointed_runs_never_use_the_quick_step(monkeypatch, tmp_path):
    """checkpoint= waits for the final step, so a resumed run repeats the same code bit for bit."""
    play_numba(monkeypatch)
    loss, params, x, data = factor_problem()
    opt = downhill.build('adam', loss, inputs=[x], quick_start=True)
    step, evaluate = opt._compiled_step(), opt._compiled_eval()
    assert isinstance(step, compiling.Background) and isinstance(evaluate, compiling.Background)

    def quick(*args):
        raise AssertionError('a quick-start function ran in a checkpointed run')
    step.quick = evaluate.quick = quick
    opt.minimize([[data]], learning_rate=0.01, max_updates=3, checkpoint=str(tmp_path / 'c.npz'))
    assert step.final is not None and evaluate.final is not None
    assert (tmp_path / 'c.npz').exists()


def test_keep_freed_memory_is_idempotent(monkeypatch):
    monkeypatch.setattr(compiling, '_FREED_MEMORY_KEPT', None)
    monkeypatch.setenv('DOWNHILL_KEEP_FREED_MEMORY', '0')
    assert compiling.keep_freed_memory() is False
    assert compiling.keep_freed_memory() is False  # decided once per process


def test_the_loop_drops_the_switching_runner_once_the_final_step_is_ready(monkeypatch):
    """After the switch the loop calls the final step's own runner: no wrapper is left per update."""
    play_numba(monkeypatch)
    loss, params, x, data = factor_problem()
    opt = downhill.build('adam', loss, inputs=[x], quick_start=True)
    step = opt._compiled_step()
    release = threading.Event()
    start = step.start
    step.start = lambda: start() if release.is_set() else None
    it = opt.iterate([[data]], learning_rate=0.01, max_updates=6, validate_every=10 ** 6)

    def runner():
        return it.gi_frame.f_locals['run_train']
    next(it)
    next(it)
    switching = runner()
    assert step.final is None and switching.settled() is None  # still the quick step
    release.set()
    assert opt.wait_compiled(timeout=60)
    next(it)  # this pass finds the final step ready; the loop then swaps runners
    assert switching.settled() is not None and runner() is switching.settled()
    assert not hasattr(runner(), 'settled')
    assert len(list(it)) == 3  # and the loop goes on to max_updates


def test_the_allocator_is_left_alone_unless_asked(monkeypatch):
    monkeypatch.setattr(compiling, '_FREED_MEMORY_KEPT', None)
    monkeypatch.delenv('DOWNHILL_KEEP_FREED_MEMORY', raising=False)
    loss, params, x, data = factor_problem()
    downhill.build('sgd', loss, inputs=[x])._compiled_step()
    assert compiling._FREED_MEMORY_KEPT is None  # mallopt was never called
    monkeypatch.setenv('DOWNHILL_KEEP_FREED_MEMORY', '1')
    monkeypatch.setattr(compiling, 'keep_freed_memory', lambda: 'asked')
    assert compiling.keep_freed_memory_if_asked() == 'asked'


def test_importing_downhill_changes_nothing_in_pytensor():
    import subprocess
    import sys
    code = ('import pytensor; from pytensor.compile import optdb; before = set(optdb.__position__); '
            'mode = pytensor.config.mode; import downhill; '
            'assert set(optdb.__position__) == before, set(optdb.__position__) - before; '
            'assert pytensor.config.mode == mode; '
            'from downhill.backend.fusion import mode_with_fusion; mode_with_fusion("NUMBA"); '
            'print(sorted(set(optdb.__position__) - before))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # the rewrites are registered when a Numba mode first needs them (PyTensor 3), under their
    # tags only; PyTensor registers some of its own on the way
    added = out.stdout.split('\n')[-2]
    assert ("'fuse_stencils', 'fuse_sums'" in added) == (downhill._compat.PYTENSOR_VERSION >= (3,))
