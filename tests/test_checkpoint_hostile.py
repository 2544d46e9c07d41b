"""Damaged and hostile checkpoint files: refused by read() or check(), naming the file and the
culprit, before anything changes; nothing blocks, allocates without bound or recurses without end.
"""

import io
import json
import os
import signal
import socket
import struct
import zipfile

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import checkpoint as ck


def _build(algo='adam', value=1.0):
    w = pytensor.shared(np.full(3, value), name='w')
    return downhill.build(algo, pt.sqr(w - 2).sum()), w


_SAVED = {}


def _saved(tmp_path, algo='adam', updates=2, **kw):
    """A valid checkpoint of a tiny problem after ``updates`` updates (made once, then copied)."""
    key = (algo, updates, tuple(sorted(kw.items())))
    path = tmp_path / f'{algo}.npz'
    if key not in _SAVED:
        opt, _ = _build(algo)
        if updates:
            list(opt.iterate(None, learning_rate=0.1, max_updates=updates, **kw))
        opt.save(path)
        _SAVED[key] = path.read_bytes()
    path.write_bytes(_SAVED[key])
    return path


def _parts(path):
    with np.load(path) as z:
        arrays = dict(z)
    return arrays, json.loads(str(arrays.pop('meta')))


def _rewrite(path, edit):
    """Apply ``edit(meta, arrays)`` to the checkpoint at ``path`` and write it back."""
    arrays, meta = _parts(path)
    edit(meta, arrays)
    ck.write(path, arrays, meta)
    return path


def _refused(path, call=ck.read, *culprits):
    with pytest.raises(ValueError) as info:
        call(path)
    text = str(info.value)
    assert str(path) in text, text
    for culprit in culprits:
        assert culprit in text, text
    return text


def _values(opt):
    """Every shared variable the optimizer owns, the best parameters and update_count."""
    out = {f'param{i}': p.get_value() for i, p in enumerate(opt._params)}
    out.update({f'best{i}': np.array(b) for i, b in enumerate(opt._best_params)})
    out.update({f'state{k[1]}{id(k[0])}': v.get_value() for k, v in opt._states.items()})
    out.update({f'hyper{k}': v.get_value() for k, v in opt._hypers.items()})
    out['update_count'] = opt.update_count.get_value()
    return out


def _unchanged(before, opt):
    after = _values(opt)
    assert set(before) == set(after)
    for key, value in before.items():
        assert np.array_equal(value, after[key], equal_nan=True), key


# ------------------------------------------------------------- the archive


def test_an_npy_file_named_npz(tmp_path):
    path = tmp_path / 'array.npz'
    with open(path, 'wb') as f:
        np.save(f, np.ones(3))
    _refused(path, ck.read, 'single NumPy array (.npy)')


def _member_header(shape, descr='<f8'):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {'descr': descr, 'fortran_order': False, 'shape': shape})
    return buf.getvalue()


def _replace_member(path, name, data):
    arrays, meta = _parts(path)
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('meta.npy', _npy(np.array(json.dumps(meta))))
        for key, value in arrays.items():
            z.writestr(f'{key}.npy', data if key == name else _npy(value))


def _npy(value):
    buf = io.BytesIO()
    np.save(buf, value)
    return buf.getvalue()


def test_a_member_header_claiming_ten_trillion_elements(tmp_path):
    path = _saved(tmp_path)
    _replace_member(path, 'param/0', _member_header((10**13,)) + b'\0' * 24)
    text = _refused(path, ck.read, "'param/0'", '(10000000000000,)')
    assert '80000000000000 bytes' in text and '24' in text


def test_a_zip_entry_claiming_more_bytes_than_the_file_holds(tmp_path):
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo('param/0.npy')
    # the central directory's sizes of that member (compressed at +20, uncompressed at +24)
    start = data.index(b'PK\x01\x02')
    while True:
        name_len = struct.unpack('<H', data[start + 28:start + 30])[0]
        if data[start + 46:start + 46 + name_len] == b'param/0.npy':
            break
        start = data.index(b'PK\x01\x02', start + 4)
    assert struct.unpack('<I', data[start + 24:start + 28])[0] == info.file_size
    data[start + 20:start + 28] = struct.pack('<II', 2**31, 2**31)
    path.write_bytes(bytes(data))
    _refused(path, ck.read, "'param/0'", str(2**31))


