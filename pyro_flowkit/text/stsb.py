r"""STS-benchmark, shipped with the package: sentence pairs scored 0..5 for similarity.

The English STS-benchmark (Cer et al. 2017): 8628 pairs from news, captions and forums, split
into train (5749), dev (1500) and test (1379). The files, their ``LICENSE.txt`` (scores under
CC BY-SA 4.0; the sentences' sources have licences of their own, listed there) and ``readme.txt``
are in ``pyro_flowkit/text/data/stsbenchmark``, so no download is needed.

References:
    | SemEval-2017 Task 1: Semantic Textual Similarity Multilingual and Crosslingual Focused
    | Evaluation (Cer, Diab, Agirre, Lopez-Gazpio & Specia, 2017)
    | https://arxiv.org/abs/1708.00055
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

import torch
from torch import Tensor

from pyro_flowkit.validation import check_choice

__all__ = ["STS_SPLITS", "STSPairs", "load_sts_benchmark", "sts_sentences"]

STS_SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class STSPairs:
    """Sentence pairs with their gold similarity scores (0..5), and genre and source file."""

    sentences_a: list[str]
    sentences_b: list[str]
    scores: Tensor
    genres: list[str]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.scores)


def load_sts_benchmark(split: str = "test") -> STSPairs:
    r"""The STS-benchmark ``split`` (``"train"``, ``"dev"`` or ``"test"``) from the package data.

    Each line of the tab-separated files holds genre, file, year, id, score, sentence 1,
    sentence 2 and, on some lines, licence fields, which are ignored. Scores are float64.

    References:
        | SemEval-2017 Task 1: Semantic Textual Similarity (Cer et al., 2017)
        | https://arxiv.org/abs/1708.00055

    Example:
        >>> test = load_sts_benchmark("test")
        >>> len(test), test.sentences_a[0], float(test.scores[0])
        (1379, 'A girl is styling her hair.', 2.5)
    """
    check_choice("split", split, STS_SPLITS)
    path = resources.files("pyro_flowkit.text") / "data" / "stsbenchmark" / f"sts-{split}.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = [row for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    return STSPairs(
        sentences_a=[row[5] for row in rows],
        sentences_b=[row[6] for row in rows],
        scores=torch.tensor([float(row[4]) for row in rows], dtype=torch.float64),
        genres=[row[0] for row in rows],
        sources=[row[1] for row in rows],
    )


def sts_sentences(splits: tuple[str, ...] = STS_SPLITS) -> list[str]:
    """Every sentence of the ``splits`` (per split its first sentences, then its second ones),
    duplicates kept: the "target" corpus on which BERT-whitening and BERT-flow are fitted
    without the scores.

    Example:
        >>> len(sts_sentences())  # 2 x 8628 pairs
        17256
    """
    sentences: list[str] = []
    for split in splits:
        pairs = load_sts_benchmark(split)
        sentences += pairs.sentences_a + pairs.sentences_b
    return sentences
