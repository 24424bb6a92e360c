"""VAE, VAE with a flow encoder, f-VAE and Glow on the digits as (1, 8, 8) images.

The question (Su & Wu 2018): does the f-VAE converge faster than a Glow of the same size, and
does it give sharper samples than a VAE? Four contenders at about equal parameter counts
(74k-80k), trained on the same minibatches with the same optimiser, learning rate and steps:

- VAE: ``VAE((1, 8, 8), 16, likelihood="dequantized")``, Gaussian encoder, MLPs 156-156.
- VAE, flow encoder: the same with ``encoder="flow"`` (4 conditional affine couplings with
  48-48 conditioners on a 16-dim context), MLPs 128-128 to stay in the budget.
- f-VAE: ``FVAE((1, 8, 8), flow="glow", encoder="conv")`` with the Glow below as its flow and
  the residual conv encoder and decoder (32 hidden channels, learned sigma1 and sigma2). With
  ``encoder="identity"`` the f-VAE is, by construction, a Glow fitted to noisy inputs
  (``models/fvae.py``); the conv networks are what makes it a different model, for 3.3k
  parameters (4%) more than the Glow.
- Glow: the library's default ``glow((1, 8, 8))`` (2 levels, depth 4, 64 hidden channels,
  dropout 0.2, 76k parameters, the best of the sweep in ``RESULTS.md`` at this size) on the logit
  of the pixels (``pyro_flowkit.app.demo.data_distribution``, alpha = 0.05), trained by maximum
  likelihood. The f-VAE's flow has the same settings, dropout included.

Protocol: 1497 training images, batch 128, Adam with learning rate 1e-3 for everyone (``--lr``;
Pyro's ``SVI`` with ``Trace_ELBO`` for the latent-variable models, one particle), 2000 steps (200
with ``--quick``), seed 0. Every step dequantises one minibatch afresh and all four models take a
step on that same batch, in a rotating order, so that background load hits all alike; the step
time is measured around each model's own step only. Test bits/dim at checkpoints: the 300 test
images, one fixed dequantisation draw, IWAE with 100 samples for the latent-variable models and
Glow's exact log-density. Final figures: two dequantisation draws (the first is the checkpoints'
draw), IWAE with 1000 samples. Both are densities on [0, 1)^64 converted by
``metrics.dequantized_bits_per_dim``, so they are comparable, but an IWAE figure is an upper
bound on bits/dim (a lower bound on the likelihood) and the 100-sample bound is looser than the
1000-sample one; Glow's figure is exact. Time to a bound: the training seconds (the sum of the
model's step times, evaluation excluded) up to the first checkpoint whose bits/dim is below the
bound; the bounds were fixed before the first run.

Samples: 300 per model at temperature 1 (seed 0), the first 32 drawn into a PNG next to 32 test
digits. The VAEs' ``sample`` returns decoder means, the f-VAE's the decoder mean
``G(F^-1(z))`` (no sigma2 noise), Glow's are draws of its density (with the dequantisation noise
it learned); all are clamped to [0, 1]. Sharpness proxy: the mean absolute 3x3 Laplacian over the
interior 6x6 pixels, against the test images (levels / 16) and their dequantised versions.
Pixel noise raises it as much as edges do, so the table also gives the mean |x - 0.5| (contrast)
and the squared MMD to the test images (Gaussian kernel, bandwidth the median distance between
test images; ``metrics.mmd``), with 300 training images as its floor.

    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 python benchmarks/vae_digits.py [--quick]
        [--results FILE] [--samples PNG] [--lr 1e-3] [--steps N]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from digits_flows import footer, write_results
from pyro.infer import Trace_ELBO
from torch import Tensor, nn

import pyro_flowkit as fk
from pyro_flowkit.app.demo import data_distribution
from pyro_flowkit.inference import EMA, Trainer
from pyro_flowkit.models import FVAE, VAE

IMAGE, LEVELS, BATCH, LATENT = (1, 8, 8), 17, 128, 16
GLOW_KW = dict(levels=2, depth=4, hidden_channels=64, dropout=0.2)
VAE_KW = dict(hidden_dims=(156, 156))
FLOW_VAE_KW = dict(hidden_dims=(128, 128), flow_layers=4, flow_hidden_dims=(48, 48), context_dim=16)
FVAE_KW = dict(flow="glow", encoder="conv", hidden=32, flow_kw=GLOW_KW)
BOUNDS = (3.0, 2.6, 2.3, 2.2)  # bits/dim, fixed before the first run
CHECKPOINTS = (50, 100, 150, 250, 500, 750, 1000, 1500, 2000)
QUICK_CHECKPOINTS = (50, 100, 200)
CHECK_SAMPLES, EVAL_SEED, NUM_SAMPLES = 100, 1, 300
EMA_DECAY = 0.995


@dataclass
class Contender:
    name: str
    module: nn.Module
    trainer: Trainer  # the library's one training step (with the weight EMA's update)
    log_prob: Callable[[Tensor, int], Tensor]  # (y in [0, 1), IWAE samples) -> (n,) nats
    sample: Callable[[int], Tensor]
    exact: bool = False
    times: list[float] = field(default_factory=list)
    evals: dict[int, tuple[float, float]] = field(default_factory=dict)  # step -> (bpd, seconds)
    final: tuple[float, float] = (math.nan, math.nan)  # mean, median
    ema_evals: dict[int, float] = field(default_factory=dict)  # step -> bpd with EMA weights
    ema_final: tuple[float, float] = (math.nan, math.nan)
    failed_at: int | None = None
    error: str = ""

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def ema(self) -> EMA:
        return self.trainer.ema


def _trainer(loss: Callable[[Tensor], Tensor], module: nn.Module, lr: float) -> Trainer:
    """Adam and an EMA of the weights (decay 0.995: after 2000 steps the initial weights keep
    4e-5 of the average, 0.999 would leave them 14%)."""
    return Trainer(loss, params=module, lr=lr, ema=EMA(EMA_DECAY, module))


def latent_contender(name: str, model: VAE | FVAE, lr: float) -> Contender:
    """A VAE or f-VAE trained as its ``fit`` does (``Trace_ELBO`` per example, Adam), one batch
    at a time."""
    elbo = Trace_ELBO()

    def loss(y: Tensor) -> Tensor:
        return elbo.differentiable_loss(model.model, model.guide, y) / len(y)

    return Contender(
        name,
        model,
        _trainer(loss, model, lr),
        lambda y, k: model.iwae_log_likelihood(y, k, batch_size=100),
        lambda n: model.sample(n),
    )


def glow_contender(lr: float) -> Contender:
    flow = fk.flows.glow(IMAGE, **GLOW_KW)
    d = data_distribution(flow, "digits")

    def loss(y: Tensor) -> Tensor:
        return fk.metrics.bits_per_dim(d.log_prob(y), 64, LEVELS).mean()

    return Contender(
        "Glow",
        flow,
        _trainer(loss, flow, lr),
        lambda y, k: d.log_prob(y),
        lambda n: d.sample((n,)),
        exact=True,
    )


def contenders(lr: float) -> list[Contender]:
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    kw = dict(likelihood="dequantized", num_levels=LEVELS)
    return [
        latent_contender("VAE", VAE(IMAGE, LATENT, **kw, **VAE_KW, name="vae"), lr),
        latent_contender(
            "VAE, flow encoder",
            VAE(IMAGE, LATENT, **kw, encoder="flow", **FLOW_VAE_KW, name="vae_flow"),
            lr,
        ),
        latent_contender("f-VAE", FVAE(IMAGE, **FVAE_KW, num_levels=LEVELS, name="fvae"), lr),
        glow_contender(lr),
    ]


@torch.no_grad()
def test_bpd(c: Contender, test: Tensor, num_samples: int, draws: int) -> Tensor:
    """Per-image bits/dim over ``draws`` dequantisations (the same draws for every model)."""
    c.module.eval()
    g = torch.Generator().manual_seed(EVAL_SEED)
    try:
        return fk.metrics.dequantized_bits_per_dim(
            lambda y: c.log_prob(y, num_samples), test, LEVELS, draws, g
        )
    finally:
        c.module.train()


def train_step(c: Contender, y: Tensor, step: int) -> None:
    start = time.perf_counter()
    try:
        loss = c.trainer.step(y)
    except (ValueError, FloatingPointError) as e:  # reported in the tables, the others go on
        loss, c.error = math.nan, f"{type(e).__name__}: {e}"
    c.times.append(time.perf_counter() - start)
    if not math.isfinite(loss):
        c.failed_at = step
        print(f"{c.name}: loss {loss} at step {step} {c.error}", flush=True)


def checkpoint(cs: list[Contender], test: Tensor, step: int) -> None:
    for c in cs:
        if c.failed_at is None:
            c.evals[step] = (test_bpd(c, test, CHECK_SAMPLES, 1).mean().item(), sum(c.times))
            with c.ema.swapped():
                c.ema_evals[step] = test_bpd(c, test, CHECK_SAMPLES, 1).mean().item()
    row = ", ".join(f"{c.name} {c.evals.get(step, (math.nan,))[0]:.3f}" for c in cs)
    print(f"step {step}: {row}", flush=True)


def train(cs: list[Contender], steps: int, checkpoints: list[int], test: Tensor) -> None:
    train_v = fk.data.load_digits("train")
    g = torch.Generator().manual_seed(0)
    batches = fk.inference.minibatches(train_v, BATCH, g)
    for step in range(1, steps + 1):
        y = fk.data.dequantize(next(batches), LEVELS, g)
        k = step % len(cs)
        for c in cs[k:] + cs[:k]:
            if c.failed_at is None:
                train_step(c, y, step)
        if step in checkpoints:
            checkpoint(cs, test, step)


def finish(cs: list[Contender], test: Tensor, num_samples: int, draws: int) -> None:
    for c in cs:
        if c.failed_at is None:
            bpd = test_bpd(c, test, num_samples, draws)
            c.final = (bpd.mean().item(), bpd.median().item())
            with c.ema.swapped():
                bpd = test_bpd(c, test, num_samples, draws)
            c.ema_final = (bpd.mean().item(), bpd.median().item())
            print(f"{c.name}: final {c.final[0]:.3f} / {c.final[1]:.3f}", flush=True)


# ------------------------------------------------------------------------------------------
# Samples


LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def sharpness(x: Tensor) -> float:
    """Mean absolute 3x3 Laplacian over the interior pixels of ``(n, 1, 8, 8)`` images."""
    return F.conv2d(x, LAPLACIAN).abs().mean().item()


@torch.no_grad()
def draw(c: Contender, n: int) -> Tensor:
    c.module.eval()
    pyro.set_rng_seed(0)
    x = c.sample(n).reshape(n, *IMAGE).clamp(0, 1)
    c.module.train()
    return x


def sample_stats(x: Tensor, test: Tensor, bandwidth: float) -> tuple[float, float, float]:
    """Laplacian sharpness, mean |x - 0.5| and squared MMD to ``test``."""
    mmd = fk.metrics.mmd(x.flatten(1), test.flatten(1), bandwidth)
    return sharpness(x), (x - 0.5).abs().mean().item(), mmd


def samples(cs: list[Contender], path: Path | None) -> list[tuple[str, tuple[float, ...]]]:
    """Rows of the samples table; the first 32 samples of every model into ``path``."""
    test = fk.data.load_digits("test") / (LEVELS - 1)
    train_v = fk.data.load_digits("train")[:NUM_SAMPLES] / (LEVELS - 1)
    dequantised = fk.data.dequantize(
        fk.data.load_digits("test"), LEVELS, torch.Generator().manual_seed(EVAL_SEED)
    )
    bandwidth = torch.cdist(test.flatten(1), test.flatten(1)).median().item()
    drawn = [(c.name, draw(c, NUM_SAMPLES)) for c in cs if c.failed_at is None]
    rows = [
        ("test images (levels / 16)", sample_stats(test, test, bandwidth)),
        ("test images, dequantised", sample_stats(dequantised, test, bandwidth)),
        (f"{NUM_SAMPLES} training images", sample_stats(train_v, test, bandwidth)),
    ]
    rows += [(name, sample_stats(x, test, bandwidth)) for name, x in drawn]
    if path is not None:
        try:
            from pyro_flowkit.app.plots import plot_image_grids

            grids = [("test digits", test[:32])] + [(n, x[:32]) for n, x in drawn]
            plot_image_grids(grids, path)
            print(f"wrote {path}", flush=True)
        except ImportError as e:
            print(f"no sample grid: {e}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------
# Tables


def fmt(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def size_table(cs: list[Contender], glow_ms: float) -> str:
    lines = [
        "| model | params | test bpd, final: mean / median | train s | step ms (median) "
        "| step time / Glow's |",
        "|---|---|---|---|---|---|",
    ]
    for c in cs:
        ms = statistics.median(c.times) * 1e3 if c.times else math.nan
        kind = "exact" if c.exact else "IWAE"
        failed = f" (failed at step {c.failed_at})" if c.failed_at else ""
        lines.append(
            f"| {c.name}{failed} | {c.params:,} | {fmt(c.final[0])} / {fmt(c.final[1])} ({kind}) "
            f"| {sum(c.times):.1f} | {ms:.1f} | {ms / glow_ms:.2f} |"
        )
    return "\n".join(lines)


def curve_table(cs: list[Contender], checkpoints: list[int]) -> str:
    lines = [
        "| model | " + " | ".join(f"@{s}" for s in checkpoints) + " |",
        "|---" * (1 + len(checkpoints)) + "|",
    ]
    for c in cs:
        cells = [fmt(c.evals[s][0]) if s in c.evals else "n/a" for s in checkpoints]
        lines.append(f"| {c.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ema_table(cs: list[Contender], checkpoints: list[int]) -> str:
    """Test bits/dim of the live weights against their EMA at the checkpoints and at the end."""
    lines = [
        "| model | " + " | ".join(f"@{s}: live / EMA" for s in checkpoints)
        + " | final: live / EMA (mean) |",
        "|---" * (2 + len(checkpoints)) + "|",
    ]  # fmt: skip
    for c in cs:
        cells = [
            f"{fmt(c.evals[s][0])} / {fmt(c.ema_evals[s])}" if s in c.ema_evals else "n/a"
            for s in checkpoints
        ]
        cells.append(f"{fmt(c.final[0])} / {fmt(c.ema_final[0])}")
        lines.append(f"| {c.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def time_to(c: Contender, bound: float) -> tuple[int, float] | None:
    """(step, training seconds) of the first checkpoint below ``bound``."""
    return next(((s, t) for s, (b, t) in sorted(c.evals.items()) if b < bound), None)


def bound_table(cs: list[Contender]) -> str:
    glow = cs[-1]
    lines = [
        "| model | " + " | ".join(f"< {b}: s (step), × Glow" for b in BOUNDS) + " |",
        "|---" * (1 + len(BOUNDS)) + "|",
    ]
    for c in cs:
        cells = []
        for b in BOUNDS:
            hit, ref = time_to(c, b), time_to(glow, b)
            if hit is None:
                cells.append("not reached")
                continue
            ratio = f", {hit[1] / ref[1]:.2f}" if ref else ""
            cells.append(f"{hit[1]:.1f} ({hit[0]}){ratio}")
        lines.append(f"| {c.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sample_table(rows: list[tuple[str, tuple[float, ...]]]) -> str:
    lines = [
        "| images | mean abs Laplacian | × test images' | mean abs(x - 0.5) | MMD² to test |",
        "|---|---|---|---|---|",
    ]
    ref = rows[0][1][0]
    for name, (lap, contrast, mmd) in rows:
        lines.append(f"| {name} | {lap:.3f} | {lap / ref:.2f} | {contrast:.3f} | {mmd:.4f} |")
    return "\n".join(lines)


def convergence(fvae: Contender, glow: Contender) -> tuple[bool, str]:
    """Whether the f-VAE reached every bound Glow reached no later (training seconds), and the
    figures: f-VAE's seconds over Glow's and the two steps, per bound."""
    held, parts = True, []
    for b in BOUNDS:
        f, g = time_to(fvae, b), time_to(glow, b)
        if g is None:
            parts += [f"{b}: f-VAE only"] if f else []
            continue
        if f is None:
            held = False
            parts.append(f"{b}: Glow only (step {g[0]})")
            continue
        held &= f[1] <= g[1]
        parts.append(f"{b}: {f[1] / g[1]:.1f}x (step {f[0]} against {g[0]})")
    return held and bool(parts), ", ".join(parts) or "neither reached any bound"


def verdict(cs: list[Contender], rows: list[tuple[str, tuple[float, ...]]]) -> str:
    """The two claims, read off the figures of this run."""
    by = {c.name: c for c in cs}
    fvae, glow = by["f-VAE"], by["Glow"]
    held, times = convergence(fvae, glow)
    stats = dict(rows)
    vaes = [n for n in ("VAE", "VAE, flow encoder") if n in stats]
    ref = stats[rows[0][0]][0]
    lap = " and ".join(f"{stats[n][0] / ref:.2f}" for n in vaes)
    mmd = " and ".join(f"{stats[n][2]:.4f}" for n in vaes)
    if "f-VAE" not in stats:
        return f"Automatic reading: the f-VAE failed ({fvae.error or 'non-finite loss'})."
    f_lap, f_mmd = stats["f-VAE"][0], stats["f-VAE"][2]
    sharper = all(f_lap > stats[n][0] for n in vaes)
    return (
        f"Automatic reading of this run. Faster convergence than the same-size Glow: "
        f"{'held' if held else 'did not hold'} (f-VAE's training seconds to each bound over "
        f"Glow's: {times}); final test bits/dim f-VAE {fmt(fvae.final[0])} (IWAE bound), Glow "
        f"{fmt(glow.final[0])} (exact). Sharper samples than the VAEs: "
        f"{'held' if sharper else 'did not hold'} by the Laplacian proxy ({f_lap / ref:.2f} of "
        f"the test images' against {lap}; MMD² {f_mmd:.4f} against {mmd})."
    )


def noise_scales(cs: list[Contender]) -> str:
    """The learned noise scales at the end: the VAEs' decoder scale (geometric mean over the
    pixels; it starts at 1) and the f-VAE's sigma1 and sigma2 (they start at 0.1)."""
    parts = []
    for c in cs:
        m = c.module
        if isinstance(m, VAE) and m.log_scale is not None:
            parts.append(f"{c.name} decoder scale {m.log_scale.mean().exp().item():.3f}")
        if isinstance(m, FVAE):
            parts.append(f"f-VAE sigma1 {m.sigma1.item():.4f}, sigma2 {m.sigma2.item():.4f}")
    return "Learned noise scales at the end: " + "; ".join(parts) + "."


