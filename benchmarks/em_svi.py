"""EM and SVI side by side on one objective: how many Adam steps gradient descent needs to reach
the log-likelihood that EM reaches in a few iterations.

* ``GaussianMixture(3)`` (full covariances) on 300 points of three random Gaussian blobs in 3-D
  (the data of ``tests/models/test_gaussian_mixture.py``), both from the same K-means start
  (``seed=0``); SVI runs ``model()`` with an empty guide, ``TraceEnum_ELBO`` and Adam (lr 0.05).
* ``BernoulliMixture(3)`` on the first 300 binarised training digits (pixels > 7), both from the
  same random start (``init_params="random"``, ``seed=0``); Adam lr 0.02.

EM runs to ``tol=1e-8``. Reported: EM's iterations and mean log-likelihood; the first Adam step
whose mean ELBO (the exact log-likelihood: the assignment is enumerated) comes within 0.01 and
0.001 nats per sample of EM's, and the ELBO after 500, 1000 and 1500 steps.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/em_svi.py [--steps 1500] [--results FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from digits_flows import footer, write_results
from pyro.infer import SVI, TraceEnum_ELBO

from pyro_flowkit.data import load_digits
from pyro_flowkit.models import BernoulliMixture, GaussianMixture


def blobs(n: int = 300, d: int = 3, k: int = 3, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(n // k, d)) @ rng.normal(size=(d, d)) + 4 * rng.normal(size=d)
             for _ in range(k)]  # fmt: skip
    return torch.as_tensor(np.concatenate(parts))


def cases() -> list[tuple[str, type, dict, torch.Tensor, float]]:
    digits = (load_digits("train", flatten=True) > 7).double()[:300]
    return [
        ("GaussianMixture, 300 x 3, K = 3, K-means start", GaussianMixture,
         {"init_params": "kmeans"}, blobs(), 0.05),
        ("BernoulliMixture, 300 binarised digits, K = 3, random start", BernoulliMixture,
         {"init_params": "random"}, digits, 0.02),
    ]  # fmt: skip


def side_by_side(cls: type, kw: dict, x: torch.Tensor, lr: float, steps: int) -> dict:
    pyro.clear_param_store()
    em = cls(3, seed=0, tol=1e-8, max_iter=1000, **kw).fit(x)
    svi_model = cls(3, seed=0, name="svi", **kw)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    svi = SVI(svi_model.model, lambda x: None, pyro.optim.Adam({"lr": lr}), elbo)
    curve = [-svi.step(x) / len(x) for _ in range(steps)]
    first = {tol: next((i + 1 for i, v in enumerate(curve) if v > em.lower_bound_ - tol), None)
             for tol in (0.01, 0.001)}  # fmt: skip
    return {"em_iter": em.n_iter_, "em_ll": em.lower_bound_, "first": first, "curve": curve}


def row(name: str, r: dict, steps: int) -> str:
    def reach(tol: float) -> str:
        return str(r["first"][tol]) if r["first"][tol] else f"not in {steps}"

    at = [f"{r['curve'][s - 1]:.4f}" for s in (500, 1000, 1500) if s <= steps]
    return (f"| {name} | {r['em_iter']} | {r['em_ll']:.4f} | {reach(0.01)} | {reach(0.001)} | "
            + " | ".join(at) + " |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    start = time.time()
    lines = [
        "## EM and SVI on one objective (`benchmarks/em_svi.py`)",
        "",
        "Mean log-likelihood per sample; SVI's ELBO is exact (the assignment is enumerated).",
        "",
        "| model and data | EM iterations | EM log-lik | Adam steps to within 0.01 | to within "
        "0.001 | Adam @500 | @1000 | @1500 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, cls, kw, x, lr in cases():
        lines.append(row(name, side_by_side(cls, kw, x, lr, args.steps), args.steps))
    text = "\n".join(lines) + footer("OMP_WAIT_POLICY=PASSIVE python benchmarks/em_svi.py", start)
    print(text)
    if args.results:
        write_results(args.results, text, "em_svi")


if __name__ == "__main__":
    main()
