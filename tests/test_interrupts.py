"""Ctrl-C at any moment of a checkpointed run: the run ends at the end of that iteration.

Each test sends SIGINT to the process from inside one piece of the loop's
own work (a batch being drawn, ``np.savez``, the zip CRC, ``os.fsync``,
``Dataset.state``, the final write) and checks what the user gets: the loop
returns (no KeyboardInterrupt escapes), the final checkpoint holds the last
completed iteration, resuming from it repeats the uninterrupted run bit for
bit, and the parameters left are the best ones.
"""

import os
import signal
import zipfile

import numpy as np
import pytest

import downhill
from downhill import checkpoint as ck
from util import linear_regression


def _run(path, max_updates, every=2, validate_every=3):
    """A regression with 4 batches per iteration; returns the optimizer and each iteration's loss."""
    loss, (w, b), (x, y), (X, Y), _ = linear_regression(n=100, seed=1)
    opt = downhill.build('adam', loss, inputs=[x, y])
    train = downhill.Dataset([X[:80], Y[:80]], name='train', batch_size=10, iteration_size=4, rng=5)
    valid = downhill.Dataset([X[80:], Y[80:]], name='valid', batch_size=0)
    seen = [t['loss'] for t, _ in opt.iterate(train, valid, learning_rate=0.05, patience=100,
                                              validate_every=validate_every, max_updates=max_updates,
                                              checkpoint=path, checkpoint_every=every)]
    return opt, seen, (w, b)


def _interrupt_batches(monkeypatch, *at):
    """SIGINT from inside the drawing of the training batches numbered ``at`` (from 1)."""
    real, drawn = downhill.Dataset.__iter__, [0]

    def batches(self):
        for batch in real(self):
            if self.name == 'train':
                drawn[0] += 1
                if drawn[0] in at:
                    os.kill(os.getpid(), signal.SIGINT)
            yield batch
    monkeypatch.setattr(downhill.Dataset, '__iter__', batches)


def _interrupt_once(monkeypatch, owner, name, after=0):
    """Patch ``owner.name`` to send SIGINT to this process from inside its ``after+1``-th call."""
    real, calls = getattr(owner, name), [0]

    def patched(*args, **kwargs):
        calls[0] += 1
        if calls[0] == after + 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, patched)
    return calls


@pytest.mark.parametrize('owner, name, after', [
    (ck.np, 'savez', 0), (zipfile, 'crc32', 0), (ck.os, 'fsync', 0), (downhill.Dataset, 'state', 2)],
    ids=['savez', 'crc32', 'fsync', 'dataset-state'])  # the loop reads both datasets' state at the start
def test_ctrl_c_inside_a_checkpoint_write_ends_the_run_at_that_iteration(
        tmp_path, monkeypatch, owner, name, after):
    path = tmp_path / 'run.npz'
    calls = _interrupt_once(monkeypatch, owner, name, after)
    opt, seen, (w, b) = _run(path, max_updates=10)
    assert calls[0] >= 1
    # the first write is at iteration 2; the loop stops there and writes its final checkpoint
    assert len(seen) == 2
    assert ck.read(path).meta['loop']['iteration'] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # the parameters left are the best ones (those of the only validation: the start)
    assert np.array_equal(w.get_value(), np.zeros_like(w.get_value()))


def test_ctrl_c_in_the_middle_of_a_pass_finishes_the_pass_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    full_path, part_path = tmp_path / 'full.npz', tmp_path / 'part.npz'
    _, full, _ = _run(full_path, max_updates=8)
    with monkeypatch.context() as patch:
        _interrupt_batches(patch, 11)  # the 3rd batch of iteration 3
        _, part, _ = _run(part_path, max_updates=8)
    assert len(part) == 3
    assert ck.read(part_path).meta['loop']['iteration'] == 3
    _, rest, _ = _run(part_path, max_updates=8)
    assert part + rest == full  # bit for bit: the same floats
    assert np.array_equal(ck.read(part_path).arrays['param/0'], ck.read(full_path).arrays['param/0'])


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'run.npz'
    _interrupt_batches(monkeypatch, 14, 15)  # twice within iteration 4, after the write at 2
    opt, seen, (w, b) = _run(path, max_updates=10, validate_every=1)
    assert len(seen) == 3
    # the half-done iteration is not saved: the file keeps the write at iteration 2
    assert ck.read(path).meta['loop']['iteration'] == 2
    assert np.array_equal(w.get_value(), opt._best_params[0])


def test_ctrl_c_during_the_final_checkpoint_still_restores_the_best_parameters(tmp_path, monkeypatch):
    path = tmp_path / 'run.npz'
    # writes at iterations 2 and 4, then the final one: interrupted
    calls = _interrupt_once(monkeypatch, ck.np, 'savez', after=2)
    opt, seen, (w, b) = _run(path, max_updates=4, validate_every=1)
    assert calls[0] == 3 and len(seen) == 4
    assert ck.read(path).meta['loop']['iteration'] == 4
    assert np.array_equal(w.get_value(), opt._best_params[0])
    assert not np.array_equal(w.get_value(), np.zeros_like(w.get_value()))
