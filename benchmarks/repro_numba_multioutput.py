"""Minimal reproducer (issue 8 item 3): float64 "loss + gradients in one
function" is ~4x slower than the two apart on PyTensor's Numba backend --
because glibc malloc hands freed memory back to the kernel after every call,
not because of Numba's code, BLAS or the Dot rewrites.

What happens. With the loss and the gradient both outputs, PyTensor's fusion
rewrite makes ONE Elemwise with two 2000 x 256 outputs (``sqr(X - u v)`` for
the loss, ``-2 (X - u v)`` for the gradient). In float64 these are two 4 MB
arrays per call. glibc serves them with mmap or at the top of the heap and,
when they are freed, trims the heap (the trim threshold is twice the
dynamically raised mmap threshold, i.e. 8 MB here), so the next call
page-faults ~2000 fresh pages. In this VM a page fault is expensive, and the
"Elemwise" costs 6 ms instead of 0.3. float32 arrays are half the size and
stay under the thresholds; one float64 output alone does too. Splitting the
two-output Composite into one-output Elemwises (:func:`split_mode`) or
turning fusion off does NOT help (the two arrays still exist); keeping freed
memory does: ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456``
in the environment, or the same through ``mallopt`` at run time (part 3).

Run (single thread; times are this thread's CPU time, so a busy neighbour on a
shared machine matters less):

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python -m benchmarks.repro_numba_multioutput

Part 1 is the bare problem (one Elemwise), part 2 the matrix-factorisation
loss and gradients, part 3 both again after ``mallopt`` in this process.
"""

import sys
import time

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import get_mode
from pytensor.graph.rewriting.basic import dfs_rewriter, node_rewriter
from pytensor.scalar.basic import Composite
from pytensor.tensor.elemwise import Elemwise


def cpu_ms(f, args, n=30):
    for _ in range(3):
        f(*args)
    t0 = time.thread_time()
    for _ in range(n):
        f(*args)
    return (time.thread_time() - t0) / n * 1e3


@node_rewriter([Elemwise])
def split_multi_output_composite(fgraph, node):
    """Replace an Elemwise of a k-output Composite by k one-output Elemwises."""
    scalar_op = node.op.scalar_op
    if not isinstance(scalar_op, Composite) or len(node.outputs) < 2:
        return None
    outs = []
    for k in range(len(node.outputs)):
        single = Composite(scalar_op.fgraph.inputs, [scalar_op.fgraph.outputs[k]])
        outs.append(Elemwise(single)(*node.inputs))
    return outs


def split_mode(base='NUMBA'):
    """``base`` with :func:`split_multi_output_composite` run after fusion, before inplace."""
    return get_mode(base).register((dfs_rewriter(split_multi_output_composite), 49.3))


def part1():
    print('Part 1: one Elemwise, two outputs vs one (2000 x 256), ms per call (CPU time)')
    for dt in ('float64', 'float32'):
        rng = np.random.default_rng(0)
        X0, A0 = (rng.standard_normal((2000, 256)).astype(dt) for _ in range(2))
        X, A = pt.matrix('X', dtype=dt), pt.matrix('A', dtype=dt)
        one = pytensor.function([X, A], -2 * (X - A), mode='NUMBA')
        two = pytensor.function([X, A], [pt.sqr(X - A), -2 * (X - A)], mode='NUMBA')
        two_split = pytensor.function([X, A], [pt.sqr(X - A), -2 * (X - A)], mode=split_mode())
        n_two = sum(len(n.outputs) > 1 for n in two.maker.fgraph.apply_nodes)
        print(f'  {dt}: one output {cpu_ms(one, (X0, A0)):.2f} | two outputs, fused '
              f'({n_two} multi-output node) {cpu_ms(two, (X0, A0)):.2f} | '
              f'two outputs, split {cpu_ms(two_split, (X0, A0)):.2f}')


def part2():
    print('Part 2: matfact loss mean((X - u v)^2) and its gradients (2000x256, rank 16), ms per call')
    for dt in ('float64', 'float32'):
        rng = np.random.default_rng(0)
        u0 = rng.standard_normal((2000, 16)).astype(dt)
        v0 = rng.standard_normal((16, 256)).astype(dt)
        X0 = rng.standard_normal((2000, 256)).astype(dt)
        u, v, X = pt.matrix('u', dtype=dt), pt.matrix('v', dtype=dt), pt.matrix('X', dtype=dt)
        loss = pt.sqr(X - pt.dot(u, v)).mean()
        gu, gv = pytensor.grad(loss, [u, v])
        modes = {'NUMBA': 'NUMBA', 'NUMBA+split': split_mode(),
                 'NUMBA-fusion': get_mode('NUMBA').excluding('fusion')}
        cells = []
        for tag, outs in (('loss', [loss]), ('grads', [gu, gv]), ('loss+grads', [loss, gu, gv])):
            for name, mode in modes.items():
                if tag != 'loss+grads' and name != 'NUMBA':
                    continue
                f = pytensor.function([u, v, X], outs, mode=mode)
                cells.append(f'{tag} {name} {cpu_ms(f, (u0, v0, X0)):.2f}')
        print(f'  {dt}: ' + ' | '.join(cells))


def keep_freed_memory(mmap_threshold=32 << 20, trim_threshold=256 << 20):
    """glibc only: serve arrays < ``mmap_threshold`` from the heap and keep up to
    ``trim_threshold`` of freed memory instead of returning it to the kernel."""
    import ctypes
    libc = ctypes.CDLL(None)
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
                and libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))


def faults():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


if __name__ == '__main__':
    print(f'pytensor {pytensor.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}')
    f0 = faults()
    part1()
    part2()
    f1 = faults()
    print(f'minor page faults so far: {f1 - f0}')
    print(f'Part 3: mallopt(M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=256 MiB) -> {keep_freed_memory()}')
    part1()
    part2()
    print(f'minor page faults in part 3: {faults() - f1}')
