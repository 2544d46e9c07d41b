"""downhill: minimize scalar PyTensor losses with stochastic gradient methods.

The three ways in: :func:`minimize` (one call), :meth:`Optimizer.iterate`
(a loop you drive), and :meth:`Optimizer.get_updates` (update pairs for your
own ``pytensor.function``).

:mod:`downhill.second_order` has the full-batch methods (``lbfgs``, ``bfgs``,
``newton-cg``) and :func:`multistart` runs any algorithm from many starting
points. :mod:`downhill.prox` holds constraints and proximal operators (``constraints=``
of :func:`build`), :mod:`downhill.schedules` learning-rate and momentum
schedules. :func:`sweep` runs a hyperparameter grid on any
``concurrent.futures`` executor.
"""

from . import logs, prox, schedules
from .adaptive import ADADELTA, ADAGRAD, ESGD, Adam, RMSProp, RProp
from .base import Optimizer, algorithms, build
from .dataset import Dataset
from .diagnose import DataError
from .first_order import NAG, SGD
from .minimize import minimize
from .modern import AdamW, Adamax, NAdam
from .multistart import multistart
from .second_order import BFGS, LBFGS, NewtonCG
from .sweep import sweep

__version__ = '0.6.0'

__all__ = [
    'DataError',
    'ADADELTA', 'ADAGRAD', 'Adam', 'AdamW', 'Adamax', 'BFGS', 'Dataset', 'ESGD', 'LBFGS', 'NAG',
    'NAdam', 'NewtonCG', 'Optimizer', 'RMSProp', 'RProp', 'SGD', 'algorithms', 'build',
    'minimize', 'multistart', 'prox', 'schedules', 'sweep', '__version__',
]

logs.install_default_handler()
