"""The algorithms: update rules (one short class each) and the full-batch methods.

Layer 5, above :mod:`downhill.optimizer`: each algorithm is a subclass of
:class:`~downhill.optimizer.base.Optimizer` that reads its own
hyperparameters and returns its update pairs for one parameter; it knows no
dataset, loop or progress display. Importing this package registers them all.
"""

from . import adaptive, first_order, modern, second_order  # noqa: F401 -- registers them
