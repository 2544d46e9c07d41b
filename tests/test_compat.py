"""downhill._compat: each use of a PyTensor internal falls back to the public path when it cannot be used."""

import numpy as np
import pytensor
import pytensor.tensor as pt

from downhill import _compat


def test_the_running_pytensor_is_a_supported_one():
    assert _compat.supported()
    assert not _compat.supported((2, 37)) and not _compat.supported((4, 0))


def _function(mode='FAST_COMPILE'):
    x = pt.vector('x')
    s = pytensor.shared(np.zeros(3), name='s')
    return pytensor.function([x], [(x * s).sum()], updates=[(s, s + x)], mode=mode)


def test_the_lean_call_falls_back_to_the_function_without_its_internals():
    fn = _function()
    assert _compat.lean_caller(fn, 1) is None  # not a one-kernel JIT function: keep fn

    class Opaque:  # a PyTensor whose Function lacks the attributes the lean call reads
        vm = type('VM', (), {'jit_fn': staticmethod(lambda *a: a), 'inputs': []})()
    assert _compat.lean_caller(Opaque(), 1) is None


def test_precompiling_is_skipped_where_the_first_call_compiles_nothing():
    fn = _function()
    assert not _compat.compiles_at_first_call(fn)
    assert _compat.precompile(fn, [np.ones(3)]) is False


def test_a_node_by_node_run_falls_back_when_the_linker_cannot(monkeypatch):
    from pytensor.link.basic import PerformLinker
    x = pt.vector('x')
    w = pytensor.shared(np.ones(3), name='w')
    outputs = [x.dot(w)]
    err, culprits = _compat.failing_node([x], outputs, [np.ones(2)])  # 2 values for 3 weights
    assert isinstance(err, ValueError) and culprits == [x, w]
    assert _compat.failing_node([x], outputs, [np.ones(3)]) == (None, [])

    def broken(self, *args, **kwargs):
        raise AttributeError('no make_all here')
    monkeypatch.setattr(PerformLinker, 'make_all', broken)
    assert _compat.failing_node([x], outputs, [np.ones(2)]) is None  # the caller names every input


def test_generated_loops_leave_modes_they_do_not_fit_alone():
    registered = []
    for mode in ('FAST_COMPILE', 'CVM'):
        assert _compat.with_generated_loops(mode, ('t',), (), lambda: registered.append(1)) == mode
    assert registered == []  # nothing registered for a mode that does not use them
