"""The optimizer: one class that turns a loss into compiled updates and trains them.

Layer 4: :class:`~downhill.optimizer.base.Optimizer` checks the problem,
holds the hyperparameters and the algorithm state, assembles the updates
(clipping, momentum, weight decay, constraints, schedules) that an
algorithm's rule defines, compiles them through the backend seam, and runs
the training loop of :mod:`downhill.training`. The registry of algorithms
by name is :mod:`downhill.optimizer.registry`.
"""
