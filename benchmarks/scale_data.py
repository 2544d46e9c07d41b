"""Data larger than memory: train on a file twice the size of a memory limit.

    python -m benchmarks.scale_data                        # 2 GiB files, 1 GiB limit
    python -m benchmarks.scale_data --store memmap --file-mb 512 --limit-mb 256

For each store (``memmap``: raw float32 files read through ``numpy.memmap``;
``hdf5``: an h5py file; ``zarr``: a zarr array) one process writes a
least-squares problem, X (rows x ``--dim``, float32) and y = X w + noise,
block by block (never all in memory), and drops it from the page cache
(``posix_fadvise``) unless ``--keep-cache``. For comparison, ``--store mapped``
passes the same files as plain ndarray views of the mapping
(``np.asarray(memmap)``), which is what streaming avoids: every page read
stays in the resident memory of the process. A second process trains a linear
model with Adam for one pass over every row, in mini-batches of ``--batch``,
from a :class:`downhill.Dataset` over the stored arrays (timed: the pass, and apart
the first step, which compiles), and reports its peak
resident memory (``VmHWM``), which must stay under ``--limit-mb``: the limit
the benchmark sets itself. (``setrlimit(RLIMIT_AS)`` is not usable as the
limit: Numba/LLVM reserve far more address space than they touch.) The file
is deleted afterwards.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from .memory import status, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STORES = ('memmap', 'hdf5', 'zarr', 'mapped')
DEFAULT_STORES = ('memmap', 'hdf5', 'zarr')
BLOCK_ROWS = 65536


def true_weights(dim):
    return np.random.RandomState(0).normal(size=dim).astype('float32')


def blocks(rows, dim):
    """(start, X block, y block) of the problem, generated block by block."""
    w = true_weights(dim)
    for start in range(0, rows, BLOCK_ROWS):
        n = min(BLOCK_ROWS, rows - start)
        rng = np.random.RandomState(start // BLOCK_ROWS + 1)
        X = rng.normal(size=(n, dim)).astype('float32')
        y = X @ w + np.float32(0.1) * rng.normal(size=n).astype('float32')
        yield start, X, y


def paths(store, where):
    base = os.path.join(where, 'scale_data.' + ('memmap' if store == 'mapped' else store))
    return {'memmap': [base + '.x.f32', base + '.y.f32'], 'mapped': [base + '.x.f32', base + '.y.f32'],
            'hdf5': [base + '.h5'],
            'zarr': [base + '.x.zarr', base + '.y.zarr']}[store]


def write(store, where, rows, dim, batch):
    files = paths(store, where)
    if store in ('memmap', 'mapped'):
        with open(files[0], 'wb') as fx, open(files[1], 'wb') as fy:
            for _, X, y in blocks(rows, dim):
                fx.write(X.tobytes())
                fy.write(y.tobytes())
    elif store == 'hdf5':
        import h5py
        with h5py.File(files[0], 'w') as f:
            dx = f.create_dataset('x', shape=(rows, dim), dtype='float32', chunks=(min(rows, batch), dim))
            dy = f.create_dataset('y', shape=(rows,), dtype='float32', chunks=(min(rows, batch * 16),))
            for start, X, y in blocks(rows, dim):
                dx[start:start + len(X)] = X
                dy[start:start + len(y)] = y
    else:
        import zarr
        zx = zarr.create_array(files[0], shape=(rows, dim), chunks=(min(rows, batch), dim), dtype='float32')
        zy = zarr.create_array(files[1], shape=(rows,), chunks=(batch * 16,), dtype='float32')
        for start, X, y in blocks(rows, dim):
            zx[start:start + len(X)] = X
            zy[start:start + len(y)] = y
    return sum(_size(p) for p in files)


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def drop_cache(path):
    """Ask the kernel to drop the file's clean pages from the page cache (Linux)."""
    if os.path.isdir(path):
        for d, _, fs in os.walk(path):
            for f in fs:
                drop_cache(os.path.join(d, f))
        return
    if hasattr(os, 'posix_fadvise'):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def open_arrays(store, where, rows, dim):
    files = paths(store, where)
    if store == 'mapped':
        return tuple(np.asarray(a) for a in open_arrays('memmap', where, rows, dim))
    if store == 'memmap':
        return (np.memmap(files[0], dtype='float32', mode='r', shape=(rows, dim)),
                np.memmap(files[1], dtype='float32', mode='r', shape=(rows,)))
    if store == 'hdf5':
        import h5py
        f = h5py.File(files[0], 'r')
        return f['x'], f['y']
    import zarr
    return zarr.open_array(files[0], mode='r'), zarr.open_array(files[1], mode='r')


class CountingPass:
    """One pass over a Dataset, counting the rows handed to the optimizer.

    ``second`` is the time the second batch was asked for: the first step
    (which compiles, with Numba) is done by then.
    """

    def __init__(self, dataset):
        self.dataset, self.rows, self.second = dataset, 0, None

    def __iter__(self):
        for i, batch in enumerate(self.dataset):
            if i == 1:
                self.second = time.perf_counter()
            self.rows += len(batch[0])
            yield batch


