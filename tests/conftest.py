"""Test set-up.

Most tests compile with PyTensor's FAST_COMPILE mode: it compiles nothing, so
they run in seconds even on an empty compile cache (the default Numba backend
takes 5-20 s per new graph there). Tests marked ``compiled`` run in
PyTensor's default mode with every downhill speed-up on, as users do: the
NumPy-reference math table of every algorithm (``test_math_default_backend``,
also with the speed-ups off), the examples, the rewrites on generated graphs,
the repeat runs of ``test_reproducible`` and the JAX route (with the ``jax``
extra). Set DOWNHILL_TEST_MODE to run the others in another mode too.

How long (2 cores, AMD EPYC): ``python -m pytest`` took 7 min 50 s (a fresh venv, as CI runs it)
and 8 min 59 s (beside other work), about 1390 tests, with a warm compile cache (``~/.pytensor``), in a fresh venv as CI runs it. On an
empty cache each new default-backend graph compiles for 5-20 s first (the
default-backend math table alone took 8 min cold against 72 s warm).
``python -m pytest -m "not compiled"`` leaves out the ~120 default-backend
tests: most of the cold-cache time, little of the warm. One file:
``python -m pytest tests/test_loop.py``; one test: ``-k NAME``.
"""

import logging
import os

import numpy as np
import pytensor
import pytest

DEFAULT_MODE = pytensor.config.mode
TEST_MODE = os.environ.get('DOWNHILL_TEST_MODE', 'FAST_COMPILE')
pytensor.config.mode = TEST_MODE


@pytest.fixture(autouse=True)
def _mode(request):
    if request.node.get_closest_marker('compiled'):
        with pytensor.config.change_flags(mode=DEFAULT_MODE):
            yield
    else:
        yield


@pytest.fixture
def downhill_log(caplog):
    """Capture the downhill logger at INFO."""
    caplog.set_level(logging.INFO, logger='downhill')
    return caplog


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
