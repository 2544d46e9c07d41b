"""The checkpoint file: what a valid one is, and reading one without trusting it.

:func:`load` opens only a regular file (opening a FIFO would wait for a
writer), reads the ``.npz`` archive with ``allow_pickle=False`` after checking
each zip entry's sizes and each ``.npy`` header against the bytes it holds (so
nothing is allocated on a file's word), then checks the ``meta`` document
against its schema (every entry that checking and restoring read, with its
type and range) and the arrays against the document. Anything else is
refused with a :class:`CheckpointError` naming the file and the culprit.

The rest of checkpoints (writing, checking a file against an optimizer,
restoring) is :mod:`downhill.training.checkpoint`, which re-exports
``FORMAT``, ``VERSION`` and :class:`CheckpointError`.
"""

import json
import math
import os
import stat
import struct
import zipfile
import zlib

import numpy as np

#: The ``format`` field of every checkpoint.
FORMAT = 'downhill-checkpoint'
#: The layout version written by this code (and the newest it reads).
VERSION = 1
#: Deflate expands data at most about 1032 times: a zip entry claiming more lies.
_MAX_INFLATION = 1100


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and what is wrong."""


# ------------------------------------------------------------------ reading


def load(path):
    """The meta document and the arrays of the checkpoint at ``path`` (a str), all checked.

    See :func:`downhill.training.checkpoint.read`, which makes them a
    ``Checkpoint``: the same errors.
    """
    try:
        with _open_regular(path) as f:
            arrays = _read_arrays(path, f)
    except (CheckpointError, FileNotFoundError, PermissionError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, struct.error) as err:
        raise CheckpointError(f'{path}: not a readable downhill checkpoint (truncated or corrupted?): '
                              f'{type(err).__name__}: {err}') from err
    meta = _parse_meta(path, arrays.pop('meta', None))
    _check_meta(path, meta)
    _check_layout(path, meta, arrays)
    return meta, arrays


_KINDS = ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO (named pipe)'),
          (stat.S_ISSOCK, 'a socket'), (stat.S_ISCHR, 'a character device'),
          (stat.S_ISBLK, 'a block device'))


def _open_regular(path):
    """``path`` opened for reading if it is a regular file: opening a FIFO waits for a writer."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f'checkpoint {path!r} does not exist') from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), 'something else')
        raise CheckpointError(f'{path}: not a regular file (it is {kind}), so not a checkpoint')
    # non-blocking, should it have become a FIFO since (reading it then fails; no effect on files)
    return os.fdopen(os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_BINARY', 0)),
                     'rb')


def _read_arrays(path, f):
    """The arrays of the archive ``f``; each entry's sizes and header checked before it is read."""
    if f.read(6) == b'\x93NUMPY':
        raise CheckpointError(f'{path}: a single NumPy array (.npy), not a checkpoint archive (.npz)')
    f.seek(0)
    size, arrays = os.fstat(f.fileno()).st_size, {}
    with zipfile.ZipFile(f) as archive:
        for info in archive.infolist():
            name = info.filename[:-len('.npy')]
            if not info.filename.endswith('.npy') or name in arrays:
                raise _member(path, info.filename, 'is a duplicate or not an .npy entry')
            _check_entry(path, name, info, size)
            try:
                with archive.open(info) as member:
                    _check_header(path, name, member, info.file_size)
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
            except CheckpointError:
                raise
            except (ValueError, EOFError, SyntaxError, RecursionError) as err:
                raise _member(path, name, f'is truncated or corrupted: {type(err).__name__}: '
                              f'{err}') from err
    return arrays


def _member(path, name, what):
    return CheckpointError(f'{path}: array {name!r} {what}')


def _check_entry(path, name, info, size):
    """The bytes a zip entry claims must be in the file, and expand at most as deflate can."""
    stored = info.compress_type == zipfile.ZIP_STORED
    if not stored and info.compress_type != zipfile.ZIP_DEFLATED:
        raise _member(path, name, f'is compressed with zip method {info.compress_type}; a '
                      'checkpoint uses none (or deflate)')
    if info.header_offset + info.compress_size > size:
        raise _member(path, name, f'is corrupted: its zip entry claims {info.compress_size} bytes '
                      f'at offset {info.header_offset}, but the file has {size}')
    if info.file_size > info.compress_size * (1 if stored else _MAX_INFLATION) + 64:
        raise _member(path, name, f'is corrupted: its zip entry claims {info.file_size} bytes '
                      f'from {info.compress_size} stored')


