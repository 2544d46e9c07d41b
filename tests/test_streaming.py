"""Datasets over arrays stored out of memory: numpy.memmap, h5py, zarr.

Every test compares against the same data held in memory: the batches (and a
training trajectory) must be identical, and only the rows of the current
batch may be read.
"""

import pickle

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import dataset as D

N, DIM = 103, 4


@pytest.fixture
def arrays():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(N, DIM))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.01 * rng.normal(size=N)
    return X, y


def _memmaps(tmp_path, X, y):
    fx = np.memmap(tmp_path / 'x.dat', dtype=X.dtype, mode='w+', shape=X.shape)
    fx[:] = X
    fx.flush()
    np.save(tmp_path / 'y.npy', y)   # an .npy header: the data starts at an offset
    return (np.memmap(tmp_path / 'x.dat', dtype=X.dtype, mode='r', shape=X.shape),
            np.load(tmp_path / 'y.npy', mmap_mode='r'))


def _h5(tmp_path, X, y):
    h5py = pytest.importorskip('h5py')
    f = h5py.File(tmp_path / 'data.h5', 'w')
    f.create_dataset('x', data=X, chunks=(16, DIM))
    f.create_dataset('y', data=y)
    return f['x'], f['y']


def _zarr(tmp_path, X, y):
    zarr = pytest.importorskip('zarr')
    zx = zarr.create_array(str(tmp_path / 'x.zarr'), shape=X.shape, chunks=(16, DIM), dtype=X.dtype)
    zx[:] = X
    zy = zarr.create_array(str(tmp_path / 'y.zarr'), shape=y.shape, chunks=(16,), dtype=y.dtype)
    zy[:] = y
    return zx, zy


STORES = {'memmap': _memmaps, 'hdf5': _h5, 'zarr': _zarr}


def _batches(inputs, passes=2, **kwargs):
    ds = downhill.Dataset(list(inputs), batch_size=10, rng=3, **kwargs)
    return [[np.array(a) for a in batch] for _ in range(passes) for batch in ds]


@pytest.mark.parametrize('store', list(STORES))
def test_same_batches_as_in_memory(store, tmp_path, arrays):
    stored = STORES[store](tmp_path, *arrays)
    expected = _batches(arrays)
    got = _batches(stored)
    assert len(got) == len(expected) == 2 * 11
    for a, b in zip(got, expected):
        assert [x.shape for x in a] == [x.shape for x in b]
        for x, z in zip(a, b):
            np.testing.assert_array_equal(x, z)


@pytest.mark.parametrize('store', list(STORES))
def test_same_training_trajectory_as_in_memory(store, tmp_path, arrays):
    stored = STORES[store](tmp_path, *arrays)

    def train(inputs):
        x, y = pt.matrix('x'), pt.vector('y')
        w = pytensor.shared(np.zeros(DIM), name='w')
        loss = pt.sqr(x @ w - y).mean()
        opt = downhill.build('adam', loss, inputs=[x, y])
        data = downhill.Dataset(list(inputs), batch_size=10, rng=5)
        history = [t['loss'] for t, _ in opt.iterate(data, learning_rate=0.05, max_updates=6,
                                                     validate_every=2, patience=100)]
        return history, w.get_value()

    history, w = train(arrays)
    history2, w2 = train(stored)
    assert history2 == history
    np.testing.assert_array_equal(w2, w)
    assert history[-1] < history[0] / 3


def test_memmap_is_read_from_the_file_batch_by_batch(tmp_path, arrays, monkeypatch):
    """No batch comes from the mapping: each is one read of its own rows' bytes."""
    mx, my = _memmaps(tmp_path, *arrays)
    reads = []
    real = D._read_file

    def counting(path, position, out):
        reads.append((str(path), position, out.nbytes))
        real(path, position, out)
    monkeypatch.setattr(D, '_read_file', counting)
    ds = downhill.Dataset([mx, my], batch_size=10, rng=3)
    assert reads == []
    batch = next(iter(ds))
    assert all(type(b) is np.ndarray for b in batch)
    assert reads[0][2] == len(batch[0]) * DIM * 8 and reads[1][2] == len(batch[1]) * 8
    start = reads[0][1] // (DIM * 8)
    np.testing.assert_array_equal(batch[0], arrays[0][start:start + len(batch[0])])
    assert reads[1][1] == my.offset + start * 8   # the .npy header is skipped
    list(ds)
    assert sum(n for p, _, n in reads if p.endswith('x.dat')) == arrays[0].nbytes + 10 * DIM * 8


