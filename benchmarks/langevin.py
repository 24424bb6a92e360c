"""Langevin sampling: vectorised MALA against Pyro's NUTS in ESS per second, and its step overhead.

``--suite ess`` (section ``langevin_ess``): five targets, all in float64: a 2-D Gaussian with
correlation 0.95; a 50-D Gaussian with variances ``logspace(-2, 2)``; Neal's 10-D funnel
(``v ~ N(0, 3^2)``, ``x_i | v ~ N(0, e^v)``); a 2-D banana (``x1 ~ N(0, 1)``,
``x2 = x1^2 - 1 + N(0, 1)``); Bayesian logistic regression on sklearn's breast_cancer (30
standardised features and an intercept, ``N(0, 1)`` priors). Every chain starts uniformly in
``[-2, 2]^D`` (Pyro's ``init_to_uniform``). Contenders:

* ``sample_langevin`` (MALA): 64 chains in one tensor, 4000 warm-up steps (per-chain step-size
  search and dual averaging towards acceptance 0.574, per-chain diagonal mass in Stan's windows)
  and 4000 draws.
* Pyro's ``NUTS`` with its defaults (diagonal mass, target acceptance 0.8, tree depth 10) through
  ``pyro.infer.MCMC`` on ``potential_fn`` (the same potential, for a batch of one): 4 chains, one
  ``MCMC`` run of ``num_chains=1`` each, one after the other, 500 warm-up + 500 draws.
* Our ``MALA`` kernel through ``pyro.infer.MCMC``: the same algorithm one chain at a time, 4
  chains of the vectorised run's length.

ESS: ArviZ's bulk ESS (rank-normalised, split chains) of the slowest coordinate. Seconds: the
sampler's wall time, warm-up and step-size searches included (ArviZ's diagnostics excluded).

``--suite overhead`` (section ``langevin_overhead``): seconds per step of ``ula_step`` and
``mala_step`` (per-chain step sizes and diagonal masses, their scales computed once, as
``sample_langevin`` calls them), of ``mala_step`` with its noise drawn in float32
(``noise_dtype``), of the whole ``sample_langevin`` loop (eager, and with ``compile=True``),
against a bare loop that only evaluates the potential and its gradient on the same batch, and the
cost of drawing one step's noise alone; in float64 and float32; the contenders alternate in rounds
in one process; medians. Also the ATen operations each step dispatches.

``--suite noise`` (section ``langevin_noise``): what one step's Gaussian noise costs, by
torch's ``randn_like``, float32 draws cast, Box-Muller from ``rand`` and ``randn_like`` inside
a ``torch.compile`` graph.

``--suite model`` (section ``langevin_model``): the cost of one potential-and-gradient call for
64 chains of a Pyro model through ``ModelPotential`` (one ``torch.func.vmap`` pass; and its loop
over chains, Pyro's per-point potential) against a hand-written vectorised potential of the same
posterior, on eight schools (centred, 10-D) and the logistic regression (31-D).

``--suite kernels`` (section ``langevin_kernels``): our ``MALA`` and ``ULA`` kernels against
Pyro's ``HMC`` with one leapfrog step (``num_steps=1``; the same step size, adaptation off in all
three), each through ``pyro.infer.MCMC`` on the same Pyro models (the banana and the logistic
regression written with ``pyro.sample``), one chain; seconds per MCMC step, medians of rounds in
which the kernels alternate.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/langevin.py
        [--suite ess|overhead|noise|model|kernels|all] [--chains 64]
        [--warmup 4000] [--draws 4000] [--rounds 20] [--results FILE] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from digits_flows import footer, run_suites
from pyro.infer import HMC, MCMC, NUTS
from residual_flows import alternate
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from pyro_flowkit.diagnostics import import_arviz
from pyro_flowkit.inference import MALA, ULA, init_state, mala_step, sample_langevin, ula_step
from pyro_flowkit.inference.langevin import potential_and_grad, step_scales
from pyro_flowkit.inference.potential import ModelPotential

az = import_arviz()

RHO = 0.95  # correlation of the 2-D Gaussian
FUNNEL_DIM, FUNNEL_SCALE = 10, 3.0
BANANA_A, BANANA_B = 1.0, 1.0  # x1 ~ N(0, a^2), x2 = b (x1^2 - a^2) + N(0, 1)
INIT_RADIUS = 2.0
PYRO_CHAINS = 4


# --------------------------------------------------------------------------------------------
# Targets: batched potentials U = -log p, (chains, dim) -> (chains,), with known moments


@dataclass
class Target:
    name: str
    dim: int
    potential: Callable[[Tensor], Tensor]
    mean: Tensor | None = None  # None: no closed form, errors are taken against NUTS
    var: Tensor | None = None
    overhead_chains: int = 256
    dtype: torch.dtype = torch.float64


def gaussian_2d(dtype: torch.dtype) -> Target:
    cov = torch.tensor([[1.0, RHO], [RHO, 1.0]], dtype=dtype)
    precision = torch.linalg.inv(cov)

    def potential(x: Tensor) -> Tensor:
        return 0.5 * ((x @ precision) * x).sum(-1)

    zeros = torch.zeros(2, dtype=dtype)
    return Target(
        f"2-D Gaussian, rho {RHO}", 2, potential, zeros, cov.diagonal().clone(), 1024, dtype
    )


def gaussian_50d(dtype: torch.dtype) -> Target:
    var = torch.logspace(-2, 2, 50, dtype=dtype)

    def potential(x: Tensor) -> Tensor:
        return 0.5 * (x.square() / var).sum(-1)

    return Target(
        "50-D Gaussian, var 1e-2..1e2",
        50,
        potential,
        torch.zeros(50, dtype=dtype),
        var,
        dtype=dtype,
    )


def funnel(dtype: torch.dtype) -> Target:
    n = FUNNEL_DIM - 1

    def potential(x: Tensor) -> Tensor:
        v, z = x[:, 0], x[:, 1:]
        return (
            0.5 * (v / FUNNEL_SCALE).square()
            + 0.5 * (z.square() * torch.exp(-v).unsqueeze(-1)).sum(-1)
            + 0.5 * n * v
        )

    var = torch.full((FUNNEL_DIM,), math.exp(FUNNEL_SCALE**2 / 2), dtype=dtype)  # E[e^v]
    var[0] = FUNNEL_SCALE**2
    zeros = torch.zeros(FUNNEL_DIM, dtype=dtype)
    return Target(f"{FUNNEL_DIM}-D funnel", FUNNEL_DIM, potential, zeros, var, dtype=dtype)


def banana(dtype: torch.dtype) -> Target:
    a, b = BANANA_A, BANANA_B

    def potential(x: Tensor) -> Tensor:
        x1, x2 = x[:, 0], x[:, 1]
        return 0.5 * (x1 / a).square() + 0.5 * (x2 - b * (x1.square() - a**2)).square()

    var = torch.tensor([a**2, 2 * b**2 * a**4 + 1], dtype=dtype)
    return Target("2-D banana", 2, potential, torch.zeros(2, dtype=dtype), var, 1024, dtype)


def logistic_regression(dtype: torch.dtype) -> Target:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    features = torch.tensor(data.data, dtype=dtype)
    features = (features - features.mean(0)) / features.std(0)
    design = torch.cat([torch.ones(len(features), 1, dtype=dtype), features], 1)
    labels = torch.tensor(data.target, dtype=dtype)

    def potential(w: Tensor) -> Tensor:
        logits = w @ design.T
        return (F.softplus(logits) - labels * logits).sum(-1) + 0.5 * w.square().sum(-1)

    dim = design.shape[1]
    return Target(f"logistic regression, {dim}-D", dim, potential, overhead_chains=64, dtype=dtype)


def targets(dtype: torch.dtype = torch.float64) -> list[Target]:
    builders = (gaussian_2d, gaussian_50d, funnel, banana, logistic_regression)
    return [build(dtype) for build in builders]


def initial_points(t: Target, chains: int, seed: int = 0) -> Tensor:
    """Uniform in [-2, 2]^dim, in the target's dtype; the first rows do not depend on ``chains``."""
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(max(chains, 64), t.dim, generator=g, dtype=torch.float64)
    return ((2 * points - 1)[:chains] * INIT_RADIUS).to(t.dtype)


