"""Projected gradient descent on the unit circle in a Gaussian-wells landscape.

A classic constrained-optimization exercise, with downhill: 100 points
start at random in a landscape of 8 Gaussian wells and must stay on the unit
circle. The constraint ``downhill.prox.unit_norm(axis=1)`` projects every
row (one point) back onto the circle inside each compiled update, so the
loop below is plain gradient descent and the points never leave the circle.

The answer is checked against a brute-force search: the loss along the
circle, on a grid of a million angles, gives the constrained minima.
"""

import numpy as np

import downhill
from downhill import landscapes, prox

scape = landscapes.gaussian_wells(d=2, n_wells=8, seed=0, n_points=100)
x = scape.param
start = x.get_value()
x.set_value(start / np.linalg.norm(start, axis=1, keepdims=True))  # start on the circle

opt = downhill.build('sgd', scape.loss, constraints={x: prox.unit_norm(axis=1)})
worst = 0.0
for train, _ in opt.iterate(None, learning_rate=0.05, momentum=0.5, max_updates=1000,
                            validate_every=50, patience=5):
    worst = max(worst, np.abs(np.linalg.norm(x.get_value(), axis=1) - 1).max())
points = x.get_value()

# brute force: the landscape along the circle
angles = np.linspace(-np.pi, np.pi, 1_000_000, endpoint=False)
values = scape.numpy(np.stack([np.cos(angles), np.sin(angles)], axis=1))
is_min = (values < np.roll(values, 1)) & (values < np.roll(values, -1))
minima, minimum_values = angles[is_min], values[is_min]
best = minima[np.argmin(minimum_values)]

found = np.arctan2(points[:, 1], points[:, 0])
gap = np.abs(np.angle(np.exp(1j * (found[:, None] - minima[None, :]))))  # to each local minimum
nearest = gap.argmin(axis=1)
at_a_minimum = gap.min(axis=1) < 1e-4
at_best = at_a_minimum & (minima[nearest] == best)

print(f'points: {len(points)}; farthest from the circle after any update: {worst:.1e}')
print(f'local minima of the loss on the circle (brute force): {len(minima)}, '
      f'values {", ".join(f"{v:.4f}" for v in np.sort(minimum_values))}')
print(f'points at a constrained local minimum: {at_a_minimum.sum()} of {len(points)}')
print(f'points at the constrained global minimum (angle {best:.4f}, value '
      f'{minimum_values.min():.4f}): {at_best.sum()}')
print(f'loss: {scape.numpy(start / np.linalg.norm(start, axis=1, keepdims=True)).sum():.4f} -> '
      f'{scape.numpy(points).sum():.4f}')