def report(
    cs: list[Contender], checkpoints: list[int], rows: list, args: argparse.Namespace
) -> str:
    glow_ms = statistics.median(cs[-1].times) * 1e3
    sigmas = noise_scales(cs)
    draws = f"{args.draws} dequantisation draw{'s' if args.draws > 1 else ''}"
    return "\n\n".join(
        [
            "## VAE, f-VAE and Glow on digits (`benchmarks/vae_digits.py`)",
            PROTOCOL.format(steps=args.steps, lr=args.lr),
            f"Sizes, final test bits/dim (300 test images, {draws}, IWAE with "
            f"{args.iwae_samples} samples for the latent-variable models, exact for Glow), "
            "training seconds (the sum of the model's own step times) and step time:",
            size_table(cs, glow_ms),
            f"Test bits/dim at the checkpoints (one draw; IWAE with {CHECK_SAMPLES} samples, "
            "exact for Glow):",
            curve_table(cs, checkpoints),
            f"Weight EMA (decay {EMA_DECAY}, `inference.EMA`, updated after every step by "
            "`inference.Trainer`): test bits/dim of the live weights and of their average "
            "(same draws and samples):",
            ema_table(cs, checkpoints),
            "Time to a bound: training seconds up to the first checkpoint below it (the step in "
            "brackets; checkpoint resolution) and the ratio to Glow's time for the same bound:",
            bound_table(cs),
            f"Samples ({NUM_SAMPLES} per model, temperature 1; grid of the first 32: "
            f"`{args.samples}`, not committed):",
            sample_table(rows),
            sigmas + " " + verdict(cs, rows),
        ]
    )


