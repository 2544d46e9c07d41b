"""Mini-batches of training and validation data."""

import logging
import mmap
import numbers
import os

import numpy as np
from pytensor.compile.sharedvalue import SharedVariable

log = logging.getLogger('downhill')


def _is_sparse(x):
    module = type(x).__module__ or ''
    if not module.startswith('scipy.sparse'):
        return False
    import scipy.sparse
    return scipy.sparse.issparse(x)


def _is_pandas(x):
    return (type(x).__module__ or '').startswith('pandas') and hasattr(x, 'iloc')


def _is_out_of_core(x):
    """An array-like read on demand: ``shape``, ``dtype`` and slicing, but not in memory.

    h5py ``Dataset``, zarr ``Array`` and the like (anything with ``shape``,
    ``dtype`` and ``__getitem__`` that is not one of the in-memory types).
    """
    if isinstance(x, (np.ndarray, SharedVariable, list, tuple, str, bytes, dict)):
        return False
    shape = getattr(x, 'shape', None)  # a tuple of ints: not a symbolic variable's shape
    return (isinstance(shape, tuple) and all(isinstance(n, numbers.Integral) for n in shape)
            and hasattr(x, 'dtype') and hasattr(x, '__getitem__')
            and not _is_sparse(x) and not _is_pandas(x))


def is_array(x):
    """True for the array types a Dataset can slice into mini-batches."""
    return (isinstance(x, (np.ndarray, SharedVariable)) or _is_sparse(x) or _is_pandas(x)
            or _is_out_of_core(x))


def _shape(x):
    if isinstance(x, SharedVariable):
        return x.get_value(borrow=True).shape
    return x.shape


#: The shuffling seed of a Dataset made without ``rng``.
DEFAULT_SEED = 0