@pytest.mark.parametrize('meta, culprit', [
    (np.float64(3.0), 'float64'),
    (np.array(['{}', '{}']), 'shape (2,)'),
    (np.array('not json {'), 'not valid JSON'),
    (np.array('[1, 2]'), 'a JSON object'),
    (np.array([{'format': ck.FORMAT}], dtype=object), 'object'),
], ids=['float', 'not-0d', 'not-json', 'a-list', 'object-dtype'])
def test_a_garbage_meta_member(tmp_path, meta, culprit):
    path = _saved(tmp_path)
    arrays, _ = _parts(path)
    np.savez(path, meta=meta, **arrays)
    _refused(path, ck.read, "'meta'", culprit)


def test_meta_nested_a_hundred_thousand_deep(tmp_path):
    path = _saved(tmp_path)
    arrays, meta = _parts(path)
    text = json.dumps(meta)[:-1] + ', "extra": ' + '[' * 100_000 + ']' * 100_000 + '}'
    np.savez(path, meta=np.array(text), **arrays)
    _refused(path, ck.read, "'meta'", 'nested too deeply')


# ------------------------------------------------------------ the meta document


def _set(*keys, value=None, delete=False):
    def edit(meta, arrays):
        target = meta
        for key in keys[:-1]:
            target = target[key]
        if delete:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return edit


