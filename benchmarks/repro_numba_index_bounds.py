"""PyTensor's Numba backend reads out of bounds for an integer index past the end (no IndexError).

Stock PyTensor only. ``p[arange(n), labels]`` (AdvancedSubtensor with two
index arrays, the usual cross-entropy pick) with a label >= the number of
classes: the Python and C backends raise IndexError, the Numba backend
returns a number read from outside the array. ``p[labels]`` (one index
array) is bounds-checked in both. downhill cannot tell which integer inputs
are indices, so it names the input when the backend raises
(``downhill.DataError``) but cannot catch this case; an upstream report
would start from this script.

Run: ``python -m benchmarks.repro_numba_index_bounds``
"""

import numpy as np
import pytensor
import pytensor.tensor as pt


def main():
    x, labels = pt.matrix('x'), pt.ivector('labels')
    W = pytensor.shared(np.zeros((3, 4)), name='W')
    p = pt.special.softmax(x.dot(W), axis=-1)
    picked = -pt.log(p[pt.arange(labels.shape[0]), labels]).mean()
    one_index = -pt.log(p[:, 0][labels]).mean()
    data = np.ones((4, 3)), np.array([0, 1, 7, 2], dtype='int32')  # 7: past the 4 classes
    for name, expr in (('p[arange(n), labels]', picked), ('p[:, 0][labels]', one_index)):
        for mode in ('FAST_COMPILE', 'NUMBA'):
            fn = pytensor.function([x, labels], expr, mode=mode)
            try:
                print(f'{name:22s} {mode:12s} returned {fn(*data)!r} (no error)')
            except IndexError as err:
                print(f'{name:22s} {mode:12s} IndexError: {str(err).splitlines()[0]}')


if __name__ == '__main__':
    main()