def _check_header(path, name, member, size):
    """The shape and dtype in an .npy header must fit the entry's ``size``: checked before
    anything is allocated."""
    version = np.lib.format.read_magic(member)
    if version not in ((1, 0), (2, 0)):
        raise _member(path, name, f'has .npy format version {version}; a checkpoint has 1.0 or 2.0')
    shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)(member)
    if dtype.hasobject:
        raise _member(path, name, f'has dtype {dtype} (pickled Python objects): refused, a '
                      'checkpoint holds only numbers and text')
    declared, held = math.prod(shape) * dtype.itemsize, size - member.tell()
    if declared != held:
        raise _member(path, name, f'is corrupted: its header declares shape {shape} of {dtype} '
                      f'({declared} bytes), but its zip entry holds {held}')


def _parse_meta(path, meta):
    if meta is None:
        raise CheckpointError(f'{path}: not a downhill checkpoint (no meta document)')
    if meta.dtype.kind != 'U' or meta.ndim != 0:
        raise CheckpointError(f"{path}: not a downhill checkpoint: its 'meta' array should be one "
                              f'string (0-d unicode), got shape {meta.shape} and dtype {meta.dtype}')
    try:
        meta = json.loads(str(meta))
    except RecursionError:
        raise CheckpointError(f"{path}: the 'meta' document is nested too deeply (corrupted?)") from None
    except ValueError as err:
        raise CheckpointError(f"{path}: the 'meta' document is not valid JSON (corrupted?): {err}") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a downhill checkpoint: its 'meta' document should be a "
                              f'JSON object, got {show(meta)}')
    return meta


# ----------------------------------------------------- the meta document's schema


# (test, what it expects) of each entry of the meta document; a bool is no number here
_is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
_is_number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
_STR = (lambda v: isinstance(v, str), 'a string')
_NAME = (lambda v: v is None or isinstance(v, str), 'a string or null')
_DICT = (lambda v: isinstance(v, dict), 'a JSON object')
_LIST = (lambda v: isinstance(v, list), 'a list')
_COUNT = (lambda v: _is_int(v) and v >= 0, 'a whole number >= 0')
_NUMBER = (_is_number, 'a number')
_SHAPE = (lambda v: isinstance(v, list) and len(v) <= 64 and all(_COUNT[0](n) for n in v),
          'a list of whole numbers >= 0')
_PARAM = {'name': _NAME, 'shape': _SHAPE, 'dtype': _STR}
_GENERATOR = {'name': _NAME, 'state': _DICT, 'kind': (lambda v: v in ('Generator', 'RandomState'),
                                                      "'Generator' or 'RandomState'")}
_HOOK = {'type': _STR, 'best': (lambda v: v is None or _is_number(v), 'a number or null'),
         'failures': _COUNT, 'wait': _COUNT, 'reductions': _COUNT, 'value': _NUMBER}
_LOOP = {'iteration': _COUNT, 'best_loss': _HOOK['best'], 'best_at': _COUNT, 'failures': _COUNT,
         'validated_at': (lambda v: v is None or _COUNT[0](v), 'a whole number >= 0 or null'),
         'validation': (lambda v: v is None or (isinstance(v, dict) and 'loss' in v
                                                and all(map(_is_number, v.values()))),
                        "null or an object of numbers with a 'loss'")}


def show(value):
    """``repr(value)``, cut to 80 characters, for a message."""
    try:
        text = repr(value)
    except RecursionError:  # (json.loads nests as deep as repr can go, nearly)
        return 'a value nested too deeply'
    return text if len(text) <= 80 else text[:77] + '...'


def _corrupted(path, what):
    return CheckpointError(f'{path}: the checkpoint meta document is corrupted: {what}' if path else what)


def _need(path, where, value, rule):
    if not rule[0](value):
        raise _corrupted(path, f'{where} should be {rule[1]}, got {show(value)}')


def _fields(path, where, entry, rules):
    _need(path, where, entry, _DICT)
    for key, rule in rules.items():
        if key not in entry:
            raise _corrupted(path, f'{where} has no {key!r} entry')
        _need(path, f'{where}.{key}', entry[key], rule)


def check_loop(path, values):
    """The loop counters that ``LoopState.from_json`` reads; a CheckpointError names a field that is not."""
    _fields(path, 'loop', values, _LOOP)
    for name in ('best_at', 'validated_at'):  # the loop only counts forwards
        if values[name] is not None and values[name] > values['iteration']:
            raise _corrupted(path, f'loop.{name} {values[name]} is after loop.iteration '
                                   f'{values["iteration"]}')


