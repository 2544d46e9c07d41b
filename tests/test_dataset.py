"""Dataset (ported from the old suite, plus the newer array types)."""

import numpy as np
import pytensor
import pytest

import downhill


def assert_size(ds, i, expected, axis=0):
    s = ds._slices[i][0][axis]
    assert s.stop - s.start == expected


def test_rng():
    ds = downhill.Dataset([np.random.randn(40, 2)], rng=4)
    assert ds.rng.randint(10) == 7
    ds = downhill.Dataset([np.random.randn(40, 2)], rng=np.random.RandomState(4))
    assert ds.rng.randint(10) == 7


def test_name():
    ds = downhill.Dataset([np.random.randn(40, 2)], name='foo')
    assert ds.name == 'foo'
    ds = downhill.Dataset([np.random.randn(40, 2)])
    assert ds.name.startswith('dataset') and ds.name[7:].isdigit()


def test_batch_size():
    ds = downhill.Dataset([np.random.randn(40, 2)], batch_size=10, rng=4)
    assert len(ds._slices) == 4
    for i in range(4):
        assert_size(ds, i, 10)
    ds = downhill.Dataset([np.random.randn(40, 2)], batch_size=11, rng=4)
    assert sorted(s[0][0].stop - s[0][0].start for s in ds._slices) == [7, 11, 11, 11]


def test_batch_size_zero_means_everything():
    ds = downhill.Dataset([np.random.randn(40, 2)], batch_size=0)
    assert len(ds._slices) == 1
    assert_size(ds, 0, 40)


def test_axis():
    x = np.random.randn(3, 40)
    ds = downhill.Dataset([x], batch_size=10, axis=1)
    batch = next(iter(ds))
    assert batch[0].shape == (3, 10)


def test_batches_cover_the_data_and_reshuffle():
    x = np.arange(40.0)[:, None]
    ds = downhill.Dataset([x], batch_size=10, rng=1)
    first = [b[0][0, 0] for b in ds]
    assert sorted(first) == [0, 10, 20, 30]
    second = [b[0][0, 0] for b in ds]
    assert sorted(second) == [0, 10, 20, 30]
    orders = {tuple([b[0][0, 0] for b in ds]) for _ in range(10)}
    assert len(orders) > 1


def test_iteration_size():
    def batches_unchanged(previous):
        return all(a == b for a, b in zip(ds._slices, previous))

    ds = downhill.Dataset([np.random.randn(40, 2)], batch_size=5, iteration_size=3)
    previous = list(ds._slices)
    assert sum(1 for _ in ds) == 3 and ds._index == 3 and batches_unchanged(previous)
    previous = list(ds._slices)
    assert sum(1 for _ in ds) == 3 and ds._index == 6 and batches_unchanged(previous)
    previous = list(ds._slices)
    assert sum(1 for _ in ds) == 3 and ds._index == 1 and not batches_unchanged(previous)


def test_callable():
    ds = downhill.Dataset(lambda: 'hello', iteration_size=10)
    assert list(ds) == ['hello'] * 10


def test_callable_length():
    class Batches:
        called = 0

        def __call__(self):
            self.called += 1
            return 'hello'

        def __len__(self):
            return 10

    batches = Batches()
    ds = downhill.Dataset(batches)
    assert list(ds) == ['hello'] * 10
    assert batches.called == 10
    assert downhill.Dataset(lambda: 1).iteration_size == 100


def test_shared():
    x = pytensor.shared(np.random.randn(40, 2))
    ds = downhill.Dataset([x], batch_size=10, rng=4)
    assert len(ds._slices) == 4
    batch = next(iter(ds))[0]
    assert isinstance(batch, np.ndarray) and batch.shape == (10, 2)


def test_pandas():
    pd = pytest.importorskip('pandas')
    x = pd.DataFrame(np.random.randn(40, 2))
    s = pd.Series(np.arange(40.0))
    ds = downhill.Dataset([x, s], batch_size=10, rng=4)
    bx, bs = next(iter(ds))
    assert bx.shape == (10, 2) and bs.shape == (10,)
    np.testing.assert_array_equal(x.to_numpy()[bs.astype(int)], bx)


def test_sparse():
    ss = pytest.importorskip('scipy.sparse')
    for make in (ss.csr_matrix, ss.csc_matrix, ss.csr_array):
        x = make(np.eye(40))
        ds = downhill.Dataset([x], batch_size=10)
        batch = next(iter(ds))[0]
        assert ss.issparse(batch) and batch.shape == (10, 40)


def test_sparse_input_trains():
    ss = pytest.importorskip('scipy.sparse')
    import pytensor.sparse
    x = pytensor.sparse.csr_matrix('x', dtype='float64')
    y = pytensor.tensor.vector('y')
    w = pytensor.shared(np.zeros(5), name='w')
    loss = pytensor.tensor.sqr(pytensor.sparse.structured_dot(x, w[:, None])[:, 0] - y).mean()
    X = ss.random(100, 5, density=0.5, format='csr', random_state=0)
    Y = X @ np.arange(5.0)
    opt = downhill.build('adam', loss, inputs=[x, y])
    before = opt.evaluate([X, Y])['loss']
    list(opt.iterate([X, Y], batch_size=20, learning_rate=0.1, max_updates=31, validate_every=5))
    assert opt.evaluate([X, Y])['loss'] < before / 10


def test_bad_input_type():
    with pytest.raises(ValueError):
        downhill.Dataset([[1]])


def test_bad_arguments():
    with pytest.raises(TypeError, match='batch_size must be an int'):
        downhill.Dataset([np.zeros(3)], batch_size=2.5)
    with pytest.raises(ValueError, match='iteration_size must be a whole number'):
        downhill.Dataset([np.zeros(3)], iteration_size=-1)
    with pytest.raises(TypeError, match='rng must be an int seed or a numpy.random.RandomState'):
        downhill.Dataset([np.zeros(3)], rng='x')
