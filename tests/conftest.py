"""Test set-up.

Most tests compile with PyTensor's FAST_COMPILE mode: it compiles nothing, so
the suite runs in seconds even on a machine with an empty compile cache (the
default Numba backend takes 10-20 s per new graph there). Tests marked
``compiled`` run in PyTensor's default mode, to prove the real backend.
Set DOWNHILL_TEST_MODE to run everything in another mode.
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
