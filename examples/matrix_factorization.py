"""Quick start: a sparse, low-rank approximation of a data matrix.

The front-page example of the original downhill, with only the Theano
imports changed to PyTensor. It minimizes

    L = mean((X - U V)^2) + mean(|U|) + mean(V^2)

first with one call to downhill.minimize(), then by driving opt.iterate(), then
with the raw update pairs compiled into a pytensor.function.
"""

import numpy as np
import pytensor
import pytensor.tensor as TT

import downhill

FLOAT = 'df'[pytensor.config.floatX == 'float32']
np.random.seed(13)


def rand(a, b):
    return np.random.randn(a, b).astype(FLOAT)


A, B, K = 20, 5, 3

# Set up a matrix factorization problem to optimize.
u = pytensor.shared(rand(A, K), name='u')
v = pytensor.shared(rand(K, B), name='v')
z = TT.matrix()
err = TT.sqr(z - TT.dot(u, v))
loss = err.mean() + abs(u).mean() + (v * v).mean()

# Minimize the regularized loss with respect to a data matrix.
y = np.dot(rand(A, K), rand(K, B)) + rand(A, B)

# Monitor during optimization.
monitors = (('err', err.mean()),
            ('|u|<0.1', (abs(u) < 0.1).mean()),
            ('|v|<0.1', (abs(v) < 0.1).mean()))

start = float(pytensor.function([z], loss)(y))
train, valid = downhill.minimize(
    loss=loss,
    train=[y],
    patience=0,
    batch_size=A,                 # Process y as a single batch.
    max_gradient_norm=1,          # Prevent gradient explosion!
    learning_rate=0.1,
    monitors=monitors,
    monitor_gradients=True)

print(f'1. minimize(): loss {start:.4f} -> {valid["loss"]:.4f} (best validation)')
print('   u =', np.round(u.get_value(), 3).tolist())
print('   v =', np.round(v.get_value(), 3).tolist())

# The same with a loop you drive yourself.
opt = downhill.build(algo='rmsprop', loss=loss, monitors=monitors, monitor_gradients=True)
for i, (metrics, _) in enumerate(opt.iterate(train=[[y]], patience=0, batch_size=A,
                                             max_gradient_norm=1, learning_rate=0.1)):
    if i % 10 == 0:
        print(f'2. iterate(): iteration {i + 1}: ' + ' '.join(f'{k}={v:.4f}' for k, v in metrics.items()))

# Or just the update pairs, compiled into your own function.
updates = downhill.build('rmsprop', loss).get_updates(
    batch_size=A, max_gradient_norm=1, learning_rate=0.01)
func = pytensor.function([z], loss, updates=list(updates))
for i in range(100):
    value = func(y)  # Evaluate func and apply variable updates.
print(f'3. get_updates(): loss after 100 more updates: {float(value):.4f}')