def train(store, where, rows, dim, batch, mode):
    import pytensor
    import pytensor.tensor as pt
    import downhill
    if mode:
        pytensor.config.mode = mode
    base = status('VmRSS')
    X, Y = open_arrays(store, where, rows, dim)
    x, y = pt.fmatrix('x'), pt.fvector('y')
    w = pytensor.shared(np.zeros(dim, 'float32'), name='w')
    b = pytensor.shared(np.float32(0), name='b')
    loss = pt.sqr(x @ w + b - y).mean()
    opt = downhill.build('adam', loss, inputs=[x, y])
    data = CountingPass(downhill.Dataset([X, Y], batch_size=batch, rng=1))
    valid = downhill.Dataset([X, Y], batch_size=batch, iteration_size=8, rng=2)
    before = opt.evaluate(valid)['loss']
    started = time.perf_counter()
    for _ in opt.iterate(data, valid, learning_rate=0.01):
        break  # one iteration is one pass over every row; keep its parameters
    ended = time.perf_counter()
    second = data.second or started
    rest = max(data.rows - batch, 1)
    return dict(store=store, rows=rows, dim=dim, batch=batch, rows_trained=data.rows,
                seconds=ended - started, first_step_s=second - started,
                rows_per_s=rest / max(ended - second, 1e-9), loss_before=before,
                loss_after=opt.evaluate(valid)['loss'], base_bytes=base,
                peak_bytes=status('VmHWM'), mode=mode or pytensor.config.mode)


def run_store(store, args, python=sys.executable):
    where = tempfile.mkdtemp(prefix='scale_data.', dir=args.dir)
    row_bytes = 4 * (args.dim + 1)
    rows = max(args.batch, int(args.file_mb * 2 ** 20) // row_bytes)
    env = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    common = ['--store', store, '--rows', str(rows), '--dim', str(args.dim), '--batch',
              str(args.batch), '--dir', where]
    if args.mode:
        common += ['--mode', args.mode]
    try:
        started = time.perf_counter()
        written = _child(python, ['--write'] + common + (['--keep-cache'] if args.keep_cache else []), env)
        write_s = time.perf_counter() - started
        row = _child(python, ['--train'] + common, env)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    limit = int(args.limit_mb * 2 ** 20)
    row.update(file_bytes=written['file_bytes'], write_s=write_s, limit_bytes=limit,
               under_limit=row['peak_bytes'] < limit, page_cache='kept' if args.keep_cache else 'dropped')
    return row


def _child(python, argv, env):
    cmd = [python, '-m', 'benchmarks.scale_data'] + argv
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f'failed: {" ".join(cmd)}\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(rows):
    lines = ['| store | file MiB | limit MiB | peak RSS MiB | under limit | rows | batch | '
             'one pass s | of which first step s | rows/s after it | loss before -> after |',
             '|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|']
    for r in rows:
        lines.append(f"| {r['store']} | {r['file_bytes'] / 2**20:,.0f} | {r['limit_bytes'] / 2**20:,.0f} "
                     f"| {r['peak_bytes'] / 2**20:,.1f} | {'yes' if r['under_limit'] else 'NO'} "
                     f"| {r['rows']:,} | {r['batch']} | {r['seconds']:.1f} | {r['first_step_s']:.1f} "
                     f"| {r['rows_per_s']:,.0f} "
                     f"| {r['loss_before']:.3g} -> {r['loss_after']:.3g} |")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks.scale_data',
                                description=__doc__.split('\n')[0])
    p.add_argument('--store', default=','.join(DEFAULT_STORES),
                   help='comma list of memmap,hdf5,zarr (default) and mapped (for comparison)')
    p.add_argument('--file-mb', type=float, default=2048, help='size of the data (default 2048)')
    p.add_argument('--limit-mb', type=float, default=1024, help='peak RSS allowed (default 1024)')
    p.add_argument('--dim', type=int, default=255, help='columns of X (default 255: 1 KiB rows with y)')
    p.add_argument('--batch', type=int, default=1024, help='rows per mini-batch (default 1024)')
    p.add_argument('--dir', default=None, help='where to write the files (default: the temp dir)')
    p.add_argument('--keep-cache', action='store_true', help='leave the file in the page cache')
    p.add_argument('--mode', default=None, help="PyTensor mode (default: PyTensor's default)")
    p.add_argument('--json', default=None)
    p.add_argument('--md', default=None)
    p.add_argument('--rows', type=int, help=argparse.SUPPRESS)
    p.add_argument('--write', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--train', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.write:
        size = write(args.store, args.dir, args.rows, args.dim, args.batch)
        if not args.keep_cache:
            for path in paths(args.store, args.dir):
                drop_cache(path)
        print(json.dumps(dict(file_bytes=size)))
        return 0
    if args.train:
        print(json.dumps(train(args.store, args.dir, args.rows, args.dim, args.batch, args.mode)))
        return 0
    stores = [s.strip() for s in args.store.split(',') if s.strip()]
    bad = [s for s in stores if s not in STORES]
    if bad:
        raise SystemExit(f'unknown store: {", ".join(bad)}; valid: {", ".join(STORES)}')
    rows = []
    for store in stores:
        row = run_store(store, args)
        rows.append(row)
        print(markdown([row]).splitlines()[-1], flush=True)
    write_results(rows, markdown(rows), args.json, args.md)
    return 0 if all(r['under_limit'] for r in rows if r['store'] != 'mapped') else 1


if __name__ == '__main__':
    sys.exit(main())