class Counted:
    """A potential that counts its calls (each call also yields the gradient)."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.fn(x)


# --------------------------------------------------------------------------------------------
# ESS suite


@dataclass
class Run:
    sampler: str
    shape: str
    samples: np.ndarray  # (chains, draws, dim)
    seconds: float
    evals_per_chain: float
    divergences: int
    accept: np.ndarray  # mean acceptance probability of each chain after warm-up
    step_sizes: list[float]  # each chain's after warm-up (empty where unknown)

    def __post_init__(self) -> None:
        data = az.convert_to_dataset(self.samples)
        self.ess = float(az.ess(data, method="bulk")["x"].min())
        self.rhat = float(az.rhat(data)["x"].max())
        flat = self.samples.reshape(-1, self.samples.shape[-1])
        self.mean, self.var = flat.mean(0), flat.var(0, ddof=1)


def run_mala(t: Target, chains: int, warmup: int, draws: int) -> Run:
    potential = Counted(t.potential)
    init = initial_points(t, chains)
    pyro.set_rng_seed(0)
    start = time.perf_counter()
    samples, stats = sample_langevin(
        potential, init, draws, step_size=0.1, num_warmup=warmup, progress=False
    )
    seconds = time.perf_counter() - start
    return Run(
        "MALA, `sample_langevin`",
        f"{chains} × ({warmup} + {draws})",
        samples.numpy(),
        seconds,
        potential.calls,
        int(stats["diverging"].sum()),
        stats["acceptance_rate"].mean(1).numpy(),
        stats["step_size"][:, -1].tolist(),
    )


def run_pyro(t: Target, label: str, kernel: Callable, warmup: int, draws: int) -> Run:
    """``PYRO_CHAINS`` sequential ``MCMC`` runs of ``num_chains=1`` on ``potential_fn``."""
    potential = Counted(t.potential)

    def flat_potential(params: dict[str, Tensor]) -> Tensor:
        return potential(params["x"].unsqueeze(0)).squeeze(0)

    init = initial_points(t, PYRO_CHAINS)
    chains, accept, step_sizes, divergences, seconds = [], [], [], 0, 0.0
    for c in range(PYRO_CHAINS):
        pyro.set_rng_seed(c)
        mcmc = MCMC(
            kernel(potential_fn=flat_potential),
            num_samples=draws,
            warmup_steps=warmup,
            initial_params={"x": init[c]},
            disable_progbar=True,
        )
        start = time.perf_counter()
        mcmc.run()
        seconds += time.perf_counter() - start
        chains.append(mcmc.get_samples()["x"].numpy())
        diagnostics = mcmc.diagnostics()
        divergences += sum(len(d) for d in diagnostics["divergences"].values())
        accept += list(diagnostics["acceptance rate"].values())
        if isinstance(mcmc.kernel, NUTS):  # our kernel forgets its adapted step on cleanup
            step_sizes.append(float(mcmc.kernel.step_size))
    return Run(
        label,
        f"{PYRO_CHAINS} × ({warmup} + {draws})",
        np.stack(chains),
        seconds,
        potential.calls / PYRO_CHAINS,
        divergences,
        np.array(accept),
        step_sizes,
    )


def errors(run: Run, mean: np.ndarray, var: np.ndarray) -> tuple[float, float]:
    """Worst coordinate of |mean - truth| / sd and of |variance / truth - 1|."""
    mean_err = np.abs(run.mean - mean) / np.sqrt(var)
    var_err = np.abs(run.var / var - 1)
    return float(mean_err.max()), float(var_err.max())


ESS_HEAD = (
    "| target | sampler | chains × (warm-up + draws) | gradient evals per chain | seconds "
    "| min bulk ESS | ESS/s | ESS/s / NUTS | max r_hat | divergences | acceptance: mean "
    "(lowest chain) | mean err (sd) | var err (rel.) |"
)


def ess_rows(t: Target, runs: list[Run], nuts: Run) -> list[str]:
    truth = (nuts.mean, nuts.var) if t.mean is None else (t.mean.numpy(), t.var.numpy())
    rows = []
    for r in runs:
        rate = r.ess / r.seconds
        ratio = "" if r is nuts else f"{rate / (nuts.ess / nuts.seconds):.1f}"
        if t.mean is None and r is nuts:
            err = "(reference)", "(reference)"
        else:
            err = tuple(f"{e:.3f}" for e in errors(r, *truth))
        rows.append(
            f"| {t.name} | {r.sampler} | {r.shape} | {r.evals_per_chain:,.0f} | {r.seconds:.2f} "
            f"| {r.ess:,.0f} | {rate:,.1f} | {ratio} | {r.rhat:.3f} | {r.divergences} "
            f"| {r.accept.mean():.2f} ({r.accept.min():.2f}) | {err[0]} | {err[1]} |"
        )
    return rows


def spread(values: list[float]) -> str:
    return f"{min(values):.2g} to {max(values):.2g}" if values else "(not kept)"


def funnel_rows(runs: list[Run]) -> list[str]:
    rows = [
        "| sampler | mean of v | sd of v | 5% quantile of v | smallest v "
        "| chains with acceptance < 0.1 | step sizes after warm-up |",
        "|---|---|---|---|---|---|---|",
        f"| truth | 0 | {FUNNEL_SCALE:g} | {-1.6449 * FUNNEL_SCALE:.2f} | | | |",
    ]
    for r in runs:
        v = r.samples[..., 0].reshape(-1)
        rows.append(
            f"| {r.sampler} | {v.mean():.2f} | {v.std():.2f} | {np.quantile(v, 0.05):.2f} "
            f"| {v.min():.2f} | {(r.accept < 0.1).sum()} of {len(r.accept)} "
            f"| {spread(r.step_sizes)} |"
        )
    return rows


def ess_suite(args: argparse.Namespace) -> str:
    start = time.time()
    nuts_warmup, nuts_draws = (50, 50) if args.quick else (500, 500)
    table = [ESS_HEAD, "|---" * 13 + "|"]
    funnel_runs: list[Run] = []
    for t in targets():
        mala = run_mala(t, args.chains, args.warmup, args.draws)
        nuts = run_pyro(t, "Pyro NUTS", NUTS, nuts_warmup, nuts_draws)
        kernel = run_pyro(t, "MALA kernel in Pyro's `MCMC`", MALA, args.warmup, args.draws)
        runs = [mala, kernel, nuts]
        table += ess_rows(t, runs, nuts)
        if t.name.endswith("funnel"):
            funnel_runs = runs
        print(
            f"{t.name}: " + ", ".join(f"{r.sampler} {r.ess / r.seconds:.1f} ESS/s" for r in runs),
            flush=True,
        )
    text = (
        "### ESS per second: vectorised MALA against Pyro's NUTS (`--suite ess`)\n\n"
        f"float64, every chain started uniformly in [-{INIT_RADIUS:g}, {INIT_RADIUS:g}]^D. "
        f"`sample_langevin`: {args.chains} chains in one tensor, per-chain step size (search, "
        "dual averaging towards 0.574) and diagonal mass (Stan's windows). Pyro's `NUTS` "
        f"(defaults: diagonal mass, acceptance 0.8, tree depth 10) and our `MALA` kernel run "
        f"through `pyro.infer.MCMC` on `potential_fn`, {PYRO_CHAINS} chains one after the other. "
        "Gradient evals per chain: potential-and-gradient calls (one call of `sample_langevin` "
        "serves every chain). Seconds: the sampler's wall time, warm-up included. ESS: ArviZ "
        "bulk ESS of the slowest coordinate. Errors, worst coordinate: |mean - truth| / sd and "
        "|variance / truth - 1|; the funnel's truth is v ~ N(0, 9) and var(x_i) = E[e^v] = "
        "e^4.5; logistic regression has no closed form, so its errors are against NUTS.\n\n"
        + "\n".join(table)
        + "\n\nThe funnel's neck: the log-scale v\n\n"
        + "\n".join(funnel_rows(funnel_runs))
    )
    return text + footer(command(args, "ess"), start)


# --------------------------------------------------------------------------------------------
# Overhead suite


class CountOps(TorchDispatchMode):
    """Counts the ATen operations dispatched (forward and backward) while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


