"""Wasserstein-1: exact OT against POT and scipy, trained critics against known W1, how both
scale, and a flow trained by maximum likelihood against the same flow trained as a WGAN.

``--suite exact`` (section ``wasserstein_exact``): our LPs (``wasserstein_exact`` primal, dual
and Lipschitz dual, by HiGHS) and the assignment (``linear_sum_assignment``, the default for
unweighted sets of equal size) against POT's network simplex (``ot.emd2`` with the Euclidean
ground distance) on 2-D Gaussian samples, and the closed form on the line against
``scipy.stats.wasserstein_distance``: the value, its difference to the reference, seconds.

``--suite estimators`` (section ``wasserstein_estimators``): ``inference.wasserstein1`` with
each constraint (spectral norm, gradient penalty, weight clipping; default critic MLP 128-128,
``--steps`` steps of batch 256, Adam 1e-3 (RMSprop for clipping), weights averaged) trained on
2000 + 2000 points and evaluated on 2000 + 2000 held-out points, on 2-D toy sets and 8-D
Gaussians whose W1 is known: a translation by v (W1 = |v|: Jensen's bound is attained by the
translation), the 8-D scale N(0, I) vs N(0, 4I) (W1 = E|X| = sqrt(2) Gamma(4.5) / Gamma(4):
the coupling y = 2x attains the bound of the critic f = |x|), and 8gaussians vs pinwheel (no
closed form: POT on 4000 + 4000 points). Next to it the exact OT of the held-out samples, which
estimates W1 with an upward bias that decays like n^(-1/d).

``--suite scaling`` (section ``wasserstein_scaling``): the translation by a unit vector in
d = 1, 2, 8, 32 dimensions with n = 250, 1000, 4000 points per side: the exact OT of n + n
samples (POT) against the spectral and gradient-penalty critics (trained on n + n, evaluated on
n + n held-out), values and seconds.

``--suite flowgan`` (section ``wasserstein_flowgan``): the demo's RealNVP (8 couplings, MLP
128-128) on 8gaussians (20000 training points), trained by maximum likelihood (Adam 1e-3, batch
256) and as a WGAN generator (``train_wgan``: 5 critic steps per generator step, batch 256,
Adam(betas (0, 0.9)) at 1e-4 for the flow and 1e-3 for the critic), with a spectral or a
gradient-penalty critic, and with Flow-GAN's hybrid loss (WGAN + lambda NLL). Scores on 4000
test points: exact test NLL, MMD (bandwidth 0.5) of 2000 samples, W1 by a fresh spectral critic
(trained on half, evaluated on the held-out halves) and the exact OT of 2000 samples against
2000 test points (POT); the same for a second data sample (the floor).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/wasserstein.py
        [--suite exact|estimators|scaling|flowgan|all] [--steps 1000] [--wgan-steps 2000]
        [--nll-weight 0.1] [--results FILE] [--quick]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ot
import pyro
import torch
from digits_flows import footer, run_suites
from scipy import stats
from torch import Tensor, nn

from pyro_flowkit import data, flows, metrics
from pyro_flowkit.app.wgan_demo import critic_w1, fit_flow
from pyro_flowkit.inference.wasserstein import wasserstein1
from pyro_flowkit.nn.lipschitz import SpectralNormLinear
from pyro_flowkit.ot import wasserstein_1d, wasserstein_exact

VARIANTS = {  # label -> (constraint, critic builder or None for the default)
    "spectral norm (MaxMin)": ("spectral", None),
    "spectral norm, ReLU critic": ("spectral", lambda d: relu_spectral_critic(d)),
    "gradient penalty": ("gp", None),
    "weight clipping": ("clip", None),
}
EIGHT_D_SCALE_W1 = math.sqrt(2) * math.exp(math.lgamma(4.5) - math.lgamma(4.0))  # E|X|, d = 8


def relu_spectral_critic(d: int) -> nn.Module:
    """The default spectral critic with ReLU in place of MaxMin (the ablation)."""

    def layer(a: int, b: int, zero: bool = False) -> SpectralNormLinear:
        return SpectralNormLinear(a, b, 1.0, power_rtol=None, zero_init=zero)

    return nn.Sequential(layer(d, 128), nn.ReLU(), layer(128, 128), nn.ReLU(),
                         layer(128, 1, True), nn.Flatten(0))  # fmt: skip


def timed(fn: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def pot_w1(x: Tensor, y: Tensor) -> float:
    """Exact W1 of two point sets by POT's network simplex (Euclidean, not ot.dist's default
    squared distance)."""
    cost = ot.dist(x.double().numpy(), y.double().numpy(), metric="euclidean")
    return float(ot.emd2([], [], cost, numItermax=10**8))


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


# ---------------------------------------------------------------- exact
def exact_suite(args: argparse.Namespace) -> str:
    start = time.time()
    rows = []
    pot_w1(torch.zeros(2, 2), torch.ones(2, 2))  # warm-up: imports and first calls
    wasserstein_exact(torch.zeros(2, 2), torch.ones(2, 2))
    for n in (25, 50) if args.quick else (25, 100, 200):
        g = torch.Generator().manual_seed(n)
        x = torch.randn(n, 2, generator=g, dtype=torch.float64)
        y = torch.randn(n, 2, generator=g, dtype=torch.float64) + torch.tensor([1.0, 0.0])
        ref, ref_s = timed(lambda x=x, y=y: pot_w1(x, y))
        rows.append(["2-D Gaussians", f"{n}", "POT `ot.emd2`", f"{ref:.6f}", "(reference)",
                     f"{ref_s * 1e3:.1f}"])  # fmt: skip
        for method in ("primal", "dual", "lipschitz", "assignment"):
            value, s = timed(lambda x=x, y=y, m=method: wasserstein_exact(x, y, method=m))
            kind = "" if method == "assignment" else " LP"
            rows.append(["2-D Gaussians", f"{n}", f"ours, `{method}`{kind}", f"{value:.6f}",
                         f"{abs(value - ref):.1e}", f"{s * 1e3:.1f}"])  # fmt: skip
    for n in (1000, 100_000):
        g = torch.Generator().manual_seed(n)
        x = torch.randn(n, generator=g, dtype=torch.float64)
        y = torch.rand(n, generator=g, dtype=torch.float64) * 3
        ref, ref_s = timed(lambda x=x, y=y: stats.wasserstein_distance(x.numpy(), y.numpy()))
        value, s = timed(lambda x=x, y=y: wasserstein_1d(x, y))
        rows.append(["1-D N(0,1) vs U(0,3)", f"{n:,}", "scipy `wasserstein_distance`",
                     f"{ref:.6f}", "(reference)", f"{ref_s * 1e3:.1f}"])  # fmt: skip
        rows.append(["1-D N(0,1) vs U(0,3)", f"{n:,}", "ours, closed form `1d`", f"{value:.6f}",
                     f"{abs(value - ref):.1e}", f"{s * 1e3:.1f}"])  # fmt: skip
    header = ["problem", "n per side", "method", "W1", "abs. diff", "ms"]
    text = "### Exact W1: our LPs and closed form against POT and scipy (`--suite exact`)\n\n"
    return text + table(header, rows) + footer(command(args, "exact"), start)


# ---------------------------------------------------------------- estimators
def problems(n: int, seed: int) -> dict[str, tuple[Callable[[int, int], tuple], float | None]]:
    """name -> (sampler (n, seed) -> (x, y), the true W1 or None)."""
    shift8 = torch.zeros(8)
    shift8[:2] = torch.tensor([0.6, 0.8])

    def moons(k: int, s: int) -> tuple:
        return data.toy_2d("moons", k, s), data.toy_2d("moons", k, s + 100) + torch.tensor([1.0, 0])

    def toys(k: int, s: int) -> tuple:
        return data.toy_2d("8gaussians", k, s), data.toy_2d("pinwheel", k, s + 100)

    def gauss(scale: float, shift: Tensor) -> Callable[[int, int], tuple]:
        def sample(k: int, s: int) -> tuple:
            g = torch.Generator().manual_seed(s)
            return torch.randn(k, 8, generator=g), torch.randn(k, 8, generator=g) * scale + shift

        return sample

    return {
        "2-D moons vs moons + (1, 0)": (moons, 1.0),
        "2-D 8gaussians vs pinwheel": (toys, None),
        "8-D N(0, I) vs N(v, I), abs(v) = 1": (gauss(1.0, shift8), 1.0),
        "8-D N(0, I) vs N(0, 4I)": (gauss(2.0, torch.zeros(8)), EIGHT_D_SCALE_W1),
    }


def estimators_suite(args: argparse.Namespace) -> str:
    start = time.time()
    n = 500 if args.quick else 2000
    rows = []
    for name, (sample, truth) in problems(n, 0).items():
        x, y = sample(n, 0)
        ex, ey = sample(n, 1)
        if truth is None:
            big = 1000 if args.quick else 4000
            truth = pot_w1(*sample(big, 2))
            truth_text = f"{truth:.3f} (POT, {big} + {big})"
        else:
            truth_text = f"{truth:.3f}"
        sample_ot = pot_w1(ex, ey)
        for label, (key, build) in VARIANTS.items():
            pyro.set_rng_seed(0)
            critic = None if build is None else build(x.shape[1])

            def estimate(key=key, x=x, y=y, ex=ex, ey=ey, critic=critic):
                return wasserstein1(x, y, key, critic, steps=args.steps, eval_data=(ex, ey),
                                    progress=False)  # fmt: skip

            w, s = timed(estimate)
            ratio, grad = w.estimate / truth, w.max_grad_norm
            rows.append([name, truth_text, f"{sample_ot:.3f}", label, f"{w.estimate:.4f}",
                         f"{ratio:.3f}", f"{grad:.4f}", f"{s:.1f}"])  # fmt: skip
            print(rows[-1], flush=True)
    header = ["problem", "true W1", f"exact OT of the {n} + {n} held-out points",
              "constraint", "critic estimate (held out)", "estimate / true", "max grad norm",
              "seconds"]  # fmt: skip
    text = (
        f"### Critic estimates of W1 against the truth (`--suite estimators`)\n\n"
        f"Critics trained {args.steps} steps on {n} + {n} points, evaluated on {n} + {n} "
        f"held-out points.\n\n"
    )
    return text + table(header, rows) + footer(command(args, "estimators"), start)


# ---------------------------------------------------------------- scaling
def scaling_suite(args: argparse.Namespace) -> str:
    start = time.time()
    rows = []
    dims, sizes = ((1, 8), (250, 1000)) if args.quick else ((1, 2, 8, 32), (250, 1000, 4000))
    for d in dims:
        shift = torch.zeros(d)
        shift[0] = 1.0
        for n in sizes:
            g = torch.Generator().manual_seed(d * 1000 + n)
            x, y, ex, ey = (torch.randn(n, d, generator=g) + shift * (i % 2) for i in range(4))
            exact, exact_s = timed(lambda ex=ex, ey=ey: pot_w1(ex, ey))
            row = [f"{d}", f"{n:,}", f"{exact:.3f} ({exact_s:.2f} s)"]
            for key in ("spectral", "gp"):
                pyro.set_rng_seed(0)
                w, s = timed(lambda key=key, x=x, y=y, ex=ex, ey=ey: wasserstein1(
                    x, y, key, steps=args.steps, eval_data=(ex, ey), progress=False))  # fmt: skip
                row.append(f"{w.estimate:.3f} ({s:.1f} s)")
            rows.append(row)
            print(rows[-1], flush=True)
    header = ["d", "n per side", "exact OT of the samples (POT)", "spectral-norm critic",
              "gradient-penalty critic"]  # fmt: skip
    text = (
        "### How the estimates scale with samples and dimension (`--suite scaling`)\n\n"
        f"N(0, I) vs N(e1, I), true W1 = 1. Critics: {args.steps} steps of batch 256, trained "
        "on n + n points and evaluated on n + n held-out points; the exact OT is that of the "
        "held-out points.\n\n"
    )
    return text + table(header, rows) + footer(command(args, "scaling"), start)


# ---------------------------------------------------------------- flowgan
def flowgan_suite(args: argparse.Namespace) -> str:
    start = time.time()
    train_x, test_x = data.toy_2d("8gaussians", 20_000, 0), data.toy_2d("8gaussians", 4000, 1)
    steps, critic_steps = args.wgan_steps, args.steps
    runs = {
        "maximum likelihood": ("ml", {}),
        "WGAN, spectral-norm critic": ("wgan", {}),
        "WGAN, gradient-penalty critic": ("wgan", {"constraint": "gp"}),
        f"Flow-GAN hybrid: WGAN (spectral) + {args.nll_weight} NLL": (
            "wgan", {"nll_weight": args.nll_weight}),
    }  # fmt: skip
    rows = []
    for name, (how, options) in runs.items():
        pyro.set_rng_seed(0)
        flow, seconds = fit_flow(how, train_x, steps, progress=False, **options)
        density = flows.flow_distribution(flow, 2)
        with torch.no_grad():
            nll = -density.log_prob(test_x).mean().item()
            samples = density.sample((2000,))
        rows.append([name, f"{steps}", f"{nll:.3f}", f"{metrics.mmd(samples, test_x[:2000]):.4f}",
                     f"{critic_w1(samples, test_x, critic_steps, False):.4f}",
                     f"{pot_w1(samples, test_x[:2000]):.4f}", f"{seconds:.0f}"])  # fmt: skip
        print(rows[-1], flush=True)
    other = data.toy_2d("8gaussians", 4000, 2)
    rows.append(["a second data sample (the floor)", "", "",
                 f"{metrics.mmd(other[:2000], test_x[:2000]):.4f}",
                 f"{critic_w1(other, test_x, critic_steps, False):.4f}",
                 f"{pot_w1(other[:2000], test_x[:2000]):.4f}", ""])  # fmt: skip
    header = ["RealNVP trained by", "steps", "test NLL (nats, exact)", "MMD", "critic W1",
              "exact OT W1 (2000 + 2000)", "train seconds"]  # fmt: skip
    text = (
        "### A flow by maximum likelihood and as a WGAN generator on 8gaussians "
        "(`--suite flowgan`)\n\n"
    )
    return text + table(header, rows) + footer(command(args, "flowgan"), start)


# ---------------------------------------------------------------- main
def command(args: argparse.Namespace, suite: str) -> str:
    parts = ["OMP_WAIT_POLICY=PASSIVE python benchmarks/wasserstein.py", f"--suite {suite}"]
    if args.quick:
        parts.append("--quick")
    if args.steps_given:
        parts.append(f"--steps {args.steps}")
    if suite == "flowgan" and args.wgan_steps_given:
        parts.append(f"--wgan-steps {args.wgan_steps}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="all",
                        choices=["exact", "estimators", "scaling", "flowgan", "all"])  # fmt: skip
    parser.add_argument("--steps", type=int, help="critic steps of every estimate (1000)")
    parser.add_argument("--wgan-steps", type=int, help="training steps of each flow (2000)")
    parser.add_argument("--nll-weight", type=float, default=0.1, help="Flow-GAN's lambda")
    parser.add_argument("--results", type=Path, help="update this markdown file's sections")
    parser.add_argument("--quick", action="store_true", help="tiny settings, for a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    for flag, (full, quick) in {"steps": (1000, 200), "wgan_steps": (2000, 100)}.items():
        setattr(args, f"{flag}_given", getattr(args, flag) is not None)
        if getattr(args, flag) is None:
            setattr(args, flag, quick if args.quick else full)
    torch.set_num_threads(args.threads)
    np.random.seed(0)
    runners = {"exact": exact_suite, "estimators": estimators_suite, "scaling": scaling_suite,
               "flowgan": flowgan_suite}  # fmt: skip
    run_suites(args, runners, "wasserstein")


if __name__ == "__main__":
    main()
