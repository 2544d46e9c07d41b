"""The Lasso: least squares with an l1 penalty, solved by proximal steps.

    minimize  0.5 * mean((X w - y)^2) + lam * |w|_1

``downhill.prox.l1(lam)`` soft-thresholds the weights inside every update,
so weights reach exact zeros (a penalty added to the loss would only make
them small). With SGD at step 1/L this is ISTA; with Adam the threshold of
each weight is lam times that weight's own step size, so Adam finds the
same solution. Both are checked against a NumPy ISTA run to convergence.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt

import downhill
from downhill import prox, schedules

rng = np.random.default_rng(7)
n, d, lam = 200, 30, 0.1
cov = 0.5 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))  # correlated features
X = rng.multivariate_normal(np.zeros(d), cov, size=n)
true_w = np.zeros(d)
true_w[[0, 3, 7, 12, 20]] = [3, -2, 1.5, 0.08, -0.05]
y = X @ true_w + 0.5 * rng.normal(size=n)

# the reference: NumPy ISTA (proximal gradient descent), to convergence
L = np.linalg.eigvalsh(X.T @ X / n).max()
ref = np.zeros(d)
for _ in range(5000):
    z = ref - X.T @ (X @ ref - y) / n / L
    ref = np.sign(z) * np.maximum(np.abs(z) - lam / L, 0)

x, t = pt.matrix('x'), pt.vector('t')
w = pytensor.shared(np.zeros(d), name='w')
loss = 0.5 * pt.sqr(x.dot(w) - t).mean()

print(f'ISTA reference: {np.count_nonzero(ref)} non-zero weights at {np.flatnonzero(ref).tolist()}')
runs = [('sgd', dict(learning_rate=1 / L)),
        ('adam', dict(learning_rate=0.01 * schedules.exponential(halflife=400)))]
for algo, hyper in runs:
    w.set_value(np.zeros(d))
    opt = downhill.build(algo, loss, inputs=[x, t], constraints={w: prox.l1(lam)})
    train, valid = opt.minimize([[X, y]], max_updates=3000, validate_every=100, patience=100,
                                **hyper)
    got = w.get_value()
    print(f'{algo:5s}: objective {valid["loss"]:.6f} (loss {valid["raw_loss"]:.6f} + '
          f'l1 {valid["l1(w)"]:.6f}); {np.count_nonzero(got)} non-zero weights at '
          f'{np.flatnonzero(got).tolist()}, exact zeros: {int(np.sum(got == 0))}, '
          f'largest difference from ISTA {np.abs(got - ref).max():.1e}')
