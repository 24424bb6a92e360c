r"""Word-vector benchmarks: word similarity (WordSim-353, SimLex-999) by Spearman's correlation,
and the Google analogy questions by 3CosAdd accuracy.

The data files are read from this package's ``text/data/wordbench`` folder when they ship there,
else from inside gensim's wheel (``gensim/test/test_data``: ``wordsim353.tsv``,
``simlex999.txt``, ``questions-words.txt``; the extra ``bench``); nothing is downloaded. Any
file in the same format can be given by path. The scores work on any ``(V, D)`` tensor of
vectors with its list of words (this library's, or gensim's ``KeyedVectors.vectors`` and
``index_to_key``), so that different models are scored by the same code. Pairs and questions
are lower-cased, as :func:`~pyro_flowkit.text.words.tokenize` lower-cases the corpus, and
those with a word outside the vocabulary are left out and counted (the coverage).

References:
    | Placing Search in Context: the Concept Revisited (Finkelstein et al., 2002)
    | https://doi.org/10.1145/503104.503110
    | SimLex-999: Evaluating Semantic Models with (Genuine) Similarity Estimation (Hill, Reichart
    | & Korhonen, 2015) https://doi.org/10.1162/COLI_a_00237
    | Efficient Estimation of Word Representations in Vector Space (Mikolov, Chen, Corrado & Dean,
    | 2013) https://arxiv.org/abs/1301.3781
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from pyro_flowkit.text.corpora import BENCH_EXTRA, gensim_data_dir
from pyro_flowkit.text.sts import spearman
from pyro_flowkit.validation import check_count

__all__ = [
    "ANALOGIES",
    "PACKAGE_DATA",
    "WORD_PAIRS",
    "Analogies",
    "WordPairs",
    "analogy_accuracy",
    "benchmark_folders",
    "load_analogies",
    "load_word_pairs",
    "word_similarity",
]

WORD_PAIRS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
ANALOGIES = {"questions-words": "questions-words.txt"}
PACKAGE_DATA = Path(__file__).resolve().parent / "data" / "wordbench"


def benchmark_folders() -> list[Path]:
    """Where the benchmarks' files are looked for, in order: this package's
    ``text/data/wordbench`` folder, then gensim's test data (when gensim is installed).

    Example:
        >>> benchmark_folders()[0].name
        'wordbench'
    """
    gensim_folder = gensim_data_dir()
    return [PACKAGE_DATA] + ([] if gensim_folder is None else [gensim_folder])


def _data_file(name: str | Path, known: dict[str, str]) -> Path:
    if isinstance(name, Path) or name not in known:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"{name}: expected one of {tuple(known)} or a file, got neither"
            )
        return path
    for folder in benchmark_folders():
        if (folder / known[name]).is_file():
            return folder / known[name]
    raise FileNotFoundError(
        f"{name}: the benchmark's file {known[name]} is neither in {PACKAGE_DATA} nor in "
        f"gensim's wheel, which is not installed; {BENCH_EXTRA}"
    )


@dataclass(frozen=True)
class WordPairs:
    """Word pairs with human similarity scores."""

    pairs: list[tuple[str, str]]
    scores: Tensor

    def __len__(self) -> int:
        return len(self.pairs)


def load_word_pairs(name: str | Path = "wordsim353") -> WordPairs:
    """WordSim-353 (``"wordsim353"``), SimLex-999 (``"simlex999"``) or a file of lines
    ``word1<TAB>word2<TAB>score`` (``#`` comments), lower-cased.

    References:
        | Placing Search in Context: the Concept Revisited (Finkelstein et al., 2002)
        | https://doi.org/10.1145/503104.503110
        | SimLex-999 (Hill, Reichart & Korhonen, 2015) https://doi.org/10.1162/COLI_a_00237

    Example:
        >>> pairs = load_word_pairs("wordsim353")  # doctest: +SKIP
        >>> len(pairs), pairs.pairs[0]  # doctest: +SKIP
        (353, ('love', 'sex'))
    """
    path = _data_file(name, WORD_PAIRS)
    pairs, scores = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        a, b, score = line.split("\t")[:3]
        pairs.append((a.strip().lower(), b.strip().lower()))
        scores.append(float(score))
    return WordPairs(pairs, torch.tensor(scores, dtype=torch.float64))


@dataclass(frozen=True)
class Analogies:
    """Analogy questions ``a : b :: c : d`` as ``(N, 4)`` words, each with its section."""

    questions: list[tuple[str, str, str, str]]
    sections: list[str]

    def __len__(self) -> int:
        return len(self.questions)


def load_analogies(path: str | Path = "questions-words") -> Analogies:
    """The Google analogy questions (``"questions-words"``: 19544 questions in 14 sections, 5
    semantic, 9 syntactic ``gram*``) or a file in their format, lower-cased.

    References:
        | Efficient Estimation of Word Representations in Vector Space (Mikolov et al., 2013)
        | https://arxiv.org/abs/1301.3781

    Example:
        >>> analogies = load_analogies()  # doctest: +SKIP
        >>> len(analogies), analogies.questions[0]  # doctest: +SKIP
        (19544, ('athens', 'greece', 'baghdad', 'iraq'))
    """
    path = _data_file(path, ANALOGIES)
    questions, sections, section = [], [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            section = line[1:].strip()
        elif line.strip():
            a, b, c, d = line.lower().split()
            questions.append((a, b, c, d))
            sections.append(section)
    return Analogies(questions, sections)


def _index(words: Sequence[str], vectors: Tensor) -> dict[str, int]:
    if not isinstance(vectors, Tensor) or vectors.dim() != 2 or len(vectors) != len(words):
        shape = tuple(vectors.shape) if isinstance(vectors, Tensor) else type(vectors).__name__
        raise ValueError(f"vectors: expected ({len(words)}, D), one row per word, got {shape}")
    return {w: i for i, w in enumerate(words)}


def word_similarity(vectors: Tensor, words: Sequence[str], pairs: WordPairs) -> dict[str, float]:
    r"""Spearman's correlation between the human scores and the cosines
    :math:`\cos(v_a, v_b)` over the pairs whose two words are in ``words``:
    ``{"spearman", "covered", "total"}``.

    References:
        | Placing Search in Context: the Concept Revisited (Finkelstein et al., 2002)
        | https://doi.org/10.1145/503104.503110
        | SimLex-999 (Hill, Reichart & Korhonen, 2015) https://doi.org/10.1162/COLI_a_00237

    Example:
        >>> vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> pairs = WordPairs([("a", "b"), ("a", "c"), ("a", "zebra"), ("b", "c")],
        ...                   torch.tensor([9.0, 1.0, 5.0, 2.0]))
        >>> word_similarity(vectors, ["a", "b", "c"], pairs)
        {'spearman': 1.0, 'covered': 3, 'total': 4}
    """
    index = _index(words, vectors)
    kept = [k for k, (a, b) in enumerate(pairs.pairs) if a in index and b in index]
    if len(kept) < 2:
        raise ValueError(f"pairs: expected 2 or more pairs in the vocabulary, got {len(kept)}")
    a = vectors[[index[pairs.pairs[k][0]] for k in kept]].double()
    b = vectors[[index[pairs.pairs[k][1]] for k in kept]].double()
    cosines = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12)
    rho = spearman(cosines, pairs.scores[kept].to(cosines.device))
    return {"spearman": rho, "covered": len(kept), "total": len(pairs)}


def analogy_accuracy(
    vectors: Tensor,
    words: Sequence[str],
    analogies: Analogies,
    restrict: int | None = None,
    batch_size: int = 1024,
) -> dict[str, float | int | None]:
    r"""3CosAdd accuracy on the questions whose four words are among the first ``restrict``
    of ``words`` (all when ``None``; Mikolov et al. use the 30k most frequent): the answer to
    :math:`a : b :: c : ?` is

    .. math::

        \hat d = \arg\max_{w \notin \{a, b, c\}} \cos(\hat v_w, \hat v_b - \hat v_a + \hat v_c),
        \qquad \hat v = v / \|v\|,

    searched over the same words. Returns ``{"accuracy", "semantic", "syntactic", "correct",
    "covered", "total"}`` (the sections named ``gram*`` are the syntactic ones; an accuracy over
    no covered question is ``None``, not NaN).

    References:
        | Efficient Estimation of Word Representations in Vector Space (Mikolov et al., 2013)
        | https://arxiv.org/abs/1301.3781
        | Linguistic Regularities in Sparse and Explicit Word Representations (Levy & Goldberg,
        | 2014) https://aclanthology.org/W14-1618 (3CosAdd)

    Example:
        >>> words = ["man", "woman", "king", "queen", "apple"]  # gender, gender, royalty
        >>> vectors = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, -2]])
        >>> q = Analogies([("man", "king", "woman", "queen"), ("man", "king", "pear", "x")],
        ...               ["family", "family"])
        >>> scores = analogy_accuracy(vectors, words, q)
        >>> scores["accuracy"], scores["covered"], scores["total"]
        (1.0, 1, 2)
    """
    index = _index(words, vectors)
    if restrict is not None:
        index = {w: i for w, i in index.items() if i < check_count("restrict", restrict)}
    batch_size = check_count("batch_size", batch_size)
    kept = [k for k, q in enumerate(analogies.questions) if all(w in index for w in q)]
    unit = torch.nn.functional.normalize(
        vectors[: len(words) if restrict is None else restrict].float(), dim=-1
    )
    ids = torch.tensor([[index[w] for w in analogies.questions[k]] for k in kept], dtype=torch.long)
    ids = ids.reshape(-1, 4).to(unit.device)
    hits = torch.zeros(len(kept), dtype=torch.bool)
    for start in range(0, len(kept), batch_size):
        q = ids[start : start + batch_size]
        scores = (unit[q[:, 1]] - unit[q[:, 0]] + unit[q[:, 2]]) @ unit.T
        scores.scatter_(1, q[:, :3], float("-inf"))
        hits[start : start + len(q)] = (scores.argmax(1) == q[:, 3]).cpu()
    syntactic = torch.tensor(
        [analogies.sections[k].startswith("gram") for k in kept], dtype=torch.bool
    )
    return {
        "accuracy": _mean(hits),
        "semantic": _mean(hits[~syntactic]),
        "syntactic": _mean(hits[syntactic]),
        "correct": int(hits.sum()),
        "covered": len(kept),
        "total": len(analogies),
    }


def _mean(hits: Tensor) -> float | None:
    return float(hits.double().mean()) if len(hits) else None