PROTOCOL = (
    "Protocol (the script's docstring has the details): the digits as (1, 8, 8) images, 1497 "
    "train / 300 test; four models at about equal size: a VAE (latent 16, Gaussian encoder, "
    'MLPs 156-156, `likelihood="dequantized"`), the same with a flow encoder (4 conditional '
    'couplings, 48-48, context 16; MLPs 128-128), the f-VAE (`FVAE(flow="glow", '
    'encoder="conv")`, the Glow below as its flow, residual conv encoder and decoder with 32 '
    "channels: with identity networks an f-VAE is only a Glow on noisy inputs) and Glow "
    "(`glow((1, 8, 8))` defaults: 2 levels, depth 4, 64 hidden channels, dropout 0.2, on the "
    "logit of the pixels). Adam {lr:g}, batch 128, {steps} steps, seed 0, one torch thread; every "
    "step dequantises one minibatch afresh and all models step on it in a rotating order. Test "
    "bits/dim are densities on [0, 1)^64 for every model, so the columns compare, but the VAEs' "
    "and the f-VAE's are IWAE upper bounds on bits/dim (lower bounds on the likelihood) while "
    "Glow's are exact; the uniform density scores 4.087. Bounds for the time-to-bound table "
    "were fixed before the first run."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 steps, one final draw")
    parser.add_argument("--steps", type=int, help="training steps (2000; 200 with --quick)")
    parser.add_argument("--iwae-samples", type=int, default=1000, help="of the final figures")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's, for every model")
    parser.add_argument("--draws", type=int, help="final dequantisation draws (2; 1 with --quick)")
    parser.add_argument("--results", type=Path, help="update this markdown file's section")
    parser.add_argument("--samples", type=Path, default=Path("/tmp/vae_digits_samples.png"))
    args = parser.parse_args()
    args.steps = args.steps or (200 if args.quick else 2000)
    args.draws = args.draws or (1 if args.quick else 2)
    torch.set_num_threads(1)
    start = time.time()
    schedule = QUICK_CHECKPOINTS if args.quick else CHECKPOINTS
    checkpoints = sorted({s for s in schedule if s < args.steps} | {args.steps})
    test = fk.data.load_digits("test")
    cs = contenders(args.lr)
    train(cs, args.steps, checkpoints, test)
    finish(cs, test, args.iwae_samples, args.draws)
    rows = samples(cs, args.samples)
    cmd = "OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 python benchmarks/vae_digits.py"
    cmd += " --quick" if args.quick else ""
    cmd += f" --lr {args.lr:g}" if args.lr != 1e-3 else ""
    text = report(cs, checkpoints, rows, args) + footer(cmd, start)
    print(text, flush=True)
    if args.results:
        write_results(args.results, text, "vae_digits")


if __name__ == "__main__":
    main()
