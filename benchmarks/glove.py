"""Word vectors from the English text available offline: Su's simpler GloVe next to GloVe's loss
on the same counts and gensim's Word2Vec and FastText on the same tokens.

Corpus: ``pyro_flowkit.text.corpora.load_corpus()`` (STS-benchmark's distinct sentences, the
standard library's docstrings and pydoc topics, the Lee corpus and 206 Wikipedia articles from
gensim's test data), tokenised by ``pyro_flowkit.text.words.tokenize``; every model sees the same
token lists and keeps the words seen at least 5 times; the same window and dimension everywhere.

* suite ``words``: WordSim-353 and SimLex-999 (Spearman over the pairs in the vocabulary) and the
  Google analogies (3CosAdd over the covered questions), all scored by
  ``pyro_flowkit.text.wordsim`` on each model's vectors; training time of each.
* suite ``sts``: each STS-benchmark test sentence as the mean of its known words' vectors, scored
  by cosine raw and after ``transforms.whitening.Whitening`` fitted on all STS sentences (the
  "target" setting) or on the train split (``text.sts.sts_spearman``).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/glove.py [--suite words|sts|all] [--window 5]
        [--dim 50] [--epochs 10] [--lr 0.3] [--glove-lr 0.5] [--results FILE]
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import torch
from digits_flows import footer, write_results

from pyro_flowkit.app.glove import counts_of
from pyro_flowkit.models.glove import SimplerGloVe
from pyro_flowkit.text.corpora import load_corpus
from pyro_flowkit.text.sts import sts_spearman
from pyro_flowkit.text.stsb import STS_SPLITS, load_sts_benchmark
from pyro_flowkit.text.words import tokenize
from pyro_flowkit.text.wordsim import (
    analogy_accuracy,
    load_analogies,
    load_word_pairs,
    word_similarity,
)
from pyro_flowkit.transforms.whitening import Whitening

# (label, constructor options, similarity metrics to score)
OURS = [
    ("simpler GloVe, variant 0 (shared table)", {"variant": 0}, ("context", "whitened", "cosine")),
    ("simpler GloVe, variant 1 ([v, v~])", {"variant": 1}, ("context", "cosine")),
    ("simpler GloVe, variant 2 (v + v~)", {"variant": 2}, ("context", "cosine")),
    ("GloVe loss (biases, log X), v + v~", {"variant": 2, "loss": "glove"},
     ("cosine", "whitened", "context")),
]  # fmt: skip
METRIC_NAMES = {"context": "context metric", "whitened": "whitened", "cosine": "raw cosine"}


@functools.cache
def corpus(window: int, min_count: int) -> tuple:
    """Token lists, vocabulary, counts and sizes, once per run."""
    documents = load_corpus(strict=True)
    tokens = [tokenize(d) for d in documents.documents]
    vocab, counts, sizes = counts_of(documents.documents, min_count, window)
    return tokens, vocab, counts, {**sizes, "sources": documents.sizes}


def fit_ours(options: dict, args: argparse.Namespace) -> tuple[SimplerGloVe, float]:
    _, vocab, counts, _ = corpus(args.window, args.min_count)
    model = SimplerGloVe(args.dim, vocabulary=vocab, **options)
    lr = args.glove_lr if options.get("loss") == "glove" else args.lr
    start = time.process_time()
    model.fit(counts, epochs=args.epochs, batch_size=args.batch_size, lr=lr, seed=0,
              progress=False)  # fmt: skip
    return model, time.process_time() - start


def fit_gensim(kind: str, epochs: int, args: argparse.Namespace) -> tuple[object, float]:
    from gensim.models import FastText, Word2Vec

    tokens = corpus(args.window, args.min_count)[0]
    cls, sg = {"word2vec-sg": (Word2Vec, 1), "word2vec-cbow": (Word2Vec, 0),
               "fasttext-sg": (FastText, 1)}[kind]  # fmt: skip
    start = time.process_time()
    model = cls(tokens, vector_size=args.dim, window=args.window, min_count=args.min_count,
                sg=sg, epochs=epochs, workers=1, seed=0)  # fmt: skip
    return model.wv, time.process_time() - start


GENSIM = [  # (label, model, epochs: None for --gensim-epochs)
    ("gensim Word2Vec, skip-gram", "word2vec-sg", None),
    ("gensim Word2Vec, CBOW", "word2vec-cbow", None),
    ("gensim FastText, skip-gram", "fasttext-sg", None),
    ("gensim Word2Vec, skip-gram, as many epochs as ours", "word2vec-sg", "ours"),
]


@functools.cache
def trained(args_key: tuple) -> list[tuple[str, object, float]]:
    """Every model of the run, trained once: (label, model or KeyedVectors, seconds)."""
    args = argparse.Namespace(**dict(args_key))
    out = []
    for label, options, _ in OURS:
        model, seconds = fit_ours(options, args)
        out.append((label, model, seconds))
        print(f"trained {label} in {seconds:.0f} s", flush=True)
    for label, kind, epochs in GENSIM:
        epochs = {None: args.gensim_epochs, "ours": args.epochs}[epochs]
        kv, seconds = fit_gensim(kind, epochs, args)
        out.append((label, kv, seconds))
        print(f"trained {label} in {seconds:.0f} s", flush=True)
    return out


def _key(args: argparse.Namespace) -> tuple:
    return tuple(sorted((k, v) for k, v in vars(args).items() if k not in ("suite", "results")))


def space(model: object, metric: str) -> tuple[torch.Tensor, list[str]]:
    if isinstance(model, SimplerGloVe):
        return model.similarity_vectors(metric), model.words
    return torch.from_numpy(model.vectors), list(model.index_to_key)


def score_row(label: str, metric: str, model: object, seconds: float) -> str:
    vectors, words = space(model, metric)
    cells = []
    for name in ("wordsim353", "simlex999"):
        s = word_similarity(vectors, words, load_word_pairs(name))
        cells.append(f"{s['spearman']:.3f} ({s['covered']}/{s['total']})")
    a = analogy_accuracy(vectors, words, load_analogies())
    percent = ["-" if a[k] is None else f"{100 * a[k]:.1f}"
               for k in ("accuracy", "semantic", "syntactic")]  # fmt: skip
    cells.append(" / ".join(percent) + f" ({a['covered']}/{a['total']})")
    return f"| {label} | {METRIC_NAMES[metric]} | " + " | ".join(cells) + f" | {seconds:.0f} |"


def corpus_line(args: argparse.Namespace) -> str:
    sizes = corpus(args.window, args.min_count)[3]
    return (
        f"Corpus: {sizes['tokens']:,} tokens, {sizes['types']:,} types in {sizes['documents']:,} "
        f"documents ({', '.join(f'{k} {v:,}' for k, v in sizes['sources'].items())}); "
        f"{sizes['vocabulary']:,} words seen at least {args.min_count} times; window "
        f"{args.window}: {sizes['nonzero']:,} non-zero counts ({sizes['seconds']:.0f} s to "
        f"tokenise and count). This is small: published word vectors are trained on 10^9 tokens "
        f"or more, so every score here is far below published ones."
    )


def words_suite(args: argparse.Namespace) -> str:
    start = time.time()
    models = trained(_key(args))
    lines = [
        "## Word vectors on the offline corpus (`benchmarks/glove.py --suite words`)",
        "",
        corpus_line(args),
        "",
        f"Dimension {args.dim}; ours: {args.epochs} epochs of AdaGrad (lr {args.lr}, GloVe loss "
        f"{args.glove_lr}; accumulators from 1) on minibatches of {args.batch_size} entries, x_max "
        "100, alpha 0.75 (on minibatches the reference's per-entry lr 0.1, and GloVe's 0.05, "
        "learn slowly: the lr here gave the lowest training cost after 4 epochs among 0.1/0.3 "
        "and 0.05/0.2/0.5 of variant 2, the criterion for the choice); "
        f"gensim: {args.gensim_epochs} epochs (its default; one row with {args.epochs}), "
        "1 worker, negative sampling 5. Spearman (pairs covered/total); analogies: accuracy % "
        "all / semantic / syntactic (questions covered/total). Similarity: raw cosine; the "
        "reference code's context metric (cosine after x -> x G^1/2, G the centred Gram of the "
        "vectors); whitened (cosine after BERT-whitening). Train s: CPU seconds of the process "
        "(time.process_time: the machine's cores are shared, so wall time says little), ours the "
        "fit alone (counting above), gensim's its vocabulary scan and training (1 worker).",
        "",
        "| model | similarity | WordSim-353 | SimLex-999 | analogies (%) | train CPU s |",
        "|---|---|---|---|---|---|",
    ]
    options = {label: metrics for label, _, metrics in OURS}
    for label, model, seconds in models:
        for metric in options.get(label, ("cosine",)):
            lines.append(score_row(label, metric, model, seconds))
    return "\n".join(lines) + footer(
        f"python benchmarks/glove.py --suite words {_flags(args)}".rstrip(), start
    )


def sentence_means(model: object, sentences: list[str]) -> torch.Tensor:
    if isinstance(model, SimplerGloVe):
        return model.sentence_vectors(sentences).double()
    out = torch.zeros(len(sentences), model.vector_size, dtype=torch.float64)
    for k, sentence in enumerate(sentences):
        known = [w for w in tokenize(sentence) if w in model.key_to_index]
        if known:
            out[k] = torch.from_numpy(model[known].mean(0)).double()
    return out


def sts_row(label: str, model: object) -> str:
    pairs = {s: load_sts_benchmark(s) for s in STS_SPLITS}
    vectors = {s: (sentence_means(model, p.sentences_a), sentence_means(model, p.sentences_b))
               for s, p in pairs.items()}  # fmt: skip
    test, scores = vectors["test"], pairs["test"].scores
    target = Whitening.from_data(torch.cat([v for pair in vectors.values() for v in pair]))
    train = Whitening.from_data(torch.cat(vectors["train"]))
    cells = [sts_spearman(*test, scores), sts_spearman(*test, scores, target.inv),
             sts_spearman(*test, scores, train.inv)]  # fmt: skip
    raw, whitened, whitened_train = (f"{100 * c:.2f}" for c in cells)
    dim = test[0].shape[-1]
    name = f"{label}, mean of word vectors ({dim}-d)"
    return f"| {name} | {raw} | {whitened} | - | - | {whitened_train} | - | - |"


def sts_suite(args: argparse.Namespace) -> str:
    start = time.time()
    models = trained(_key(args))
    lines = [
        "## Averaged word vectors on STS-benchmark (`benchmarks/glove.py --suite sts`)",
        "",
        "Spearman x 100 on the test split; each sentence is the mean of its in-vocabulary words' "
        "vectors (raw vectors of every model, no subword vectors for FastText), trained on the "
        "corpus of the `words` suite, which holds the STS sentences themselves (no scores). "
        "Columns as in the STS table of `flowkit sts`; whitening (target) is fitted on all "
        "17,256 sentences of train, dev and test, whitening (train) on the train split.",
        "",
        "| pooling | raw cosine | whitening (target) | whitening-256 | whitening-128 | "
        "whitening (train) | BERT-flow (target) | flow after whitening |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keep = {OURS[0][0], OURS[3][0], GENSIM[0][0], GENSIM[2][0]}
    lines += [sts_row(label, model) for label, model, _ in models if label in keep]
    return "\n".join(lines) + footer(
        f"python benchmarks/glove.py --suite sts {_flags(args)}".rstrip(), start
    )


def _flags(args: argparse.Namespace) -> str:
    defaults = {"window": 5, "dim": 50, "epochs": 10, "gensim_epochs": 5, "batch_size": 4096,
                "min_count": 5, "lr": 0.3, "glove_lr": 0.5}  # fmt: skip
    return " ".join(f"--{k.replace('_', '-')} {getattr(args, k)}" for k in defaults
                    if getattr(args, k) != defaults[k])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("words", "sts", "all"), default="all")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10, help="our models' epochs")
    parser.add_argument("--lr", type=float, default=0.3, help="AdaGrad's lr, PMI loss")
    parser.add_argument("--glove-lr", type=float, default=0.5, help="AdaGrad's lr, GloVe loss")
    parser.add_argument("--gensim-epochs", type=int, default=5, help="gensim's (its default)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    suites = {"words": words_suite, "sts": sts_suite}
    for name in suites if args.suite == "all" else [args.suite]:
        text = suites[name](args)
        print(text, flush=True)
        if args.results:
            write_results(args.results, text, f"glove_{name}")


if __name__ == "__main__":
    main()
