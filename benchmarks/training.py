"""The one training loop: its overhead over bare loops, and one process against two (torchrun).

``--suite overhead``: per-step time of the same model and batches through (a) Pyro's own
``SVI.step`` with ``pyro.optim.Adam``, (b) a bare ``Trace_ELBO().differentiable_loss`` +
``torch.optim.Adam`` loop, (c) ``inference.Trainer.step`` (the loop's step: NaN check, gradient
averaging hook, EMA hook, history) and (d) the whole ``inference.train`` (its ``DataLoader``
included), for a VAE on digits (SVI) and a RealNVP on digits (a loss function), contenders
alternating, median over rounds.

``--suite processes``: the same ``inference.train`` run of a RealNVP on digits (global batch 256)
in one process and in two gloo processes started by ``torch.distributed.run`` (torchrun), one
torch thread per process; wall time per step and the parameters' agreement with the
one-process run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/training.py [--suite overhead|processes|all]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from digits_flows import footer, run_suites
from pyro.infer import SVI, Trace_ELBO
from torch import Tensor

import pyro_flowkit as fk
from pyro_flowkit.inference import Trainer, minibatches, train
from pyro_flowkit.models import VAE

BATCH = 128


def _median_times(steps: dict[str, Callable[[Tensor], object]], data: Tensor, rounds: int) -> dict:
    """Median seconds per call of each step on the same batch each round, in rotating order."""
    g = torch.Generator().manual_seed(0)
    names = list(steps)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds + 5):
        batch = data[torch.randint(0, len(data), (BATCH,), generator=g)]
        k = r % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            steps[name](batch)
            if r >= 5:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _vae(name: str) -> VAE:
    return VAE((1, 8, 8), 16, likelihood="dequantized", hidden_dims=(156, 156), name=name)


def _vae_contenders(data: Tensor) -> dict[str, Callable[[Tensor], object]]:
    pyro.clear_param_store()
    torch.manual_seed(0)
    vaes = {k: _vae(k) for k in ("pyro_svi", "bare", "trainer", "train")}
    svi = SVI(vaes["pyro_svi"].model, vaes["pyro_svi"].guide, pyro.optim.Adam({"lr": 1e-3}),
              Trace_ELBO())  # fmt: skip
    elbo = Trace_ELBO()
    bare = vaes["bare"]
    opt = torch.optim.Adam(bare.parameters(), lr=1e-3)

    def bare_step(batch: Tensor) -> float:
        loss = elbo.differentiable_loss(bare.model, bare.guide, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    trainer = Trainer((vaes["trainer"].model, vaes["trainer"].guide), params=vaes["trainer"])
    return {
        "Pyro SVI.step": svi.step,
        "differentiable_loss + torch Adam": bare_step,
        "inference.Trainer.step": trainer.step,
    }


def _flow_contenders() -> dict[str, Callable[[Tensor], object]]:
    torch.manual_seed(0)
    flows = [fk.flows.realnvp(64, hidden_dims=(256, 256)) for _ in range(3)]
    dists = [fk.flows.flow_distribution(f, 64) for f in flows]
    opt = torch.optim.Adam(flows[0].parameters(), lr=1e-3)

    def bare_step(batch: Tensor) -> float:
        loss = -dists[0].log_prob(batch).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    trainer = Trainer(lambda b: -dists[1].log_prob(b).mean(), params=flows[1])
    return {"bare loop (torch Adam)": bare_step, "inference.Trainer.step": trainer.step}


def _whole_loops(data: Tensor, steps: int) -> dict[str, float]:
    """Seconds per step of ``steps`` steps of a RealNVP, end to end: a bare loop over
    ``minibatches`` against ``inference.train`` (its DataLoader and progress machinery
    included), three times each, alternating; medians."""
    times: dict[str, list[float]] = {"bare": [], "train": []}
    for _ in range(3):
        for kind in times:
            torch.manual_seed(0)
            flow = fk.flows.realnvp(64, hidden_dims=(256, 256))
            d = fk.flows.flow_distribution(flow, 64)
            start = time.perf_counter()
            if kind == "train":
                train(lambda b, d=d: -d.log_prob(b).mean(), data, params=flow, steps=steps,
                      batch_size=BATCH, progress=False)  # fmt: skip
            else:
                opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
                batches = minibatches(data, BATCH)
                for _ in range(steps):
                    loss = -d.log_prob(next(batches)).mean()
                    if not torch.isfinite(loss):
                        raise FloatingPointError
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            times[kind].append((time.perf_counter() - start) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def overhead_suite(args: argparse.Namespace) -> str:
    start = time.time()
    rounds = 20 if args.quick else 200
    images = fk.data.dequantize(fk.data.load_digits("train"))
    vectors = torch.logit(
        0.05 + 0.9 * fk.data.dequantize(fk.data.load_digits("train", flatten=True))
    )
    lines = [
        "| model | loop | step ms (median) | / the bare loop |",
        "|---|---|---|---|",
    ]
    for label, contenders, data, bare in [
        (
            "VAE (SVI, 170k params)",
            _vae_contenders(images),
            images,
            "differentiable_loss + torch Adam",
        ),
        ("RealNVP (725k params)", _flow_contenders(), vectors, "bare loop (torch Adam)"),
    ]:
        medians = _median_times(contenders, data, rounds)
        for name, seconds in medians.items():
            lines.append(
                f"| {label} | {name} | {1e3 * seconds:.2f} | {seconds / medians[bare]:.2f} |"
            )
    whole = _whole_loops(vectors, rounds)
    for name, key in [("bare loop over minibatches, end to end", "bare"),
                      ("inference.train, end to end (DataLoader)", "train")]:  # fmt: skip
        ms, ratio = 1e3 * whole[key], whole[key] / whole["bare"]
        lines.append(f"| RealNVP (725k params) | {name} | {ms:.2f} | {ratio:.2f} |")
    cmd = "python benchmarks/training.py --suite overhead" + (" --quick" if args.quick else "")
    return "\n".join(lines) + footer(cmd, start)


WORKER = """
import os, sys, time, torch
import torch.distributed as dist
import pyro_flowkit as fk
from pyro_flowkit.inference import train
torch.set_num_threads(1)
if "WORLD_SIZE" in os.environ:
    dist.init_process_group("gloo")
