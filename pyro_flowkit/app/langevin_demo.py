"""The demo's Langevin part: an energy-based model on a 2-D toy and a MALA posterior.

Like ``demo.py`` this module sits on top of the library (it uses ``pyro_flowkit.inference`` and
``pyro_flowkit.models``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from torch import Tensor

from pyro_flowkit import data, metrics
from pyro_flowkit.diagnostics import from_chains, import_arviz
from pyro_flowkit.inference import sample_langevin, train_ebm
from pyro_flowkit.models import EnergyModel, energy_mlp

__all__ = ["ebm_demo", "logistic_potential", "mala_demo"]

EBM_TOY = "8gaussians"


def ebm_demo(out: Path, steps: int = 2000, progress: bool = True, seed: int = 0) -> dict:
    """Train an EBM on ``8gaussians`` at temperature 1, sample it with MALA, plot and score it.

    Scores: MMD (bandwidth 0.5) of 500 MALA samples started from uniform noise, of the noise
    itself and of a second data sample, each against 500 held-out data points; mean energies of
    data and noise. Writes ``ebm_8gaussians.png``.
    """
    pyro.set_rng_seed(seed)
    train_data = data.toy_2d(EBM_TOY, 4000, seed)
    ebm = EnergyModel(energy_mlp(2, (128, 128)))
    start = time.perf_counter()
    train_ebm(ebm, train_data, steps=steps, step_size=0.02, langevin_steps=30, lr=2e-3,
              progress=progress)  # fmt: skip
    seconds = time.perf_counter() - start
    low, high = train_data.amin(0), train_data.amax(0)
    noise = low + (high - low) * torch.rand(500, 2)
    samples, stats = sample_langevin(
        ebm.energy, noise.clone(), 1, step_size=0.02, num_warmup=500, adapt_mass_matrix=False,
        progress=progress,
    )  # fmt: skip
    held_out, other = data.toy_2d(EBM_TOY, 500, seed + 1), data.toy_2d(EBM_TOY, 500, seed + 2)
    with torch.no_grad():
        energies = {
            "energy_data": ebm.energy(held_out).mean(),
            "energy_noise": ebm.energy(noise).mean(),
        }
    report = {
        "steps": steps,
        "train_seconds": seconds,
        "mmd_samples": metrics.mmd(samples[:, -1], held_out),
        "mmd_noise": metrics.mmd(noise, held_out),
        "mmd_data": metrics.mmd(other, held_out),
        "mala_acceptance": stats["acceptance_rate"].mean().item(),
        **{k: v.item() for k, v in energies.items()},
    }
    _ebm_picture(train_data[:1000], samples[:, -1], out)
    return report


def _ebm_picture(points: Tensor, samples: Tensor, out: Path) -> None:
    try:
        from pyro_flowkit.app.plots import plot_samples_2d

        panels = [("data", points), ("EBM: MALA from noise", samples)]
        plot_samples_2d(panels, out / f"ebm_{EBM_TOY}.png")
    except ImportError as e:
        print(f"no EBM picture: {e}")


def logistic_potential(x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
    r"""Potential of Bayesian logistic regression for ``(chains, D + 1)`` weights (bias last).

    .. math:: U(w) = \tfrac12\|w\|^2 - \sum_i \bigl(y_i \ell_i - \log(1 + e^{\ell_i})\bigr),
       \qquad \ell_i = x_i^\top w_{1:D} + w_{D+1}

    (standard normal prior on every weight and on the bias).
    """

    def potential(w: Tensor) -> Tensor:
        logits = w[:, :-1] @ x.T + w[:, -1:]
        log_lik = (y * logits - torch.nn.functional.softplus(logits)).sum(1)
        return 0.5 * w.square().sum(1) - log_lik

    return potential


def mala_demo(
    out: Path, chains: int = 8, thin: int = 10, progress: bool = True, seed: int = 0
) -> dict:
    """Sample the logistic-regression posterior on breast_cancer with vectorised MALA chains.

    2000 warm-up steps, then 1000 draws per chain kept every ``thin`` steps; reports ArviZ's
    largest r-hat, smallest bulk ESS, the divergences and the posterior-mean classifier's test
    accuracy, and writes the ArviZ trace plot ``mala_trace.png``.
    """
    pyro.set_rng_seed(seed)
    x, y = data.load_breast_cancer("train")
    potential = logistic_potential(x, y)
    init = torch.rand(chains, x.shape[1] + 1) * 4 - 2  # Stan's uniform(-2, 2) start
    start = time.perf_counter()
    samples, stats = sample_langevin(
        potential, init, 1000, step_size=0.01, num_warmup=2000, thin=thin, progress=progress
    )
    seconds = time.perf_counter() - start
    idata = from_chains({"weights": samples[..., :-1], "bias": samples[..., -1]}, stats)
    summary = import_arviz().summary(idata)
    mean = samples.flatten(0, 1).mean(0)
    x_test, y_test = data.load_breast_cancer("test")
    logits = x_test @ mean[:-1] + mean[-1]
    report = {
        "seconds": seconds,
        "chains": chains,
        "r_hat_max": float(summary["r_hat"].max()),
        "ess_bulk_min": float(summary["ess_bulk"].min()),
        "divergences": int(stats["diverging"].sum()),
        "acceptance_rate": stats["acceptance_rate"].mean().item(),
        "test_accuracy": ((logits > 0).to(y_test) == y_test).float().mean().item(),
    }
    _trace_picture(idata, out)
    return report


def _trace_picture(idata: object, out: Path) -> None:
    try:
        from pyro_flowkit.app.plots import plot_trace

        plot_trace(idata, out / "mala_trace.png", var_names=["bias", "weights"],
                   coords={"weights_dim_0": [0, 1, 2]}, divergences="bottom")  # fmt: skip
    except ImportError as e:
        print(f"no trace picture: {e}")
