r"""Words: a tokenizer and a vocabulary that maps words to integer ids, built in one streaming
pass over a corpus.

The vocabulary keeps the words seen at least ``min_count`` times, most frequent first (ties in
alphabetical order), so id 0 is the most frequent word and the first :math:`k` ids are the
:math:`k` most frequent words. Its counts are the unigram counts :math:`n_i` from which
:math:`P(i) = n_i / \sum_k n_k`, the marginal of the simpler GloVe's PMI in the reference code.

References:
    | GloVe: Global Vectors for Word Representation (Pennington, Socher & Manning, 2014)
    | https://nlp.stanford.edu/pubs/glove.pdf
    | Su Jianlin, a simpler GloVe (2017) https://kexue.fm/archives/4667 and the reference code
    | https://github.com/bojone/simpler_glove
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from pyro_flowkit.validation import check_choice, check_count

__all__ = ["Vocabulary", "tokenize"]

# letters and digits; an apostrophe inside a word keeps it whole ("don't"); "_" separates
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str, lower: bool = True) -> list[str]:
    r"""The words of ``text``: maximal runs of letters and digits (any script), an apostrophe
    between two such runs kept inside the word, lower-cased unless ``lower=False``.
    Punctuation, underscores and white space separate words; the typographic apostrophe ’ counts
    as '.

    Example:
        >>> tokenize("Don't split GloVe's 2014 paper_title, Zoë!")
        ["don't", 'split', "glove's", '2014', 'paper', 'title', 'zoë']
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    text = text.replace("\u2019", "'")
    return _TOKEN.findall(text.lower() if lower else text)