class Dataset:
    """Mini-batches from arrays, or from a callable that returns one batch per call.

    Parameters
    ----------
    inputs : list or tuple of arrays, or callable
        Arrays (``numpy.ndarray`` or ``numpy.memmap``, PyTensor shared
        variables, ``scipy.sparse`` matrices or arrays, pandas
        ``DataFrame``/``Series``, or arrays stored out of memory: an h5py
        ``Dataset``, a zarr ``Array``, anything with ``shape``, ``dtype`` and
        slicing), one per input of the loss, all of the same length along
        ``axis``; or a callable taking no arguments that returns one batch (a
        list of arrays) per call.
    name : str, optional
        Used in log lines. Defaults to ``dataset0``, ``dataset1``, ...
    batch_size : int, optional
        Rows per mini-batch (the last one may be shorter). ``<= 0`` makes one
        batch of everything. Ignored for a callable. Default 32.
    iteration_size : int, optional
        Batches produced per pass (one pass is one iteration of the optimizer).
        Defaults to the number of batches; for a callable, ``len(callable)``
        when it has a length, else 100.
    axis : int, optional
        The axis along which arrays are split into batches. Default 0.
    rng : int or numpy.random.RandomState, optional
        Shuffles the batch order each time the whole set has been used (and
        once at the start). An int seeds a new ``RandomState``. The default,
        None, is the seed :data:`DEFAULT_SEED`, so that a script repeats its
        run bit for bit unless it asks otherwise (pass a seed of its own, or
        ``numpy.random.RandomState()`` for an order that changes from run to
        run).

    Notes
    -----
    Batches of numpy arrays are views, not copies. Shared variables are sliced
    on the host value; pandas objects are sliced with ``iloc``.

    Data larger than memory is streamed: only the rows of the current batch
    are read. An h5py or zarr array is sliced (one contiguous selection per
    batch, so h5py needs no sorted fancy indices). A ``numpy.memmap`` split
    along axis 0 in C order is read from its file (one read of the batch's
    bytes into a fresh array), without touching the mapping, so pages of the
    file already used do not stay in the process's resident memory; any other
    memmap (and a copy-on-write one, ``mode='c'``, whose changes are not in
    the file) is copied batch by batch through the mapping. See
    :doc:`/scale`.
    """

    _count = 0

    def __init__(self, inputs, name=None, batch_size=32, iteration_size=None, axis=0, rng=None):
        self.name = name or f'dataset{Dataset._count}'
        Dataset._count += 1
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f'batch_size must be an int, got {batch_size!r}')
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f'axis must be an int (the axis along which arrays are split into '
                            f'batches), got {axis!r} ({type(axis).__name__})')
        if iteration_size is not None and (
                isinstance(iteration_size, bool) or not isinstance(iteration_size, numbers.Integral)
                or iteration_size < 0):
            raise ValueError(f'iteration_size must be a whole number >= 0 or None, got {iteration_size!r}')
        self.batch_size = int(batch_size)
        self.iteration_size = iteration_size
        if rng is None:
            rng = DEFAULT_SEED
        if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
            if not 0 <= rng < 2 ** 32:
                raise ValueError(f'rng must be a seed from 0 to 2**32 - 1 or a numpy.random.RandomState, '
                                 f'got {rng!r}')
            rng = np.random.RandomState(int(rng))
        if not isinstance(rng, np.random.RandomState):
            raise TypeError(f'rng must be an int seed or a numpy.random.RandomState, got {type(rng).__name__}')
        self.rng = rng
        self._inputs = None
        self._readers = None
        self._slices = None
        self._callable = None
        self._index = 0
        if callable(inputs) and not is_array(inputs):
            self._init_callable(inputs)
        else:
            self._init_arrays(inputs, axis)

    def _init_callable(self, inputs):
        self._callable = inputs
        if self.iteration_size is None:
            try:
                self.iteration_size = len(inputs)
            except (TypeError, AttributeError):
                self.iteration_size = 100
        log.info('%s: %d mini-batches from callable', self.name, self.iteration_size)

    def _init_arrays(self, inputs, axis):
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        for i, x in enumerate(inputs):
            if not is_array(x):
                raise ValueError(
                    f'{self.name}: input {i} has type {type(x).__module__}.{type(x).__qualname__}; '
                    'expected a numpy.ndarray, a PyTensor shared variable, a scipy.sparse '
                    'matrix or a pandas DataFrame/Series')
        self._inputs = list(inputs)
        self._axis = axis
        self._readers = [_reader(x, axis) for x in self._inputs]
        shapes = [_shape(x) for x in inputs]
        if shapes:
            for i, s in enumerate(shapes):
                if not -len(s) <= axis < len(s):
                    raise ValueError(
                        f'{self.name}: axis {axis} is out of range for input {i} of shape {s}')
            lengths = [s[axis] for s in shapes]
            if len(set(lengths)) > 1:
                raise ValueError(
                    f'{self.name}: arrays have different lengths along axis {axis}: '
                    + '; '.join(f'input {i} shape {s}' for i, s in enumerate(shapes)))
            n = lengths[0]
            if n == 0:
                raise ValueError(f'{self.name}: arrays are empty along axis {axis} (shapes {shapes})')
        else:
            n = 1
        size = n if self.batch_size <= 0 else self.batch_size
        self._slices = []
        for start in range(0, n, size):
            where = []
            for s in shapes:
                index = [slice(None)] * len(s)
                index[axis] = slice(start, min(n, start + size))
                where.append(tuple(index))
            self._slices.append(where)
        self.shuffle()
        if self.iteration_size is None:
            self.iteration_size = len(self._slices)
        log.info('%s: %d of %d mini-batches from %s', self.name, self.iteration_size,
                 len(self._slices), '; '.join(str(s) for s in shapes) or 'no arrays')

    def __iter__(self):
        return self.iterate(True)

    def __getstate__(self):
        # the batch readers are closures over the inputs: made again after unpickling
        state = dict(self.__dict__)
        state['_readers'] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._inputs is not None:
            self._readers = [_reader(x, self._axis) for x in self._inputs]

    def __len__(self):
        return self.iteration_size

    def shuffle(self):
        """Shuffle the order of the batches (no effect for a callable)."""
        if self._slices is not None:
            self.rng.shuffle(self._slices)

    def iterate(self, shuffle=True):
        """Yield ``iteration_size`` batches, reshuffling when the set has been used."""
        for _ in range(self.iteration_size):
            if self._callable is not None:
                yield self._callable()
            else:
                yield self._next_batch(shuffle)

    def state(self):
        """Where this dataset is, as plain Python values (what a checkpoint stores).

        Returns
        -------
        dict
            ``'rng'``: the state of the shuffling ``RandomState``;
            ``'index'``: the position of the next batch; ``'order'`` (arrays
            only): the current order of the batches, as the rank of each
            batch's start. :meth:`restore` with it makes this dataset (or an
            identical one in another process) produce the same batches next.
        """
        kind, keys, pos, has_gauss, cached = self.rng.get_state()
        state = {'rng': {'kind': kind, 'keys': [int(k) for k in keys], 'pos': int(pos),
                         'has_gauss': int(has_gauss), 'cached_gaussian': float(cached)},
                 'index': int(self._index)}
        if self._slices is not None:
            ranked = sorted(range(len(self._slices)), key=lambda i: _batch_start(self._slices[i]))
            order = [0] * len(ranked)
            for rank, i in enumerate(ranked):
                order[i] = rank
            state['order'] = order
        return state

    def check_state(self, state):
        """Raise a ValueError if :meth:`restore` cannot apply ``state`` to this dataset."""
        try:
            rng = state['rng']
            keys, index = rng['keys'], state['index']
        except (TypeError, KeyError) as err:
            raise ValueError(f'{self.name}: not a dataset state: {state!r}') from err
        if rng.get('kind') != 'MT19937' or len(keys) != 624:
            raise ValueError(f'{self.name}: the saved shuffling state is not an MT19937 state')
        order = state.get('order')
        if (order is None) != (self._slices is None):
            raise ValueError(f'{self.name}: the saved state is of a Dataset of '
                             f'{"a callable" if order is None else "arrays"}, this one is of '
                             f'{"a callable" if self._slices is None else "arrays"}')
        if order is not None:
            if len(order) != len(self._slices):
                raise ValueError(f'{self.name}: the saved state is of {len(order)} batches, this '
                                 f'dataset has {len(self._slices)}')
            if sorted(order) != list(range(len(order))):
                raise ValueError(f'{self.name}: the saved batch order is not a permutation')
            if not (isinstance(index, int) and 0 <= index < len(order)):
                raise ValueError(f'{self.name}: the saved position {index!r} is out of range')

    def restore(self, state):
        """Continue from ``state`` (from :meth:`state`): same shuffles, same next batch."""
        self.check_state(state)
        rng = state['rng']
        self.rng.set_state((rng['kind'], np.asarray(rng['keys'], np.uint32), rng['pos'],
                            rng['has_gauss'], rng['cached_gaussian']))
        if self._slices is not None:
            ranked = sorted(self._slices, key=_batch_start)
            self._slices = [ranked[rank] for rank in state['order']]
        self._index = state['index']

    def _next_batch(self, shuffle=True):
        batch = [read(where) for read, where in zip(self._readers, self._slices[self._index])]
        self._index += 1
        if self._index >= len(self._slices):
            if shuffle:
                self.shuffle()
            self._index = 0
        return batch


