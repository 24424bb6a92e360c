"""Residual flows: pyro-flowkit's invertible ResNets against normflows' Residual flow, and on data.

``--suite speed`` (section ``residual_speed``): the training step (log-prob forward, backward,
Adam step) of our ``residual_flow`` against normflows' ``Residual`` flow at matched size: 4
blocks, each an ActNorm then a residual block ``x + g(x)`` on the data side, ``g`` an MLP with
hidden widths (128, 128), Lipschitz coefficient 0.9 per layer, LipSwish activations; unbiased
Russian-roulette log-det with geometric p = 0.5 and one Hutchinson probe; the memory-saving
Neumann gradient. Our ``n_terms=3`` is normflows' ``n_exact_terms=2``: normflows draws
``N >= 1`` and computes ``2 + N`` terms (the third always, weight 1), we draw ``M >= 0`` and
compute ``3 + M``, so both compute the same random number of terms with the same weights.
normflows runs its spectral-norm power iterations outside the forward pass
(``nf.utils.update_lipschitz``), ours one per layer per training pass; its step here includes
``update_lipschitz(model, 1)`` so both do one. Batch 256 of 2-D moons and of the 64-D digits
(logit space, as ``digits_flows.py``). Contenders alternate in one process after a warm-up;
medians. Memory: the peak of the bytes of tensors saved for backward that are alive at once
during one step (unique storages, parameters excluded), tracked with
``torch.autograd.graph.saved_tensors_hooks``; with CUDA also ``torch.cuda.max_memory_allocated``.
Then the same figure for ours with the truncated series (``logdet="series"``) as ``n_terms``
grows, with and without the Neumann gradient (and normflows' truncated series,
``n_power_series``, with ``reduce_memory`` on and off).

``--suite density`` (section ``residual_density``): test NLL (nats) on 2-D toy data (moons,
rings, checkerboard; the demo's 20000 training / 5000 test points) of our ``iresnet``,
``residual_flow`` and vector ``realnvp`` at about equal parameter counts, and digits bits/dim
(the protocol and code of ``digits_flows.py``) of vector ``residual_flow`` / ``iresnet`` against
our ``realnvp`` (64-vectors) and ``glow`` ((1, 8, 8) images). Residual flows train with their
stochastic log-det and are scored in ``eval()`` mode with ``logdet="exact"``.

``--suite spectral`` (section ``residual_spectral``): the largest excess of a layer's exact
spectral norm over its bound during training, for one power-iteration vector, a block of 4, and
the block settled to ``power_rtol`` (the default).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/residual_flows.py
        [--suite speed|density|spectral|all]
        [--steps 2000] [--results FILE] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from digits_flows import BUILDERS, DIM, Entry, footer, preprocess, run_suites, train_step
from digits_flows import run as run_digits
from digits_flows import table as digits_table
from torch import Tensor, nn

import pyro_flowkit as fk
from pyro_flowkit.app.demo import TOY_TEST, TOY_TRAIN
from pyro_flowkit.nn import SpectralNormConv2d, SpectralNormLinear
from pyro_flowkit.transforms import InvertibleResidual, set_logdet

MiB = 2**20
OURS = "pyro-flowkit residual_flow"
_SPECTRAL = (SpectralNormLinear, SpectralNormConv2d)
BLOCKS, HIDDEN, LIPSCHITZ, SPEED_BATCH = 4, (128, 128), 0.9, 256


# --------------------------------------------------------------------------------------------
# Shared helpers


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_coeffs(flow: nn.Module) -> str:
    """The spectral-norm coefficients of a flow's layers (one number if they agree)."""
    coeffs = sorted({round(m.coeff, 3) for m in flow.modules() if isinstance(m, _SPECTRAL)})
    return ", ".join(map(str, coeffs))


def residual_blocks(flow: nn.Module) -> list[InvertibleResidual]:
    return [m for m in flow.modules() if isinstance(m, InvertibleResidual)]


def exact_when_eval(flow: nn.Module, log_prob: Callable[[Tensor], Tensor]) -> Callable:
    """``log_prob``, scored with ``logdet="exact"`` whenever ``flow`` is in ``eval()`` mode."""
    blocks = residual_blocks(flow)
    if not blocks:
        return log_prob
    mode = blocks[0].logdet

    def score(x: Tensor) -> Tensor:
        if flow.training:
            return log_prob(x)
        set_logdet(flow, "exact")
        try:
            return log_prob(x)
        finally:
            set_logdet(flow, mode)

    return score