def test_memmap_view_reads_from_its_own_offset(tmp_path, arrays):
    mx, _ = _memmaps(tmp_path, *arrays)
    view = mx[37:]
    assert D._file_offset(view) == 37 * DIM * 8
    batches = _batches([view], passes=1)
    expected = _batches([arrays[0][37:]], passes=1)
    for a, b in zip(batches, expected):
        np.testing.assert_array_equal(a[0], b[0])


def test_copy_on_write_memmap_sees_its_own_changes(tmp_path, arrays):
    mx, _ = _memmaps(tmp_path, *arrays)
    cow = np.memmap(mx.filename, dtype=mx.dtype, mode='c', shape=mx.shape)
    cow[:] = 0.0                                   # not written to the file
    for batch in downhill.Dataset([cow], batch_size=10):
        assert not batch[0].any()


def test_memmap_along_another_axis_is_copied_through_the_mapping(tmp_path, arrays):
    mx, _ = _memmaps(tmp_path, *arrays)
    got = _batches([mx.T], passes=1, axis=1)
    expected = _batches([arrays[0].T], passes=1, axis=1)
    for a, b in zip(got, expected):
        assert type(a[0]) is np.ndarray
        np.testing.assert_array_equal(a[0], b[0])


class CountingArray:
    """A minimal out-of-core array: shape, dtype and slicing; counts the rows it hands out."""

    def __init__(self, data):
        self._data = data
        self.shape, self.dtype = data.shape, data.dtype
        self.rows_read = 0

    def __getitem__(self, where):
        out = self._data[where]
        self.rows_read += out.shape[0]
        return out


def test_only_the_current_batch_is_read(arrays):
    X, y = arrays
    cx = CountingArray(X)
    ds = downhill.Dataset([cx, y], batch_size=10, rng=3)
    assert cx.rows_read == 0
    it = iter(ds)
    first = next(it)
    assert cx.rows_read == len(first[0]) <= 10
    next(it)
    assert cx.rows_read <= 20
    for _ in it:
        pass
    assert cx.rows_read == N


def test_float64_file_feeds_a_float32_input(tmp_path, arrays):
    mx, my = _memmaps(tmp_path, *arrays)
    x, y = pt.fmatrix('x'), pt.fvector('y')
    w = pytensor.shared(np.zeros(DIM, 'float32'), name='w')
    opt = downhill.build('sgd', pt.sqr(x @ w - y).mean(), inputs=[x, y])
    value = opt.evaluate(downhill.Dataset([mx, my], batch_size=0))['loss']
    assert value == pytest.approx(float(np.mean(arrays[1] ** 2)), rel=1e-5)


def test_dataset_pickles(arrays):
    ds = downhill.Dataset(list(arrays), batch_size=10, rng=3)
    copy = pickle.loads(pickle.dumps(ds))
    for a, b in zip(copy, ds):
        np.testing.assert_array_equal(a[0], b[0])


def test_an_object_without_shape_is_still_refused():
    class NoShape:
        dtype = np.float64

        def __getitem__(self, where):
            return 0
    with pytest.raises(ValueError, match='input 0 has type'):
        downhill.Dataset([NoShape()])
    with pytest.raises(ValueError, match='input 0 has type .*TensorVariable'):
        downhill.Dataset([pt.matrix('x')])


def test_the_scale_page_runs():
    """Every ``.. code-block:: python`` of docs/scale.rst, in order, in one namespace.

    The block marked "not run in the tests" (an executor example with a
    placeholder module) is skipped, and so is the HDF5 block without h5py.
    """
    import pathlib
    import re
    page = (pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'scale.rst').read_text()
    blocks = re.findall(r'\.\. code-block:: python\n\n((?:   .*\n|\n)+)', page)
    assert len(blocks) == 4
    namespace = {}
    for block in blocks:
        code = '\n'.join(line[3:] for line in block.splitlines())
        if 'not run in the tests' in code:
            continue
        if 'import h5py' in code:
            try:
                import h5py  # noqa: F401
            except ImportError:
                continue
        exec(compile(code, 'docs/scale.rst', 'exec'), namespace)
