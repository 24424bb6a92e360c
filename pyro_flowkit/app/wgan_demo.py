"""The demo's WGAN step: one RealNVP fitted to ``8gaussians`` by maximum likelihood, and the same
flow trained as a WGAN generator (Flow-GAN), compared by exact test NLL, MMD and a critic's W1.

Like ``demo.py`` this module sits on top of the library (it uses ``pyro_flowkit.inference``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pyro
import torch
from torch import Tensor, nn

from pyro_flowkit import data, flows, metrics
from pyro_flowkit.inference import train
from pyro_flowkit.inference.wasserstein import train_wgan, wasserstein1

__all__ = ["WGAN_SETTINGS", "critic_w1", "demo_step", "fit_flow"]

TOY = "8gaussians"
TRAIN, TEST, SAMPLES = 20_000, 4_000, 2_000
WGAN_SETTINGS = {"constraint": "spectral", "batch_size": 256, "lr": 1e-4, "critic_lr": 1e-3}
"""The WGAN's settings: a spectrally normalised critic (5 critic steps per generator step),
Adam(betas (0, 0.9)) at 1e-4 for the flow and 1e-3 for the critic."""
QUICK_STEPS = {"ml": 300, "wgan": 200, "critic": 300}
FULL_STEPS = {"ml": 2000, "wgan": 2000, "critic": 1000}


def _flow() -> nn.Module:
    return flows.realnvp(2, num_layers=8, hidden_dims=(128, 128))


def fit_flow(
    how: str,
    train_x: Tensor,
    steps: int,
    progress: bool = True,
    nll_weight: float = 0.0,
    **wgan: object,
) -> tuple[nn.Module, float]:
    """A RealNVP fitted to ``train_x`` by ``how``: ``"ml"`` (maximum likelihood, Adam 1e-3,
    batch 256) or ``"wgan"`` (:data:`WGAN_SETTINGS` updated by ``wgan``, plus ``nll_weight``
    times the negative log-likelihood: Flow-GAN's hybrid); returns the flow (in ``eval()``
    mode) and the training seconds."""
    flow = _flow()
    density = flows.flow_distribution(flow, 2)

    def nll(x: Tensor) -> Tensor:
        return -density.log_prob(x).mean()

    start = time.perf_counter()
    if how == "ml":
        train(nll, train_x, params=flow, steps=steps, batch_size=256, lr=1e-3,
              progress=progress, desc="max likelihood")  # fmt: skip
    else:
        regularizer = (lambda x: nll_weight * nll(x)) if nll_weight else None
        settings = {**WGAN_SETTINGS, **wgan}
        train_wgan(flow, train_x, steps=steps, regularizer=regularizer, progress=progress,
                   **settings)  # fmt: skip
    return flow.eval(), time.perf_counter() - start


def critic_w1(samples: Tensor, test_x: Tensor, steps: int, progress: bool = True) -> float:
    """W1 between a model's samples and test points by a fresh spectral-norm critic, trained on
    the first halves and evaluated on the second halves (held out)."""
    a, b = len(samples) // 2, len(test_x) // 2
    result = wasserstein1(samples[:a], test_x[:b], "spectral", steps=steps,
                          eval_data=(samples[a:], test_x[b:]), progress=progress)  # fmt: skip
    return result.estimate


def _score(flow: nn.Module, test_x: Tensor, critic_steps: int, progress: bool) -> dict:
    density = flows.flow_distribution(flow, 2)
    with torch.no_grad():
        nll = -density.log_prob(test_x).mean().item()
        samples = density.sample((SAMPLES,))
    return {
        "test_nll": nll,
        "mmd": metrics.mmd(samples, test_x[:SAMPLES]),
        "critic_w1": critic_w1(samples, test_x, critic_steps, progress),
    }


def demo_step(
    out: Path,
    quick: bool,
    progress: bool = True,
    seed: int = 0,
    steps: dict[str, int] | None = None,
) -> dict:
    """Fit one RealNVP to ``8gaussians`` by maximum likelihood and another as a WGAN generator;
    report each one's exact test NLL (nats), MMD against test points (bandwidth 0.5) and W1 to
    the test points by a fresh critic, next to two data samples' MMD and W1 (the floor), and
    write ``wgan_8gaussians.png`` (samples and densities of both).

    ``steps`` overrides the training steps by key: ``"ml"`` (maximum likelihood), ``"wgan"``
    (generator steps) and ``"critic"`` (each W1 critic); ``quick`` sets 300, 200 and 300 (about
    25 s on one CPU thread), else 2000, 2000 and 1000. Returns the report (also printed)."""
    pyro.set_rng_seed(seed)
    train_x, test_x = data.toy_2d(TOY, TRAIN, seed), data.toy_2d(TOY, TEST, seed + 1)
    defaults = QUICK_STEPS if quick else FULL_STEPS
    unknown = sorted(set(steps or {}) - set(defaults))
    if unknown:
        raise ValueError(f"steps: expected keys among {sorted(defaults)}, got {unknown}")
    steps = {**defaults, **(steps or {})}
    fits = {how: fit_flow(how, train_x, steps[how], progress) for how in ("ml", "wgan")}
    report: dict = {"steps": steps, "wgan_settings": WGAN_SETTINGS, "quick": quick}
    for how, (flow, seconds) in fits.items():
        report[how] = {**_score(flow, test_x, steps["critic"], progress), "seconds": seconds}
    other = data.toy_2d(TOY, TEST, seed + 2)
    report["data"] = {
        "mmd": metrics.mmd(other[:SAMPLES], test_x[:SAMPLES]),
        "critic_w1": critic_w1(other, test_x, steps["critic"], progress),
    }
    _print(report)
    try:
        _picture({how: flow for how, (flow, _) in fits.items()}, test_x, report, out)
    except ImportError as e:
        print(f"no WGAN picture: {e}")
    return report


def _print(report: dict) -> None:
    names = {"ml": "max likelihood", "wgan": f"WGAN ({WGAN_SETTINGS['constraint']} critic)"}
    print(f"RealNVP on {TOY}, trained two ways:")
    for how, name in names.items():
        r = report[how]
        print(
            f"  {name:28s} test NLL {r['test_nll']:10.3f} nats, MMD {r['mmd']:.4f}, critic W1 "
            f"{r['critic_w1']:.3f} ({report['steps'][how]} steps, {r['seconds']:.0f} s)"
        )
    d = report["data"]
    print(f"  {'data vs data':28s} {'':26s}MMD {d['mmd']:.4f}, critic W1 {d['critic_w1']:.3f}")


@torch.no_grad()
def _picture(fitted: dict[str, nn.Module], test_x: Tensor, report: dict, out: Path) -> Path:
    """Samples (top) and densities (bottom) of both flows, the test points in grey."""
    from pyro_flowkit.app.plots import _pyplot

    plt = _pyplot()
    limit, res = 4.5, 200
    axis = torch.linspace(-limit, limit, res)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    fig, axes = plt.subplots(2, 2, figsize=(8, 8))
    titles = {"ml": "maximum likelihood", "wgan": "WGAN generator"}
    for col, (how, flow) in enumerate(fitted.items()):
        density = flows.flow_distribution(flow, 2)
        samples = density.sample((SAMPLES,)).numpy()
        top, bottom = axes[0, col], axes[1, col]
        top.scatter(*test_x[:SAMPLES].numpy().T, s=1, color="0.7")
        top.scatter(*samples.T, s=1, alpha=0.5)
        top.set_title(f"{titles[how]}: samples\nW1 {report[how]['critic_w1']:.3f}")
        bottom.imshow(density.log_prob(grid).exp().reshape(res, res).numpy(), origin="lower",
                      extent=(-limit, limit, -limit, limit), cmap="viridis")  # fmt: skip
        bottom.set_title(f"density: test NLL {report[how]['test_nll']:.2f}")
        for ax in (top, bottom):
            ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", xticks=[], yticks=[])
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"wgan_{TOY}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
