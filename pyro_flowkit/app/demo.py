"""The main job: fit flows to the built-in data and report test likelihoods, plots and metrics.

Like ``cli.py`` this module sits on top of the library (it uses ``pyro_flowkit.inference``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from pyro_flowkit import data, flows, metrics
from pyro_flowkit.app import discrete_demo, langevin_demo, mixture_demo, sts, vae_demo, wgan_demo
from pyro_flowkit.app import glove as glove_app
from pyro_flowkit.distributions import FlowDistribution
from pyro_flowkit.inference import train
from pyro_flowkit.transforms import Logit, set_logdet

__all__ = ["FitResult", "build_flow", "demo", "fit"]

MODELS = ("nice", "realnvp", "glow", "iresnet")
DIGIT_MODELS = ("nice", "realnvp", "glow")  # what the demo fits to digits
DIGITS_IMAGE = (1, 8, 8)
DATASETS = ("digits", *data.TOY_2D)
LOGIT_ALPHA = 0.05
DIGITS_DROPOUT = {"nice": 0.3, "realnvp": 0.3, "glow": 0.2}
TOY_TRAIN, TOY_TEST = 20_000, 5_000


@dataclass
class FitResult:
    """A fitted flow, the distribution it defines over the data, and what was measured."""

    model: str
    dataset: str
    flow: nn.Module
    distribution: dist.TransformedDistribution
    losses: list[float] = field(repr=False)
    metrics: dict[str, float]


def build_flow(model: str, dataset: str) -> nn.Module:
    """The flow the jobs fit: the default sizes on digits (Glow on (1, 8, 8) images, the others on
    64-vectors), regularised by dropout (an explicit option: 0.3 on vectors, 0.2 for Glow, the
    rates that measured best on the 1497 training digits); narrower and deeper in 2-D."""
    if model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
    if dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {DATASETS}, got {dataset!r}")
    if model == "glow":
        if dataset != "digits":
            raise ValueError(f"model: glow models images, use it on digits, got {dataset!r}")
        return flows.glow(DIGITS_IMAGE, dropout=DIGITS_DROPOUT[model])
    if model == "iresnet":  # Residual Flows' choices (roulette log-det, LipSwish, ActNorm)
        if dataset == "digits":
            return flows.residual_flow(64, num_blocks=8, hidden_dims=(256,))
        return flows.residual_flow(2, num_blocks=8, hidden_dims=(64, 64))
    builder = flows.nice if model == "nice" else flows.realnvp
    if dataset == "digits":
        return builder(64, dropout=DIGITS_DROPOUT[model])
    return builder(2, num_layers=8, hidden_dims=(128, 128))


def data_distribution(
    flow: nn.Module, dataset: str, temperature: float = 1.0
) -> dist.TransformedDistribution:
    """The model of the data: on digits, the flow followed by the inverse logit into [0, 1]^64."""
    if dataset == "digits":
        base = flows.flow_distribution(flow, _digits_shape(flow), temperature)
        return FlowDistribution(base, [Logit(LOGIT_ALPHA).inv])
    return flows.flow_distribution(flow, 2, temperature)


def _digits_shape(flow: nn.Module) -> tuple[int, ...]:
    """``(1, 8, 8)`` for an image flow, ``(64,)`` for a vector flow."""
    image = any(len(getattr(m, "event_shape", ())) == 3 for m in flow.modules())
    return DIGITS_IMAGE if image else (64,)


def _split(dataset: str, seed: int, image: bool = False) -> tuple[Tensor, Tensor]:
    if dataset == "digits":
        flat = not image
        return data.load_digits("train", flatten=flat), data.load_digits("test", flatten=flat)
    return data.toy_2d(dataset, TOY_TRAIN, seed), data.toy_2d(dataset, TOY_TEST, seed + 1)


def _evaluate(d: dist.TransformedDistribution, dataset: str, x: Tensor, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if dataset == "digits":
            bpd = metrics.dequantized_bits_per_dim(d.log_prob, x, data.DIGITS_LEVELS, 4, g)
            return bpd.mean().item()
        return -d.log_prob(x).mean().item()


def fit(
    model: str,
    dataset: str,
    steps: int,
    *,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> FitResult:
    """Fit ``model`` (one of :data:`MODELS`) to ``dataset`` by maximum likelihood with Adam.

    Digits are dequantised afresh for every batch and modelled in [0, 1]^64 through RealNVP's
    logit preprocessing (alpha = 0.05), so the reported figure is test bits/dim (4 noise draws);
    2-D data report the test negative log-likelihood in nats.
    """
    pyro.set_rng_seed(seed)
    flow = build_flow(model, dataset)
    d = data_distribution(flow, dataset)
    train_x, test_x = _split(dataset, seed, image=model == "glow")
    if dataset == "digits":

        def loss_fn(v: Tensor) -> Tensor:
            lp = d.log_prob(data.dequantize(v))
            return metrics.bits_per_dim(lp, 64, data.DIGITS_LEVELS).mean()

    else:

        def loss_fn(x: Tensor) -> Tensor:
            return -d.log_prob(x).mean()

    start = time.perf_counter()
    losses = train(
        loss_fn,
        train_x,
        params=flow,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        progress=progress,
        desc=f"{model} on {dataset}",
    )
    seconds = time.perf_counter() - start
    set_logdet(flow.eval(), "exact")  # residual blocks: evaluate without estimator noise
    key = "test_bits_per_dim" if dataset == "digits" else "test_nll"
    result = {key: _evaluate(d, dataset, test_x, seed), "steps": steps, "train_seconds": seconds}
    return FitResult(model, dataset, flow, d, losses, result)


def save_fit_outputs(result: FitResult, out: Path) -> list[Path]:
    """Write the checkpoint, the metrics and a picture (density or samples) of one fit."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result.model}_{result.dataset}"
    torch.save(result.flow.state_dict(), out / f"{stem}.pt")
    (out / f"{stem}.json").write_text(json.dumps(result.metrics, indent=2))
    written = [out / f"{stem}.pt", out / f"{stem}.json"]
    try:
        written.append(_picture(result, out / f"{stem}.png"))
    except ImportError as e:
        print(f"no picture: {e}")
    return written


