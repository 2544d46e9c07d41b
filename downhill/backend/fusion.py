"""downhill's own graph rewrites for PyTensor's Numba backend, and the mode that runs them.

- :mod:`downhill.stencil` (tag ``downhill_stencil``): elementwise work over
  shifted slices of vectors, their sums and increments, in one loop;
- :mod:`downhill.fused_sums` (tag ``downhill_sums``): sums of elementwise
  terms added up in the loop that computes them.

No mode includes them by default; :func:`mode_with_fusion` adds both to a
Numba mode. Leave one out with, e.g.,
``mode=get_mode('NUMBA').excluding('downhill_sums')``.
"""

from .. import _compat
from .fused_sums import TAG as SUMS_TAG, ElemwiseSums
from .stencil import TAG as STENCIL_TAG, StencilLoop

__all__ = ['TAGS', 'mode_with_fusion']

#: The tags of downhill's rewrites.
TAGS = (STENCIL_TAG, SUMS_TAG)


def mode_with_fusion(mode):
    """``mode`` with downhill's rewrites, when it is a Numba mode and PyTensor supports them."""
    return _compat.with_generated_loops(mode, TAGS, (StencilLoop, ElemwiseSums))
