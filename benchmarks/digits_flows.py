"""RealNVP on digits: pyro-flowkit against zuko, nflows, normflows and Pyro's own couplings.

Every library gets the same architecture (64-dim vectors, 8 affine couplings with complementary
masks, MLP 256-256 conditioners, about 725k parameters) and the same protocol, in one process:
logit preprocessing (alpha = 0.05) with its log-det counted, fresh dequantisation noise per batch
(the same batch and noise for every model), Adam 1e-3, batch 128, seed 0. Test bits/dim are
averaged over the 300 test images and 4 noise draws (the same draws for every model). The models
take their training steps in turn, in a rotating order, so background load hits all of them alike.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/digits_flows.py [--steps 2000] [--results FILE]

``--suite images`` instead compares flows on the digits as (1, 8, 8) images under the same
protocol, at about equal parameter counts (62k-94k): our ``glow`` (defaults) and a deeper,
narrower one, our multi-scale ``realnvp``, normflows' multi-scale Glow (2 levels of 4 blocks, 64
hidden channels, as in its Glow example), and our vector ``realnvp`` at its default size and at
hidden widths (64, 64).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import pyro_flowkit as fk
from pyro_flowkit.inference import Trainer

ALPHA, LEVELS, DIM, BATCH, LR = 0.05, 17, 64, 128, 1e-3


@dataclass
class Entry:
    name: str
    module: nn.Module
    log_prob: Callable[[Tensor], Tensor]  # log-density of logit-space data, shape (n,)
    trainer: Trainer = field(init=False)  # the library's one training step, for every library
    times: list[float] = field(default_factory=list)
    evals: dict[int, tuple[float, float]] = field(default_factory=dict)
    failed_at: int | None = None

    def __post_init__(self) -> None:
        def loss(batch: tuple[Tensor, Tensor]) -> Tensor:
            z, ladj = batch
            return -(self.log_prob(z) + ladj).mean()

        self.trainer = Trainer(loss, params=self.module, lr=LR)


def preprocess(v: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Dequantise, squash into [alpha, 1 - alpha], take the logit; return it and its log-det."""
    p = ALPHA + (1 - 2 * ALPHA) * (v + noise) / LEVELS
    z = torch.logit(p)
    ladj = (math.log1p(-2 * ALPHA) + F.softplus(z) + F.softplus(-z)).sum(-1)
    return z, ladj


def ours() -> Entry:
    """The defaults: no dropout, like every peer (equal footing)."""
    flow = fk.flows.realnvp(DIM)
    return Entry("pyro-flowkit realnvp", flow, fk.flows.flow_distribution(flow, DIM).log_prob)


def ours_with_dropout() -> Entry:
    """A setting the peers do not get (dropout 0.3 on the conditioners): its own row."""
    flow = fk.flows.realnvp(DIM, dropout=0.3)
    name = "pyro-flowkit realnvp(dropout=0.3)"
    return Entry(name, flow, fk.flows.flow_distribution(flow, DIM).log_prob)


def zuko_entry() -> Entry:
    import zuko

    flow = zuko.flows.RealNVP(DIM, transforms=8, hidden_features=(256, 256))
    return Entry("zuko RealNVP", flow, lambda z: flow().log_prob(z))


def nflows_entry() -> Entry:
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.nn.nets import MLP
    from nflows.transforms import AffineCouplingTransform, CompositeTransform
    from nflows.utils import create_alternating_binary_mask

    class Net(nn.Module):  # nflows' MLP takes no context argument
        def __init__(self, n_in: int, n_out: int) -> None:
            super().__init__()
            self.mlp = MLP([n_in], [n_out], hidden_sizes=[256, 256])

        def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
            return self.mlp(x)

    layers = [
        AffineCouplingTransform(create_alternating_binary_mask(DIM, even=i % 2 == 0), Net)
        for i in range(8)
    ]
    flow = Flow(CompositeTransform(layers), StandardNormal([DIM]))
    return Entry("nflows", flow, flow.log_prob)


def normflows_entry() -> Entry:
    import normflows as nf

    half = DIM // 2
    layers = [
        nf.flows.AffineCouplingBlock(
            nf.nets.MLP([half, 256, 256, DIM], init_zeros=True),
            split_mode="channel" if i % 2 == 0 else "channel_inv",
        )
        for i in range(8)
    ]
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(DIM, trainable=False), layers)
    return Entry("normflows", flow, flow.log_prob)


