"""downhill: minimize scalar PyTensor losses with stochastic gradient methods.

The three ways in: :func:`minimize` (one call), :meth:`Optimizer.iterate`
(a loop you drive), and :meth:`Optimizer.get_updates` (update pairs for your
own ``pytensor.function``).

:mod:`downhill.algorithms.second_order` has the full-batch methods
(``lbfgs``, ``bfgs``, ``newton-cg``) and :func:`multistart` runs any
algorithm from many starting points. :mod:`downhill.core.prox` holds
constraints and proximal operators (``constraints=`` of :func:`build`),
:mod:`downhill.core.schedules` learning-rate and momentum schedules.
:func:`sweep` runs a hyperparameter grid on any ``concurrent.futures``
executor.

The package is in layers, each importing only those below it:
:mod:`downhill._compat` (PyTensor versions), :mod:`downhill.backend`
(compiling and the speed-ups), :mod:`downhill.core` (symbolic building
blocks), :mod:`downhill.training` (the loop, data, checkpoints),
:mod:`downhill.optimizer` (the Optimizer class and the registry),
:mod:`downhill.algorithms` and :mod:`downhill.tools`. The module paths of
the flat layout of 0.6 (``downhill.dataset``, ``downhill.compile``...) still
import (:mod:`downhill._moved`).
"""

import importlib

from . import _moved
from .training import logs
from .core import prox, schedules
from .algorithms.adaptive import ADADELTA, ADAGRAD, ESGD, Adam, RMSProp, RProp
from .optimizer.base import Optimizer, algorithms, build
from .training.dataset import Dataset
from .training.diagnose import DataError
from .algorithms.first_order import NAG, SGD
from .tools.minimize import minimize
from .algorithms.modern import AdamW, Adamax, NAdam
from .tools.multistart import multistart
from .algorithms.second_order import BFGS, LBFGS, NewtonCG
from .tools.sweep import sweep

from ._version import __version__

__all__ = [
    'DataError',
    'ADADELTA', 'ADAGRAD', 'Adam', 'AdamW', 'Adamax', 'BFGS', 'Dataset', 'ESGD', 'LBFGS', 'NAG',
    'NAdam', 'NewtonCG', 'Optimizer', 'RMSProp', 'RProp', 'SGD', 'algorithms', 'build',
    'minimize', 'multistart', 'prox', 'schedules', 'sweep', '__version__',
]

_moved.install()
logs.install_default_handler()


def __getattr__(name):
    # ``downhill.dataset`` and the other modules of the flat layout, as attributes too
    if name in _moved.MOVED:
        return importlib.import_module(f'{__name__}.{name}')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
