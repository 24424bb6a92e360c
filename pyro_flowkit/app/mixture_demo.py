"""The demo's mixture part: a Gaussian mixture on a 2-D toy fit by EM and, from the same start,
by SVI on its Pyro model, with the components' ellipses drawn.

Like ``demo.py`` this module sits on top of the library (it uses ``pyro_flowkit.models``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, TraceEnum_ELBO

from pyro_flowkit import data
from pyro_flowkit.models import GaussianMixture

__all__ = ["gmm_demo"]

GMM_TOY = "pinwheel"


def gmm_demo(out: Path, svi_steps: int = 1000, seed: int = 0, components: int = 10) -> dict:
    """Fit a full-covariance Gaussian mixture to ``pinwheel`` by EM and by SVI from one K-means
    start; report held-out mean log-likelihoods, iterations/steps and seconds, and write
    ``gmm_pinwheel.png``."""
    pyro.set_rng_seed(seed)
    train, test = data.toy_2d(GMM_TOY, 5000, seed), data.toy_2d(GMM_TOY, 2000, seed + 1)
    start = time.perf_counter()
    em = GaussianMixture(components, seed=seed, tol=1e-6, max_iter=500).fit(train)
    em_seconds = time.perf_counter() - start
    svi_gmm = GaussianMixture(components, seed=seed, name="demo_svi")
    pyro.clear_param_store()
    svi = SVI(svi_gmm.model, lambda x: None, pyro.optim.Adam({"lr": 0.02}),
              TraceEnum_ELBO(max_plate_nesting=1))  # fmt: skip
    start = time.perf_counter()
    for _ in range(svi_steps):
        svi.step(train)
    svi_seconds = time.perf_counter() - start
    svi_gmm.load_param_store()
    report = {
        "components": components,
        "em_iterations": em.n_iter_,
        "em_seconds": em_seconds,
        "em_test_log_likelihood": em.score(test),
        "svi_steps": svi_steps,
        "svi_seconds": svi_seconds,
        "svi_test_log_likelihood": svi_gmm.score(test),
        "em_train_log_likelihood": em.score(train),
        "svi_train_log_likelihood": svi_gmm.score(train),
    }
    _picture(train, em, svi_gmm, report, out)
    return report


def _picture(
    points: torch.Tensor, em: GaussianMixture, svi: GaussianMixture, report: dict, out: Path
) -> None:
    try:
        from pyro_flowkit.app.plots import plot_gaussian_mixture_2d

        panels = [
            (f"EM, {report['em_iterations']} iterations", em),
            (f"SVI, {report['svi_steps']} Adam steps", svi),
        ]
        fits = [(t, g.weights_, g.means_, g.covariances_) for t, g in panels]
        plot_gaussian_mixture_2d(fits, points[:3000], out / f"gmm_{GMM_TOY}.png")
    except ImportError as e:
        print(f"no mixture picture: {e}")