def _picture(result: FitResult, path: Path) -> Path:
    from pyro_flowkit.app.plots import plot_density_2d, plot_image_grids

    if result.dataset == "digits":
        return plot_image_grids([(f"{result.model} samples", _samples(result, 32))], path)
    train_x = _split(result.dataset, 0)[0][:3000]
    return plot_density_2d(result.distribution.log_prob, train_x, path, title=result.model)


@torch.no_grad()
def _samples(result: FitResult, n: int, temperature: float = 1.0) -> Tensor:
    d = data_distribution(result.flow, "digits", temperature)
    return d.sample((n,)).clamp(0, 1).reshape(n, 1, 8, 8)


def demo(
    out: str | Path = "flowkit-out", quick: bool = False, progress: bool = True, toy: str = "moons"
) -> dict:
    """Fit RealNVP and an i-ResNet (residual flow) to a 2-D toy density and NICE, RealNVP and
    Glow to digits; train an energy-based model on ``8gaussians`` and sample a logistic-regression
    posterior with vectorised MALA chains; fit a Gaussian mixture to ``pinwheel`` by EM and by SVI;
    fit VAEs, score STS-benchmark and train simpler GloVe word vectors; train a RealNVP on
    ``8gaussians`` as a WGAN generator next to maximum likelihood; report and save.

    Writes ``density_<toy>.png``, ``density_iresnet_<toy>.png``, ``digits_samples.png``,
    ``glow_samples.png`` (temperatures 1.0 and 0.7), ``ebm_8gaussians.png``, ``mala_trace.png``,
    ``gmm_pinwheel.png``, ``vae_samples.png``, ``wgan_8gaussians.png`` and ``metrics.json`` to
    ``out`` and returns the metrics.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = (
        {"toy": 300, "iresnet": 200, "nice": 200, "realnvp": 200, "glow": 200, "ebm": 300}
        if quick
        else {
            "toy": 3000,
            "iresnet": 2000,
            "nice": 3000,
            "realnvp": 2000,
            "glow": 2000,
            "ebm": 2000,
        }
    )
    toy_fit = fit("realnvp", toy, steps["toy"], batch_size=256, progress=progress)
    ires_fit = fit("iresnet", toy, steps["iresnet"], batch_size=256, lr=5e-3, progress=progress)
    digit_fits = {m: fit(m, "digits", steps[m], progress=progress) for m in DIGIT_MODELS}
    ebm = langevin_demo.ebm_demo(out, steps["ebm"], progress=progress)
    mala = langevin_demo.mala_demo(out, thin=2 if quick else 10, progress=progress)
    gmm = mixture_demo.gmm_demo(out, svi_steps=300 if quick else 1000)
    vaes = vae_demo.vae_demo(out, *((100, 40) if quick else (1500, 600)), progress=progress)
    report = {
        "toy": {"dataset": toy, "model": "realnvp", **toy_fit.metrics},
        "toy_iresnet": {"dataset": toy, "model": "iresnet", **ires_fit.metrics},
        "digits": {
            "uniform_bits_per_dim": metrics.uniform_bits_per_dim(data.DIGITS_LEVELS),
            **{m: r.metrics for m, r in digit_fits.items()},
        },
        "ebm_8gaussians": ebm,
        "mala_logistic_regression": mala,
        "gmm_pinwheel": gmm,
        "vae_digits": vaes,
        "sts": sts.demo_step(out, quick),
        "glove": glove_app.demo_step(out, quick),
        **discrete_demo.demo_step(out, quick),
        # last: it seeds Pyro itself, so the steps above keep their numbers
        "wgan_8gaussians": wgan_demo.demo_step(out, quick, progress=progress),
        "quick": quick,
    }
    _print_report(report)
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    try:
        _demo_pictures([toy_fit, ires_fit], digit_fits, out)
    except ImportError as e:
        print(f"no pictures: {e}")
    print(f"wrote {out}/metrics.json and the pictures")
    return report


def _demo_pictures(toy_fits: list[FitResult], digit_fits: dict[str, FitResult], out: Path) -> None:
    from pyro_flowkit.app.plots import plot_density_2d, plot_image_grids

    names = [("density", "RealNVP"), ("density_iresnet", "i-ResNet")]
    for fit_, (stem, title) in zip(toy_fits, names, strict=True):
        toy_data = _split(fit_.dataset, 0)[0][:3000]
        plot_density_2d(
            fit_.distribution.log_prob,
            toy_data,
            out / f"{stem}_{fit_.dataset}.png",
            title=f"{title} density ({fit_.dataset})",
        )
    real = data.load_digits("test")[:32] / (data.DIGITS_LEVELS - 1)
    grids = [("test digits", real)]
    grids += [(f"{m} samples", _samples(r, 32)) for m, r in digit_fits.items()]
    grids.append(("realnvp, T = 0.7", _samples(digit_fits["realnvp"], 32, temperature=0.7)))
    grids.append(("glow, T = 0.7", _samples(digit_fits["glow"], 32, temperature=0.7)))
    plot_image_grids(grids, out / "digits_samples.png")
    glow = [(f"glow, T = {t}", _samples(digit_fits["glow"], 32, temperature=t)) for t in (1.0, 0.7)]
    plot_image_grids([grids[0], *glow], out / "glow_samples.png")


def _print_report(report: dict) -> None:
    for key, name in [("toy", "RealNVP"), ("toy_iresnet", "i-ResNet (residual flow)")]:
        toy = report[key]
        print(
            f"{name} on {toy['dataset']}: test NLL {toy['test_nll']:.3f} nats "
            f"({toy['steps']} steps, {toy['train_seconds']:.0f} s)"
        )
    digits = report["digits"]
    print(f"digits, test bits/dim (uniform baseline {digits['uniform_bits_per_dim']:.3f}):")
    for m in DIGIT_MODELS:
        r = digits[m]
        print(
            f"  {m:8s} {r['test_bits_per_dim']:.3f}  ({r['steps']} steps, "
            f"{r['train_seconds']:.0f} s)"
        )
    _print_langevin(report["ebm_8gaussians"], report["mala_logistic_regression"])
    _print_mixture(report["gmm_pinwheel"])
    _print_vaes(report["vae_digits"])
    if not math.isfinite(digits["realnvp"]["test_bits_per_dim"]):
        raise FloatingPointError("the RealNVP test bits/dim is not finite")


def _print_langevin(ebm: dict, mala: dict) -> None:
    print(
        f"EBM on 8gaussians ({ebm['steps']} steps, {ebm['train_seconds']:.0f} s): MMD of MALA "
        f"samples {ebm['mmd_samples']:.4f} (noise {ebm['mmd_noise']:.4f}, "
        f"data {ebm['mmd_data']:.4f}); energy data {ebm['energy_data']:.2f}, "
        f"noise {ebm['energy_noise']:.2f}"
    )
    print(
        f"MALA, logistic regression on breast_cancer ({mala['chains']} chains, "
        f"{mala['seconds']:.1f} s): max r_hat {mala['r_hat_max']:.3f}, min bulk ESS "
        f"{mala['ess_bulk_min']:.0f}, {mala['divergences']} divergences, test accuracy "
        f"{mala['test_accuracy']:.3f}"
    )


def _print_mixture(gmm: dict) -> None:
    print(
        f"Gaussian mixture ({gmm['components']} components) on pinwheel, test mean log-likelihood: "
        f"EM {gmm['em_test_log_likelihood']:.4f} ({gmm['em_iterations']} iterations, "
        f"{gmm['em_seconds']:.2f} s), SVI {gmm['svi_test_log_likelihood']:.4f} "
        f"({gmm['svi_steps']} Adam steps, {gmm['svi_seconds']:.1f} s)"
    )


def _print_vaes(vaes: dict) -> None:
    for key, name in [("vae", "VAE (flow encoder)"), ("fvae", "f-VAE (Glow)")]:
        r = vaes[key]
        print(
            f"{name} on digits: test bits/dim {r['test_bits_per_dim']:.3f} (IWAE, 100 samples; "
            f"{r['parameters']} parameters, {r['steps']} steps, {r['train_seconds']:.0f} s)"
        )