def _batch_start(where):
    """A batch's position in the unshuffled data (its slices' starts), to name it in a checkpoint."""
    return tuple(tuple(s.start or 0 for s in index) for index in where)


def _reader(x, axis):
    """A function ``where -> batch array`` reading one batch of ``x``; made once per input."""
    if isinstance(x, SharedVariable):
        return lambda where: x.get_value(borrow=True)[where]
    if _is_sparse(x):
        return x.__getitem__
    if _is_pandas(x):
        return lambda where: x.iloc[where].to_numpy()
    if isinstance(x, np.memmap):
        return _memmap_reader(x, axis)
    if _is_out_of_core(x):
        return lambda where: np.asarray(x[where])
    return x.__getitem__


def _take(x, where):
    """The part ``where`` (an index tuple) of input ``x``, as an array (for any axis)."""
    return _reader(x, None)(where)


def _memmap_reader(x, axis):
    """Read batches of a memmap from its file, or copy them out of the mapping."""
    offset = _file_offset(x)
    if (offset is None or axis not in (0, -x.ndim) or not x.flags.c_contiguous or x.ndim == 0
            or getattr(x, 'mode', None) == 'c'):
        return lambda where: np.array(x[where])
    path, row_shape, dtype = x.filename, x.shape[1:], x.dtype
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize

    def read(where):
        start, stop, _ = where[0].indices(x.shape[0])
        out = np.empty((max(stop - start, 0),) + row_shape, dtype)
        _read_file(path, offset + start * row_bytes, out)
        return out
    return read


