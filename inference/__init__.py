"""Inference algorithms that plug into Pyro, installed as ``pyro_flowkit.inference``."""

from pyro_flowkit.inference.adaptation import DualAveraging, WarmupAdapter, find_step_size
from pyro_flowkit.inference.diagnostics import to_inference_data
from pyro_flowkit.inference.ebm import ReplayBuffer, langevin_dynamics, train_ebm
from pyro_flowkit.inference.em import EM, EMResult
from pyro_flowkit.inference.langevin import (
    LangevinInfo,
    LangevinState,
    init_state,
    mala_step,
    potential_and_grad,
    ula_step,
)
from pyro_flowkit.inference.langevin_kernels import MALA, SGLD, ULA, polynomial_decay
from pyro_flowkit.inference.sampling import sample_langevin
from pyro_flowkit.inference.training import minibatches, train

__all__ = [
    "MALA",
    "SGLD",
    "ULA",
    "EM",
    "DualAveraging",
    "EMResult",
    "LangevinInfo",
    "LangevinState",
    "ReplayBuffer",
    "WarmupAdapter",
    "find_step_size",
    "init_state",
    "langevin_dynamics",
    "mala_step",
    "minibatches",
    "polynomial_decay",
    "potential_and_grad",
    "sample_langevin",
    "to_inference_data",
    "train",
    "train_ebm",
    "ula_step",
]
