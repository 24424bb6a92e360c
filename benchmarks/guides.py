"""AutoFlow against Pyro's AutoNormal: ELBO and PSIS k-hat on a banana and a 10-D funnel.

Targets (both normalised, so the ELBO's optimum is log Z = 0 and its gap is KL(q || p)): a banana,
``x1 ~ N(0, 1)``, ``x2 ~ N(x1^2 - 1, 0.5^2)``; Neal's funnel in 10 dimensions, ``v ~ N(0, 3^2)``,
``x_i | v ~ N(0, e^v)``. Protocol, for each seed: ``pyro.set_rng_seed(seed)``, then AutoNormal and
then ``AutoFlow(num_layers=4, hidden_dims=(32, 32))`` (both at ``init_to_median``), each trained
for ``--steps`` SVI steps with ``Trace_ELBO(num_particles=8, vectorize_particles=True)`` and
ClippedAdam (lr 0.01 decaying to 0.001), in float64. Scores: the ELBO from 4000 particles and the
mean of three PSIS k-hat estimates (``diagnostics.psis_diagnostic``, 20,000 vectorised draws each);
Yao et al. (2018): k-hat < 0.5 good, < 0.7 usable, above untrustworthy. Seconds: training only.

Two more suites (issue 22) on eight schools (centred), a logistic regression (1000 x 10, synthetic,
fixed seed), Pyro's baseball model (Efron-Morris, partially pooled) and, for the ELBO, the banana
and funnel above:

- ``speed``: seconds per SVI step (``Trace_ELBO``, one particle, Adam lr 0.01, float32) of the
  default ``AutoFlow`` against ``AutoIAFNormal(num_transforms=2)`` with its hidden width chosen
  to match AutoFlow's parameter count; after 20 warm-up steps each guide runs blocks of 30 steps,
  alternating, ``--reps`` times, and the ratio is that of the median block times.
- ``elbo``: the final ELBO (2000 vectorised particles) after ``--elbo-steps`` steps of ClippedAdam
  (lr 0.05 decaying to 0.005, one particle) for AutoNormal, AutoIAFNormal (default size),
  AutoFlow (realnvp) and AutoFlow (iresnet), mean +- sd over ``--elbo-seeds`` seeds. A NaN ELBO
  or an error counts as a failed run and is reported as such.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/guides.py [--suite khat|speed|elbo|all]
        [--seeds 6] [--steps 1500] [--quick] [--reps 8] [--elbo-seeds 3] [--elbo-steps 500]
        [--elbo-models NAME,...]
        [--results FILE]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from digits_flows import footer, write_results
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoIAFNormal, AutoNormal

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


# ---------------------------------------------------------------- issue 22: speed and ELBO

SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
HITS = torch.tensor([18.0, 17, 16, 15, 14, 14, 13, 12, 11, 11, 10, 10, 10, 10, 10, 9, 8, 7])
_gen = torch.Generator().manual_seed(0)
LOGIT_X = torch.randn(1000, 10, generator=_gen)
LOGIT_Y = torch.bernoulli(torch.sigmoid(LOGIT_X @ torch.randn(10, generator=_gen) + 0.5),
                          generator=_gen)  # fmt: skip


def eight_schools() -> None:
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", 8):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, SCHOOLS_SIGMA), obs=SCHOOLS_Y)


def logistic() -> None:
    """Weights and intercept as one site (Normal(0, 1) and Normal(0, 5) priors)."""
    prior_scale = torch.cat([torch.ones(10), torch.tensor([5.0])])
    coef = pyro.sample("coef", dist.Normal(torch.zeros(11), prior_scale).to_event(1))
    logits = (coef[..., None, :10] * LOGIT_X).sum(-1) + coef[..., None, 10]
    if coef.dim() > 2:  # vectorised particles: coef is (P, 1, 11), the plate wants (P, 1000)
        logits = logits.reshape(*coef.shape[:-2], 1000)
    with pyro.plate("data", 1000):
        pyro.sample("y", dist.Bernoulli(logits=logits), obs=LOGIT_Y)


def baseball() -> None:
    phi = pyro.sample("phi", dist.Uniform(0.0, 1.0))
    kappa = pyro.sample("kappa", dist.Pareto(1.0, 1.5))
    with pyro.plate("players", 18):
        theta = pyro.sample("theta", dist.Beta(phi * kappa, (1 - phi) * kappa))
        pyro.sample("obs", dist.Binomial(45.0, theta), obs=HITS)


SPEED_MODELS = {"eight schools": eight_schools, "logistic regression": logistic,
                "baseball": baseball}  # fmt: skip
ELBO_MODELS = {**SPEED_MODELS, "banana": banana, "funnel 10-D": funnel}
ELBO_GUIDES: dict[str, Callable] = {
    "AutoNormal": AutoNormal,
    "AutoIAFNormal": AutoIAFNormal,
    "AutoFlow (realnvp)": AutoFlow,
    "AutoFlow (iresnet)": lambda model: AutoFlow(model, "iresnet"),
}


def param_count(guide: Callable) -> int:
    """Parameters of ``guide`` once set up (a fresh param store)."""
    pyro.clear_param_store()
    guide()
    count = sum(v.numel() for v in pyro.get_param_store().values())
    pyro.clear_param_store()
    return count


def matched_iaf(model: Callable, target: int) -> tuple[Callable, int, int]:
    """``AutoIAFNormal(num_transforms=2)`` with the hidden width whose size is nearest
    ``target``."""
    guide = AutoFlow(model)
    param_count(guide)
    best = None
    for h in range(guide.latent_dim, 4096):
        n = param_count(AutoIAFNormal(model, hidden_dim=[h], num_transforms=2))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (h, n)
        if n > target:
            break
    h, n = best
    return (lambda m: AutoIAFNormal(m, hidden_dim=[h], num_transforms=2)), h, n


def speed(args: argparse.Namespace) -> str:
    torch.set_default_dtype(torch.float32)
    lines = [
        "## AutoFlow's SVI step against AutoIAFNormal at equal size (`benchmarks/guides.py "
        "--suite speed`)",
        "",
        f"ms per step, median of {args.reps} alternating blocks of 30 steps (one particle, Adam "
        "lr 0.01, float32, one thread); AutoIAFNormal has 2 transforms and the hidden width that "
        "matches AutoFlow's parameter count. The script's docstring has the protocol.",
        "",
        "| model | latent dim | params AutoFlow | params AutoIAFNormal (width) | ms AutoFlow "
        "| ms AutoIAFNormal | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, model in SPEED_MODELS.items():
        flow = AutoFlow(model)
        n_flow = param_count(flow)
        make_iaf, width, n_iaf = matched_iaf(model, n_flow)
        states, svis = {}, {}
        for guide_name, make in [("AutoFlow", AutoFlow), ("AutoIAFNormal", make_iaf)]:
            pyro.clear_param_store()
            pyro.set_rng_seed(0)
            svis[guide_name] = SVI(model, make(model), pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
            for _ in range(20):
                svis[guide_name].step()
            states[guide_name] = pyro.get_param_store().get_state()
        times: dict[str, list[float]] = {k: [] for k in svis}
        for _ in range(args.reps):
            for guide_name, svi in svis.items():
                pyro.get_param_store().set_state(states[guide_name])
                start = time.perf_counter()
                for _ in range(30):
                    svi.step()
                times[guide_name].append((time.perf_counter() - start) / 30 * 1e3)
                states[guide_name] = pyro.get_param_store().get_state()
        a, b = statistics.median(times["AutoFlow"]), statistics.median(times["AutoIAFNormal"])
        lines.append(f"| {name} | {flow.latent_dim} | {n_flow:,} | {n_iaf:,} ({width}) "
                     f"| {a:.2f} | {b:.2f} | {a / b:.2f} |")  # fmt: skip
        print(lines[-1], flush=True)
    return "\n".join(lines)


def final_elbo(model: Callable, make: Callable, seed: int, steps: int) -> float:
    """The ELBO after ``steps`` steps from ``seed`` (NaN if the run failed)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = make(model)
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / steps)})
    svi = SVI(model, guide, optim, Trace_ELBO())
    try:
        for _ in range(steps):
            svi.step()
        elbo = Trace_ELBO(num_particles=2000, vectorize_particles=True, max_plate_nesting=1)
        with torch.no_grad():
            return -elbo.loss(model, guide)
    except (ValueError, FloatingPointError, RuntimeError):
        return math.nan