class _Saved:
    """One saved tensor, counted while autograd holds it."""

    __slots__ = ("meter", "tensor", "key")

    def __init__(self, meter: SavedBytes, tensor: Tensor, key: int | None) -> None:
        self.meter, self.tensor, self.key = meter, tensor, key

    def __del__(self) -> None:
        if self.key is not None:
            self.meter.release(self.key)


class SavedBytes:
    """Peak bytes of the distinct storages saved for backward and alive at once.

    A pack hook wraps every saved tensor; the wrapper is freed when autograd frees the graph node
    holding it (during backward, or when the graph goes away), so a per-storage reference count
    gives the live total. Parameters' own storages are excluded (they exist anyway).
    """

    def __init__(self, exclude: set[int]) -> None:
        self.exclude, self.refs, self.size = exclude, {}, {}
        self.live = self.peak = 0

    def pack(self, t: Tensor) -> _Saved:
        try:
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
        except (RuntimeError, NotImplementedError):  # no plain storage
            return _Saved(self, t, None)
        if nbytes == 0 or key in self.exclude:
            return _Saved(self, t, None)
        if key not in self.refs:
            self.refs[key], self.size[key] = 0, nbytes
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self.refs[key] += 1
        return _Saved(self, t, key)

    def release(self, key: int) -> None:
        self.refs[key] -= 1
        if not self.refs[key]:
            del self.refs[key]
            self.live -= self.size.pop(key)

    @staticmethod
    def unpack(saved: _Saved) -> Tensor:
        return saved.tensor


def saved_peak(step: Callable[[Tensor], object], module: nn.Module, batch: Tensor) -> int:
    """Peak live bytes saved for backward during one call of ``step`` (same seeds for all)."""
    torch.manual_seed(0)
    np.random.seed(0)
    meter = SavedBytes({p.untyped_storage().data_ptr() for p in module.parameters()})
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        step(batch)
    return meter.peak


def cuda_peak(step: Callable[[Tensor], object], batch: Tensor) -> int:
    torch.manual_seed(0)
    np.random.seed(0)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step(batch)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def alternate(
    steps: dict,
    batches: Iterator[Tensor],
    rounds: int,
    cuda: bool = False,
    warmup: int = 5,
) -> dict[str, float]:
    """Median seconds of each step function, all called on the same batch each round in a
    rotating order."""
    sync = torch.cuda.synchronize if cuda else lambda: None
    names = list(steps)
    for _ in range(warmup):
        batch = next(batches)
        for fn in steps.values():
            fn(batch)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        batch = next(batches)
        k = r % len(names)
        for name in names[k:] + names[:k]:
            sync()
            start = time.perf_counter()
            steps[name](batch)
            sync()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


# --------------------------------------------------------------------------------------------
# Contenders for the speed suite: a module and a training step on a batch


@dataclass
class Contender:
    name: str
    module: nn.Module
    step: Callable[[Tensor], Tensor]


def _trainer(
    module: nn.Module, log_prob: Callable[[Tensor], Tensor], after: Callable[[], None] | None
) -> Callable[[Tensor], Tensor]:
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step(x: Tensor) -> Tensor:
        loss = -log_prob(x).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after is not None:
            after()
        return loss.detach()

    return step


def ours_contender(dim: int, device: str, name: str | None = None, **options) -> Contender:
    torch.manual_seed(0)
    flow = fk.flows.residual_flow(dim, num_blocks=BLOCKS, hidden_dims=HIDDEN, **options)
    for m in flow.modules():  # normflows' lipschitz_const is per layer; so is this
        if isinstance(m, SpectralNormLinear):
            m.coeff = LIPSCHITZ
    flow = flow.to(device)
    d = fk.flows.flow_distribution(flow, dim)
    label = name or f"{OURS}(n_terms=3)"
    return Contender(label, flow, _trainer(flow, d.log_prob, None))


@contextlib.contextmanager
def _quiet_normflows() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="normflows")
        yield


