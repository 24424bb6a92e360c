"""Inference algorithms that plug into Pyro (Langevin, EM, EBM training, Wasserstein critics and
WGAN training, gradient estimators for discrete latents, the training loop), installed as
``pyro_flowkit.inference``."""

if __name__ != "pyro_flowkit.inference":  # e.g. `import inference` from the repository's root
    raise ImportError(
        f"this folder is pyro_flowkit.inference: write `import pyro_flowkit.inference`, "
        f"not {__name__!r} (that would load a second copy of every class)"
    )


from pyro_flowkit._deprecation import deprecated_alias
from pyro_flowkit.diagnostics import from_chains
from pyro_flowkit.inference.adaptation import DualAveraging, WarmupAdapter, find_step_size
from pyro_flowkit.inference.capture import capture
from pyro_flowkit.inference.distributed import gather_chains
from pyro_flowkit.inference.ebm import ReplayBuffer, langevin_dynamics, train_ebm
from pyro_flowkit.inference.em import EM, EMResult
from pyro_flowkit.inference.ema import EMA
from pyro_flowkit.inference.estimators import GradientError, gradient_error
from pyro_flowkit.inference.gumbel import (
    GumbelSoftmax,
    GumbelSoftmaxStraightThrough,
    gumbel_max,
    gumbel_softmax_temperature,
)
from pyro_flowkit.inference.langevin import (
    LangevinInfo,
    LangevinState,
    StepScales,
    init_state,
    mala_step,
    potential_and_grad,
    step_scales,
    ula_step,
)
from pyro_flowkit.inference.langevin_kernels import MALA, SGLD, ULA, polynomial_decay
from pyro_flowkit.inference.potential import ModelPotential
from pyro_flowkit.inference.reinforce import ReinforceLOO_ELBO
from pyro_flowkit.inference.sampling import sample_langevin
from pyro_flowkit.inference.training import History, StepInfo, Trainer, minibatches, train
from pyro_flowkit.inference.wasserstein import (
    CriticEstimate,
    GradientPenalty,
    LipschitzConstraint,
    MaxMin,
    SpectralNormalization,
    WeightClipping,
    WGANResult,
    critic_gradient_norms,
    critic_mlp,
    train_wgan,
    wasserstein1,
)

__all__ = [
    "MALA",
    "SGLD",
    "ULA",
    "EM",
    "EMA",
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
    "History",
    "StepInfo",
    "Trainer",
    "capture",
    "gather_chains",
    "minibatches",
    "polynomial_decay",
    "potential_and_grad",
    "sample_langevin",
    "train",
    "train_ebm",
    "ula_step",
    "ModelPotential",
    "GradientError",
    "GumbelSoftmax",
    "GumbelSoftmaxStraightThrough",
    "ReinforceLOO_ELBO",
    "gradient_error",
    "gumbel_max",
    "gumbel_softmax_temperature",
    "StepScales",
    "step_scales",
    "CriticEstimate",
    "GradientPenalty",
    "LipschitzConstraint",
    "MaxMin",
    "SpectralNormalization",
    "WGANResult",
    "WeightClipping",
    "critic_gradient_norms",
    "critic_mlp",
    "train_wgan",
    "wasserstein1",
]

# Deprecated: ArviZ conversion lives in pyro_flowkit.diagnostics (from_chains, from_guide).
to_inference_data = deprecated_alias("pyro_flowkit.inference.to_inference_data", from_chains)