def _check_meta(path, meta):
    """Every entry that check() and the restore functions read, with its type."""
    if meta.get('format') != FORMAT:
        raise CheckpointError(f'{path}: not a downhill checkpoint (format is {show(meta.get("format"))})')
    version = meta.get('version')
    if not _is_int(version) or version < 1:
        raise CheckpointError(f'{path}: bad checkpoint format version {show(version)}')
    if version > VERSION:
        raise CheckpointError(f'{path}: checkpoint format version {version} was written by a newer '
                              f'downhill; this one reads versions up to {VERSION}')
    for key in ('algorithm', 'params', 'states', 'hyperparameters', 'generators', 'hooks', 'loop', 'data'):
        if key not in meta:
            raise CheckpointError(f'{path}: the checkpoint meta document has no {key!r} entry (corrupted?)')
    _need(path, "'algorithm'", meta['algorithm'], _STR)
    n = len(meta['params']) if isinstance(meta['params'], list) else 0
    state = {'param': (lambda v: v is None or (_is_int(v) and 0 <= v < n),
                       f'null or a parameter index below {n}'), 'name': _STR, 'shape': _SHAPE, 'dtype': _STR}
    for key, rules in (('params', _PARAM), ('states', state), ('generators', _GENERATOR), ('hooks', _HOOK)):
        _need(path, repr(key), meta[key], _LIST)
        for i, entry in enumerate(meta[key]):
            if not (key == 'hooks' and entry is None):  # (a hook with nothing to save)
                _fields(path, f'{key}[{i}]', entry, rules)
    keys = [(e['param'], e['name']) for e in meta['states']]
    if len(set(keys)) != len(keys):
        raise _corrupted(path, 'a state entry is listed twice')
    _need(path, "'hyperparameters'", meta['hyperparameters'], _DICT)
    for name, value in meta['hyperparameters'].items():
        _need(path, f'hyperparameters[{name!r}]', value, _NUMBER)
    check_loop(path, meta['loop'])
    _need(path, "'data'", meta['data'], (lambda v: isinstance(v, dict) and set(v) == {'train', 'valid'},
                                         "an object of a 'train' and a 'valid' entry"))
    for role, value in meta['data'].items():  # a dataset's state, or the valid data is the train data
        _need(path, f'data[{role!r}]', value, (
            lambda v: v is None or isinstance(v, dict) or (role == 'valid' and v == 'train'),
            'null or a JSON object' + (" or 'train'" if role == 'valid' else '')))


def _check_layout(path, meta, arrays):
    expected = [(f'param/{i}', e) for i, e in enumerate(meta['params'])]
    expected += [(f'best/{i}', e) for i, e in enumerate(meta['params'])]
    expected += [(f'state/{j}', e) for j, e in enumerate(meta['states'])]
    for key, entry in expected:
        value = arrays.get(key)
        if value is None:
            raise CheckpointError(f'{path}: the checkpoint has no array {key!r} (corrupted?)')
        if list(value.shape) != list(entry['shape']) or str(value.dtype) != entry['dtype']:
            raise CheckpointError(f'{path}: array {key!r} has shape {value.shape} and dtype {value.dtype}, '
                                  f'but the checkpoint says {tuple(entry["shape"])} {entry["dtype"]} (corrupted?)')
        if value.dtype.kind not in 'biufc':
            raise CheckpointError(f'{path}: array {key!r} has dtype {value.dtype}, not a number (corrupted?)')
    known = {key for key, _ in expected}
    for key in arrays:
        if key not in known and not key.startswith('host/'):
            raise CheckpointError(f'{path}: the checkpoint holds an array {key!r} that its meta '
                                  'document does not list (corrupted?)')


# ------------------------------------------------------- a dataset's position


# what Dataset.restore relies on (Dataset.check_state checks the lengths and the permutation)
_DATASET = {'rng': _DICT, 'index': _COUNT}
_ORDER = (lambda v: isinstance(v, list) and all(map(_is_int, v)), 'a list of whole numbers')
_DATASET_RNG = {'kind': _STR, 'pos': (lambda v: _is_int(v) and 0 <= v <= 624, 'a whole number in [0, 624]'),
                'keys': (lambda v: isinstance(v, list) and all(_is_int(k) and 0 <= k < 2**32 for k in v),
                         'a list of whole numbers in [0, 2**32)'),
                'has_gauss': (lambda v: v in (0, 1) and _is_int(v), '0 or 1'), 'cached_gaussian': _NUMBER}


def check_dataset_state(state):
    """A :class:`~downhill.Dataset`'s saved position (a JSON object) has the types that its
    restore() relies on; its check_state checks the rest. A CheckpointError names the field."""
    _fields(None, 'the saved position', state, dict(_DATASET, order=_ORDER)
            if 'order' in state else _DATASET)
    _fields(None, 'rng', state['rng'], _DATASET_RNG)
