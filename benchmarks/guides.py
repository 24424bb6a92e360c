"""AutoFlow against Pyro's AutoNormal: ELBO and PSIS k-hat on a banana and a 10-D funnel.

Targets (both normalised, so the ELBO's optimum is log Z = 0 and its gap is KL(q || p)): a banana,
``x1 ~ N(0, 1)``, ``x2 ~ N(x1^2 - 1, 0.5^2)``; Neal's funnel in 10 dimensions, ``v ~ N(0, 3^2)``,
``x_i | v ~ N(0, e^v)``. Protocol, for each seed: ``pyro.set_rng_seed(seed)``, then AutoNormal and
then ``AutoFlow(num_layers=4, hidden_dims=(32, 32))`` (both at ``init_to_median``), each trained
for ``--steps`` SVI steps with ``Trace_ELBO(num_particles=8, vectorize_particles=True)`` and
ClippedAdam (lr 0.01 decaying to 0.001), in float64. Scores: the ELBO from 4000 particles and the
mean of three PSIS k-hat estimates (``diagnostics.psis_diagnostic``, 20,000 vectorised draws each);
Yao et al. (2018): k-hat < 0.5 good, < 0.7 usable, above untrustworthy. Seconds: training only.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/guides.py [--seeds 6] [--steps 1500] [--quick]
        [--results FILE]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from digits_flows import footer, write_results
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyro_flowkit.diagnostics import psis_diagnostic
from pyro_flowkit.guides import AutoFlow


def banana() -> None:
    x1 = pyro.sample("x1", dist.Normal(0.0, 1.0))
    pyro.sample("x2", dist.Normal(x1**2 - 1, 0.5))


def funnel() -> None:
    v = pyro.sample("v", dist.Normal(0.0, 3.0))
    pyro.sample("x", dist.Normal(torch.zeros(9), torch.exp(v / 2)[..., None]).to_event(1))


TARGETS = {"banana": banana, "funnel, 10-D": funnel}
GUIDES: dict[str, Callable] = {
    "AutoNormal": AutoNormal,
    "AutoFlow": lambda model: AutoFlow(model, num_layers=4, hidden_dims=(32, 32)),
}


def fit(model: Callable, guide: Callable, steps: int) -> float:
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    optim = pyro.optim.ClippedAdam({"lr": 0.01, "lrd": 0.1 ** (1 / steps)})
    svi = SVI(model, guide, optim, elbo)
    start = time.perf_counter()
    for _ in range(steps):
        svi.step()
    return time.perf_counter() - start


def score(model: Callable, guide: Callable, draws: int) -> tuple[float, float]:
    elbo = Trace_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1)
    khats = [
        psis_diagnostic(model, guide, num_samples=draws, max_plate_nesting=1) for _ in range(3)
    ]
    return -elbo.loss(model, guide), sum(khats) / 3


def run(args: argparse.Namespace) -> list[tuple]:
    rows = []
    torch.set_default_dtype(torch.float64)
    for target, model in TARGETS.items():
        for seed in range(args.seeds):
            pyro.set_rng_seed(seed)
            for name, make in GUIDES.items():
                pyro.clear_param_store()
                guide = make(model)
                seconds = fit(model, guide, args.steps)
                elbo, khat = score(model, guide, args.draws)
                rows.append((target, seed, name, elbo, khat, seconds))
                print(rows[-1], flush=True)
    return rows


def table(rows: list[tuple], args: argparse.Namespace) -> str:
    lines = [
        "## Flow guides: AutoFlow against AutoNormal (`benchmarks/guides.py`)",
        "",
        f"{args.steps} SVI steps per guide and seed; ELBO from 4000 particles (optimum 0); k-hat "
        f"the mean of three PSIS estimates from {args.draws:,} draws. The script's docstring has "
        "the protocol.",
        "",
        "| target | seed | ELBO AutoNormal | ELBO AutoFlow | k-hat AutoNormal | k-hat AutoFlow "
        "| train s AutoNormal | train s AutoFlow |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by = {(t, s, n): (e, k, sec) for t, s, n, e, k, sec in rows}
    for target in TARGETS:
        for seed in range(args.seeds):
            a, b = by[target, seed, "AutoNormal"], by[target, seed, "AutoFlow"]
            lines.append(
                f"| {target} | {seed} | {a[0]:.3f} | {b[0]:.3f} | {a[1]:.2f} | {b[1]:.2f} "
                f"| {a[2]:.1f} | {b[2]:.1f} |"
            )
    lines += ["", summary(by, args.seeds)]
    return "\n".join(lines)


def summary(by: dict, seeds: int) -> str:
    parts = []
    for target in TARGETS:
        pairs = [(by[target, s, "AutoNormal"], by[target, s, "AutoFlow"]) for s in range(seeds)]
        better = sum(b[0] > a[0] for a, b in pairs)
        lower = sum(b[1] < a[1] for a, b in pairs)
        parts.append(
            f"{target}: AutoFlow's ELBO higher in {better} of {seeds} seeds, its k-hat lower in "
            f"{lower} of {seeds}"
        )
    return "; ".join(parts) + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--draws", type=int, default=20000)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 200 steps, 2000 draws")
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.draws = 2, 200, 2000
    start = time.time()
    text = table(run(args), args)
    cmd = "OMP_WAIT_POLICY=PASSIVE python benchmarks/guides.py" + (" --quick" if args.quick else "")
    text += footer(cmd, start)
    print(text)
    if args.results:
        write_results(args.results, text, "guides")


if __name__ == "__main__":
    main()
