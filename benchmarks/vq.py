"""VQ-VAE on digits: our VectorQuantizer against vector_quantize_pytorch on the same encoder and
decoder, our Pyro VQVAE, and PCA with quantised coefficients at the same bit budget.

Two codes for the 8x8 digits: a 4x4 grid of 16 codes (64 bits per image) and a 2x2 grid of 64
codes (24 bits). Every quantiser sits between the same convolutional encoder and decoder
(``models.vqvae.conv_encoder``/``conv_decoder``, 64 hidden channels, code_dim 8, identical
initial weights) and is trained with the same loss, the VQVAE's: the negative log-likelihood per
image of a Normal around the sigmoid of the decoder (a learned scale per pixel) plus the
quantiser's own loss summed per image (commitment 0.25, EMA decay 0.99); ``--objective mse``
takes the pixel-mean squared error plus the quantiser's mean loss instead, a reconstruction
term so weak against the commitment term that every quantiser collapses to a few codes on the
2x2 code. Adam 3e-3, batch 128, on the same batches of the 1497 training digits, taking steps
in turn in a rotating order through ``inference.Trainer``. vector_quantize_pytorch gets
``rotation_trick=False, decay=0.99, commitment_weight=0.25`` (its defaults differ from the
paper), once with its other defaults (no k-means initialisation, no dead-code replacement) and
once with ``kmeans_init=True, threshold_ema_dead_code=2``; ours with its defaults (codebook
initialised from the first batch, codes unused for 100 steps restarted), with restarts after 10
unused steps, and with neither (the paper's EMA alone). The Pyro ``VQVAE`` (same networks,
Normal likelihood with a learned scale on dequantised pixels, ``fit``) is its own row, with its
test bits/dim after ``fit_prior``.
Test MSE is against the pixel centres (v + 0.5) / 17 of the 300 test digits; code use is the
perplexity of the test codes and the number of codes used; step times are medians, as ratios
to ours.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/vq.py [--steps 1000] [--prior-steps 2000]
        [--grid 4x4|2x2|both] [--results FILE]
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
from digits_flows import footer, run_suites
from torch import Tensor, nn

import pyro_flowkit as fk
from pyro_flowkit.inference import Trainer, minibatches
from pyro_flowkit.models.pca_codec import PCACodec
from pyro_flowkit.models.vqvae import VQVAE, conv_decoder, conv_encoder
from pyro_flowkit.nn.vq import VectorQuantizer

CODE_DIM, HIDDEN, LR, BATCH = 8, 64, 3e-3, 128
CONFIGS = {"4x4 grid, 16 codes": (16, 1), "2x2 grid, 64 codes": (64, 2)}


class Ours(nn.Module):
    def __init__(self, num_codes: int, **options: object) -> None:
        super().__init__()
        self.vq = VectorQuantizer(num_codes, CODE_DIM, **options)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.vq(z)
        return out.value, out.indices, out.loss


class Peer(nn.Module):
    def __init__(self, num_codes: int, **options: object) -> None:
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        self.vq = VectorQuantize(
            dim=CODE_DIM, codebook_size=num_codes, decay=0.99, commitment_weight=0.25,
            rotation_trick=False, **options,
        )  # fmt: skip

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        value, indices, loss = self.vq(z.flatten(1, 2))
        return value.reshape(z.shape), indices.reshape(z.shape[:-1]), loss.sum()


@dataclass
class Autoencoder:
    name: str
    encoder: nn.Module
    quantizer: nn.Module
    decoder: nn.Module
    objective: str = "mse"
    trainer: Trainer = field(init=False)
    times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log_scale = nn.Parameter(torch.full((1, 8, 8), math.log(0.1)))
        modules = nn.ModuleList([self.encoder, self.quantizer, self.decoder])
        params = [modules] + ([self.log_scale] if self.objective == "nll" else [])
        self.trainer = Trainer(self.loss, params=params, lr=LR)

    def codes(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.quantizer(self.encoder(x).permute(0, 2, 3, 1))

    def loss(self, x: Tensor) -> Tensor:
        value, _, vq_loss = self.codes(x)
        recon = torch.sigmoid(self.decoder(value.permute(0, 3, 1, 2)))
        if self.objective == "mse":
            return (recon - x).pow(2).mean() + vq_loss
        # our VQVAE's objective: -log N(x; recon, scale^2) and the VQ terms, summed per image
        nll = -torch.distributions.Normal(recon, self.log_scale.exp()).log_prob(x).sum((1, 2, 3))
        return nll.mean() + vq_loss * value[0].numel()

    @torch.no_grad()
    def evaluate(self, x: Tensor) -> tuple[float, Tensor]:
        self.quantizer.eval()
        value, indices, _ = self.codes(x)
        recon = torch.sigmoid(self.decoder(value.permute(0, 3, 1, 2)))
        self.quantizer.train()
        return float((recon - x).pow(2).mean()), indices


def _code_use(indices: Tensor, num_codes: int) -> tuple[float, int]:
    counts = torch.bincount(indices.flatten(), minlength=num_codes).double()
    p = counts / counts.sum()
    return math.exp(-float(torch.special.xlogy(p, p).sum())), int((counts > 0).sum())


def _contenders(num_codes: int, downsamples: int, peers: bool, objective: str) -> list[Autoencoder]:
    torch.manual_seed(0)
    encoder = conv_encoder(1, CODE_DIM, HIDDEN, downsamples)
    decoder = conv_decoder(1, CODE_DIM, HIDDEN, downsamples)
    quantizers: list[tuple[str, Callable[[], nn.Module]]] = [
        ("ours (defaults)", lambda: Ours(num_codes)),
        ("ours (no data init, no restarts)",
         lambda: Ours(num_codes, data_init=False, restart_dead=False)),
        ("ours (restart_after=10)", lambda: Ours(num_codes, restart_after=10)),
    ]  # fmt: skip
    if peers:
        quantizers += [
            ("vector_quantize_pytorch", lambda: Peer(num_codes)),
            ("vector_quantize_pytorch (kmeans_init, threshold_ema_dead_code=2)",
             lambda: Peer(num_codes, kmeans_init=True, threshold_ema_dead_code=2)),
        ]  # fmt: skip
    out = []
    for name, make in quantizers:
        e, d = (_copy(encoder), _copy(decoder))
        torch.manual_seed(1)
        out.append(Autoencoder(name, e, make(), d, objective))
    return out


def _copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)


def _train_round_robin(contenders: list[Autoencoder], data: Tensor, steps: int) -> None:
    batches = minibatches(data, BATCH, generator=torch.Generator().manual_seed(0))
    for step in range(steps):
        batch = next(batches)
        k = step % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            start = time.perf_counter()
            c.trainer.step(batch)
            c.times.append(time.perf_counter() - start)


def _pyro_row(
    num_codes: int, downsamples: int, steps: int, prior_steps: int, train: Tensor, test_v: Tensor
):
    pyro.clear_param_store()
    torch.manual_seed(0)
    model = VQVAE((1, 8, 8), num_codes=num_codes, code_dim=CODE_DIM, hidden_channels=HIDDEN,
                  downsamples=downsamples, name=f"vq{num_codes}")  # fmt: skip
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    model.fit(fk.data.dequantize(train, 17, g), steps, lr=LR, progress=False, seed=0)
    seconds = time.perf_counter() - start
    centres = (test_v + 0.5) / 17
    mse = float((model.reconstruct(centres) - centres).pow(2).mean())
    perplexity = model.perplexity(centres)
    used = int(torch.unique(model.encode(centres)).numel())
    model.fit_prior(fk.data.dequantize(train, 17, g), prior_steps, progress=False, seed=0)
    bits = float(model.bits_per_dim(fk.data.dequantize(test_v, 17, g)).mean())
    return mse, perplexity, used, seconds / max(steps, 1), bits


def vq_suite(args: argparse.Namespace) -> str:
    start = time.time()
    steps = args.steps or (200 if args.quick else 1000)
    train_v, test_v = fk.data.load_digits("train"), fk.data.load_digits("test")
    train, test = (train_v + 0.5) / 17, (test_v + 0.5) / 17
    lines = [
        "| code | model | test MSE | test perplexity | codes used | step time / ours |",
        "|---|---|---|---|---|---|",
    ]
    for label, (num_codes, downsamples) in CONFIGS.items():
        if args.grid != "both" and not label.startswith(args.grid):
            continue
        contenders = _contenders(num_codes, downsamples, not args.no_peers, args.objective)
        _train_round_robin(contenders, train, steps)
        ours_time = statistics.median(contenders[0].times)
        for c in contenders:
            mse, indices = c.evaluate(test)
            perplexity, used = _code_use(indices, num_codes)
            ratio = statistics.median(c.times) / ours_time
            lines.append(f"| {label} | {c.name} | {mse:.4f} | {perplexity:.1f} | "
                         f"{used}/{num_codes} | {ratio:.2f}x |")  # fmt: skip
        if not args.no_pyro:  # the Pyro model, trained by its own fit
            mse, perplexity, used, step, bits = _pyro_row(
                num_codes, downsamples, steps, args.prior_steps, train_v, test_v
            )
            name = f"pyro-flowkit VQVAE (Pyro model, fit; {bits:.3f} bits/dim, fitted prior)"
            lines.append(
                f"| {label} | {name} | {mse:.4f} | {perplexity:.1f} | {used}/{num_codes} | "
                f"{step / ours_time:.2f}x |"
            )
        budget = (8 // 2**downsamples) ** 2 * int(math.log2(num_codes))
        codec = PCACodec(budget).fit(train.flatten(1))
        mse = float((codec.reconstruct(test.flatten(1)) - test.flatten(1)).pow(2).mean())
        pca = f"PCA, {codec.components} components x {codec.bits_per_component} bits"
        lines.append(f"| {label} | {pca} ({budget} bits) | {mse:.4f} | | | |")
    cmd = f"python benchmarks/vq.py --steps {steps}"
    if args.grid != "both":
        cmd += f" --grid {args.grid}"
    if args.prior_steps != 2000:
        cmd += f" --prior-steps {args.prior_steps}"
    if args.objective != "nll":
        cmd += f" --objective {args.objective}"
    return "\n".join(lines) + footer(cmd, start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["vq", "all"], default="all")
    parser.add_argument("--steps", type=int, help="training steps (1000; 200 with --quick)")
    parser.add_argument("--grid", choices=["4x4", "2x2", "both"], default="both",
                        help="one of the two codes only (its own section)")  # fmt: skip
    parser.add_argument("--prior-steps", type=int, default=2000, help="fit_prior steps")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-pyro", action="store_true", help="skip the Pyro VQVAE row")
    parser.add_argument("--no-peers", action="store_true", help="skip vector_quantize_pytorch")
    parser.add_argument(
        "--objective",
        choices=["mse", "nll"],
        default="nll",
        help="the harness's loss: the VQVAE's Normal NLL per image, or pixel-mean MSE + VQ loss",
    )
    parser.add_argument("--results", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    torch.set_num_threads(1)
    prefix = "vq" if args.objective == "nll" else f"vq_{args.objective}"
    if args.grid != "both":
        prefix += f"_{args.grid}"
    run_suites(args, {"vq": vq_suite}, prefix)


if __name__ == "__main__":
    main()
