"""Speed of the image-flow parts: our 1x1 convolution against Pyro's, and a Glow step's overhead.

1. ``InvertibleConv1x1`` (LU form, one ``conv2d``) against Pyro's ``GeneralizedChannelPermute``
   (the same LU parametrisation, applied by broadcasting) at C = 12, 48, 96 on a batch of 64
   8x8 images: forward map + log-det with gradients enabled (as in training), and the same
   followed by a backward pass.
2. A Glow step (ActNorm -> 1x1 convolution -> affine coupling, run from the data side as in
   training, log-det included) against its conditioner network alone on the same input.

Every timing alternates the contenders in one process (median of many rounds), so background
load hits them alike; ratios, not absolute times, are the result.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/image_flow_speed.py [--results FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from digits_flows import footer, write_results
from pyro.distributions.transforms import GeneralizedChannelPermute

from pyro_flowkit.transforms import ActNorm, InvertibleConv1x1, channel_mask, coupling


def alternate(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, called in turn ``rounds`` times."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _conv_fns(channels: int, backward: bool) -> dict[str, Callable[[], object]]:
    ours, pyro_t = InvertibleConv1x1(channels), GeneralizedChannelPermute(channels)
    x = torch.randn(64, channels, 8, 8, requires_grad=backward)

    def run(t: torch.nn.Module) -> Callable[[], object]:
        def step() -> object:
            y = t._call(x)  # no identity-cache shortcut for either
            out = y.square().mean() + t.log_abs_det_jacobian(x, y).sum()
            if backward:
                out.backward()
            return out

        return step

    return {"flowkit": run(ours), "pyro": run(pyro_t)}


def conv1x1_table(rounds: int) -> str:
    lines = [
        "| C | ours fwd+logdet ms | Pyro fwd+logdet ms | speed-up | ours +backward ms "
        "| Pyro +backward ms | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in (12, 48, 96):
        fwd = alternate(_conv_fns(c, False), rounds)
        bwd = alternate(_conv_fns(c, True), rounds)
        lines.append(
            f"| {c} | {fwd['flowkit'] * 1e3:.3f} | {fwd['pyro'] * 1e3:.3f} "
            f"| {fwd['pyro'] / fwd['flowkit']:.1f}x | {bwd['flowkit'] * 1e3:.3f} "
            f"| {bwd['pyro'] * 1e3:.3f} | {bwd['pyro'] / bwd['flowkit']:.1f}x |"
        )
    return "\n".join(lines)


def _glow_step_fns(shape: tuple[int, int, int], hidden: int, batch: int) -> dict:
    c = shape[0]
    couple = coupling("affine", channel_mask(shape), hidden)
    parts = [couple, InvertibleConv1x1(c), ActNorm(shape)]  # Pyro's order
    y = torch.randn(batch, *shape)
    for t in reversed(parts):  # initialise ActNorm from the data side
        y = t.inv(y)
    y = torch.randn(batch, *shape)
    kept = y[:, : (c + 1) // 2].contiguous()

    def step() -> object:
        x, total = y, 0
        for t in reversed(parts):
            t.clear_cache()
            x, ladj = t.inverse_and_log_det(x)
            total = total + ladj
        return x, total

    return {"step": step, "conditioner": lambda: couple.conditioner(kept)}


def glow_step_table(rounds: int) -> str:
    lines = [
        "| event (C, H, W) | hidden | batch | step ms | conditioner ms | step / conditioner |",
        "|---|---|---|---|---|---|",
    ]
    for shape, hidden, batch in [
        ((4, 4, 4), 64, 128),
        ((8, 2, 2), 64, 128),
        ((12, 16, 16), 128, 64),
        ((48, 8, 8), 256, 64),
        ((48, 8, 8), 512, 64),
    ]:
        t = alternate(_glow_step_fns(shape, hidden, batch), rounds)
        lines.append(
            f"| {shape} | {hidden} | {batch} | {t['step'] * 1e3:.3f} "
            f"| {t['conditioner'] * 1e3:.3f} | {t['step'] / t['conditioner']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, help="update this markdown file's sections")
    parser.add_argument("--section", default="image_flow_speed", help="the section's marker")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.time()
    text = (
        "1x1 convolution, batch 64, 8x8 images, gradients enabled:\n\n"
        + conv1x1_table(args.rounds)
        + "\n\nGlow step (ActNorm, 1x1 convolution, affine coupling; data side, log-det "
        "included) against its conditioner alone:\n\n" + glow_step_table(args.rounds)
    )
    cmd = "python benchmarks/image_flow_speed.py"
    if args.threads != 1:
        cmd += f" --threads {args.threads}"
    text += footer(cmd, start)
    print(text)
    if args.results:
        write_results(args.results, text, args.section)


if __name__ == "__main__":
    main()
