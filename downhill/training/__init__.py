"""Training: the loop, feeding batches, datasets, checkpoints, interrupts, progress.

Layer 3, above :mod:`downhill.core` and :mod:`downhill.backend`. It knows
no algorithm: the loop drives any object with the optimizer's protocol
(compiled step and evaluation functions, a snapshot of the best parameters,
the loop state that checkpoints save), and a checkpoint saves what that
object holds.
"""
