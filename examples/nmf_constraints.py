"""Constrained matrix factorization: non-negative factors, normalized columns.

Factor a data matrix Y (B x N) into A (B x K) times S (K x N) with both
factors non-negative and every column of A summing to one (which removes the
scale ambiguity between A and S). The constraints run inside the compiled
update step, after the algorithm's step and momentum, so they work with any
algorithm: Adam and RMSProp, which stay correct with proximal updates, are
the last two rows of the table.

Projected SGD (the projected gradient method) is slow here with a single learning rate:
the entries of A are about 1/30 and those of S about 10, so no one step size
suits both (a hand-written projected gradient method would pick one per
factor by hand). Adam and RMSProp adapt
it per element; a cosine schedule lets their last steps settle.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt

import downhill
from downhill import prox, schedules

rng = np.random.default_rng(3)
B, N, K = 30, 40, 4
A_true = rng.random((B, K))
A_true /= A_true.sum(axis=0)           # columns sum to one
S_true = rng.gamma(2.0, 5.0, size=(K, N))
Y = A_true @ S_true                     # an exact non-negative factorization exists

A = pytensor.shared(np.zeros((B, K)), name='A')
S = pytensor.shared(np.zeros((K, N)), name='S')
loss = pt.sqr(Y - A.dot(S)).mean()
constraints = {A: [prox.nonnegative(), prox.normalize(axis=0)], S: prox.nonnegative()}

runs = [
    ('sgd', dict(learning_rate=0.5, momentum=0.9)),  # the projected gradient method, with momentum
    ('adam', dict(learning_rate=0.1 * schedules.cosine(period=1000))),
    ('rmsprop', dict(learning_rate=0.02 * schedules.cosine(period=1000))),
]
print(f'{"algorithm":10s} {"start loss":>10s} {"final loss":>11s} {"factor":>9s} '
      f'{"min(A)":>7s} {"min(S)":>7s} {"|colsum(A) - 1|":>16s}')
for algo, hyper in runs:
    init = np.random.default_rng(0)
    A.set_value(np.full((B, K), 1.0 / B) + 0.01 * init.random((B, K)))
    A.set_value(A.get_value() / A.get_value().sum(axis=0))
    S.set_value(init.random((K, N)))
    opt = downhill.build(algo, loss, constraints=constraints)
    start = opt.evaluate(None)['loss']
    opt.minimize(None, max_updates=1000, validate_every=50, patience=20, **hyper)
    final = opt.evaluate(None)['loss']
    a, s = A.get_value(), S.get_value()
    print(f'{algo:10s} {start:10.4f} {final:11.2e} {start / final:9.0f} {a.min():7.3f} '
          f'{s.min():7.3f} {np.abs(a.sum(axis=0) - 1).max():16.1e}')
