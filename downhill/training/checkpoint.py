"""Checkpoints: everything needed to continue an optimization exactly, in one file.

A checkpoint is a NumPy ``.npz`` archive (read with ``allow_pickle=False``, so
loading one never runs code) holding

- ``meta``: a JSON document (a 0-d unicode array): the format name and
  version, the algorithm, each parameter's name, shape and dtype, the list of
  state entries, the hyperparameter values, the training loop's counters
  (iteration, best loss and where it was found, failed validations, the last
  validation), the host state of ``reduce_on_plateau`` schedules, the state
  of every random generator (ESGD's, and any drawn from in the loss), and the
  position and shuffling state of the training and validation
  :class:`~downhill.Dataset`;
- ``param/I``: the current value of parameter ``I`` (the optimizer's order);
- ``best/I``: the best value found so far of parameter ``I``;
- ``state/J``: state entry ``J`` of ``meta['states']`` (moments, velocities,
  step counters, RProp steps, the schedule counter ``update_count``);
- ``host/NAME``: algorithm state kept in Python, if any
  (``Optimizer._host_state``; an algorithm with a ``_check_host_state``
  method checks these arrays' shapes and dtypes before anything is restored).

Files are written atomically: to a temporary file in the same directory,
flushed and fsync'ed, then renamed over the old one (``os.replace``), so a
crash while writing leaves the previous checkpoint whole.

:func:`read` refuses anything else with a :class:`CheckpointError` naming the file
and the culprit, before it blocks (a FIFO), allocates (an array header's claims are
checked against the zip entry) or recurses without bound (that reading, and the
meta document's schema, are :mod:`downhill.training.checkpoint_format`);
:func:`check` then checks all that :func:`restore` uses, and :func:`restore` is
whole or nothing.

Compatibility: ``VERSION`` changes whenever the layout changes; this module
reads every version up to its own and refuses newer ones with a message
saying so.
"""

import collections
import contextlib
import json
import logging
import math
import os
import tempfile

import numpy as np
from pytensor.compile.sharedvalue import SharedVariable

from .. import _compat
from ..core import graph
from .checkpoint_format import FORMAT, VERSION, CheckpointError, check_dataset_state, check_loop, load, show
from .dataset import Dataset

log = logging.getLogger('downhill')

#: Bit generators that a checkpoint may name; nothing else is looked up.
_BIT_GENERATORS = ('PCG64', 'PCG64DXSM', 'MT19937', 'Philox', 'SFC64')


class LoopState:
    """The training loop's counters: what a resumed loop continues from.

    Attributes
    ----------
    iteration : int
        Iterations (passes over the training data) completed.
    best_loss : float or None
        The best validation loss so far.
    best_at : int
        The iteration at which it was found.
    failures : int
        Validations in a row that failed to improve.
    validated_at : int or None
        The iteration of the latest validation.
    validation : dict or None
        The monitors of the latest validation.
    """

    FIELDS = ('iteration', 'best_loss', 'best_at', 'failures', 'validated_at', 'validation')

    def __init__(self, **values):
        self.iteration, self.best_loss, self.best_at, self.failures = 0, None, 0, 0
        self.validated_at, self.validation = None, None
        self.train = self.valid = None  # the datasets of the run, for their positions
        self.data = None  # their positions, once the run is over (see release)
        for name, value in values.items():
            setattr(self, name, value)

    def release(self):
        """Keep the datasets' positions, not the datasets (whose arrays may be large)."""
        if self.train is not None or self.valid is not None:
            self.data = _data_states(self)
            self.train = self.valid = None

    def to_json(self):
        out = {name: getattr(self, name) for name in self.FIELDS}
        if out['validation'] is not None:
            out['validation'] = {k: float(v) for k, v in out['validation'].items()}
        return out

    @classmethod
    def from_json(cls, values, path=None):
        """The state that :meth:`to_json` wrote; a CheckpointError names a field that is not."""
        check_loop(path, values)
        state = cls(**{k: values[k] for k in cls.FIELDS})
        if state.validation is not None:
            state.validation = collections.OrderedDict(state.validation)
        return state


class Checkpoint:
    """A checkpoint read from disk: ``meta`` (the JSON document) and ``arrays``."""

    def __init__(self, path, meta, arrays):
        self.path, self.meta, self.arrays = path, meta, arrays

    @property
    def loop(self):
        """The saved :class:`LoopState`."""
        return LoopState.from_json(self.meta['loop'], self.path)


# ------------------------------------------------------------------ writing