def normflows_contender(
    dim: int, device: str, name: str = "normflows Residual(n_exact_terms=2)", **options
) -> Contender:
    """normflows' Residual flow as in its 2-D example: (Residual, ActNorm) pairs listed from the
    base side, so the data meets ActNorm first; LipschitzMLP with LipSwish ("Swish") layers."""
    import normflows as nf

    torch.manual_seed(0)
    np.random.seed(0)
    opts = dict(reduce_memory=True, n_exact_terms=2, n_samples=1, geom_p=0.5) | options
    with _quiet_normflows():
        layers: list[nn.Module] = []
        for _ in range(BLOCKS):
            net = nf.nets.LipschitzMLP(
                [dim, *HIDDEN, dim], lipschitz_const=LIPSCHITZ, init_zeros=True
            )
            layers += [nf.flows.Residual(net, **opts), nf.flows.ActNorm(dim)]
        model = nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), layers)
    model = model.to(device)

    def log_prob(x: Tensor) -> Tensor:
        with _quiet_normflows():
            return model.log_prob(x)

    def lipschitz() -> None:  # one power iteration per layer per step, as ours
        nf.utils.update_lipschitz(model, 1)

    return Contender(name, model, _trainer(model, log_prob, lipschitz))


def speed_batches(kind: str, device: str, batch: int) -> Iterator[Tensor]:
    g = torch.Generator().manual_seed(0)
    if kind == "2-D moons":
        data = fk.data.toy_2d("moons", 20_000)
        for x in fk.inference.minibatches(data, batch, g):
            yield x.to(device)
    else:
        data = fk.data.load_digits("train", flatten=True)
        for v in fk.inference.minibatches(data, batch, g):
            yield preprocess(v, torch.rand(v.shape, generator=g))[0].to(device)


def speed_table(device: str, rounds: int, batch: int) -> str:
    cuda = device.startswith("cuda")
    head = "| data | model | params | step ms (median) | ours / normflows "
    head += "| saved-for-backward peak MiB"
    lines = [head + (" | CUDA peak MiB |" if cuda else " |")]
    lines.append("|---" * (7 if cuda else 6) + "|")
    for kind, dim in (("2-D moons", 2), ("64-D digits", DIM)):
        contenders = [
            ours_contender(dim, device, n_terms=3),
            normflows_contender(dim, device),
            ours_contender(
                dim, device, f"{OURS}(n_terms=3, power_rtol=None)", n_terms=3, power_rtol=None
            ),  # fmt: skip
            ours_contender(dim, device, f"{OURS} (defaults: n_terms=5)"),
        ]
        batches = speed_batches(kind, device, batch)
        medians = alternate({c.name: c.step for c in contenders}, batches, rounds, cuda)
        ref = medians[contenders[1].name]
        probe = next(batches)
        for c in contenders:
            ms = medians[c.name] * 1e3
            ratio = "" if c is contenders[1] else f"{medians[c.name] / ref:.2f}"
            row = (
                f"| {kind} | {c.name} | {n_params(c.module):,} | {ms:.1f} | {ratio} "
                f"| {saved_peak(c.step, c.module, probe) / MiB:.2f} |"
            )
            if cuda:
                row += f" {cuda_peak(c.step, probe) / MiB:.2f} |"
            lines.append(row)
    return "\n".join(lines)


MEMORY_ROWS = {
    ("ours", True): "pyro-flowkit, Neumann gradient",
    ("ours", False): "pyro-flowkit, backprop through the series",
    ("normflows", True): "normflows, reduce_memory=True",
    ("normflows", False): "normflows, reduce_memory=False",
}