@dataclass
class Overhead:
    target: Target
    chains: int
    per_step: dict[str, float]
    ops: dict[str, Counter[str]]
    compile_seconds: float


def overhead(t: Target, chains: int, rounds: int, block: int, sl_steps: int) -> Overhead:
    """Seconds per step of each contender on ``chains`` chains at typical positions."""
    pyro.set_rng_seed(0)
    samples, stats = sample_langevin(
        t.potential, initial_points(t, chains), 100, step_size=0.1, num_warmup=300,
        progress=False,
    )  # fmt: skip
    x = samples[:, -1].contiguous()
    h = stats["step_size"][:, -1].contiguous()
    inverse_mass = samples.var(1) + 1e-3
    scales = step_scales(h, inverse_mass, x)  # what sample_langevin passes once h is fixed
    potential = t.potential
    states = {key: init_state(potential, x) for key in ("ula", "mala", "mala32")}

    def bare_step() -> None:
        y = x.detach().requires_grad_()
        u = potential(y)
        torch.autograd.grad(u.sum(), y)

    def bare() -> None:
        for _ in range(block):
            bare_step()

    def noise() -> None:
        for _ in range(block):
            torch.randn_like(x)

    def stepper(step: Callable, key: str, **kw: object) -> Callable[[], None]:
        def run() -> None:
            state = states[key]
            for _ in range(block):
                state, _ = step(state, potential, scales, **kw)
            states[key] = state

        return run

    def draws(compile: bool = False) -> Callable[[], None]:
        def run() -> None:
            sample_langevin(
                potential, x, sl_steps, step_size=float(h.median()), inverse_mass=inverse_mass,
                compile=compile, progress=False,
            )  # fmt: skip

        return run

    def full() -> None:
        sample_langevin(
            potential, x, sl_steps // 2, step_size=float(h.median()), num_warmup=sl_steps // 2,
            progress=False,
        )  # fmt: skip

    fns = {
        "bare": bare,
        "noise": noise,
        "ula": stepper(ula_step, "ula"),
        "mala": stepper(mala_step, "mala"),
        "mala32": stepper(mala_step, "mala32", noise_dtype=torch.float32),
        "draws": draws(),
        "compiled": draws(compile=True),
        "full": full,
    }
    start = time.perf_counter()
    fns["compiled"]()  # the compilation, outside the timings (also warms up the rest)
    compile_seconds = time.perf_counter() - start
    # same batch-free calls each round, in rotating order, one warm-up round
    calls = {name: (lambda _batch, fn=fn: fn()) for name, fn in fns.items()}
    seconds = alternate(calls, itertools.repeat(None), rounds, warmup=1)
    long = ("draws", "compiled", "full")
    per_step = {k: v / (sl_steps if k in long else block) for k, v in seconds.items()}
    ops = {}
    for key, one in (
        ("bare", bare_step),
        ("ula", lambda: ula_step(states["ula"], potential, scales)),
        ("mala", lambda: mala_step(states["mala"], potential, scales)),
    ):
        with CountOps() as counter:
            one()
        ops[key] = counter.ops
    return Overhead(t, chains, per_step, ops, compile_seconds)


