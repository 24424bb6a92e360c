r"""Word co-occurrence counts in a sliding window, as a sparse matrix, and their pointwise mutual
information.

:func:`cooccurrence` streams a corpus of word ids in chunks (on the CPU or a GPU), so the corpus
need not fit in memory, only the matrix: for every pair of positions :math:`s < t` of one
document with :math:`t - s \le w` it adds a weight to :math:`X_{a_s a_t}` and to
:math:`X_{a_t a_s}` (symmetric counts),

.. math::

    X_{ij} = \sum_{\text{documents}} \sum_{1 \le t - s \le w}
        \lambda(t - s) \left([a_s = i, a_t = j] + [a_s = j, a_t = i]\right),

with :math:`\lambda(d) = 1` (``weighting="uniform"``, the simpler GloVe's count) or
:math:`\lambda(d) = 1/d` (``"harmonic"``, GloVe's). :func:`pmi` turns counts into

.. math::

    \operatorname{PMI}_{ij} = \log \frac{P(i, j)}{P(i) P(j)}, \qquad
    P(i, j) = \frac{X_{ij}}{\sum_{kl} X_{kl}},

at the non-zero entries, with :math:`P(i)` the row sums of :math:`P(i, j)` (and :math:`P(j)`
its column sums) or given marginals such as unigram counts.

References:
    | GloVe: Global Vectors for Word Representation (Pennington, Socher & Manning, 2014)
    | https://nlp.stanford.edu/pubs/glove.pdf
    | Su Jianlin, a simpler GloVe (2017) https://kexue.fm/archives/4667, reference code
    | https://github.com/bojone/simpler_glove (``src/cooccur.c``: +1 per co-occurrence)
    | Neural Word Embedding as Implicit Matrix Factorization (Levy & Goldberg, 2014)
    | https://papers.nips.cc/paper/5477-neural-word-embedding-as-implicit-matrix-factorization
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from pyro_flowkit.validation import check_choice, check_count, check_finite_tensor

__all__ = ["cooccurrence", "log_marginals", "pmi", "sparse_counts"]

_BASE = 1 << 31  # a pair (i, j) is the key i * _BASE + j: ids below 2**31


def _as_ids(document: object) -> Tensor:
    ids = document if isinstance(document, Tensor) else torch.as_tensor(document)
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"documents: expected integer word ids, got dtype {ids.dtype}")
    if ids.dim() != 1:
        raise ValueError(
            f"documents: expected 1-D tensors of word ids, got shape {tuple(ids.shape)}"
        )
    return ids.long()


def _chunks(documents: Iterable[object], window: int, chunk_size: int) -> Iterator[Tensor]:
    """The corpus as one stream of ids cut into chunks of about ``chunk_size``, with ``window``
    separators (-1) after every document, so that no window spans two documents."""
    gap = torch.full((window,), -1, dtype=torch.long)
    pieces: list[Tensor] = []
    buffered = 0
    for document in documents:
        ids = _as_ids(document)
        for start in range(0, max(len(ids), 1), chunk_size):
            pieces.append(ids[start : start + chunk_size])
            buffered += len(pieces[-1])
            if buffered >= chunk_size:
                yield torch.cat(pieces)
                pieces, buffered = [], 0
        pieces.append(gap)
        buffered += window
    if pieces:
        yield torch.cat(pieces)


class _Totals:
    """Sorted unique pair keys with their summed weights, merged chunk by chunk."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.keys = torch.empty(0, dtype=torch.long, device=device)
        self.values = torch.empty(0, dtype=dtype, device=device)

    def add(self, keys: Tensor, values: Tensor) -> None:
        keys, inverse = torch.unique(torch.cat([self.keys, keys]), return_inverse=True)
        summed = torch.zeros(len(keys), dtype=self.values.dtype, device=keys.device)
        self.keys, self.values = (
            keys,
            summed.index_add_(0, inverse, torch.cat([self.values, values])),
        )


