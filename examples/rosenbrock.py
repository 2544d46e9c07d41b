"""Several algorithms on the 2-d Rosenbrock function, from (-1.2, 1).

The minimum is at (1, 1) with value 0. Each algorithm runs for a fixed number
of updates with a learning rate that suits it; the table shows where each got.
"""

import time

import numpy as np
import pytensor

import downhill

SETTINGS = {
    'sgd': dict(learning_rate=1e-3, momentum=0.9),
    'nag': dict(learning_rate=1e-3, momentum=0.9),
    'rprop': dict(learning_rate=1e-3, rprop_increase=1.2, rprop_decrease=0.5),
    'rmsprop': dict(learning_rate=1e-3),
    'adagrad': dict(learning_rate=0.5),
    'adadelta': dict(rms_regularizer=1e-4),
    'esgd': dict(learning_rate=1e-2),
    'adam': dict(learning_rate=0.05),
}
STEPS = 2000

x = pytensor.shared(np.array([-1.2, 1.0]), name='x')
loss = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

print(f'{"algorithm":10s} {"final loss":>12s} {"distance to (1, 1)":>20s} {"seconds":>8s}')
for algo, hyper in SETTINGS.items():
    x.set_value(np.array([-1.2, 1.0]))
    opt = downhill.build(algo, loss)
    started = time.perf_counter()
    # validate every 100 updates; with patience=STEPS it never stops early
    for _ in opt.iterate(None, max_updates=STEPS, validate_every=100, patience=STEPS, **hyper):
        pass
    final = float(opt.evaluate(None)['loss'])
    distance = float(np.linalg.norm(x.get_value() - 1))
    print(f'{algo:10s} {final:12.3e} {distance:20.4f} {time.perf_counter() - started:8.2f}')
