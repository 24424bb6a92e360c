"""``flowkit glove``: Su's simpler GloVe trained on the English text available offline, its nearest
neighbours and its word-benchmark scores.

The corpus is :func:`~pyro_flowkit.text.corpora.load_corpus` (STS-benchmark's sentences and
Python's documentation always; the Lee corpus and a Wikipedia sample when gensim, the extra
``bench``, is installed). Words are :func:`~pyro_flowkit.text.words.tokenize`'d, kept when seen
``--min-count`` times, counted in a symmetric window, and :class:`~pyro_flowkit.models.glove.
SimplerGloVe` is fitted to the counts. WordSim-353, SimLex-999 and the Google analogies also come
from gensim's wheel: without it the command trains and prints neighbours, and says that the
scores need the extra.

Like ``demo.py`` this module sits on top of the library. Wiring: ``add_parser(subparsers)``
registers the sub-command and ``run(args)`` runs it; ``demo_step(out, quick)`` is the demo's
step.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pyro_flowkit.models.glove import METRICS, SimplerGloVe
from pyro_flowkit.text.cooccurrence import cooccurrence
from pyro_flowkit.text.corpora import SOURCES, load_corpus
from pyro_flowkit.text.words import Vocabulary, tokenize
from pyro_flowkit.text.wordsim import (
    WORD_PAIRS,
    analogy_accuracy,
    load_analogies,
    load_word_pairs,
    word_similarity,
)

__all__ = [
    "QUERIES",
    "GloveSettings",
    "add_parser",
    "counts_of",
    "demo_step",
    "run",
    "score_words",
    "train_glove",
]

QUERIES = ("king", "france", "water", "music", "good", "function")


@dataclass
class GloveSettings:
    """What ``flowkit glove`` trains: the corpus, the counts and the model."""

    sources: tuple[str, ...] = SOURCES
    min_count: int = 5
    window: int = 5
    dim: int = 50
    variant: int = 0
    loss: str = "pmi"
    epochs: int = 10
    batch_size: int = 4096
    lr: float | None = 0.3  # None: the model's (0.1, the reference's per-entry rate)
    seed: int = 0
    queries: tuple[str, ...] = QUERIES
    topn: int = 8
    extra: dict = field(default_factory=dict)


def counts_of(
    documents: Sequence[str], min_count: int, window: int
) -> tuple[Vocabulary, torch.Tensor, dict]:
    """Tokenise ``documents``, keep the words seen ``min_count`` times and count them in a
    symmetric ``window``; returns the vocabulary, the sparse counts and their sizes.

    Example:
        >>> vocab, counts, sizes = counts_of(["a cat sat", "a dog sat"] * 5, 2, 2)
        >>> vocab.words, sizes["nonzero"]
        (['a', 'sat', 'cat', 'dog'], 10)
    """
    start = time.perf_counter()
    tokens = [tokenize(d) for d in documents]
    vocab = Vocabulary(min_count=min_count).fit(tokens)
    counts = cooccurrence(vocab.encode_documents(tokens), window=window, num_words=len(vocab))
    sizes = {
        "documents": len(tokens),
        "tokens": vocab.num_tokens,
        "types": vocab.num_types,
        "vocabulary": len(vocab),
        "nonzero": counts._nnz(),
        "seconds": time.perf_counter() - start,
    }
    return vocab, counts, sizes


def score_words(vectors: torch.Tensor, words: Sequence[str]) -> dict:
    """WordSim-353 and SimLex-999 (Spearman, coverage) and the Google analogies (3CosAdd
    accuracy, coverage) of ``vectors``; ``{"skipped": reason}`` without gensim's data files."""
    try:
        benchmarks = {name: load_word_pairs(name) for name in WORD_PAIRS}
        analogies = load_analogies()
    except FileNotFoundError as error:
        return {"skipped": str(error)}
    out: dict = {name: word_similarity(vectors, words, p) for name, p in benchmarks.items()}
    out["analogy"] = analogy_accuracy(vectors, words, analogies)
    return out


def train_glove(settings: GloveSettings, progress: bool = True) -> tuple[SimplerGloVe, dict]:
    """Load the corpus, count, fit; returns the model and a report (corpus sizes, seconds)."""
    corpus = load_corpus(settings.sources)
    vocab, counts, sizes = counts_of(corpus.documents, settings.min_count, settings.window)
    model = SimplerGloVe(settings.dim, settings.variant, loss=settings.loss, vocabulary=vocab,
                         **settings.extra)  # fmt: skip
    start = time.perf_counter()
    history = model.fit(counts, epochs=settings.epochs, batch_size=settings.batch_size,
                        lr=settings.lr, seed=settings.seed, progress=progress)  # fmt: skip
    report = {
        "settings": asdict(settings),
        "corpus": {"sources": corpus.sizes, "skipped": corpus.skipped, **sizes},
        "fit_seconds": time.perf_counter() - start,
        "final_cost": history.metrics["cost"][-1] if history else float("nan"),
    }
    return model, report