def save(opt, path, loop=None):
    """Write ``opt``'s complete state (and the loop's, if given) to ``path`` atomically."""
    arrays, meta = capture(opt, loop)
    write(path, arrays, meta)
    return path


def capture(opt, loop=None):
    """The arrays and the JSON document of a checkpoint of ``opt``."""
    arrays = {}
    params = []
    for i, (param, best) in enumerate(zip(opt._params, opt._best_params)):
        value = param.get_value()
        arrays[f'param/{i}'] = value
        arrays[f'best/{i}'] = np.asarray(best)
        params.append({'name': param.name, 'shape': list(value.shape), 'dtype': str(value.dtype)})
    index = {id(p): i for i, p in enumerate(opt._params)}
    states = []
    for (param, name), var in opt._states.items():
        value = var.get_value()
        j = len(states)
        arrays[f'state/{j}'] = value
        states.append({'param': None if param is None else index[id(param)], 'name': name,
                       'shape': list(value.shape), 'dtype': str(value.dtype)})
    host = opt._host_state()
    for name, value in host.items():
        arrays[f'host/{name}'] = np.asarray(value)
    loop = loop if loop is not None else LoopState()
    meta = {
        'format': FORMAT,
        'version': VERSION,
        'algorithm': type(opt).__name__,
        'params': params,
        'states': states,
        'hyperparameters': {k: float(v.get_value()) for k, v in opt._hypers.items()},
        'generators': [_generator_state(var) for var in generators(opt)],
        'hooks': [_hook_state(hook) for hook in opt._validation_hooks],
        'loop': loop.to_json(),
        'data': _data_states(loop),
    }
    return arrays, meta