def _pairs(
    ext: Tensor, start: int, window: int, harmonic: bool, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Keys and weights of every pair whose later position is at or after ``start`` in ``ext``
    (the ``start`` ids before it are the previous chunk's last ones), both orders."""
    later = ext[start:]
    keys, weights = [], []
    for d in range(1, window + 1):
        earlier = ext[start - d : len(ext) - d]
        keep = (earlier >= 0) & (later >= 0)
        a, b = earlier[keep], later[keep]
        keys += [a * _BASE + b, b * _BASE + a]
        weight = 1.0 / d if harmonic else 1.0
        weights.append(torch.full((2 * len(a),), weight, dtype=dtype, device=ext.device))
    return torch.cat(keys), torch.cat(weights)


def cooccurrence(
    documents: Tensor | Iterable[Tensor | Sequence[int]],
    window: int = 5,
    num_words: int | None = None,
    weighting: str = "uniform",
    chunk_size: int = 1 << 20,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""Symmetric window co-occurrence counts :math:`X` of a corpus of word ids, as a coalesced
    sparse ``(V, V)`` COO tensor,

    .. math::

        X_{ij} = \sum_{\text{documents}} \sum_{1 \le t - s \le w} \lambda(t - s)
            \left([a_s = i, a_t = j] + [a_s = j, a_t = i]\right),

    so :math:`X = X^\top`, a word pair at distance :math:`d \le w` adds :math:`\lambda(d)` to
    both of its entries and a word repeated within the window adds :math:`2 \lambda(d)` to
    its diagonal entry (as the reference ``cooccur.c`` does).

    The corpus is read once, lazily, in chunks of about ``chunk_size`` ids (the last ``window``
    ids of a chunk are carried into the next), so it can be a generator over a file larger than
    memory; the counts are merged chunk by chunk on ``device``.

    Arguments:
        documents: one 1-D tensor of ids, or an iterable of documents (1-D tensors or sequences
            of ints; a window never spans two documents, as GloVe resets it at each line). An
            id of ``-1`` (``Vocabulary.encode(..., unknown="mark")``) keeps its place in the
            window but is not counted.
        window: :math:`w`, the largest distance counted.
        num_words: :math:`V` (default: the largest id plus one).
        weighting: ``"uniform"`` (:math:`\lambda = 1`, the simpler GloVe) or ``"harmonic"``
            (:math:`\lambda(d) = 1/d`, GloVe).
        chunk_size: ids per chunk.
        device: where the counting runs and the result lives (default: the CPU).
        dtype: of the counts.

    References:
        | Su Jianlin, a simpler GloVe (2017) https://kexue.fm/archives/4667, reference code
        | https://github.com/bojone/simpler_glove
        | GloVe: Global Vectors for Word Representation (Pennington et al., 2014)
        | https://nlp.stanford.edu/pubs/glove.pdf

    Example:
        >>> x = cooccurrence([torch.tensor([0, 1, 0, 2, 2]), [1, 2]], window=1)
        >>> x.to_dense()  # the repeated 2 counts twice on the diagonal
        tensor([[0., 2., 1.],
                [2., 0., 1.],
                [1., 1., 2.]], dtype=torch.float64)
        >>> cooccurrence([[0, 1, 2]], window=2, weighting="harmonic").to_dense()[0]
        tensor([0.0000, 1.0000, 0.5000], dtype=torch.float64)
    """
    window = check_count("window", window)
    chunk_size = check_count("chunk_size", chunk_size)
    check_choice("weighting", weighting, ("uniform", "harmonic"))
    if num_words is not None:
        num_words = check_count("num_words", num_words)
    if isinstance(documents, Tensor):
        documents = [documents]
    device = torch.device("cpu") if device is None else torch.device(device)
    totals = _Totals(device, dtype)
    tail = torch.full((window,), -1, dtype=torch.long, device=device)
    largest, smallest = -1, -1
    for chunk in _chunks(documents, window, chunk_size):
        chunk = chunk.to(device)
        if len(chunk):
            largest, smallest = max(largest, int(chunk.max())), min(smallest, int(chunk.min()))
        ext = torch.cat([tail, chunk])
        totals.add(*_pairs(ext, window, window, weighting == "harmonic", dtype))
        tail = ext[-window:]
    _check_ids(smallest, largest, num_words)
    size = largest + 1 if num_words is None else num_words
    indices = torch.stack([totals.keys // _BASE, totals.keys % _BASE])
    return torch.sparse_coo_tensor(
        indices, totals.values, (size, size), check_invariants=True
    ).coalesce()


def _check_ids(smallest: int, largest: int, num_words: int | None) -> None:
    if smallest < -1:
        raise ValueError(f"documents: expected word ids >= -1 (-1: unknown), got {smallest}")
    limit = _BASE if num_words is None else num_words
    if largest >= limit:
        raise ValueError(f"documents: expected word ids below {limit} (num_words), got {largest}")


def sparse_counts(counts: Tensor) -> Tensor:
    """``counts`` (dense or sparse, ``(V, V)``) as a coalesced sparse tensor of its positive
    entries (floating point); ``ValueError`` for negative or non-finite counts, or none positive.

    Example:
        >>> sparse_counts(torch.tensor([[0, 3], [3, 1]])).values()
        tensor([3., 3., 1.], dtype=torch.float64)
    """
    if not isinstance(counts, Tensor):
        raise TypeError(f"counts: expected a tensor, got {type(counts).__name__}")
    if counts.dim() != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(
            f"counts: expected a square (V, V) matrix, got shape {tuple(counts.shape)}"
        )
    if not counts.is_floating_point():
        counts = counts.double()
    counts = (counts if counts.is_sparse else counts.to_sparse()).coalesce()
    values = check_finite_tensor("counts", counts.values())
    if bool((values < 0).any()):
        raise ValueError(f"counts: expected non-negative counts, got minimum {float(values.min())}")
    positive = values > 0
    if not bool(positive.any()):
        raise ValueError("counts: expected at least one positive count, got none")
    if not bool(positive.all()):  # stored zeros are no co-occurrence
        counts = torch.sparse_coo_tensor(
            counts.indices()[:, positive], values[positive], counts.shape
        )
        counts = counts.coalesce()
    return counts


def log_marginals(counts: Tensor, marginals: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    r"""``(log P(i), log P(j), log S)``: the log marginals of rows and columns and the log of
    the total :math:`S = \sum_{kl} X_{kl}`; the marginals are the row and column sums of
    :math:`X / S`, or ``marginals / marginals.sum()`` for both when given.

    References:
        | Neural Word Embedding as Implicit Matrix Factorization (Levy & Goldberg, 2014)
        | https://papers.nips.cc/paper/5477-neural-word-embedding-as-implicit-matrix-factorization

    Example:
        >>> rows, cols, log_total = log_marginals(torch.tensor([[0.0, 2.0], [2.0, 4.0]]))
        >>> rows.exp(), log_total.exp()
        (tensor([0.2500, 0.7500]), tensor(8.))
    """
    counts = sparse_counts(counts)
    total = counts.values().sum()
    if marginals is None:
        rows = torch.sparse.sum(counts, 1).to_dense()
        cols = torch.sparse.sum(counts, 0).to_dense()
        return (rows / total).log(), (cols / total).log(), total.log()
    if not isinstance(marginals, Tensor):
        marginals = torch.as_tensor(marginals)
    check_finite_tensor("marginals", marginals)
    if marginals.shape != counts.shape[:1]:
        raise ValueError(
            f"marginals: expected shape ({counts.shape[0]},), one per word, got "
            f"{tuple(marginals.shape)}"
        )
    marginals = marginals.to(counts.device, counts.dtype)
    if bool((marginals < 0).any()) or not bool((marginals > 0).any()):
        raise ValueError("marginals: expected non-negative values, not all zero")
    p = (marginals / marginals.sum()).log()
    return p, p, total.log()


def pmi(counts: Tensor, marginals: Tensor | None = None) -> Tensor:
    r"""Pointwise mutual information at the non-zero entries of ``counts``, as a sparse tensor
    with the same pattern,

    .. math::

        \operatorname{PMI}_{ij} = \log X_{ij} + \log S - \log (S P(i)) - \log (S P(j)),
        \qquad S = \sum_{kl} X_{kl},

    with :math:`P(i)` the row sums of :math:`X / S` and :math:`P(j)` its column sums (Levy &
    Goldberg's PMI of the word-context matrix), or :math:`P(i) = m_i / \sum_k m_k` for
    given ``marginals`` :math:`m` (e.g. a vocabulary's unigram counts, as the simpler GloVe's
    reference code does). Raises ``ValueError`` for negative or non-finite counts, and for a
    zero marginal under a non-zero count (an infinite PMI).

    References:
        | Neural Word Embedding as Implicit Matrix Factorization (Levy & Goldberg, 2014)
        | https://papers.nips.cc/paper/5477-neural-word-embedding-as-implicit-matrix-factorization
        | Su Jianlin, a simpler GloVe (2017) https://kexue.fm/archives/4667

    Example:
        >>> x = torch.tensor([[0.0, 2.0], [2.0, 4.0]])
        >>> pmi(x).to_dense()  # P(0, 1) = 0.25, P(0) = 0.25, P(1) = 0.75
        tensor([[ 0.0000,  0.2877],
                [ 0.2877, -0.1178]])
    """
    counts = sparse_counts(counts)
    log_rows, log_cols, log_total = log_marginals(counts, marginals)
    i, j = counts.indices()
    values = counts.values().log() - log_total - log_rows[i] - log_cols[j]
    if not bool(torch.isfinite(values).all()):
        raise ValueError("marginals: expected positive marginals wherever a count is positive")
    return torch.sparse_coo_tensor(
        counts.indices(), values, counts.shape, check_invariants=True
    ).coalesce()
