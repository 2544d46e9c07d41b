"""Optional peers: torch.optim (eager) and jax.jit + optax, when importable.

Each runs in its own worker process (see :mod:`benchmarks.worker`); a missing
library makes its rows "skipped". Run them from a venv that has them with
``--peer-python /path/to/venv/bin/python`` (that venv needs only numpy and the
library: this package imports nothing else for them).

Same data, start values, batch order and hyperparameters as downhill and the
raw function. Known differences of form (so their check column uses a looser
tolerance, 1e-3): torch/optax RMSProp put eps outside the square root
(downhill: eps**2 inside, see :mod:`benchmarks.problems`).
"""

import os


def runner(impl, cfg, problems, base):
    if impl == 'torch':
        return _torch_runner(base)(cfg, problems)
    if impl == 'jax':
        return _jax_runner(base)(cfg, problems)
    raise ValueError(impl)


def _threads():
    return int(os.environ.get('OMP_NUM_THREADS', '2'))


def _torch_runner(Base):

    class TorchRunner(Base):
        """``zero_grad(); loss = f(); loss.backward(); step(); loss.item()`` per update."""

        def imports(self):
            import torch
            torch.set_num_threads(_threads())
            self.torch = torch

        def loss_fn(self):
            torch = self.torch
            problem = self.problem
            if problem.startswith('rosenbrock'):
                def f(x):
                    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
            elif problem == 'matfact':
                def f(u, v, X):
                    return ((X - u @ v) ** 2).mean() + 0.01 * u.abs().mean() + 0.01 * (v * v).mean()
            elif problem == 'mlp':
                def f(W1, b1, W2, b2, xb, yb):
                    return ((torch.tanh(xb @ W1 + b1) @ W2 + b2 - yb) ** 2).mean()
            return f

        def build(self):
            torch = self.torch
            hp = self.P.hyper(self.problem)
            init = self.P.make(self.problem, self.size)['init']
            self._params = [torch.tensor(a.copy(), requires_grad=True) for a in init]
            self.tbatches = [tuple(torch.from_numpy(x) for x in b) for b in self.batches]
            if self.algo == 'adam':
                self.opt = torch.optim.Adam(self._params, lr=hp['lr'], betas=(hp['b1'], hp['b2']),
                                            eps=hp['adam_eps'])
            elif self.algo == 'rmsprop':
                self.opt = torch.optim.RMSprop(self._params, lr=hp['lr'], alpha=hp['decay'], eps=1e-8,
                                               centered=True)
            else:
                self.opt = torch.optim.SGD(self._params, lr=hp['lr'], momentum=hp['momentum'])
            self.f = self.loss_fn()
            self.sched.cursor = 0
            self.steps(1)
            return self.last

        def steps(self, n, variant='base'):
            opt, f, params, batches = self.opt, self.f, self._params, self.tbatches
            nb = len(batches)
            for _ in range(n):
                batch = batches[self.sched.cursor]
                self.sched.cursor = (self.sched.cursor + 1) % nb
                opt.zero_grad()
                loss = f(*params, *batch)
                loss.backward()
                opt.step()
                self.last = loss.item()
            self.done += n

        def params(self):
            return [p.detach().numpy().copy() for p in self._params]

    return TorchRunner


def _jax_runner(Base):

    class JaxRunner(Base):
        """``jax.jit`` of (params, state, *batch) -> (params, state, loss), donated; ``float(loss)`` per update."""

        def imports(self):
            import jax
            import optax
            if self.dtype == 'float64':
                jax.config.update('jax_enable_x64', True)
            self.jax, self.optax = jax, optax

        def build(self):
            jax, optax = self.jax, self.optax
            jnp = jax.numpy
            hp = self.P.hyper(self.problem)
            init = self.P.make(self.problem, self.size)['init']
            problem = self.problem

            def loss_fn(params, *batch):
                if problem.startswith('rosenbrock'):
                    (x,) = params
                    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
                if problem == 'matfact':
                    u, v = params
                    (X,) = batch
                    return jnp.mean((X - u @ v) ** 2) + 0.01 * jnp.mean(jnp.abs(u)) + 0.01 * jnp.mean(v * v)
                W1, b1, W2, b2 = params
                xb, yb = batch
                return jnp.mean((jnp.tanh(xb @ W1 + b1) @ W2 + b2 - yb) ** 2)

            if self.algo == 'adam':
                tx = optax.adam(hp['lr'], b1=hp['b1'], b2=hp['b2'], eps=hp['adam_eps'])
            elif self.algo == 'rmsprop':
                tx = optax.rmsprop(hp['lr'], decay=hp['decay'], eps=1e-8, centered=True,
                                   eps_in_sqrt=False)
            else:
                tx = optax.sgd(hp['lr'], momentum=hp['momentum'])

            def step(params, state, *batch):
                loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
                updates, state = tx.update(grads, state, params)
                return optax.apply_updates(params, updates), state, loss

            self.step = jax.jit(step, donate_argnums=(0, 1))
            self.p = [jnp.asarray(a) for a in init]
            self.state = tx.init(self.p)
            self.jbatches = [tuple(jnp.asarray(x) for x in b) for b in self.batches]
            self.sched.cursor = 0
            self.steps(1)
            return self.last

        def steps(self, n, variant='base'):
            step, batches = self.step, self.jbatches
            nb = len(batches)
            p, state = self.p, self.state
            for _ in range(n):
                batch = batches[self.sched.cursor]
                self.sched.cursor = (self.sched.cursor + 1) % nb
                p, state, loss = step(p, state, *batch)
                self.last = float(loss)
            self.p, self.state = p, state
            self.done += n

        def params(self):
            import numpy as np
            return [np.asarray(a).copy() for a in self.p]

    return JaxRunner
