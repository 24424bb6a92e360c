"""The demo's latent-variable part: a VAE and an f-VAE on dequantised digits, scored by IWAE
bits/dim, with their sample grids.

Like ``demo.py`` this module sits on top of the library (it uses ``pyro_flowkit.models``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pyro
import torch

from pyro_flowkit import data
from pyro_flowkit.models import FVAE, VAE

__all__ = ["vae_demo"]

SHAPE = (1, 8, 8)


def vae_demo(
    out: Path, vae_steps: int = 1500, fvae_steps: int = 600, seed: int = 0, progress: bool = True
) -> dict:
    """Fit a VAE (flow encoder, 16 latents) and an f-VAE (Glow F, conv E and G) to dequantised
    digits; report test bits/dim (IWAE, 100 samples), seconds and parameter counts, and write
    ``vae_samples.png`` (test digits, VAE samples, f-VAE samples at temperatures 1 and 0.7)."""
    pyro.set_rng_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train = data.dequantize(data.load_digits("train"), data.DIGITS_LEVELS, g)
    test = data.dequantize(data.load_digits("test"), data.DIGITS_LEVELS, g)
    models = {
        "vae": (VAE(SHAPE, 16, likelihood="dequantized", encoder="flow", name="demo_vae"),
                vae_steps),
        "fvae": (FVAE(SHAPE, encoder="conv", name="demo_fvae",
                      flow_kw={"levels": 2, "depth": 2, "hidden_channels": 32}), fvae_steps),
    }  # fmt: skip
    report = {}
    for key, (model, steps) in models.items():
        start = time.perf_counter()
        model.fit(train, steps, lr=2e-3, progress=progress, seed=seed)
        seconds = time.perf_counter() - start
        model.eval()
        report[key] = {
            "steps": steps,
            "train_seconds": seconds,
            "parameters": sum(p.numel() for p in model.parameters()),
            "test_bits_per_dim": model.bits_per_dim(test, num_samples=100).mean().item(),
        }
    _picture(test, models["vae"][0], models["fvae"][0], out)
    return report


def _picture(test: torch.Tensor, vae: VAE, fvae: FVAE, out: Path) -> None:
    try:
        from pyro_flowkit.app.plots import plot_image_grids

        grids = [
            ("test digits", test[:32]),
            ("VAE samples", vae.sample(32).clamp(0, 1)),
            ("f-VAE samples", fvae.sample(32).clamp(0, 1)),
            ("f-VAE, T = 0.7", fvae.sample(32, temperature=0.7).clamp(0, 1)),
        ]
        plot_image_grids(grids, out / "vae_samples.png")
    except ImportError as e:
        print(f"no VAE picture: {e}")