COLUMNS = ("ula", "mala", "mala32", "draws", "compiled", "full")


def overhead_suite(args: argparse.Namespace) -> str:
    start = time.time()
    block, sl_steps = (5, 100) if args.quick else (50, 600)
    head = (
        "| target | dtype | chains | bare µs/step | `randn_like` alone µs | `ula_step` µs (× bare) "
        "| `mala_step` µs (× bare) | `mala_step`, float32 noise µs (× bare) "
        "| `sample_langevin` draws µs (× bare) | compiled draws µs (× bare) "
        f"| `sample_langevin` {sl_steps // 2} + {sl_steps // 2} µs (× bare) "
        "| × (bare + noise): `mala_step` / draws | compile s | ATen ops per step: bare / ULA / "
        "MALA |"
    )
    lines = [head, "|---" * 14 + "|"]
    results = []
    for dtype in (torch.float64, torch.float32):
        for t in targets(dtype):
            chains = min(t.overhead_chains, 64) if args.quick else t.overhead_chains
            o = overhead(t, chains, args.rounds, block, sl_steps)
            results.append(o)
            bare, floor = o.per_step["bare"], o.per_step["bare"] + o.per_step["noise"]
            cells = [f"{bare * 1e6:.0f}", f"{o.per_step['noise'] * 1e6:.0f}"] + [
                f"{o.per_step[k] * 1e6:.0f} ({o.per_step[k] / bare:.2f})" for k in COLUMNS
            ]
            cells.append(f"{o.per_step['mala'] / floor:.2f} / {o.per_step['draws'] / floor:.2f}")
            cells.append(f"{o.compile_seconds:.1f}")
            ops = " / ".join(str(sum(o.ops[k].values())) for k in ("bare", "ula", "mala"))
            name = str(dtype).removeprefix("torch.")
            lines.append(f"| {t.name} | {name} | {chains} | " + " | ".join(cells) + f" | {ops} |")
            print(lines[-1], flush=True)
    worst = max(results, key=lambda o: o.per_step["mala"] / o.per_step["bare"])
    extra = worst.ops["mala"] - worst.ops["bare"]
    breakdown = ", ".join(f"{name} {n}" for name, n in extra.most_common())
    text = (
        "### Step overhead over a bare potential-and-gradient loop (`--suite overhead`)\n\n"
        "Microseconds per step, median of "
        f"{args.rounds} rounds in which the contenders take turns (blocks of {block} steps; "
        f"`sample_langevin` timed per call and divided by its steps). Bare: `x.requires_grad_(); "
        "u = potential(x); autograd.grad(u.sum(), x)` on the same batch. `ula_step` / "
        "`mala_step`: per-chain step sizes and diagonal inverse masses, their scales computed "
        "once (`step_scales`), as `sample_langevin` passes them after warm-up; float32 noise: "
        "`noise_dtype=torch.float32`. `sample_langevin` draws: "
        f"{sl_steps} draws without warm-up (recording included); compiled: the same with "
        "`compile=True` (potential, gradient and step arithmetic in one `torch.compile` graph; "
        "compile s: the first call, outside the timings); "
        f"{sl_steps // 2} + {sl_steps // 2}: warm-up with step-size searches, dual "
        "averaging and mass windows, then draws. × (bare + noise): against the bare step plus "
        "`randn_like`, the least a Langevin step can cost. ATen ops: operations dispatched by "
        "one step, forward and backward, views included. The ESS suite runs in float64.\n\n"
        + "\n".join(lines)
        + f"\n\nThe {sum(extra.values())} operations `mala_step` adds to the bare loop on the "
        f"{worst.target.name} (by name): {breakdown}."
    )
    return text + footer(command(args, "overhead"), start)


