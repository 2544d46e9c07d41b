"""Linear regression of house prices on house sizes, with early stopping.

Fits price = w * size + b on 400 synthetic houses (sizes in 1000s of square
feet, prices in $1000s) with mini-batch SGD and momentum, keeping 100 houses
aside for validation: training stops when the validation loss has not improved
for `patience` validations, and the best parameters are restored.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt

import downhill

rng = np.random.default_rng(42)
sizes = rng.uniform(0.5, 4.0, size=500)                     # 1000 sq ft
prices = 150 * sizes + 50 + rng.normal(0, 25, size=500)     # $1000
train = [sizes[:400], prices[:400]]
valid = [sizes[400:], prices[400:]]

size = pt.vector('size')
price = pt.vector('price')
w = pytensor.shared(0.0, name='w')
b = pytensor.shared(0.0, name='b')
predicted = w * size + b
loss = pt.sqr(predicted - price).mean()

opt = downhill.build('sgd', loss, inputs=[size, price],
                     monitors={'mean abs error': abs(predicted - price).mean()})
for i, (tm, vm) in enumerate(opt.iterate(
        downhill.Dataset(train, batch_size=32, rng=0),
        downhill.Dataset(valid, batch_size=0),
        learning_rate=0.01, momentum=0.9, patience=3, validate_every=5, min_improvement=0.001)):
    if i % 20 == 0:
        print(f'iteration {i + 1:4d}: train loss {tm["loss"]:9.2f}  valid loss {vm["loss"]:9.2f}')

fit = opt.evaluate(downhill.Dataset(valid, batch_size=0))
print(f'stopped after {i + 1} iterations')
print(f'price = {float(w.get_value()):.1f} * size + {float(b.get_value()):.1f}  '
      f'(true: 150 * size + 50); validation mean abs error ${fit["mean abs error"]:.1f}k')
print(f'a 2,000 sq ft house: ${float(w.get_value()) * 2 + float(b.get_value()):.0f}k')
