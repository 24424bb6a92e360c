"""The demo's discrete-latent part: a VQ-VAE on digits (reconstructions, samples from its
fitted autoregressive prior, bits/dim, PCA at the same bit budget), and the table of gradient
estimators measured against the exact gradient on a small categorical VAE.

Like ``demo.py`` this module sits on top of the library (it uses ``pyro_flowkit.models``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pyro
import torch

from pyro_flowkit import data
from pyro_flowkit.inference.estimators import gradient_error
from pyro_flowkit.models.categorical_vae import CategoricalVAE
from pyro_flowkit.models.pca_codec import PCACodec
from pyro_flowkit.models.vqvae import VQVAE

__all__ = ["demo_step", "estimator_table", "vqvae_demo"]

ESTIMATOR_ROWS = [
    ("reinforce", None, 4),
    *[("gumbel_softmax", t, 1) for t in (1.0, 0.5, 0.1)],
    *[("straight_through", t, 1) for t in (1.0, 0.5, 0.1)],
]


def vqvae_demo(out: Path, steps: int = 1000, prior_steps: int = 1000, seed: int = 0) -> dict:
    """Fit a VQ-VAE (4x4 grid of 16 codes: 64 bits per image) to dequantised digits and its
    autoregressive prior; report test MSE (against PCA with quantised coefficients at 64 bits),
    code perplexity and bits/dim, and write ``vqvae_digits.png``."""
    pyro.set_rng_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train_v, test_v = data.load_digits("train"), data.load_digits("test")
    model = VQVAE((1, 8, 8), num_codes=16, code_dim=8, name="demo_vqvae")
    start = time.perf_counter()
    model.fit(data.dequantize(train_v, data.DIGITS_LEVELS, g), steps, lr=3e-3, progress=False,
              seed=seed)  # fmt: skip
    model.fit_prior(data.dequantize(train_v, data.DIGITS_LEVELS, g), prior_steps, progress=False)
    seconds = time.perf_counter() - start
    test = (test_v + 0.5) / data.DIGITS_LEVELS
    bits = model.num_positions * int(math.log2(model.num_codes))
    pca = PCACodec(bits).fit(((train_v + 0.5) / data.DIGITS_LEVELS).flatten(1))
    report = {
        "steps": steps,
        "train_seconds": seconds,
        "bits_per_image": bits,
        "test_mse": float((model.reconstruct(test) - test).pow(2).mean()),
        "pca_test_mse": float((pca.reconstruct(test.flatten(1)) - test.flatten(1)).pow(2).mean()),
        "test_perplexity": model.perplexity(test),
        "test_bits_per_dim": float(
            model.bits_per_dim(data.dequantize(test_v, data.DIGITS_LEVELS, g)).mean()
        ),
    }
    try:
        from pyro_flowkit.app.plots import plot_image_grids

        grids = [
            ("test digits", test[:32]),
            ("VQ-VAE reconstructions", model.reconstruct(test[:32])),
            ("VQ-VAE samples (MADE prior)", model.sample(32)),
        ]
        plot_image_grids(grids, out / "vqvae_digits.png")
    except ImportError as e:
        print(f"no VQ-VAE picture: {e}")
    return report


def estimator_table(train_steps: int = 300, draws: int = 300, seed: int = 0) -> list[dict]:
    """Squared bias and variance (relative to the exact gradient's squared norm) of each
    estimator's ELBO gradient on a categorical VAE (2 latents of 4 classes on binarised
    digits) after ``train_steps`` exact steps, from ``draws`` draws on 100 digits."""
    pyro.set_rng_seed(seed)
    x = (data.load_digits("train", flatten=True) > 7).double()
    vae = CategoricalVAE(64, 2, 4, estimator="enumerate", hidden_dims=(64,), name="demo_cat")
    vae = vae.double()
    vae.fit(x, train_steps, lr=3e-3, progress=False, seed=seed)
    exact = vae.objective("enumerate")
    rows = []
    for estimator, tau, k in ESTIMATOR_ROWS:
        model, guide, elbo = vae.objective(estimator, temperature=tau, num_particles=k)
        err = gradient_error(model, guide, elbo, draws, x[:100], exact=exact)
        rows.append({
            "estimator": estimator, "temperature": tau, "draws": k,
            "relative_bias_squared": err.relative_bias_squared,
            "relative_bias_squared_se": err.bias_squared_se / err.exact_norm_squared,
            "relative_variance": err.relative_variance,
        })  # fmt: skip
    return rows


def _markdown(rows: list[dict]) -> str:
    lines = ["| estimator | tau | draws | bias² / norm² (± se) | variance / norm² |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['estimator']} | {r['temperature'] or ''} | {r['draws']} | "
            f"{r['relative_bias_squared']:.3f} ± {r['relative_bias_squared_se']:.3f} | "
            f"{r['relative_variance']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def demo_step(out: Path, quick: bool) -> dict:
    """The demo's step: :func:`vqvae_demo` (``vqvae_digits.png``) and :func:`estimator_table`
    (``estimators.md``); returns both reports."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vq = vqvae_demo(out, *((60, 60) if quick else (1000, 1000)))
    rows = estimator_table(*((30, 40) if quick else (300, 300)))
    (out / "estimators.md").write_text(_markdown(rows))
    return {"vqvae_digits": vq, "gradient_estimators": rows}
