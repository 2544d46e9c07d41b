"""downhill's own graph rewrites for PyTensor's Numba backend, and the mode that runs them.

- :mod:`downhill.backend.stencil` (tag ``downhill_stencil``): elementwise work over
  shifted slices of vectors, their sums and increments, in one loop;
- :mod:`downhill.backend.fused_sums` (tag ``downhill_sums``): sums of elementwise
  terms added up in the loop that computes them.

Importing downhill changes nothing in PyTensor: :func:`mode_with_fusion`
registers the two rewrites in PyTensor's rewrite database (``optdb``) the
first time a Numba mode needs them (a downhill step compiled with the
speed-ups on), under their tags only, which no mode includes by default: a
``pytensor.function`` of yours never runs them. Leave one out of downhill's
steps with, e.g., ``mode=get_mode('NUMBA').excluding('downhill_sums')``.
"""

from pytensor.compile import optdb

from .. import _compat
from .fused_sums import POSITION as SUMS_POSITION, TAG as SUMS_TAG, ElemwiseSums, fuse_sums
from .stencil import POSITION as STENCIL_POSITION, TAG as STENCIL_TAG, StencilLoop, fuse_stencils

__all__ = ['TAGS', 'mode_with_fusion']

#: The tags of downhill's rewrites.
TAGS = (STENCIL_TAG, SUMS_TAG)


def mode_with_fusion(mode):
    """``mode`` with downhill's rewrites, when it is a Numba mode and PyTensor supports them."""
    return _compat.with_generated_loops(mode, TAGS, (StencilLoop, ElemwiseSums), _register_rewrites)


_REGISTERED = []


def _register_rewrites():
    if not _REGISTERED:
        optdb.register('fuse_stencils', fuse_stencils, STENCIL_TAG, position=STENCIL_POSITION)
        optdb.register('fuse_sums', fuse_sums, SUMS_TAG, position=SUMS_POSITION)
        _REGISTERED.append(True)
