"""Every test starts from one seed and an empty param store; FLOWKIT_TEST_DEVICE sets the device."""

import os

import pyro
import pytest
import torch
from hypothesis import settings

# the same examples on every run: a property test fails on a defect, not on the day's draw
settings.register_profile("flowkit", derandomize=True)
settings.load_profile("flowkit")

DEVICE = torch.device(os.environ.get("FLOWKIT_TEST_DEVICE", "cpu"))


@pytest.fixture(autouse=True)
def _seed_everything():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture
def device() -> torch.device:
    return DEVICE