class Vocabulary:
    r"""Words seen at least ``min_count`` times in a corpus, with their counts, most frequent
    first; at most ``max_size`` of them (the most frequent).

    :meth:`fit` counts a corpus (any iterable of token sequences, read once, so a generator
    over a file larger than memory works) and :meth:`partial_fit` adds more; the ids follow
    the counts of everything seen so far. :meth:`encode` maps tokens to a ``LongTensor`` of
    ids, dropping unknown words (as GloVe's ``cooccur`` and word2vec do, so they do not hold
    a place in a window) or marking them ``-1``.

    Arguments:
        min_count: the least number of occurrences a word needs to be kept.
        max_size: keep only this many words (``None``: all).

    References:
        | GloVe: Global Vectors for Word Representation (Pennington et al., 2014)
        | https://nlp.stanford.edu/pubs/glove.pdf

    Example:
        >>> vocab = Vocabulary(min_count=2).fit([["a", "rose", "is", "a", "rose"], ["is", "it"]])
        >>> vocab.words, vocab.counts.tolist()
        (['a', 'is', 'rose'], [2, 2, 2])
        >>> vocab.encode(["a", "rose", "it", "is"])
        tensor([0, 2, 1])
        >>> vocab.encode(["a", "rose", "it", "is"], unknown="mark")
        tensor([ 0,  2, -1,  1])
    """

    def __init__(self, min_count: int = 5, max_size: int | None = None) -> None:
        self.min_count = check_count("min_count", min_count)
        self.max_size = None if max_size is None else check_count("max_size", max_size)
        self._counter: Counter[str] = Counter()
        self._words: list[str] | None = None
        self._counts: list[int] = []
        self._index: dict[str, int] = {}

    # ---------------------------------------------------------------- building
    def fit(self, documents: Iterable[Sequence[str]]) -> Vocabulary:
        """Count the tokens of ``documents`` (each a sequence of tokens) from scratch."""
        self._counter = Counter()
        return self.partial_fit(documents)

    def partial_fit(self, documents: Iterable[Sequence[str]]) -> Vocabulary:
        """Add the tokens of ``documents`` to the counts."""
        if isinstance(documents, str):
            raise TypeError("documents: expected an iterable of token sequences, got a str")
        for tokens in documents:
            if isinstance(tokens, str):
                raise TypeError(
                    "documents: expected token sequences (e.g. tokenize(text)), got a str"
                )
            self._counter.update(tokens)
        self._words = None
        return self

    @classmethod
    def from_words(cls, words: Sequence[str], counts: Sequence[int] | None = None) -> Vocabulary:
        """A vocabulary holding exactly ``words`` in this order (ids ``0..len-1``), with their
        ``counts`` (default all 1), e.g. to rebuild a saved one."""
        counts = [1] * len(words) if counts is None else [int(c) for c in counts]
        if len(counts) != len(words):
            raise ValueError(
                f"counts: expected {len(words)} counts, one per word, got {len(counts)}"
            )
        if len(set(words)) != len(words):
            raise ValueError("words: expected distinct words, got duplicates")
        vocab = cls(min_count=1)
        vocab._counter = Counter(dict(zip(words, counts, strict=True)))
        vocab._words, vocab._counts = list(words), counts
        vocab._index = {w: i for i, w in enumerate(words)}
        return vocab

    def _build(self) -> None:
        kept = [(w, c) for w, c in self._counter.items() if c >= self.min_count]
        kept.sort(key=lambda item: (-item[1], item[0]))
        if self.max_size is not None:
            kept = kept[: self.max_size]
        self._words = [w for w, _ in kept]
        self._counts = [c for _, c in kept]
        self._index = {w: i for i, w in enumerate(self._words)}

    # ---------------------------------------------------------------- lookups
    def _ready(self) -> None:
        if self._words is None:
            self._build()

    @property
    def words(self) -> list[str]:
        """The kept words, most frequent first (a word's id is its position)."""
        self._ready()
        return list(self._words)

    @property
    def counts(self) -> Tensor:
        """``LongTensor`` of the kept words' counts, in id order."""
        self._ready()
        return torch.tensor(self._counts, dtype=torch.long)

    @property
    def num_tokens(self) -> int:
        """How many tokens were counted, kept words or not."""
        return sum(self._counter.values())

    @property
    def num_types(self) -> int:
        """How many distinct words were counted, kept or not."""
        return len(self._counter)

    def __len__(self) -> int:
        self._ready()
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        self._ready()
        return word in self._index

    def __getitem__(self, word: str) -> int:
        """The id of ``word`` (``KeyError`` naming it when it is not kept)."""
        self._ready()
        try:
            return self._index[word]
        except KeyError:
            raise KeyError(f"word: {word!r} is not in the vocabulary") from None

    def get(self, word: str, default: int = -1) -> int:
        """The id of ``word``, or ``default`` when it is not kept."""
        self._ready()
        return self._index.get(word, default)

    def encode(self, tokens: Sequence[str], unknown: str = "drop") -> Tensor:
        """The ids of ``tokens`` as a ``LongTensor``; unknown words are dropped
        (``unknown="drop"``) or marked ``-1`` (``"mark"``: they keep their place)."""
        check_choice("unknown", unknown, ("drop", "mark"))
        if isinstance(tokens, str):
            raise TypeError("tokens: expected a sequence of tokens, got a str")
        self._ready()
        ids = [self._index.get(t, -1) for t in tokens]
        if unknown == "drop":
            ids = [i for i in ids if i >= 0]
        return torch.tensor(ids, dtype=torch.long)

    def encode_documents(
        self, documents: Iterable[Sequence[str]], unknown: str = "drop"
    ) -> Iterator[Tensor]:
        """:meth:`encode` each document in turn (lazily: a stream in, a stream out)."""
        for tokens in documents:
            yield self.encode(tokens, unknown)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The words of ``ids`` (``-1`` reads ``"<unk>"``)."""
        self._ready()
        return ["<unk>" if int(i) < 0 else self._words[int(i)] for i in ids]

    def __repr__(self) -> str:
        return (
            f"Vocabulary({len(self)} words, min_count={self.min_count}, "
            f"max_size={self.max_size}, {self.num_tokens} tokens counted)"
        )