NOISE_SHAPES = ((1024, 2), (256, 50), (64, 31))  # the overhead suite's chains x dimensions


def box_muller(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """Standard normals from ``torch.rand`` by Box-Muller (both halves of each pair used)."""
    n = math.prod(shape)
    u = torch.rand(2, (n + 1) // 2, dtype=dtype)
    radius = u[0].log_().mul_(-2.0).sqrt_()
    angle = u[1].mul_(2 * math.pi)
    return torch.cat([radius * angle.cos(), radius * angle.sin_()])[:n].view(shape)


def noise_suite(args: argparse.Namespace) -> str:
    """What one step's Gaussian noise costs, by four generators (alternating, medians)."""
    start = time.time()
    lines = [
        "| chains × dimensions | dtype | `randn_like` µs | float32 `randn`, cast µs "
        "| Box-Muller from `rand` µs | `randn_like` inside `torch.compile` µs |",
        "|---|---|---|---|---|---|",
    ]
    for shape in NOISE_SHAPES:
        for dtype in (torch.float64, torch.float32):
            x = torch.zeros(shape, dtype=dtype)
            compiled = torch.compile(lambda x: torch.randn_like(x), dynamic=False)
            compiled(x)  # compiles outside the timings
            fns = {
                "randn_like": lambda x=x: torch.randn_like(x),
                "cast": lambda x=x: torch.randn(x.shape).to(x.dtype),
                "box_muller": lambda x=x: box_muller(tuple(x.shape), x.dtype),
                "compiled": lambda x=x, c=compiled: c(x),
            }
            t = alternate({k: (lambda _b, f=f: f()) for k, f in fns.items()},
                          itertools.repeat(None), max(args.rounds * 10, 30))  # fmt: skip
            name = str(dtype).removeprefix("torch.")
            cells = " | ".join(f"{t[k] * 1e6:.0f}" for k in fns)
            lines.append(f"| {shape[0]} × {shape[1]} | {name} | {cells} |")
            print(lines[-1], flush=True)
    text = (
        "### The cost of a step's noise (`--suite noise`)\n\n"
        "Microseconds to draw one step's standard normal noise for the overhead suite's batches, "
        f"median of {max(args.rounds * 10, 30)} rounds in which the four generators take turns: "
        "torch's `randn_like` in the chains' dtype; float32 `randn` cast to the dtype (what "
        "`noise_dtype=torch.float32` does); Box-Muller from `torch.rand` in the dtype; "
        "`randn_like` inside a `torch.compile` graph (inductor's own generator).\n\n"
        + "\n".join(lines)
    )
    return text + footer(command(args, "noise"), start)


# --------------------------------------------------------------------------------------------
# Kernels suite: our MALA / ULA kernels against Pyro's HMC with one leapfrog step


def banana_model() -> None:
    x1 = pyro.sample("x1", dist.Normal(0.0, BANANA_A))
    pyro.sample("x2", dist.Normal(BANANA_B * (x1.square() - BANANA_A**2), 1.0))


def logistic_model(design: Tensor, labels: Tensor) -> None:
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([design.shape[1]]).to_event(1))
    with pyro.plate("data", len(labels)):
        pyro.sample("y", dist.Bernoulli(logits=design @ w), obs=labels)


def kernel_models() -> list[tuple[str, Callable, tuple, float]]:
    """(name, model, args, HMC's leapfrog step size) of the kernels suite, float64."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    features = torch.tensor(data.data, dtype=torch.float64)
    features = (features - features.mean(0)) / features.std(0)
    design = torch.cat([torch.ones(len(features), 1, dtype=torch.float64), features], 1)
    labels = torch.tensor(data.target, dtype=torch.float64)
    return [
        ("2-D banana", banana_model, (), 0.6),
        ("logistic regression, 31-D", logistic_model, (design, labels), 0.04),
    ]


SCHOOLS_Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
SCHOOLS_SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


def schools_model(y: Tensor, sigma: Tensor) -> None:
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(y)):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def schools_potential(y: Tensor, sigma: Tensor) -> Callable[[Tensor], Tensor]:
    """The same posterior by hand, over (mu, log tau, theta): (chains, 10) -> (chains,)."""

    def potential(x: Tensor) -> Tensor:
        mu, log_tau, theta = x[:, 0], x[:, 1], x[:, 2:]
        tau = log_tau.exp()
        log_joint = (
            dist.Normal(0.0, 5.0).log_prob(mu)
            + dist.HalfCauchy(5.0).log_prob(tau)
            + log_tau
            + dist.Normal(mu[:, None], tau[:, None]).log_prob(theta).sum(-1)
            + dist.Normal(theta, sigma).log_prob(y).sum(-1)
        )
        return -log_joint

    return potential


def model_suite(args: argparse.Namespace) -> str:
    start = time.time()
    chains, rounds = 64, (3 if args.quick else args.rounds)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    head = (
        "| model | D | hand-written vectorised µs | `ModelPotential` (vmap) µs (× hand) "
        "| `ModelPotential`, loop over chains µs (× hand) "
        "| U - hand-written U, spread over chains: vmap / loop |\n"
        "|---|---|---|---|---|---|"
    )
    lines = [head]
    try:
        y, sigma = torch.tensor(SCHOOLS_Y), torch.tensor(SCHOOLS_SIGMA)
        logistic = logistic_regression(torch.float64)
        _, model, model_args, _ = kernel_models()[1]
        cases = [
            ("eight schools (centred)", schools_model, (y, sigma), schools_potential(y, sigma)),
            ("logistic regression", model, model_args, logistic.potential),
        ]
        for name, pyro_model, model_args, hand in cases:
            pyro.set_rng_seed(0)
            vmapped = ModelPotential(pyro_model, model_args, vectorize="vmap")
            looped = ModelPotential(pyro_model, model_args, vectorize="loop")
            x = vmapped.initial_points(chains)
            calls = {
                "hand": lambda _b, hand=hand, x=x: potential_and_grad(hand, x),
                "vmap": lambda _b, pot=vmapped, x=x: potential_and_grad(pot, x),
                "loop": lambda _b, pot=looped, x=x: potential_and_grad(pot, x),
            }
            seconds = alternate(calls, itertools.repeat(None), rounds, warmup=1)
            reference = hand(x)
            diffs = []  # the same function up to a constant (normalising constants)
            for pot in (vmapped, looped):
                diff = pot(x) - reference
                diffs.append((diff.max() - diff.min()).item())
            h = seconds["hand"]
            lines.append(
                f"| {name} | {vmapped.dim} | {h * 1e6:.0f} | {seconds['vmap'] * 1e6:.0f} "
                f"({seconds['vmap'] / h:.1f}) | {seconds['loop'] * 1e6:.0f} "
                f"({seconds['loop'] / h:.0f}) | {diffs[0]:.1e} / {diffs[1]:.1e} |"
            )
            print(lines[-1], flush=True)
    finally:
        torch.set_default_dtype(previous)
    text = (
        "### A Pyro model as `sample_langevin`'s potential (`--suite model`)\n\n"
        f"One potential-and-gradient call (`potential_and_grad`) for {chains} chains at Pyro's "
        f"initial points, float64, median of {rounds} rounds in which the three alternate. "
        "`ModelPotential(model, args)`: the model's log joint over the unconstrained latent "
        "vector with the transforms' log-Jacobians, vmapped over chains (the model traced once "
        "per call, on batched tensors); its loop: Pyro's `initialize_model` potential, one chain "
        "at a time (the fallback for models that cannot be vmapped); hand-written: the same "
        "posterior as one vectorised function. The last column checks that all three are the "
        "same function up to a constant (the hand-written logistic prior drops its normalising "
        "constant).\n\n" + "\n".join(lines)
    )
    return text + footer(command(args, "model"), start)


def _mcmc_run(
    make: Callable, model_args: tuple, steps: int, label: str, accept: dict[str, float]
) -> Callable[[None], None]:
    """One MCMC run of ``steps`` steps of the kernel ``make()``; records its acceptance rate."""

    def go(_batch: None) -> None:
        pyro.set_rng_seed(0)
        mcmc = MCMC(make(), num_samples=steps, warmup_steps=0, disable_progbar=True)
        mcmc.run(*model_args)
        rates = mcmc.diagnostics()["acceptance rate"]
        accept[label] = float(next(iter(rates.values())))

    return go


def kernels_suite(args: argparse.Namespace) -> str:
    start = time.time()
    steps = 40 if args.quick else 500
    rounds = 3 if args.quick else max(3, args.rounds // 2)
    head = (
        "| model | kernel | µs per MCMC step | × HMC (`num_steps=1`) | acceptance |\n"
        "|---|---|---|---|---|"
    )
    lines = [head]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for name, model, model_args, eps in kernel_models():
            h = eps**2 / 2  # one leapfrog step of size eps is a Langevin move of step eps^2 / 2
            kernels = {
                "Pyro `HMC`, `num_steps=1`": lambda eps=eps, model=model: HMC(
                    model,
                    step_size=eps,
                    num_steps=1,
                    adapt_step_size=False,
                    adapt_mass_matrix=False,
                ),  # fmt: skip
                "our `MALA`": lambda h=h, model=model: MALA(
                    model, step_size=h, adapt_step_size=False, adapt_mass_matrix=False
                ),
                "our `ULA`": lambda h=h, model=model: ULA(
                    model, step_size=h, adapt_step_size=False, adapt_mass_matrix=False
                ),
            }
            accept: dict[str, float] = {}
            calls = {
                label: _mcmc_run(make, model_args, steps, label, accept)
                for label, make in kernels.items()
            }
            seconds = alternate(calls, itertools.repeat(None), rounds, warmup=1)
            hmc = seconds["Pyro `HMC`, `num_steps=1`"]
            for label, sec in seconds.items():
                lines.append(
                    f"| {name} | {label} | {sec / steps * 1e6:.0f} | {sec / hmc:.2f} "
                    f"| {accept[label]:.2f} |"
                )
                print(lines[-1], flush=True)
    finally:
        torch.set_default_dtype(previous)
    text = (
        "### Pyro kernels: our MALA and ULA against Pyro's HMC with one leapfrog step "
        "(`--suite kernels`)\n\n"
        f"One chain through `pyro.infer.MCMC` ({steps} steps, no warm-up, float64), the same "
        "Pyro model for all three, adaptation off, HMC's leapfrog step ε and the Langevin step "
        "h = ε²/2, which makes the two proposals the same distribution (so MALA's and HMC's "
        "acceptance rates agree; ULA reports the rate MALA would have); microseconds per MCMC "
        "step "
        f"(the run's wall time over its steps, `MCMC`'s own bookkeeping included), median of "
        f"{rounds} rounds in which the kernels alternate. HMC with one leapfrog step is MALA "
        "in another parametrisation (one gradient per step, a Metropolis correction), so the "
        "ratio is the cost of each library's step machinery around the same potential.\n\n"
        + "\n".join(lines)
    )
    return text + footer(command(args, "kernels"), start)


# --------------------------------------------------------------------------------------------


def command(args: argparse.Namespace, suite: str) -> str:
    """The command line that reproduces a section (``--results`` left out)."""
    cmd = "python benchmarks/langevin.py"
    if args.suite != "all":
        cmd += f" --suite {suite}"
    if args.quick:
        cmd += " --quick"
    for flag in ("chains", "warmup", "draws", "rounds"):
        if getattr(args, f"{flag}_given"):
            cmd += f" --{flag} {getattr(args, flag)}"
    if args.threads != 1:
        cmd += f" --threads {args.threads}"
    return "OMP_WAIT_POLICY=PASSIVE " + cmd


DEFAULTS = {"chains": (64, 8), "warmup": (4000, 100), "draws": (4000, 100), "rounds": (20, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite", choices=["ess", "overhead", "noise", "model", "kernels", "all"], default="all"
    )
    parser.add_argument("--chains", type=int, help="chains of sample_langevin (64)")
    parser.add_argument("--warmup", type=int, help="warm-up steps of the MALA runs (4000)")
    parser.add_argument("--draws", type=int, help="draws of the MALA runs (4000)")
    parser.add_argument("--rounds", type=int, help="timed rounds of the overhead suite (20)")
    parser.add_argument("--results", type=Path, help="update this markdown file's sections")
    parser.add_argument("--quick", action="store_true", help="tiny settings, for a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    for flag, (full, quick) in DEFAULTS.items():
        setattr(args, f"{flag}_given", getattr(args, flag) is not None)
        if getattr(args, flag) is None:
            setattr(args, flag, quick if args.quick else full)
    torch.set_num_threads(args.threads)
    suites = {
        "ess": ess_suite,
        "overhead": overhead_suite,
        "noise": noise_suite,
        "model": model_suite,
        "kernels": kernels_suite,
    }
    run_suites(args, suites, "langevin")


if __name__ == "__main__":
    main()