def pyro_entry() -> Entry:
    import pyro.distributions as dist
    from pyro.distributions.transforms import Permute, affine_coupling

    swap = torch.cat([torch.arange(DIM // 2, DIM), torch.arange(DIM // 2)])
    parts: list = []
    for i in range(8):
        if i:
            parts.append(Permute(swap))
        parts.append(affine_coupling(DIM, hidden_dims=[256, 256]))
    module = nn.ModuleList([p for p in parts if isinstance(p, nn.Module)])
    base = dist.Normal(torch.zeros(DIM), torch.ones(DIM)).to_event(1)
    d = dist.TransformedDistribution(base, parts)
    return Entry("Pyro AffineCoupling", module, d.log_prob)


IMAGE = (1, 8, 8)


def _image_entry(name: str, flow: nn.Module) -> Entry:
    d = fk.flows.flow_distribution(flow, IMAGE)
    return Entry(name, flow, lambda z: d.log_prob(z.view(-1, *IMAGE)))


def ours_glow() -> Entry:
    return _image_entry("pyro-flowkit glow", fk.flows.glow(IMAGE))


def ours_glow_dropout() -> Entry:
    return _image_entry("pyro-flowkit glow(dropout=0.2)", fk.flows.glow(IMAGE, dropout=0.2))


GLOW_DEEP = dict(depth=8, hidden_channels=40, prior_hidden_channels=40)


def ours_glow_deep(dropout: float = 0.0) -> Entry:
    """Deeper and narrower within the 100k-parameter budget, chosen from the Glow sweep."""
    name = "pyro-flowkit glow(depth=8, hidden_channels=40, prior_hidden_channels=40"
    name += f", dropout={dropout})" if dropout else ")"
    return _image_entry(name, fk.flows.glow(IMAGE, **GLOW_DEEP, dropout=dropout))


def ours_image_realnvp() -> Entry:
    return _image_entry("pyro-flowkit realnvp (1, 8, 8)", fk.flows.realnvp(IMAGE))


def ours_small() -> Entry:
    flow = fk.flows.realnvp(DIM, hidden_dims=(64, 64))
    name = "pyro-flowkit realnvp(64) hidden (64, 64)"
    return Entry(name, flow, fk.flows.flow_distribution(flow, DIM).log_prob)


def normflows_glow_entry() -> Entry:
    """normflows' multi-scale Glow as in its Glow example: 2 levels of 4 Glow blocks (64 hidden
    channels, LU 1x1 convolutions, affine couplings), a learned diagonal Gaussian per level."""
    import warnings

    import normflows as nf

    warnings.filterwarnings("ignore", message="torch.lu is deprecated")
    levels, depth, c = 2, 4, IMAGE[0]
    q0, merges, flows = [], [], []
    for i in range(levels):
        blocks = [
            nf.flows.GlowBlock(c * 2 ** (levels + 1 - i), 64, split_mode="channel", scale=True)
            for _ in range(depth)
        ]
        flows.append([*blocks, nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            k = levels - i
        else:
            k = levels
        shape = (c * 2 ** (k + 1) if i == 0 else c * 2**k, 8 // 2**k, 8 // 2**k)
        q0.append(nf.distributions.DiagGaussian(shape))
    model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)
    return Entry("normflows Glow", model, lambda z: model.log_prob(z.view(-1, *IMAGE), None))


BUILDERS = {
    "ours": ours,
    "ours-dropout": ours_with_dropout,
    "ours-small": ours_small,
    "glow": ours_glow,
    "glow-dropout": ours_glow_dropout,
    "glow-deep": ours_glow_deep,
    "glow-deep-dropout": lambda: ours_glow_deep(0.1),
    "realnvp-image": ours_image_realnvp,
    "normflows-glow": normflows_glow_entry,
    "zuko": zuko_entry,
    "nflows": nflows_entry,
    "normflows": normflows_entry,
    "pyro": pyro_entry,
}


def train_step(e: Entry, z: Tensor, ladj: Tensor, step: int) -> None:
    start = time.perf_counter()
    try:
        e.trainer.step((z, ladj))
    except FloatingPointError:
        e.failed_at = step
        return
    e.times.append(time.perf_counter() - start)


@torch.no_grad()
def evaluate(e: Entry, test: Tensor, step: int) -> None:
    e.module.eval()
    g = torch.Generator().manual_seed(1)
    bpd = torch.zeros(len(test))
    for _ in range(4):
        z, ladj = preprocess(test, torch.rand(test.shape, generator=g))
        bpd += fk.metrics.bits_per_dim(e.log_prob(z) + ladj, DIM, LEVELS) / 4
    e.module.train()
    e.evals[step] = (bpd.mean().item(), bpd.median().item())


def run(names: list[str], steps: int, eval_at: list[int]) -> list[Entry]:
    torch.manual_seed(0)
    entries = [BUILDERS[n]() for n in names]
    train = fk.data.load_digits("train", flatten=True)
    test = fk.data.load_digits("test", flatten=True)
    g = torch.Generator().manual_seed(0)
    batches = fk.inference.minibatches(train, BATCH, g)
    for step in range(1, steps + 1):
        z, ladj = preprocess(v := next(batches), torch.rand(v.shape, generator=g))
        k = step % len(entries)
        for e in entries[k:] + entries[:k]:
            if e.failed_at is None:
                train_step(e, z, ladj, step)
        if step in eval_at:
            for e in entries:
                if e.failed_at is None:
                    evaluate(e, test, step)
            print(
                f"step {step}: "
                + ", ".join(f"{e.name} {e.evals.get(step, (math.nan,))[0]:.3f}" for e in entries),
                flush=True,
            )
    return entries


def table(entries: list[Entry], eval_at: list[int]) -> str:
    medians = {e.name: statistics.median(e.times) * 1e3 if e.times else math.nan for e in entries}
    peers = [medians[e.name] for e in entries if not e.name.startswith("pyro-flowkit")]
    fastest = min(peers) if peers else min(medians.values())
    cols = " | ".join(f"test bpd @{s}: mean / median" for s in eval_at)
    lines = [
        f"| model | params | {cols} | step ms (median) | step time / fastest peer |",
        "|---" * (4 + len(eval_at)) + "|",
    ]
    for e in entries:
        n = sum(p.numel() for p in e.module.parameters())
        cells = []
        for s in eval_at:
            mean, median = e.evals.get(s, (math.nan, math.nan))
            cells.append(
                f"{mean:.3f} / {median:.3f}" if s in e.evals else f"failed at {e.failed_at}"
            )
        lines.append(
            f"| {e.name} | {n:,} | "
            + " | ".join(cells)
            + f" | {medians[e.name]:.1f} | {medians[e.name] / fastest:.2f} |"
        )
    return "\n".join(lines)


def footer(cmd: str, start: float) -> str:
    """The line under a results table: the command, the machine, torch and the wall time."""
    return (
        f"\n\n`{cmd}` on {platform.machine()} with {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {time.time() - start:.0f} s in all."
    )


def write_results(path: Path, text: str, marker: str = "digits_flows") -> None:
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    old = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        new = old + ("\n" if old else "") + block + "\n"
    path.write_text(new)


def run_suites(args: argparse.Namespace, runners: dict, prefix: str) -> None:
    """Run ``args.suite`` (or every suite for ``"all"``), print each table, update the results."""
    for suite in runners if args.suite == "all" else [args.suite]:
        text = runners[suite](args)
        print(text, flush=True)
        if args.results:
            write_results(args.results, text, f"{prefix}_{suite}")


# Run when glow's default dropout was 0.2 (RESULTS.md); the rows that used it pass it now.
GLOW_SWEEP = {
    "glow-d0": dict(dropout=0.0),
    "glow-d0.3": dict(dropout=0.3),
    "glow-additive-d0": dict(coupling="additive", dropout=0.0),
    "glow-L1-K8": dict(levels=1, depth=8, dropout=0.2),
    "glow-L3-h40": dict(levels=3, hidden_channels=40, dropout=0.2),
    "glow-K8-h40": dict(depth=8, hidden_channels=40, dropout=0.2),
    "glow-K8-h40-p40": dict(depth=8, hidden_channels=40, prior_hidden_channels=40, dropout=0.2),
    "glow-K12-h32-p32": dict(depth=12, hidden_channels=32, prior_hidden_channels=32, dropout=0.2),
    "glow-p64": dict(prior_hidden_channels=64, dropout=0.2),
}
for _name, _kw in GLOW_SWEEP.items():
    BUILDERS[_name] = lambda kw=_kw: _image_entry(
        f"pyro-flowkit glow {kw}", fk.flows.glow(IMAGE, **kw)
    )


def glow_with_position_norm() -> Entry:
    """The deeper Glow with a per-position ActNorm on the data side (a learned per-pixel affine)."""
    from pyro.distributions.torch_transform import ComposeTransformModule

    flow = fk.flows.glow(IMAGE, depth=8, hidden_channels=40, dropout=0.2)
    norm = fk.transforms.ActNorm(IMAGE, per_position=True)
    composed = ComposeTransformModule([*flow.parts, norm], cache_size=1)
    name = "pyro-flowkit glow {'depth': 8, 'hidden_channels': 40} + per-position ActNorm"
    return _image_entry(name, composed)


BUILDERS["glow-K8-h40-position-norm"] = glow_with_position_norm

# ---------------------------------------------------------------- the Glow recipe (no dropout)
# A validation split carved from the training set picks the checkpoint; the test set is scored
# only to report. Every recipe trains on the same batches and noise, in turn.
VAL_SIZE, VAL_SEED, VAL_EVERY = 200, 123, 250


@dataclass
class Recipe:
    name: str
    flow: dict  # glow((1, 8, 8), **flow)
    lr: float = LR
    warmup: int = 0  # linear warm-up steps
    cosine: bool = False  # cosine decay to 0 over the run
    ema: float = 0.0  # weight EMA decay (0: none), started after ActNorm's initialisation
    weight_decay: float = 0.0  # AdamW's decoupled decay (0: Adam)
    shift: float = 0.0  # probability of a random shift by up to one pixel (augmentation)


GLOW_DEEPER = dict(depth=12, hidden_channels=32, prior_hidden_channels=32)
SCHEDULE = dict(warmup=100, cosine=True, ema=0.995)
RECIPES = {
    "baseline": Recipe("baseline: Adam 1e-3 constant, no EMA", dict(GLOW_DEEP)),
    "recipe-k8": Recipe("warm-up + cosine, EMA, shifts", dict(GLOW_DEEP), **SCHEDULE, shift=0.5),
    "recipe-k8-shift1": Recipe(
        "warm-up + cosine, EMA, shifts always", dict(GLOW_DEEP), **SCHEDULE, shift=1.0
    ),
    "recipe-k8-lr2": Recipe(
        "warm-up + cosine from 2e-3, EMA, shifts", dict(GLOW_DEEP), **SCHEDULE, shift=0.5, lr=2e-3
    ),
    "recipe-k8-lr3": Recipe(
        "warm-up + cosine from 3e-3, EMA, shifts", dict(GLOW_DEEP), **SCHEDULE, shift=0.5, lr=3e-3
    ),
    "recipe-k8-lr5": Recipe(
        "warm-up + cosine from 5e-3, EMA, shifts", dict(GLOW_DEEP), **SCHEDULE, shift=0.5, lr=5e-3
    ),
    "recipe": Recipe("warm-up + cosine, EMA, shifts", dict(GLOW_DEEPER), **SCHEDULE, shift=0.5),
}


def _shift(v: Tensor, prob: float, g: torch.Generator) -> Tensor:
    """Shift each image (rows of 64) by up to one pixel each way, with probability ``prob``;
    pixels shifted in are 0 (the digits' background)."""
    n = len(v)
    img = F.pad(v.view(n, 8, 8), (1, 1, 1, 1))
    on = torch.rand(n, generator=g) < prob
    dy = torch.randint(-1, 2, (n,), generator=g) * on
    dx = torch.randint(-1, 2, (n,), generator=g) * on
    rows = (torch.arange(8) + 1 - dy[:, None])[:, :, None]  # (n, 8, 1)
    cols = (torch.arange(8) + 1 - dx[:, None])[:, None, :]  # (n, 1, 8)
    return img[torch.arange(n)[:, None, None], rows, cols].reshape(n, 64)


@dataclass
class _RecipeRun:
    recipe: Recipe
    entry: Entry
    ema: fk.inference.EMA | None = None
    val: dict[int, float] = field(default_factory=dict)
    test: dict[int, tuple[float, float]] = field(default_factory=dict)

    def lr_at(self, step: int, steps: int) -> float:
        r = self.recipe
        lr = r.lr * (min(1.0, step / r.warmup) if r.warmup else 1.0)
        return lr * 0.5 * (1 + math.cos(math.pi * step / steps)) if r.cosine else lr


def _bpd(e: Entry, data: Tensor) -> Tensor:
    e.module.eval()
    g = torch.Generator().manual_seed(1)
    bpd = torch.zeros(len(data))
    with torch.no_grad():
        for _ in range(4):
            z, ladj = preprocess(data, torch.rand(data.shape, generator=g))
            bpd += fk.metrics.bits_per_dim(e.log_prob(z) + ladj, DIM, LEVELS) / 4
    e.module.train()
    return bpd


def run_recipes(
    recipes: list[Recipe], steps: int, full_train: bool = False
) -> tuple[list[_RecipeRun], int]:
    """Train each recipe on the training set less the validation split (or, with
    ``full_train``, on all of it: then the validation images are trained on and their figures
    mean nothing; the step to report comes from an earlier run with the split)."""
    torch.manual_seed(0)
    full = fk.data.load_digits("train", flatten=True)
    test = fk.data.load_digits("test", flatten=True)
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(VAL_SEED))
    val, train = full[order[:VAL_SIZE]], full[order[VAL_SIZE:]]
    if full_train:
        train = full
    runs, streams = [], []
    for r in recipes:
        # each recipe draws its own batches, shifts and noise from seed 0, so its row is the same
        # run alone (--only) or next to others
        g = torch.Generator().manual_seed(0)
        batches = fk.inference.minibatches(train, BATCH, g)
        first = next(batches)
        z0 = preprocess(first, torch.rand(first.shape, generator=g))[0]
        streams.append((g, batches))
        torch.manual_seed(0)  # each recipe's initialisation is the same alone or with others
        entry = _image_entry(r.name, fk.flows.glow(IMAGE, **r.flow))
        with torch.no_grad():  # ActNorm initialises from the first batch, before the EMA starts
            entry.log_prob(z0)
        run_ = _RecipeRun(r, entry)
        if r.ema:
            run_.ema = fk.inference.EMA(r.ema, params=entry.module)
        wd = r.weight_decay

        def optimizer(ps: list, lr: float = r.lr, wd: float = wd) -> torch.optim.Optimizer:
            if wd:
                return torch.optim.AdamW(ps, lr=lr, weight_decay=wd)
            return torch.optim.Adam(ps, lr=lr)

        loss = entry.trainer.objective
        entry.trainer = Trainer(loss, params=entry.module, optimizer=optimizer, ema=run_.ema)
        entry.trainer.setup()
        runs.append(run_)
    for step in range(1, steps + 1):
        k = step % len(runs)
        for run_, (g, batches) in (list(zip(runs, streams, strict=True)) * 2)[k : k + len(runs)]:
            e = run_.entry
            if e.failed_at is not None:
                continue
            v = next(batches)
            if run_.recipe.shift:
                v = _shift(v, run_.recipe.shift, g)
            z, ladj = preprocess(v, torch.rand(v.shape, generator=g))
            for group in e.trainer.optimizer.param_groups:
                group["lr"] = run_.lr_at(step, steps)
            train_step(e, z, ladj, step)
        if step % VAL_EVERY == 0 or step == steps:
            for run_ in runs:
                if run_.entry.failed_at is not None:
                    continue
                with run_.ema.swapped() if run_.ema else torch.no_grad():
                    run_.val[step] = _bpd(run_.entry, val).mean().item()
                    t = _bpd(run_.entry, test)  # recorded, reported only at the val's choice
                    run_.test[step] = (t.mean().item(), t.median().item())
            print(
                f"step {step}: "
                + ", ".join(
                    f"{r.recipe.name} val {r.val.get(step, math.nan):.3f} "
                    f"(test, not used for the choice: {r.test.get(step, (math.nan,))[0]:.3f})"
                    for r in runs
                ),
                flush=True,
            )
    return runs, len(train)


def recipe_table(runs: list[_RecipeRun], n_train: int, report_at: int | None = None) -> str:
    if report_at:
        head = (
            f"Trained on all {n_train} training images; the test set (300 images, 4 noise "
            f"draws) is reported at step {report_at}, chosen beforehand by the validation run "
            f"with the same recipe and number of steps ({VAL_SIZE} training images held out)."
        )
    else:
        head = (
            f"Trained on {n_train} of the 1497 training images; {VAL_SIZE} held out (seed "
            f"{VAL_SEED}) pick the checkpoint (every {VAL_EVERY} steps, lowest validation mean); "
            "the test set (300 images, 4 noise draws) is reported at that checkpoint only."
        )
    lines = [
        head + " Logit preprocessing and fresh uniform dequantisation per batch as above, "
        "batch 128, seed 0.",
        "",
        "| model | params | recipe | steps (chosen on validation) | validation bpd "
        "| test bpd: mean / median | test bpd at the last step | step ms (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run_ in runs:
        r, e = run_.recipe, run_.entry
        n = sum(p.numel() for p in e.module.parameters())
        flow = ", ".join(f"{k}={v}" for k, v in r.flow.items())
        parts = [f"lr {r.lr:g}"]
        if r.warmup:
            parts.append(f"warm-up {r.warmup}")
        parts.append("cosine to 0" if r.cosine else "constant")
        parts.append(f"EMA {r.ema}" if r.ema else "no EMA")
        parts.append(f"AdamW wd {r.weight_decay:g}" if r.weight_decay else "Adam, no wd")
        parts.append(f"random 1-pixel shifts p={r.shift}" if r.shift else "no augmentation")
        if not run_.val:
            lines.append(f"| glow({flow}) | {n:,} | {'; '.join(parts)} | failed | | | | |")
            continue
        best = report_at if report_at in run_.test else min(run_.val, key=run_.val.get)
        last = max(run_.test)
        ms = statistics.median(e.times) * 1e3 if e.times else math.nan
        lines.append(
            f"| glow({flow}) | {n:,} | {'; '.join(parts)} | {best} | {run_.val[best]:.3f} "
            f"| {run_.test[best][0]:.3f} / {run_.test[best][1]:.3f} "
            f"| {run_.test[last][0]:.3f} / {run_.test[last][1]:.3f} | {ms:.1f} |"
        )
    return "\n".join(lines)


SUITES = {
    "vectors": ["ours", "zuko", "nflows", "normflows", "pyro", "ours-dropout"],
    "images": [
        "glow",
        "glow-deep",
        "realnvp-image",
        "normflows-glow",
        "ours",
        "ours-small",
        "glow-dropout",
        "glow-deep-dropout",
        "ours-dropout",
    ],
    "glow-sweep": ["glow-dropout", *GLOW_SWEEP, "glow-K8-h40-position-norm", "glow-deep-dropout"],
    "recipe": [],  # RECIPES, by run_recipes
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-at", type=int, nargs="+", default=[300, 1000, 2000])
    parser.add_argument("--suite", choices=list(SUITES), default="vectors")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*BUILDERS, *RECIPES],
        help="instead of the suite (for --suite recipe: keys of RECIPES)",
    )
    parser.add_argument("--results", type=Path, help="update this markdown file's section")
    parser.add_argument("--section", help="the section's marker name (default: per suite)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see below)")
    parser.add_argument(
        "--full-train-at",
        type=int,
        help="--suite recipe: train on all 1497 images and report the test at this step "
        "(chosen by a validation run)",
    )
    args = parser.parse_args()
    # One thread: at these sizes the OpenMP pool's wake-ups cost more than a second core gains
    # (every library's step measured about twice as fast with one thread as with two).
    torch.set_num_threads(args.threads)
    eval_at = [s for s in args.eval_at if s <= args.steps]
    start = time.time()
    if args.suite == "recipe":
        chosen = [RECIPES[k] for k in args.only or RECIPES]
        runs, n_train = run_recipes(chosen, args.steps, bool(args.full_train_at))
        entries = [r.entry for r in runs]
        text = recipe_table(runs, n_train, args.full_train_at)
    else:
        names = args.only or SUITES[args.suite]
        entries = run(names, args.steps, eval_at)
        text = table(entries, eval_at)
    cmd = f"python benchmarks/digits_flows.py --steps {args.steps}"
    if args.suite != "vectors":
        cmd += f" --suite {args.suite}"
    if args.only:
        cmd += " --only " + " ".join(args.only)
    if eval_at != [300, 1000, 2000] and args.suite != "recipe":
        cmd += " --eval-at " + " ".join(map(str, eval_at))
    if args.threads != 1:
        cmd += f" --threads {args.threads}"
    if args.full_train_at:
        cmd += f" --full-train-at {args.full_train_at}"
    text += footer(cmd, start)
    print(text)
    if args.results:
        section = args.section or {"vectors": "digits_flows", "images": "digits_images"}.get(
            args.suite, f"digits_{args.suite}"
        )
        write_results(args.results, text, section)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    e.name: {
                        "evals": e.evals,
                        "median_step_ms": statistics.median(e.times) * 1e3 if e.times else None,
                        "failed_at": e.failed_at,
                    }
                    for e in entries
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