def _file_offset(x):
    """The byte position in its file of a memmap's first element, or None if unknown.

    ``numpy.memmap`` maps the file from ``x.offset`` rounded down to the
    allocation granularity; a view of it (a slice) keeps the parent's
    ``offset`` attribute, so the position is found from the data pointer
    relative to the start of the mapping.
    """
    buffer = getattr(x, '_mmap', None)
    if buffer is None or not getattr(x, 'filename', None) or not os.path.isfile(x.filename):
        return None
    try:
        start = np.frombuffer(buffer, np.uint8).ctypes.data
    except (TypeError, ValueError):
        return None
    return int(x.offset) - int(x.offset) % mmap.ALLOCATIONGRANULARITY + (x.ctypes.data - start)


def _read_file(path, position, out):
    """Fill the C-contiguous array ``out`` with the bytes of file ``path`` from ``position``."""
    view = memoryview(out.reshape(-1).view(np.uint8))
    with open(path, 'rb', buffering=0) as f:
        f.seek(position)
        done = 0
        while done < len(view):
            n = f.readinto(view[done:])
            if not n:
                raise OSError(f'{path}: file ended at byte {position + done}, '
                              f'expected {len(view) - done} more')
            done += n


class Batches:
    """Batches used as given, in order, all of them on every pass."""

    def __init__(self, batches, name):
        self.name = name
        self._batches = [list(b) for b in batches]

    def __iter__(self):
        return iter(self._batches)

    def __len__(self):
        return len(self._batches)


class Passes:
    """Any other iterable: one ``iter()`` of it is one pass."""

    def __init__(self, iterable, name):
        self.name = name
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)


def all_batches(data):
    """Every batch of ``data`` (a :func:`as_dataset` result), as a list.

    A :class:`~downhill.Dataset` of arrays gives all its batches whatever its
    ``iteration_size``; a callable or an iterable gives the batches of one
    pass, drawn now.
    """
    slices = getattr(data, '_slices', None) if isinstance(data, Dataset) else None
    if slices is not None and getattr(data, '_callable', None) is None:
        batches = [[_take(x, where) for x, where in zip(data._inputs, parts)] for parts in slices]
    else:
        batches = [list(batch) for batch in data]
    if not batches:
        raise ValueError(f'{data.name} produced no batches')
    return batches


def as_dataset(data, name, batch_size=32):
    """Wrap any of the accepted forms of ``train``/``valid`` data.

    - a :class:`Dataset` (or anything iterable that is not a list or tuple):
      iterated once per pass;
    - ``None``: the loss has no inputs; one empty batch per pass;
    - a callable: wrapped in a :class:`Dataset`;
    - a list or tuple of arrays: wrapped in a :class:`Dataset` with ``batch_size``;
    - a list or tuple of batches (each a list or tuple of arrays): used as given;
    - a single array: the same as a list holding it.
    """
    if data is None:
        return Batches([[]], name)
    if isinstance(data, (Dataset, Batches, Passes)):  # wrapped already (by minimize())
        return data
    if is_array(data):
        return Dataset([data], name=name, batch_size=batch_size)
    if isinstance(data, (list, tuple)):
        if len(data) == 0:
            raise ValueError(f'{name} data is an empty {type(data).__name__}; pass None for a loss with no inputs')
        if all(is_array(x) for x in data):
            return Dataset(data, name=name, batch_size=batch_size)
        if all(isinstance(b, (list, tuple)) for b in data):
            for i, batch in enumerate(data):
                for j, x in enumerate(batch):
                    if not (is_array(x) or isinstance(x, numbers.Number)):
                        raise ValueError(
                            f'{name} batch {i}, array {j} has type {type(x).__module__}.'
                            f'{type(x).__qualname__}; expected an array')
            return Batches(data, name)
        kinds = ', '.join(f'{i}: {type(x).__name__}' for i, x in enumerate(data))
        raise ValueError(
            f'{name} must be a list of arrays (one per input) or a list of batches '
            f'(each a list of arrays); got a {type(data).__name__} holding {kinds}')
    if callable(data):
        return Dataset(data, name=name)
    if hasattr(data, '__iter__') and not isinstance(data, (str, bytes, dict)):
        return Passes(data, name)
    raise ValueError(
        f'{name} has unsupported type {type(data).__module__}.{type(data).__qualname__}; '
        'expected a downhill.Dataset, a list of arrays, a list of batches, a callable or None')
