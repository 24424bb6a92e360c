"""Speed of the image-flow parts: our 1x1 convolution against Pyro's, and a Glow step's overhead.

1. ``InvertibleConv1x1`` (LU form, one batched matrix product over the pixels) against Pyro's
   ``GeneralizedChannelPermute`` (the same LU parametrisation, applied by broadcasting) at
   C = 12, 48, 96 on a batch of 64 8x8 images: forward map + log-det with gradients enabled
   (as in training), and the same followed by a backward pass.
2. A Glow step (ActNorm -> 1x1 convolution -> affine coupling, run from the data side as in
   training, log-det included) against its conditioner network alone on the same input, with
   the ATen operations each dispatches (views included; by part for the step) and the time per
   operation the step adds, (step - conditioner) / (its operations - the conditioner's).

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
from langevin import CountOps
from pyro.distributions.transforms import GeneralizedChannelPermute

from pyro_flowkit.transforms import ActNorm, InvertibleConv1x1, channel_mask, coupling


def alternate(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, called in turn ``rounds`` times."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(10):  # warm-up (one call left the first timings of a process 10x slow)
        for fn in fns.values():
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


def _glow_step(shape: tuple[int, int, int], hidden: int, batch: int) -> tuple:
    """A Glow step's transforms (Pyro's order, ActNorm initialised from the data side), a batch
    on the data side, and its conditioner with the coupling's kept half of that batch."""
    c = shape[0]
    couple = coupling("affine", channel_mask(shape), hidden)
    parts = [couple, InvertibleConv1x1(c), ActNorm(shape)]  # Pyro's order
    y = torch.randn(batch, *shape)
    for t in reversed(parts):  # initialise ActNorm from the data side
        y = t.inv(y)
    y = torch.randn(batch, *shape)
    return parts, y, couple.conditioner, y[:, : (c + 1) // 2].contiguous()


def _glow_step_fns(shape: tuple[int, int, int], hidden: int, batch: int) -> dict:
    parts, y, conditioner, kept = _glow_step(shape, hidden, batch)

    def step() -> object:
        x, total = y, 0
        for t in reversed(parts):
            t.clear_cache()
            x, ladj = t.inverse_and_log_det(x)
            total = total + ladj
        return x, total

    return {"step": step, "conditioner": lambda: conditioner(kept)}


def _step_ops(shape: tuple[int, int, int], hidden: int, batch: int) -> dict[str, int]:
    """ATen operations (views included) one step dispatches, by part, and its conditioner's."""
    parts, y, conditioner, kept = _glow_step(shape, hidden, batch)
    ops, x, total = {}, y, 0
    for t in reversed(parts):  # as the timed step does, the log-det's sum included
        with CountOps() as count:
            x, ladj = t.inverse_and_log_det(x)
            total = total + ladj
        ops[type(t).__name__] = sum(count.ops.values())
    with CountOps() as count:
        conditioner(kept)
    ops["step"], ops["conditioner"] = sum(ops.values()), sum(count.ops.values())
    return ops


def glow_step_table(rounds: int) -> str:
    lines = [
        "| event (C, H, W) | hidden | batch | step ms | conditioner ms | step / conditioner "
        "| ATen ops: step (ActNorm / 1x1 conv / coupling) / conditioner | µs per extra op |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for shape, hidden, batch in [
        ((4, 4, 4), 64, 128),
        ((8, 2, 2), 64, 128),
        ((12, 16, 16), 128, 64),
        ((48, 8, 8), 256, 64),
        ((48, 8, 8), 512, 64),
    ]:
        t = alternate(_glow_step_fns(shape, hidden, batch), rounds)
        n = _step_ops(shape, hidden, batch)
        parts = f"{n['ActNorm']} / {n['InvertibleConv1x1']} / {n['AffineCoupling']}"
        extra = (t["step"] - t["conditioner"]) / (n["step"] - n["conditioner"]) * 1e6
        lines.append(
            f"| {shape} | {hidden} | {batch} | {t['step'] * 1e3:.3f} "
            f"| {t['conditioner'] * 1e3:.3f} | {t['step'] / t['conditioner']:.3f} "
            f"| {n['step']} ({parts}) / {n['conditioner']} | {extra:.1f} |"
        )
    return "\n".join(lines)


def compiled_step_table(rounds: int) -> str:
    """The Glow step and its conditioner, eager and under ``torch.compile`` (default mode), all
    four timed in turn in one process."""
    lines = [
        "| event (C, H, W) | hidden | batch | step ms: eager / compiled "
        "| conditioner ms: eager / compiled | step / conditioner: eager "
        "| compiled step / eager conditioner | compiled step / compiled conditioner |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for shape, hidden, batch in [((4, 4, 4), 64, 128), ((8, 2, 2), 64, 128)]:
        fns = _glow_step_fns(shape, hidden, batch)
        fns["compiled step"] = torch.compile(fns["step"])
        fns["compiled conditioner"] = torch.compile(fns["conditioner"])
        for _ in range(3):  # compile and settle outside the timings
            fns["compiled step"](), fns["compiled conditioner"]()
        t = alternate(fns, rounds)
        step, cond = t["step"], t["conditioner"]
        cstep, ccond = t["compiled step"], t["compiled conditioner"]
        lines.append(
            f"| {shape} | {hidden} | {batch} | {step * 1e3:.3f} / {cstep * 1e3:.3f} "
            f"| {cond * 1e3:.3f} / {ccond * 1e3:.3f} | {step / cond:.3f} | {cstep / cond:.3f} "
            f"| {cstep / ccond:.3f} |"
        )
    return "\n".join(lines)


def _flow_training_fns(batch: int, **kwargs: object) -> dict:
    """One loss + backward of ``glow((1, 8, 8), **kwargs)`` on a fixed batch, eager and compiled
    (the whole flow's log-density under one ``torch.compile``)."""
    from pyro_flowkit.flows import flow_distribution, glow

    flow = glow((1, 8, 8), **kwargs)
    d = flow_distribution(flow, (1, 8, 8))
    data = torch.randn(batch, 1, 8, 8)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return -d.log_prob(x).mean()

    with torch.no_grad():  # ActNorm initialises eagerly (data-dependent, a graph break)
        loss(data.clone())
    compiled = torch.compile(loss)

    def run(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], object]:
        def step() -> object:
            flow.zero_grad(set_to_none=True)
            out = fn(data.clone())  # a new batch object each step, as in training (no cache hit)
            out.backward()
            return out

        return step

    return {"eager": run(loss), "compiled": run(compiled)}


def compiled_flow_table(rounds: int) -> str:
    lines = [
        "| flow | batch | eager ms | compiled ms | compiled / eager |",
        "|---|---|---|---|---|",
    ]
    for name, kwargs in [("glow((1, 8, 8))", {})]:
        fns = _flow_training_fns(128, **kwargs)
        for _ in range(3):
            fns["compiled"]()
        t = alternate(fns, rounds)
        lines.append(
            f"| {name} | 128 | {t['eager'] * 1e3:.2f} | {t['compiled'] * 1e3:.2f} "
            f"| {t['compiled'] / t['eager']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, help="update this markdown file's sections")
    parser.add_argument("--section", default="image_flow_speed", help="the section's marker")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="instead: the Glow step and the whole flow, eager against torch.compile "
        "(section image_flow_compile)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.time()
    if args.compile:
        steps = compiled_step_table(args.rounds)
        print(steps, flush=True)
        text = (
            "Glow step (as above) and its conditioner, eager and compiled:\n\n"
            + steps
            + "\n\nOne training pass (log-density, mean, backward) of the whole flow on a batch "
            "of 128 (1, 8, 8) images, eager and with the loss under one torch.compile:\n\n"
            + compiled_flow_table(args.rounds)
        )
        cmd = "python benchmarks/image_flow_speed.py --compile"
        if args.threads != 1:
            cmd += f" --threads {args.threads}"
        text += footer(cmd, start)
        print(text)
        if args.results:
            section = args.section
            write_results(
                args.results,
                text,
                "image_flow_compile" if section == "image_flow_speed" else section,
            )
        return
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
