"""The symbolic building blocks of an update, shared by every layer above.

Layer 2, above :mod:`downhill.backend` (which it does not import) and
:mod:`downhill._compat`: what a loss depends on (:mod:`~downhill.core.graph`),
checking arguments (:mod:`~downhill.core.hyperparams`), gradient transforms
(:mod:`~downhill.core.transforms`), schedules (:mod:`~downhill.core.schedules`),
constraints and proximal operators (:mod:`~downhill.core.prox`) and the
non-finite guard (:mod:`~downhill.core.nonfinite`). Nothing here knows an
optimizer, a dataset or a loop.
"""