def write(path, arrays, meta):
    """Write an ``.npz`` of ``arrays`` plus ``meta`` (as JSON) to ``path``, atomically.

    The archive goes to a temporary file in the same directory, which is
    flushed and fsync'ed before ``os.replace`` renames it to ``path``: a crash
    at any moment leaves either the old file or the new one, never a mix.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    text = json.dumps(meta, allow_nan=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=folder)
    except OSError as err:  # the folder went away or became read-only during the run
        raise type(err)(err.errno, f'cannot write the checkpoint {path!r}: the folder {folder!r} '
                        f'cannot hold a new file ({err.strerror})') from err
    try:
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, meta=np.array(text), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _sync_folder(folder)


def _sync_folder(folder):
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------ reading


def read(path):
    """Read and check the structure of the checkpoint at ``path``.

    Raises
    ------
    FileNotFoundError
        When there is no file.
    CheckpointError
        (a ValueError) When the file is not a complete downhill checkpoint (not a
        regular file, truncated, corrupted, another kind of file, a missing or
        mistyped entry) or comes from a newer format.
    """
    path = os.fspath(path)
    meta, arrays = load(path)
    return Checkpoint(path, meta, arrays)


# ---------------------------------------------------------------- restoring


def check(opt, ck):
    """Raise a ValueError saying exactly what in ``ck`` does not fit ``opt``; change nothing."""
    meta, where = ck.meta, ck.path
    here = type(opt).__name__
    if meta['algorithm'] != here:
        raise ValueError(f'{where}: the checkpoint was written by {meta["algorithm"]}, but this '
                         f'optimizer is {here}')
    saved = meta['params']
    if len(saved) != len(opt._params):
        raise ValueError(
            f'{where}: the checkpoint holds {len(saved)} parameters '
            f'({", ".join(repr(e["name"]) for e in saved)}), this optimizer has {len(opt._params)} '
            f'({", ".join(graph.describe(p) for p in opt._params)})')
    for i, (entry, param) in enumerate(zip(saved, opt._params)):
        value = param.get_value(borrow=True)
        if entry['name'] != param.name:
            raise ValueError(f'{where}: parameter {i} is named {entry["name"]!r} in the checkpoint, '
                             f'{param.name!r} here')
        if tuple(entry['shape']) != value.shape:
            raise ValueError(f'{where}: parameter {i} ({graph.describe(param)}) has shape '
                             f'{tuple(entry["shape"])} in the checkpoint, {value.shape} here')
        if entry['dtype'] != str(value.dtype):
            raise ValueError(f'{where}: parameter {i} ({graph.describe(param)}) has dtype '
                             f'{entry["dtype"]} in the checkpoint, {value.dtype} here')
    for j, entry in enumerate(meta['states']):
        _check_state(opt, where, j, entry)
    host = sorted(k for k in ck.arrays if k.startswith('host/'))
    if host and not _keeps_host_state(opt):
        raise ValueError(f'{where}: the checkpoint holds host state ({", ".join(host)}) that '
                         f'{here} does not keep')
    check_host = getattr(opt, '_check_host_state', None)
    if check_host is not None:  # the algorithm checks the shapes of its own host state
        try:
            check_host({k[len('host/'):]: v for k, v in ck.arrays.items() if k.startswith('host/')})
        except ValueError as err:
            raise ValueError(f'{where}: {err}') from err
    _check_generators(opt, ck)
    _check_missing_states(opt, ck)


def _keeps_host_state(opt):
    """Whether ``opt`` takes host state back from a checkpoint (the full-batch methods do).

    The optimizer's base class defines ``_restore_host_state`` as a no-op (and
    ``_host_state`` as empty), so an algorithm keeps host state when its class
    overrides that method: when a class of its MRO other than the last to
    define it defines it too. Asked of the class, not of ``_host_state()``,
    which is empty before a full-batch method's first iteration. (This layer,
    below the optimizer's, does not import the Optimizer class itself.)
    """
    return sum('_restore_host_state' in vars(cls) for cls in type(opt).__mro__) > 1


def _check_generators(opt, ck):
    """Each saved generator state fits its generator here and can be made (as restore makes it)."""
    saved, ours, where = ck.meta['generators'], generators(opt), ck.path
    if len(saved) != len(ours):
        raise CheckpointError(f'{where}: the checkpoint holds {len(saved)} random generators, '
                              f'this optimizer uses {len(ours)}')
    for entry, var in zip(saved, ours):
        here = type(var.get_value(borrow=True)).__name__
        if entry['kind'] != here:
            raise CheckpointError(f'{where}: random generator {var.name!r} is a {here} here, a '
                                  f'{entry["kind"]} in the checkpoint')
        try:
            _make_generator(entry)
        except (TypeError, ValueError, KeyError, IndexError, OverflowError, RecursionError) as err:
            raise CheckpointError(f'{where}: random generator {var.name!r}: its saved state cannot '
                                  f'be restored (corrupted?): {type(err).__name__}: {err}') from err


#: States that a setting adds (momentum, amsgrad, on_nonfinite='skip'): a resumed run may turn
#: it on, and they start then. Any other state entry of the step must be in the file.
_SETTING_STATES = ('velocity', 'v_max', 'skipped_updates')


def _check_missing_states(opt, ck):
    """A state entry of the step missing from the file would silently restart from its start."""
    keys = [(e['param'], e['name']) for e in ck.meta['states']]
    if (None, 'update_count') not in keys:
        raise CheckpointError(f"{ck.path}: the checkpoint has no state entry 'update_count' (the "
                              'count of updates made), which every optimizer keeps (corrupted?)')
    count = int(ck.arrays[f'state/{keys.index((None, "update_count"))}'])
    if count < 0:
        raise CheckpointError(f'{ck.path}: update_count is {count} in the checkpoint (corrupted?)')
    if count == 0:
        return  # written before the first update: every state is at its start anyway
    names = {name for _, name in keys}
    momentum = ck.meta['hyperparameters'].get('_momentum', 0) != 0
    step = _step_states(opt)
    if momentum:  # the saved run moved each parameter with a velocity (a load() has momentum 0)
        step += [(p, 'velocity') for p in dict.fromkeys(p for p, _ in step if p is not None)]
    index = {id(p): i for i, p in enumerate(opt._params)}
    for param, name in step:
        i = None if param is None else index.get(id(param))
        if (i, name) in keys or (name in _SETTING_STATES and name not in names
                                 and not (name == 'velocity' and momentum)):
            continue
        owner = 'the optimizer' if param is None else f'parameter {i} ({graph.describe(param)})'
        raise CheckpointError(f'{ck.path}: the checkpoint has no state entry {name!r} of {owner}, '
                              f'which {type(opt).__name__} keeps; after {count} updates it cannot '
                              'start afresh (corrupted?)')


def _step_states(opt):
    """The keys of the state of ``opt``'s step: as made so far or, before the step is first built
    (a load() into a new optimizer), as its update graph, built here and forgotten, makes them."""
    if opt._step_fns:
        return list(opt._states)
    saved = _snapshot(opt)
    try:
        opt._build_updates()
        return list(opt._states)
    except Exception:  # (a full-batch method, or settings that iterate() gives): as made so far
        return list(saved[1])
    finally:
        _put_back(opt, saved)


def _check_state(opt, where, j, entry):
    label = f'state entry {j} ({entry["name"]!r})'
    index = entry['param']  # (read() checked that it is a parameter's index or None)
    param = None if index is None else opt._params[index]
    var = opt._states.get((param, entry['name']))
    if var is not None:
        value = var.get_value(borrow=True)
        shape, dtype = value.shape, str(value.dtype)
    elif param is not None:
        value = param.get_value(borrow=True)
        shape, dtype = (value.shape if tuple(entry['shape']) else ()), str(value.dtype)
    else:
        return  # a counter this optimizer has not made yet: created on restore
    owner = '' if param is None else f' of parameter {index} ({graph.describe(param)})'
    if tuple(entry['shape']) != shape:
        raise ValueError(f'{where}: {label}{owner} has shape {tuple(entry["shape"])} in the '
                         f'checkpoint, {shape} here')
    if entry['dtype'] != dtype:
        raise ValueError(f'{where}: {label}{owner} has dtype {entry["dtype"]} in the checkpoint, '
                         f'{dtype} here')


def restore(opt, ck):
    """Set ``opt``'s parameters, best parameters, state and random generators from ``ck``.

    Call :func:`check` first. State entries that ``opt`` has not created yet
    (it creates them when it first builds its updates) are created here with
    the saved values, so the next compiled step uses them. Whole or nothing:
    should anything fail (an algorithm's ``_restore_host_state``), ``opt`` is
    put back as it was.
    """
    with whole_or_nothing(opt):
        _restore(opt, ck)


@contextlib.contextmanager
def whole_or_nothing(opt):
    """Put back what :func:`restore` changes in ``opt`` (values, state, attributes) on an error."""
    saved = _snapshot(opt)
    try:
        yield
    except BaseException:
        _put_back(opt, saved)
        raise


def _restore(opt, ck):
    arrays = ck.arrays
    for i, param in enumerate(opt._params):
        param.set_value(arrays[f'param/{i}'].copy(), borrow=True)
    opt._best_params = [arrays[f'best/{i}'].copy() for i in range(len(opt._params))]
    for j, entry in enumerate(ck.meta['states']):
        value = arrays[f'state/{j}'].copy()
        param = None if entry['param'] is None else opt._params[entry['param']]
        var = opt._states.get((param, entry['name']))
        if var is None:
            var = _create_state(opt, param, entry['name'], value)
        var.set_value(value, borrow=True)
    for entry, var in zip(ck.meta['generators'], generators(opt)):
        var.set_value(_make_generator(entry), borrow=True)
    opt._restore_host_state({k[len('host/'):]: v.copy() for k, v in arrays.items()
                             if k.startswith('host/')})


def _snapshot(opt):
    """What restore changes. Values are borrowed: set_value(borrow=True) replaces, not overwrites."""
    shared = list(opt._params) + list(opt._states.values()) + generators(opt)
    return (dict(opt._states), dict(opt._state_inits), dict(vars(opt)),
            [(var, var.get_value(borrow=True)) for var in shared])


def _put_back(opt, saved):
    for var, value in saved[3]:
        var.set_value(value, borrow=True)
    for now, then in zip((opt._states, opt._state_inits, vars(opt)), saved):
        now.clear()
        now.update(then)


def _create_state(opt, param, name, value):
    if param is None:
        import pytensor
        var = pytensor.shared(value, name=name)
        opt._states[(None, name)] = var
        opt._state_inits[(None, name)] = 0
        return var
    same = value.shape == param.get_value(borrow=True).shape and value.ndim > 0
    return opt._state(param, name, shape=None if same else value.shape)


def restore_data(ck, role, data):
    """Put the dataset ``data`` (the run's ``'train'`` or ``'valid'``) where the checkpoint left it."""
    state = ck.meta['data'].get(role)
    if state is None or state == 'train':
        return
    restore_fn = getattr(data, 'restore', None)
    if restore_fn is None:
        log.warning('%s: the checkpoint holds the position of the %s Dataset, but the %s data given '
                    'now is a %s; it starts from its beginning', ck.path, role, role, type(data).__name__)
        return
    try:
        restore_fn(state)
    except ValueError as err:
        raise ValueError(f'{ck.path}: the {role} data does not fit the checkpoint: {err}') from err


def check_data(ck, role, data):
    """Raise a ValueError if the saved position of ``role`` cannot be applied to ``data``."""
    state = ck.meta['data'].get(role)
    check_fn = getattr(data, 'check_state', None)
    if state is None or state == 'train' or check_fn is None:
        return
    try:
        if isinstance(data, Dataset):  # the types its restore() relies on; check_state the rest
            check_dataset_state(state)
        check_fn(state)
    except ValueError as err:
        raise CheckpointError(f'{ck.path}: the {role} data does not fit the checkpoint: {err}') from err


def restore_hooks(ck, hooks):
    """Give each host-side schedule (``reduce_on_plateau``) the state saved for it."""
    saved = ck.meta['hooks']
    if len(saved) != len(hooks):
        log.warning('%s: the checkpoint holds %d reduce_on_plateau states, this run has %d; '
                    'they start afresh', ck.path, len(saved), len(hooks))
        return
    for hook, state in zip(hooks, saved):
        if state is None or not all(hasattr(hook, a) for a in ('best', 'failures', '_wait', 'reductions')):
            continue
        hook.best, hook.failures = state['best'], state['failures']
        hook._wait, hook.reductions = state['wait'], state['reductions']
        hook._numbers['value'] = state['value']
        if getattr(hook, '_variable', None) is not None:
            hook._variable.set_value(np.float64(state['value']))


def compare_hyperparameters(ck, opt):
    """Log each hyperparameter whose value differs from the checkpoint's.

    Call it after :func:`restore_hooks`, which puts back the values that
    ``reduce_on_plateau`` changed during the run.
    """
    for name, value in opt._hypers.items():
        old = ck.meta['hyperparameters'].get(name)
        now = float(value.get_value())
        if old is not None and not _same(old, now):
            log.warning('resuming with %s=%g; the checkpoint was written with %g, so the '
                        'trajectory differs from an uninterrupted run', name.lstrip('_'), now, old)


def _same(a, b):
    return a == b or (math.isnan(a) and math.isnan(b))


# ---------------------------------------------------------- random generators


def generators(opt):
    """The shared random generators whose state a checkpoint keeps, in a fixed order.

    ESGD's ``opt.rng`` first, then those the loss, monitors and extra updates
    draw from, in graph order.
    """
    found = []
    own = getattr(opt, 'rng', None)
    if isinstance(own, SharedVariable):
        found.append(own)
    exprs = list(opt._monitor_exprs) + [e for _, e in opt._updates]
    for var in _compat.graph_inputs(exprs):
        if (isinstance(var, SharedVariable) and var not in found
                and isinstance(var.get_value(borrow=True), (np.random.Generator, np.random.RandomState))):
            found.append(var)
    return found


def _generator_state(var):
    value = var.get_value(borrow=True)
    if isinstance(value, np.random.Generator):
        return {'name': var.name, 'kind': 'Generator', 'state': _to_json(value.bit_generator.state)}
    return {'name': var.name, 'kind': 'RandomState', 'state': _to_json(value.get_state(legacy=False))}


def _make_generator(entry):
    state = _from_json(entry['state'])
    if entry['kind'] == 'Generator':
        if state.get('bit_generator') not in _BIT_GENERATORS:  # (nothing else is looked up)
            raise ValueError(f'unknown bit generator {show(state.get("bit_generator"))}')
        bit_generator = getattr(np.random, state['bit_generator'])()
        bit_generator.state = state
        return np.random.Generator(bit_generator)
    rng = np.random.RandomState()
    rng.set_state(state)
    return rng


def _to_json(value):
    """Generator states hold arrays (MT19937's key): as ``{'array': [...], 'dtype': ...}``."""
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {'array': value.tolist(), 'dtype': str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {'array', 'dtype'}:  # (integers only: generator keys and counters)
            dtype = np.dtype(value['dtype'])
            if dtype.kind not in 'iu':
                raise ValueError(f'a generator state array of dtype {dtype}')
            return np.asarray(value['array'], dtype=dtype)
        return {k: _from_json(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------- host state


def _hook_state(hook):
    if not all(hasattr(hook, a) for a in ('best', 'failures', '_wait', 'reductions', 'value')):
        return None
    return {'type': type(hook).__name__, 'best': hook.best, 'failures': hook.failures,
            'wait': hook._wait, 'reductions': hook.reductions, 'value': float(hook.value)}


def _data_states(loop):
    if loop.train is None and loop.valid is None and loop.data is not None:
        return loop.data
    out = {}
    for role in ('train', 'valid'):
        data = getattr(loop, role)
        if role == 'valid' and data is loop.train and data is not None:
            out[role] = 'train'
            continue
        state = getattr(data, 'state', None)
        out[role] = state() if callable(state) else None
    return out
