"""What the quick start buys and costs: time to the first update and to the end, and the bits.

Each configuration runs in a fresh interpreter, three times: once on an empty
compile cache (a ``base_compiledir`` of its own) and twice on the warm one.
A run builds Adam for a problem, then times ``iterate()`` from the call to the
first yielded iteration and to the last of ``--updates`` single-batch
iterations, and hashes the parameters it ends with::

    python -m benchmarks.first_update                       # both problems, both settings
    python -m benchmarks.first_update --problems mlp --updates 500

Every run of one setting must end with the same bits (cold or warm): the
script says so, and exits 1 if not. The two settings differ from each other
in the last bits (the quick version rounds differently), which it reports.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

RUN = r'''
import hashlib, json, logging, sys, time
import numpy as np, pytensor, pytensor.tensor as pt
import downhill
logging.getLogger('downhill').setLevel(logging.WARNING)
name, quick_start, updates = sys.argv[1], sys.argv[2] == '1', int(sys.argv[3])
rng = np.random.default_rng(0)
if name == 'rosenbrock':
    x = pytensor.shared(np.full(100, -1.2), name='x')
    loss, params, data = (100 * pt.sqr(x[1:] - x[:-1] ** 2) + pt.sqr(1 - x[:-1])).sum(), [x], None
    hyper = dict(learning_rate=1e-3)
else:  # a tanh network on a 512 x 32 batch
    X, Y = rng.normal(size=(512, 32)), rng.normal(size=(512, 4))
    xs, ys = pt.matrix('x'), pt.matrix('y')
    w = pytensor.shared(rng.normal(size=(32, 64)) * 0.1, name='w')
    v = pytensor.shared(rng.normal(size=(64, 4)) * 0.1, name='v')
    loss, params, data = pt.sqr(pt.tanh(xs @ w) @ v - ys).mean(), [w, v], [[X, Y]]
    hyper = dict(learning_rate=1e-2)
began = time.perf_counter()
opt = downhill.build('adam', loss, params=params, quick_start=quick_start)
first = None
for tm, vm in opt.iterate(data, max_updates=updates, validate_every=100, patience=10 ** 9, **hyper):
    first = first or time.perf_counter() - began
total = time.perf_counter() - began
digest = hashlib.sha1(b''.join(p.get_value().tobytes() for p in params)).hexdigest()
print(json.dumps(dict(first=first, total=total, digest=digest, loss=tm['loss'])))
'''


def run(problem, quick_start, updates, compiledir=None):
    env = dict(os.environ)
    if compiledir:
        env['PYTENSOR_FLAGS'] = f'base_compiledir={compiledir}'
    out = subprocess.run([sys.executable, '-c', RUN, problem, '1' if quick_start else '0', str(updates)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--problems', default='rosenbrock,mlp')
    parser.add_argument('--updates', type=int, default=300)
    args = parser.parse_args(argv)
    print(f'{"problem":<11} {"quick_start":<11} {"cache":<5} {"first update s":>14} '
          f'{"all updates s":>13}  digest')
    same = True
    for problem in args.problems.split(','):
        digests = {}
        for quick_start in (False, True):
            with tempfile.TemporaryDirectory() as cold:
                runs = [('cold', run(problem, quick_start, args.updates, cold))]
            runs += [('warm', run(problem, quick_start, args.updates)) for _ in range(2)]
            for cache, r in runs:
                print(f'{problem:<11} {str(quick_start):<11} {cache:<5} {r["first"]:>14.2f} '
                      f'{r["total"]:>13.2f}  {r["digest"][:12]}')
            digests[quick_start] = {r['digest'] for _, r in runs}
            if len(digests[quick_start]) != 1:
                print(f'  {problem}, quick_start={quick_start}: the runs ended with different bits')
                same = False
        print(f'  {problem}: each setting repeats its bits: '
              f'{all(len(d) == 1 for d in digests.values())}; the two settings agree bit for bit: '
              f'{digests[False] == digests[True]}')
    return 0 if same else 1


if __name__ == '__main__':
    sys.exit(main())
