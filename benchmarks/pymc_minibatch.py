"""How far find_map's defaults land from the full-batch MAP, in posterior sds, on three mini-batch models.

    python -m benchmarks.pymc_minibatch      # needs PyMC (pip install -e '.[pymc]')

Each model is fitted twice: on all its rows with L-BFGS (the reference MAP),
then with ``pm.Minibatch`` and find_map's defaults (Adam, seed 0). The
distance is measured in the unconstrained space, in posterior standard
deviations from the Laplace approximation at the reference MAP
(``pm.find_hessian``). Figures are in docs/pymc.rst.
"""
import time, logging
import numpy as np, pymc as pm
from downhill.pymc import find_map
logging.getLogger('downhill').setLevel(logging.WARNING)
rng = np.random.default_rng(0)

def laplace_sd(model, point):
    # posterior sd from the Hessian of -logp at the MAP (unconstrained space == these models' space)
    h = pm.find_hessian(point, model=model)
    return np.sqrt(np.diag(np.linalg.inv(h)))

def run(name, build, n, batch):
    full_model = build(None)
    full = find_map(model=full_model, algo='lbfgs', progressbar=False)
    names = [v.name for v in full_model.value_vars]  # the unconstrained space
    sd = laplace_sd(full_model, full)
    t = time.time()
    got, hist = find_map(model=build(batch), seed=0, progressbar=False, return_monitors=True)
    sec = time.time() - t
    a = np.concatenate([np.ravel(got[k]) for k in names]); b = np.concatenate([np.ravel(full[k]) for k in names])
    print(f'{name}: {n} rows, batches of {batch}: {len(hist)} updates in {sec:.1f} s, at most {np.max(np.abs(a - b) / sd):.2f} posterior sd from the full-batch MAP')

n = 200_000
X = rng.normal(size=(n, 3)); yl = rng.binomial(1, 1 / (1 + np.exp(-(X @ [1.0, -2.0, 0.5] - 0.3)))).astype('int32')
def logistic(batch):
    with pm.Model() as m:
        Xb, yb = pm.Minibatch(X, yl, batch_size=batch) if batch else (X, yl)
        a = pm.Normal('alpha', 0, 2.5); b = pm.Normal('beta', 0, 2.5, shape=3)
        pm.Bernoulli('y', logit_p=a + pm.math.dot(Xb, b), observed=yb, total_size=n if batch else None)
    return m
run('logistic regression', logistic, n, 256)

n2 = 100_000
X2 = rng.normal(size=(n2, 4)); y2 = X2 @ [0.5, -1.0, 2.0, 0.0] + 1.0 + rng.normal(scale=0.7, size=n2)
def linear(batch):
    with pm.Model() as m:
        Xb, yb = pm.Minibatch(X2, y2, batch_size=batch) if batch else (X2, y2)
        a = pm.Normal('alpha', 0, 10); b = pm.Normal('beta', 0, 10, shape=4); s = pm.HalfNormal('sigma', 1)
        pm.Normal('y', a + pm.math.dot(Xb, b), s, observed=yb, total_size=n2 if batch else None)
    return m
run('linear regression', linear, n2, 1000)

X3 = rng.normal(size=(n2, 2)); y3 = rng.poisson(np.exp(X3 @ [0.3, -0.5] + 0.5)).astype('int32')
def poisson(batch):
    with pm.Model() as m:
        Xb, yb = pm.Minibatch(X3, y3, batch_size=batch) if batch else (X3, y3)
        a = pm.Normal('alpha', 0, 2); b = pm.Normal('beta', 0, 2, shape=2)
        pm.Poisson('y', mu=pm.math.exp(a + pm.math.dot(Xb, b)), observed=yb, total_size=n2 if batch else None)
    return m
run('Poisson regression', poisson, n2, 512)