def elbo_table(args: argparse.Namespace) -> str:
    torch.set_default_dtype(torch.float32)
    lines = [
        "## Final ELBO of the autoguides over seeds (`benchmarks/guides.py --suite elbo`)",
        "",
        f"Mean +- sd over seeds 0-{args.elbo_seeds - 1} of the ELBO (2000 particles) after "
        f"{args.elbo_steps} steps of ClippedAdam (lr 0.05 decaying to 0.005, one particle); "
        "higher is better; banana and funnel are normalised (optimum 0). Failed runs (NaN or an "
        "error) are counted, not averaged. The script's docstring has the protocol.",
        "",
        "| model | " + " | ".join(ELBO_GUIDES) + " |",
        "|---|" + "---|" * len(ELBO_GUIDES),
    ]
    for name in args.elbo_models:
        model, cells = ELBO_MODELS[name], []
        for make in ELBO_GUIDES.values():
            values = [final_elbo(model, make, s, args.elbo_steps) for s in range(args.elbo_seeds)]
            ok = [v for v in values if math.isfinite(v)]
            cell = "failed" if not ok else f"{statistics.mean(ok):.2f}"
            if len(ok) > 1:
                cell += f" +- {statistics.stdev(ok):.2f}"
            if len(ok) < len(values):
                cell += f" ({len(values) - len(ok)} failed)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--draws", type=int, default=20000)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 200 steps, 2000 draws")
    parser.add_argument("--results", type=Path)
    parser.add_argument("--suite", choices=["khat", "speed", "elbo", "all"], default="khat")
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--elbo-seeds", type=int, default=3)
    parser.add_argument("--elbo-steps", type=int, default=500)
    parser.add_argument("--elbo-models", type=lambda s: s.split(","), default=list(ELBO_MODELS),
                        help="comma-separated subset of: " + ", ".join(ELBO_MODELS))  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.draws = 2, 200, 2000
        args.reps, args.elbo_seeds, args.elbo_steps = 2, 2, 50
    suites = {"khat": ("guides", lambda a: table(run(a), a)), "speed": ("guides_speed", speed),
              "elbo": ("guides_elbo", elbo_table)}  # fmt: skip
    for suite in suites if args.suite == "all" else [args.suite]:
        marker, runner = suites[suite]
        start = time.time()
        text = runner(args)
        shown = [a if " " not in a else repr(a) for a in sys.argv[1:]]
        if "--results" in shown:  # the command as run, less where its table went
            del shown[shown.index("--results") : shown.index("--results") + 2]
        cmd = " ".join(["OMP_WAIT_POLICY=PASSIVE python benchmarks/guides.py", *shown])
        text += footer(cmd, start)
        print(text)
        if args.results:
            write_results(args.results, text, marker)


if __name__ == "__main__":
    main()