def memory_table(device: str, rounds: int, batch: int, terms: tuple[int, ...]) -> str:
    """Rows: library and gradient; columns: saved-for-backward peak and step time per n_terms."""
    cuda = device.startswith("cuda")
    contenders: dict[tuple[str, bool, int], Contender] = {}
    for n in terms:
        for neumann in (True, False):
            contenders["ours", neumann, n] = ours_contender(
                DIM, device, f"ours {n} {neumann}", logdet="series", n_terms=n, neumann_grad=neumann
            )
            contenders["normflows", neumann, n] = normflows_contender(
                DIM, device, f"normflows {n} {neumann}", n_power_series=n, reduce_memory=neumann
            )
    batches = speed_batches("digits", device, batch)
    medians = alternate({k: c.step for k, c in contenders.items()}, batches, rounds, cuda)
    probe = next(batches)
    heads = [f"saved MiB, {n} terms" for n in terms] + [f"step ms, {n} terms" for n in terms]
    if cuda:
        heads += [f"CUDA peak MiB, {n} terms" for n in terms]
    lines = ["| model | " + " | ".join(heads) + " |", "|---" * (1 + len(heads)) + "|"]
    for (lib, neumann), label in MEMORY_ROWS.items():
        row = [contenders[lib, neumann, n] for n in terms]
        cells = [f"{saved_peak(c.step, c.module, probe) / MiB:.2f}" for c in row]
        cells += [f"{medians[lib, neumann, n] * 1e3:.1f}" for n in terms]
        if cuda:
            cells += [f"{cuda_peak(c.step, probe) / MiB:.2f}" for c in row]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_suite(args: argparse.Namespace) -> str:
    start = time.time()
    terms = (2, 5) if args.quick else (2, 5, 10, 20)
    text = (
        "### Speed and memory against normflows (`--suite speed`)\n\n"
        f"Training step (log-prob, backward, Adam step), batch {SPEED_BATCH}, {BLOCKS} blocks "
        f"(ActNorm + residual block), MLPs {HIDDEN}, Lipschitz {LIPSCHITZ} per layer, LipSwish, "
        "roulette log-det (geometric p = 0.5, 3 terms always computed, one probe), Neumann "
        f"gradient; on {args.device}, {args.rounds} rounds, contenders alternating. Saved MiB: "
        "the peak of the distinct tensors saved for backward alive at once during one step "
        "(parameters excluded). Spectral norms: normflows runs one power iteration (one "
        "vector) per layer after each step (`update_lipschitz(model, 1)`); ours runs a block "
        "power iteration (4 vectors) in each training pass, at least once and by default until "
        "the estimate settles to `power_rtol=1e-4`, or exactly once with `power_rtol=None`. The "
        "defaults row is `residual_flow` as built by default (5 terms always computed).\n\n"
        + speed_table(args.device, args.rounds, SPEED_BATCH)
        + '\n\nThe same nets on 64-D digits with the truncated series (`logdet="series"`, '
        "normflows `n_power_series`) as the number of terms grows: saved-for-backward peak and "
        "step time, with the Neumann gradient (`neumann_grad=True`; normflows "
        "`reduce_memory=True`) and with back-propagation through every term:\n\n"
        + memory_table(args.device, max(3, args.rounds // 2), SPEED_BATCH, terms)
    )
    return text + footer(command(args), start)


# --------------------------------------------------------------------------------------------
# Spectral suite: how far the used weights' exact norms exceed the bound during training

SPECTRAL_CONFIGS = (
    ("1 vector, 1 iteration per pass (i-ResNet)", {"power_vectors": 1, "power_rtol": None}),
    ("4 vectors, 1 iteration per pass", {"power_rtol": None}),
    ("4 vectors, settled to power_rtol=1e-4 (default)", {}),
)
SPECTRAL_LRS = (1e-3, 1e-2)


def bound_excess(lr: float, steps: int, **spectral: object) -> tuple[float, float]:
    """Largest exact-norm excess over c of any layer in any training pass, and ms per step.

    The norms are those of the weights the pass used (measured after its forward, before the
    optimiser step); their computation is not timed."""
    torch.manual_seed(0)
    data = fk.data.toy_2d("moons", TOY_TRAIN)
    flow = fk.flows.residual_flow(2, BLOCKS, (32, 32), **spectral)
    d = fk.flows.flow_distribution(flow, 2)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    layers = [m for m in flow.modules() if isinstance(m, _SPECTRAL)]
    worst, seconds = 0.0, 0.0
    for _ in range(steps):
        start = time.perf_counter()
        loss = -d.log_prob(data[torch.randint(0, len(data), (TOY_BATCH,))]).mean()
        seconds += time.perf_counter() - start
        worst = max(worst, *(m.exact_spectral_norm().item() - m.coeff for m in layers))
        start = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        opt.step()
        seconds += time.perf_counter() - start
    return worst, 1000 * seconds / steps


def spectral_suite(args: argparse.Namespace) -> str:
    start = time.time()
    steps = 20 if args.quick else 300
    head = " | ".join(f"worst excess, lr {lr:g} | ms/step, lr {lr:g}" for lr in SPECTRAL_LRS)
    lines = [f"| power iteration | {head} |", "|---" * (1 + 2 * len(SPECTRAL_LRS)) + "|"]
    for label, spectral in SPECTRAL_CONFIGS:
        cells = []
        for lr in SPECTRAL_LRS:
            worst, ms = bound_excess(lr, steps, **spectral)
            cells += [f"{worst:+.4f}", f"{ms:.1f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = (
        "### Spectral norms during training (`--suite spectral`)\n\n"
        f"`residual_flow(2, {BLOCKS}, (32, 32))` (each layer bounded by c = 0.9^(1/3) = 0.965) "
        f"trained on moons, batch {TOY_BATCH}, Adam, {steps} steps. Worst excess: the largest "
        "`exact_spectral_norm() - c` (SVD) of any layer, over every training pass, of the weight "
        "that pass used; positive means the bound was broken. When the two largest singular "
        "values of a weight cross, a single power-iteration vector sits on what became the "
        "second singular vector and the estimate lags the norm by the gap.\n\n" + "\n".join(lines)
    )
    return text + footer(command(args), start)


# --------------------------------------------------------------------------------------------
# Density suite


TOY_SETS = ("moons", "rings", "checkerboard")
TOY_BATCH = 256


def toy_entries() -> list[Entry]:
    torch.manual_seed(0)
    flows = {
        f"pyro-flowkit iresnet(2, {BLOCKS}, {HIDDEN})": fk.flows.iresnet(
            2, num_blocks=BLOCKS, hidden_dims=HIDDEN
        ),
        f"pyro-flowkit residual_flow(2, {BLOCKS}, {HIDDEN})": fk.flows.residual_flow(
            2, num_blocks=BLOCKS, hidden_dims=HIDDEN
        ),
        "pyro-flowkit realnvp(2, 8 layers, (90, 90), dropout=0)": fk.flows.realnvp(
            2, num_layers=8, hidden_dims=(90, 90), dropout=0.0
        ),
    }
    entries = []
    for name, flow in flows.items():
        d = fk.flows.flow_distribution(flow, 2)
        entries.append(Entry(name, flow, exact_when_eval(flow, d.log_prob)))
    return entries


@torch.no_grad()
def test_nll(e: Entry, test: Tensor) -> float:
    e.module.eval()
    nll = torch.cat([-e.log_prob(x) for x in test.split(1000)]).mean().item()
    e.module.train()
    return nll


def toy_table(steps: int, n_train: int, n_test: int) -> str:
    rows: dict[str, dict[str, str]] = {}
    params: dict[str, int] = {}
    times: dict[str, list[float]] = {}
    for name in TOY_SETS:
        train = fk.data.toy_2d(name, n_train, 0)
        test = fk.data.toy_2d(name, n_test, 1)
        entries = toy_entries()
        g = torch.Generator().manual_seed(0)
        batches = fk.inference.minibatches(train, TOY_BATCH, g)
        zero = torch.zeros(())
        for step in range(1, steps + 1):
            x = next(batches)
            k = step % len(entries)
            for e in entries[k:] + entries[:k]:
                if e.failed_at is None:
                    train_step(e, x, zero, step)
        for e in entries:
            nll = f"failed at {e.failed_at}" if e.failed_at else f"{test_nll(e, test):.3f}"
            rows.setdefault(e.name, {})[name] = nll
            params[e.name] = n_params(e.module)
            times.setdefault(e.name, []).extend(e.times)
        print(f"{name}: " + ", ".join(f"{n} {r[name]}" for n, r in rows.items()), flush=True)
    lines = [
        "| model | params | " + " | ".join(f"{n} test NLL" for n in TOY_SETS) + " | step ms |",
        "|---" * (3 + len(TOY_SETS)) + "|",
    ]
    for name, r in rows.items():
        ms = statistics.median(times[name]) * 1e3 if times[name] else math.nan
        lines.append(
            f"| {name} | {params[name]:,} | "
            + " | ".join(r[n] for n in TOY_SETS)
            + f" | {ms:.1f} |"
        )
    return "\n".join(lines)


DIGITS_HIDDEN = (88, 88)  # 4 blocks: about 77k parameters, as our glow (76k)


def _digits_residual(name: str, builder: Callable) -> Callable[[], Entry]:
    def build() -> Entry:
        flow = builder(DIM, num_blocks=BLOCKS, hidden_dims=DIGITS_HIDDEN)
        d = fk.flows.flow_distribution(flow, DIM)
        return Entry(name, flow, exact_when_eval(flow, d.log_prob))

    return build


BUILDERS["residual_flow"] = _digits_residual(
    f"pyro-flowkit residual_flow(64, {BLOCKS}, {DIGITS_HIDDEN})", fk.flows.residual_flow
)
BUILDERS["iresnet"] = _digits_residual(
    f"pyro-flowkit iresnet(64, {BLOCKS}, {DIGITS_HIDDEN})", fk.flows.iresnet
)
DIGITS_MODELS = ["residual_flow", "iresnet", "ours-small", "glow"]


def density_suite(args: argparse.Namespace) -> str:
    start = time.time()
    n_train, n_test = (2000, 500) if args.quick else (TOY_TRAIN, TOY_TEST)
    toys = toy_table(args.steps, n_train, n_test)
    toy_seconds = time.time() - start
    coeff = layer_coeffs(fk.flows.iresnet(2, hidden_dims=HIDDEN))
    source = "" if args.quick else " (the demo's sizes and seeds)"
    eval_at = sorted({s for s in (300, 1000) if s < args.steps} | {args.steps})
    entries = run_digits(DIGITS_MODELS, args.steps, eval_at)
    digits = digits_table(entries, eval_at)
    text = (
        "### Density: toy data and digits (`--suite density`)\n\n"
        f"2-D toy data: {n_train} training and {n_test} test points{source}, batch "
        f"{TOY_BATCH}, Adam 1e-3, {args.steps} steps, the models taking turns on the same batches; "
        "test NLL in nats. `iresnet`: ELU, 5-term truncated series, no ActNorm; `residual_flow`: "
        "LipSwish, roulette with 5 terms always computed, ActNorm; both with their default "
        f"`lipschitz=0.9` (each of the 3 layers of g normalised to {coeff}) and Neumann "
        'gradient, scored in `eval()` mode with `logdet="exact"`. '
        "`realnvp` as the demo's 2-D model but narrower, to match the size. "
        f"This part took {toy_seconds:.0f} s.\n\n"
        + toys
        + "\n\nDigits with the protocol and code of `digits_flows.py` (logit preprocessing, fresh "
        f"dequantisation per batch, batch 128, {args.steps} steps, models taking turns; test "
        "bits/dim over 300 images and 4 noise draws): residual flows on 64-vectors, our vector "
        "`realnvp` with hidden widths (64, 64), our `glow` on (1, 8, 8) images with its defaults. "
        "Every model is ours, so the last column is relative to the fastest model.\n\n" + digits
    )
    return text + footer(command(args), start)


# --------------------------------------------------------------------------------------------


def command(args: argparse.Namespace) -> str:
    """The command line that reproduces a section (``--results`` left out)."""
    cmd = "python benchmarks/residual_flows.py"
    if args.suite != "all":
        cmd += f" --suite {args.suite}"
    if args.quick:
        cmd += " --quick"
    for flag in ("steps", "rounds"):
        if getattr(args, f"{flag}_given"):
            cmd += f" --{flag} {getattr(args, flag)}"
    if args.threads != 1:
        cmd += f" --threads {args.threads}"
    if args.device != default_device():
        cmd += f" --device {args.device}"
    return cmd


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["speed", "density", "spectral", "all"], default="all")
    parser.add_argument("--steps", type=int, help="training steps of the density suite (2000)")
    parser.add_argument("--rounds", type=int, help="timed rounds of the speed suite (100)")
    parser.add_argument("--results", type=Path, help="update this markdown file's sections")
    parser.add_argument("--quick", action="store_true", help="tiny settings, for a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default=default_device(), help="of the speed suite")
    args = parser.parse_args()
    args.steps_given, args.rounds_given = args.steps is not None, args.rounds is not None
    if args.steps is None:
        args.steps = 20 if args.quick else 2000
    if args.rounds is None:
        args.rounds = 3 if args.quick else 100
    torch.set_num_threads(args.threads)
    run_suites(
        args,
        {"speed": speed_suite, "spectral": spectral_suite, "density": density_suite},
        "residual",
    )


if __name__ == "__main__":
    main()