torch.manual_seed(0)
flow = fk.flows.realnvp(64, hidden_dims=(256, 256))
d = fk.flows.flow_distribution(flow, 64)
x = torch.logit(0.05 + 0.9 * fk.data.dequantize(fk.data.load_digits("train", flatten=True),
                generator=torch.Generator().manual_seed(0)))
steps = int(sys.argv[1])
train(lambda b: -d.log_prob(b).mean(), x, params=flow, steps=5, batch_size=256, progress=False)
start = time.perf_counter()
train(lambda b: -d.log_prob(b).mean(), x, params=flow, steps=steps, batch_size=256, progress=False)
seconds = time.perf_counter() - start
if int(os.environ.get("RANK", 0)) == 0:
    torch.save({"seconds": seconds, "state": flow.state_dict()}, sys.argv[2])
if dist.is_initialized():
    dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_suite(args: argparse.Namespace) -> str:
    start = time.time()
    steps = 20 if args.quick else 200
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "worker.py"
        script.write_text(WORKER)
        for n in (1, 2):
            out = Path(tmp) / f"out{n}.pt"
            cmd = [sys.executable, str(script), str(steps), str(out)]
            if n > 1:
                cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
                       f"--master_port={_free_port()}", *cmd[1:]]  # fmt: skip
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            results[n] = torch.load(out, weights_only=True)
    one, two = results[1], results[2]
    gap = max(
        (one["state"][k] - two["state"][k]).abs().max().item()
        for k in one["state"]
        if one["state"][k].is_floating_point()
    )
    lines = [
        "| processes | rows per process per step | step ms | speed-up |",
        "|---|---|---|---|",
    ]
    for n in (1, 2):
        ms = 1e3 * results[n]["seconds"] / steps
        speed = results[1]["seconds"] / results[n]["seconds"]
        lines.append(f"| {n} | {256 // n} | {ms:.1f} | {speed:.2f}x |")
    lines.append(f"\nLargest parameter difference between the two runs after {steps + 5} steps: "
                 f"{gap:.2e}.")  # fmt: skip
    cmd = "python benchmarks/training.py --suite processes" + (" --quick" if args.quick else "")
    return "\n".join(lines) + footer(cmd, start)


SUITES = {"overhead": overhead_suite, "processes": processes_suite}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="a short run to check the script")
    parser.add_argument("--results", type=Path, help="update this markdown file's sections")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run_suites(args, SUITES, "training")


if __name__ == "__main__":
    main()