@pytest.mark.parametrize('edit, culprit', [
    (_set('algorithm', value=3), "'algorithm'"),
    (_set('version', value=True), 'version'),
    (_set('params', value={}), "'params'"),
    (_set('params', 0, 'shape', delete=True), "params[0] has no 'shape'"),
    (_set('params', 0, 'shape', value='abc'), 'params[0].shape'),
    (_set('params', 0, 'name', value=[1]), 'params[0].name'),
    (_set('params', 0, 'dtype', value=None), 'params[0].dtype'),
    (_set('states', 0, 'param', value='w'), 'states[0].param'),
    (_set('states', 0, 'param', value=7), 'states[0].param'),
    (_set('states', 1, 'name', value=5), 'states[1].name'),
    (_set('states', 1, 'shape', value=[-3]), 'states[1].shape'),
    (_set('hyperparameters', value=[1]), "'hyperparameters'"),
    (_set('hyperparameters', 'learning_rate', value='fast'), "hyperparameters['learning_rate']"),
    (_set('generators', value={}), "'generators'"),
    (_set('generators', value=[{'name': 'r', 'kind': 'Dice', 'state': {}}]), 'generators[0].kind'),
    (_set('hooks', value=[{'type': 'x'}]), "hooks[0] has no 'best'"),
    (_set('hooks', value=[{'type': 'x', 'best': None, 'failures': -1, 'wait': 0,
                           'reductions': 0, 'value': 1.0}]), 'hooks[0].failures'),
    (_set('data', value=[]), "'data'"),
    (_set('data', 'valid', delete=True), "'data'"),
    (_set('data', 'train', value=5), "data['train']"),
    (_set('data', 'train', value='train'), "data['train']"),
    (_set('loop', delete=True), "no 'loop'"),
    (lambda meta, arrays: arrays.update(junk=np.ones(1)), "array 'junk'"),
    (lambda meta, arrays: arrays.update({'param/0': np.array(['a', 'b', 'c'])}), "'param/0'"),
    (lambda meta, arrays: (meta['states'].append(meta['states'][0]),
                           arrays.update({f'state/{len(meta["states"]) - 1}': arrays['state/0']})),
     'listed twice'),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_missing_or_mistyped_meta_entry(tmp_path, edit, culprit):
    path = _rewrite(_saved(tmp_path), edit)
    opt, w = _build()
    _refused(path, ck.read, culprit)
    _refused(path, opt.load, culprit)
    assert np.array_equal(w.get_value(), np.ones(3))


@pytest.mark.parametrize('field, value, culprit', [
    ('iteration', 'abc', "'abc'"),
    ('iteration', -1, '-1'),
    ('iteration', 2.5, '2.5'),
    ('failures', True, 'True'),
    ('best_at', 99, 'best_at 99'),
    ('validated_at', 'x', "'x'"),
    ('best_loss', 'low', "'low'"),
    ('validation', [1], '[1]'),
    ('validation', {'loss': 'x'}, "'x'"),
    ('validation', {'error': 0.5}, "'loss'"),
    ('best_at', None, 'None'),
])
def test_garbage_loop_fields(tmp_path, field, value, culprit):
    path = _rewrite(_saved(tmp_path), _set('loop', field, value=value))
    text = _refused(path, ck.read, field, culprit)
    assert 'loop' in text
    opt, w = _build()
    _refused(path, lambda p: opt.iterate(None, checkpoint=p), field)
    assert np.array_equal(w.get_value(), np.ones(3))


def test_loop_state_from_json_checks_its_input():
    with pytest.raises(ValueError, match=r"loop\.iteration should be a whole number >= 0, got 'abc'"):
        ck.LoopState.from_json(dict(ck.LoopState().to_json(), iteration='abc'))
    with pytest.raises(ValueError, match="loop has no 'failures'"):
        ck.LoopState.from_json({k: v for k, v in ck.LoopState().to_json().items() if k != 'failures'})


def _drop_state(name):
    """Remove the state entry ``name`` (and renumber the arrays after it)."""
    def edit(meta, arrays):
        j = [e['name'] for e in meta['states']].index(name)
        del meta['states'][j]
        values = [arrays.pop(f'state/{i}') for i in range(len(meta['states']) + 1)]
        del values[j]
        arrays.update({f'state/{i}': v for i, v in enumerate(values)})
    return edit


def test_a_missing_state_entry_is_named(tmp_path):
    path = _rewrite(_saved(tmp_path), _drop_state('t'))
    opt, w = _build()
    _refused(path, opt.load, "'t'", "parameter 0 ('w')")
    assert np.array_equal(w.get_value(), np.ones(3)) and opt.update_count.get_value() == 0
    again, w = _build()
    _refused(path, lambda p: again.iterate(None, checkpoint=p), "'t'")
    assert np.array_equal(w.get_value(), np.ones(3))
    _refused(_rewrite(_saved(tmp_path), _drop_state('update_count')), opt.load, 'update_count')


def test_states_that_a_setting_adds_may_be_missing(tmp_path):
    """Momentum (or amsgrad) turned on at resume, or a checkpoint from before the first update."""
    path = _saved(tmp_path)  # momentum 0: no velocity
    opt, w = _build()
    list(opt.iterate(None, checkpoint=path, learning_rate=0.1, momentum=0.5, amsgrad=True,
                     max_updates=4))
    assert ck.read(path).meta['loop']['iteration'] == 4
    early = _saved(tmp_path, updates=0)  # only update_count
    opt, w = _build()
    opt.load(early)
    list(opt.iterate(None, learning_rate=0.1, max_updates=1))
    # with momentum saved as nonzero, the velocity is required
    path = _rewrite(_saved(tmp_path, momentum=0.5), _drop_state('velocity'))
    _refused(path, _build()[0].load, "'velocity'")


def _with_dataset(tmp_path):
    X = np.arange(24.0).reshape(12, 2)
    x = pt.matrix('x')
    v = pytensor.shared(np.ones(2), name='v')
    opt = downhill.build('adam', pt.sqr(x - v).sum(), inputs=[x])
    path = tmp_path / 'data.npz'
    list(opt.iterate(downhill.Dataset([X], batch_size=3, rng=1), learning_rate=0.1, max_updates=2,
                     checkpoint=path))
    return path, X, x


@pytest.mark.parametrize('change, culprit', [
    (lambda s: s['rng'].update(keys=['k'] * 624), 'keys'),
    (lambda s: s['rng'].update(pos=10**6), 'pos'),
    (lambda s: s.update(order=[float(i) for i in s['order']]), 'order'),
    (lambda s: s.update(index='0'), 'index'),
    (lambda s: s.update(rng=[]), 'rng'),
], ids=['keys', 'pos', 'order', 'index', 'rng'])
def test_a_garbage_dataset_position(tmp_path, change, culprit):
    path, X, x = _with_dataset(tmp_path)
    _rewrite(path, lambda meta, arrays: change(meta['data']['train']))
    v = pytensor.shared(np.ones(2), name='v')
    opt = downhill.build('adam', pt.sqr(x - v).sum(), inputs=[x])
    before = _values(opt)
    train = downhill.Dataset([X], batch_size=3, rng=1)
    _refused(path, lambda p: opt.iterate(train, checkpoint=p), 'train', culprit)
    _unchanged(before, opt)


# ----------------------------------------------------------- not regular files


@pytest.fixture
def no_hang():
    """Turn a blocked call into a failure instead of a hung test run."""
    def fail(signum, frame):
        raise AssertionError('blocked for 20 s')
    if not hasattr(signal, 'SIGALRM'):
        yield
        return
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='needs FIFOs')
def test_a_fifo_is_refused_at_once(tmp_path, no_hang):
    path = tmp_path / 'pipe.npz'
    os.mkfifo(path)
    opt, w = _build()
    _refused(path, ck.read, 'FIFO', 'not a regular file')
    _refused(path, opt.load, 'FIFO')
    _refused(path, lambda p: opt.iterate(None, checkpoint=p), 'FIFO')
    assert np.array_equal(w.get_value(), np.ones(3))


def test_a_folder_a_device_and_a_socket_are_refused(tmp_path, no_hang):
    _refused(tmp_path, ck.read, 'directory')
    if os.path.exists('/dev/zero'):
        _refused('/dev/zero', ck.read, 'character device')
    if hasattr(socket, 'AF_UNIX'):
        path = tmp_path / 's.npz'
        server = socket.socket(socket.AF_UNIX)
        try:
            server.bind(str(path))
            _refused(path, ck.read, 'socket')
        finally:
            server.close()


def test_a_missing_file_is_still_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        ck.read(tmp_path / 'nothing.npz')


# ------------------------------------------------------------ whole or nothing


def test_load_with_a_bad_late_entry_changes_nothing(tmp_path):
    """A broken generator state (restored last) is found before the parameters are set."""
    def edit(meta, arrays):
        meta['generators'][0]['state']['state'] = 'garbage'
    path = _rewrite(_saved(tmp_path, 'esgd', updates=3), edit)
    opt, w = _build('esgd', value=5.0)
    list(opt.iterate(None, learning_rate=0.01, max_updates=1))
    before = _values(opt)
    assert len(opt._states) > 1
    _refused(path, opt.load, 'random generator', 'state')
    _unchanged(before, opt)
    assert opt._resume is None


def test_restore_is_whole_or_nothing(tmp_path):
    """If taking the host state back fails, the parameters, state and best values are put back."""

    class Fussy(downhill.Adam):
        def _host_state(self):
            return {'memory': np.zeros(2)}

        def _restore_host_state(self, arrays):
            raise RuntimeError('cannot take this back')

    downhill.optimizer.registry.unregister('fussy')  # not an algorithm for the other tests
    w = pytensor.shared(np.ones(3), name='w')
    opt = Fussy(pt.sqr(w - 2).sum())
    list(opt.iterate(None, learning_rate=0.1, max_updates=3))
    opt.save(tmp_path / 'f.npz')
    list(opt.iterate(None, learning_rate=0.1, max_updates=2))
    states = dict(opt._states)
    before = _values(opt)
    with pytest.raises(RuntimeError, match='cannot take this back'):
        opt.load(tmp_path / 'f.npz')
    _unchanged(before, opt)
    assert opt._states == states