def _neighbours(model: SimplerGloVe, queries: Sequence[str], topn: int) -> dict[str, list[str]]:
    return {
        q: [w for w, _ in model.most_similar(q, topn)] for q in queries if q in model.vocabulary
    }


def _print_report(report: dict) -> None:
    c = report["corpus"]
    print(f"corpus: {c['tokens']} tokens, {c['types']} types, {c['documents']} documents from "
          f"{c['sources']}; {c['vocabulary']} words seen >= {report['settings']['min_count']} "
          f"times, {c['nonzero']} non-zero counts ({c['seconds']:.1f} s)")  # fmt: skip
    for source, reason in c["skipped"].items():
        print(f"  skipped {source}: {reason}")
    print(f"fit: {report['fit_seconds']:.1f} s, final cost per entry {report['final_cost']:.4f}")
    print("nearest neighbours (cosine after the context metric):")
    for word, near in report["neighbours"].items():
        print(f"  {word}: {', '.join(near)}")
    scores = report["scores"]
    if "skipped" in scores:
        print(f"word-benchmark scores skipped: {scores['skipped']}")
        return
    for metric, row in scores.items():
        cells = [f"{n} {row[n]['spearman']:.3f} ({row[n]['covered']}/{row[n]['total']} pairs)"
                 for n in WORD_PAIRS]  # fmt: skip
        a = row["analogy"]
        accuracy = "-" if a["accuracy"] is None else f"{a['accuracy']:.3f}"
        cells.append(f"analogies {accuracy} ({a['covered']}/{a['total']} questions)")
        print(f"{metric}: " + "; ".join(cells))


def glove_report(settings: GloveSettings, out: Path | None, progress: bool = True) -> dict:
    """Train, look up neighbours, score every similarity metric, print, and write
    ``out/glove.pt`` and ``out/glove.json`` when ``out`` is given."""
    model, report = train_glove(settings, progress)
    report["neighbours"] = _neighbours(model, settings.queries, settings.topn)
    scores = {m: score_words(model.similarity_vectors(m), model.words) for m in METRICS}
    first = scores[METRICS[0]]
    report["scores"] = first if "skipped" in first else scores
    _print_report(report)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "glove.pt")
        (out / "glove.json").write_text(json.dumps(report, indent=2))
        print(f"wrote {out / 'glove.pt'} and {out / 'glove.json'}")
    return report


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``flowkit glove`` on the CLI's sub-command parsers; returns its parser."""
    from pyro_flowkit.app.cli import _batch_size, _checked, _directory, _lr, _seed_arg
    from pyro_flowkit.validation import check_count

    def count(name: str, minimum: int = 1) -> object:
        return _checked(int, lambda v: check_count(name, v, minimum=minimum))

    parser = subparsers.add_parser(
        "glove", help="Su's simpler GloVe on the offline English corpus: neighbours and scores"
    )
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--dim", type=count("dim"), default=50, help="vector size")
    parser.add_argument("--window", type=count("window"), default=5, help="words each side")
    parser.add_argument("--min-count", type=count("min_count"), default=5)
    parser.add_argument("--epochs", type=count("epochs", 0), default=10)
    parser.add_argument("--batch-size", type=_batch_size, default=4096, help="entries per step")
    parser.add_argument(
        "--lr", type=_lr, default=0.3, help="AdaGrad's rate (0.1 per entry in the reference code)"
    )
    parser.add_argument("--variant", type=int, choices=(0, 1, 2), default=0)
    parser.add_argument("--loss", choices=("pmi", "glove"), default="pmi")
    parser.add_argument("--words", nargs="+", default=list(QUERIES), help="words to look up")
    parser.add_argument("--topn", type=count("topn"), default=8)
    parser.add_argument("--seed", type=_seed_arg, default=0)
    parser.add_argument("--out", type=_directory, default=None, help="write the model here")
    parser.add_argument("--quick", action="store_true", help="STS sentences only, 5 epochs")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _settings(args: argparse.Namespace) -> GloveSettings:
    quick = {"sources": ("sts",), "epochs": 5} if args.quick else {}
    options = {
        "sources": tuple(args.sources), "min_count": args.min_count, "window": args.window,
        "dim": args.dim, "variant": args.variant, "loss": args.loss, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "queries": tuple(args.words),
        "topn": args.topn,
    }  # fmt: skip
    return GloveSettings(**{**options, **quick})


def run(args: argparse.Namespace) -> int:
    """Run ``flowkit glove``; 0 on success."""
    glove_report(_settings(args), args.out, progress=not args.no_progress)
    return 0


def demo_step(out: Path, quick: bool) -> dict:
    """The demo's GloVe step: ``flowkit glove`` with its defaults (``quick``: STS sentences
    only, 5 epochs), writing ``out/glove.pt`` and ``out/glove.json``."""
    settings = GloveSettings(sources=("sts",), epochs=5) if quick else GloveSettings()
    return glove_report(settings, out, progress=False)
