"""The ``downhill`` command: list algorithms, race them on test landscapes, fit a model.

::

    downhill algorithms                    # every algorithm, its hyperparameters and defaults
    downhill landscapes                    # the test landscapes
    downhill race rosenbrock --plot race.png
    downhill fit model.py:problem --algo adam --set learning_rate=0.01 --save params.npz

Exit codes: 0 success, 1 failure, 2 usage error (bad option, unknown name).

The command group is :func:`main` (:mod:`.group`); each command lives in
its own module, which adds it to the group when imported: :mod:`.show`
(``algorithms``, ``landscapes``), :mod:`.race` and :mod:`.fit`.
:mod:`.keywords` reads what the algorithms take and the ``--set`` and
``--algo`` options; :mod:`.terminal` is the logging, the shared options
and the tables.
"""

from ...training.logs import StatusLine  # noqa: F401 -- the status line of race and fit
from .group import main
from .keywords import hyperparameters, loop_keywords, parse_settings, parse_value, valid_keywords
from .show import _first_line, algorithms_command, landscapes_command  # noqa: F401
from .race import RACE_DEFAULTS, _distance, race_command, race_defaults, race_steps, run_race  # noqa: F401
from .fit import fit_command  # noqa: F401

__all__ = ['main', 'hyperparameters', 'loop_keywords', 'valid_keywords', 'parse_settings',
           'run_race', 'RACE_DEFAULTS']
