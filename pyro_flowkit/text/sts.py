r"""Semantic textual similarity: cosine scores, Spearman's correlation, BERT-flow's vector flow.

An STS evaluation scores each sentence pair by the cosine of its two vectors, after an optional
map (a :class:`~pyro_flowkit.transforms.whitening.Whitening`'s ``inv`` or ``project``, a flow's
``inv`` into its base space), and reports Spearman's rank correlation with the gold scores.

References:
    | Whitening Sentence Representations for Better Semantics and Faster Retrieval
    | (Su, Cao, Liu & Ou, 2021) https://arxiv.org/abs/2103.15316
    | On the Sentence Embeddings from Pre-trained Language Models (Li, Zhou, He, Wang, Yang &
    | Li, 2020) https://arxiv.org/abs/2011.05864
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from pyro_flowkit.transforms.actnorm import ActNorm
from pyro_flowkit.transforms.compose import ComposeFlow, compose
from pyro_flowkit.transforms.coupling import coupling
from pyro_flowkit.transforms.masks import half_mask
from pyro_flowkit.transforms.permute import Permute
from pyro_flowkit.validation import check_count, check_finite_tensor

__all__ = ["bert_flow", "cosine", "spearman", "sts_spearman"]


def cosine(a: Tensor, b: Tensor) -> Tensor:
    r"""Row-wise cosine similarity :math:`\frac{a \cdot b}{\|a\| \|b\|}` of two ``(N, D)``
    tensors (a zero row scores 0).

    Example:
        >>> cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
        tensor([0.7071])
    """
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12)


def _ranks(x: Tensor) -> Tensor:
    """Ranks 1..n of a 1-D tensor, ties sharing their mean rank (float64)."""
    order = torch.argsort(x, stable=True)
    ordered = x[order]
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    group = torch.cumsum(starts, 0) - 1
    positions = torch.arange(1, len(x) + 1, dtype=torch.float64, device=x.device)
    sums = torch.zeros(int(group[-1]) + 1, dtype=torch.float64, device=x.device)
    sums.index_add_(0, group, positions)
    mean_rank = sums / torch.bincount(group).to(torch.float64)
    ranks = torch.empty_like(positions)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(x: Tensor, y: Tensor) -> float:
    r"""Spearman's rank correlation: Pearson's correlation of the ranks (ties get their mean
    rank, as in ``scipy.stats.spearmanr``),

    .. math::

        \rho = \frac{\sum_i (r_i - \bar r)(s_i - \bar s)}
                    {\sqrt{\sum_i (r_i - \bar r)^2 \sum_i (s_i - \bar s)^2}}.

    Raises ``ValueError`` for fewer than 2 values, non-finite ones, or a constant input (for
    which the correlation is undefined).

    References:
        | The Proof and Measurement of Association between Two Things (Spearman, 1904)
        | https://doi.org/10.2307/1412159

    Example:
        >>> spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 3.0, 2.0, 5.0]))
        0.8
    """
    for name, t in (("x", x), ("y", y)):
        check_finite_tensor(name, t)
        if t.dim() != 1 or len(t) < 2:
            raise ValueError(f"{name}: expected a 1-D tensor of 2 or more values, got {_shape(t)}")
    if len(x) != len(y):
        raise ValueError(f"y: expected {len(x)} values, as many as x, got {len(y)}")
    rx, ry = _ranks(x), _ranks(y.to(x.device))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = (rx.square().sum() * ry.square().sum()).sqrt()
    if denominator == 0:
        raise ValueError("x, y: expected values that vary, got a constant input (undefined)")
    return round(float((rx * ry).sum() / denominator), 15)


def sts_spearman(
    embeddings_a: Tensor,
    embeddings_b: Tensor,
    scores: Tensor,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> float:
    r"""Spearman's correlation between the gold ``scores`` and the cosines
    :math:`\cos(f(a_i), f(b_i))` of the pairs' vectors mapped by ``transform`` :math:`f`
    (identity if ``None``), without gradients.

    Arguments:
        embeddings_a, embeddings_b: ``(N, D)`` vectors of the pairs' first and second sentences.
        scores: ``(N,)`` gold similarities.
        transform: e.g. ``whitening.inv``, ``lambda x: whitening.project(x, 256)`` or
            ``flow.inv`` (data -> base).

    References:
        | Whitening Sentence Representations for Better Semantics and Faster Retrieval
        | (Su et al., 2021) https://arxiv.org/abs/2103.15316

    Example:
        >>> from pyro_flowkit.transforms.whitening import Whitening
        >>> a, b = torch.randn(200, 8), torch.randn(200, 8)
        >>> scores = cosine(a, b)  # gold scores: the cosines of the isotropic vectors
        >>> stretch = torch.diag(torch.logspace(-1, 1, 8))
        >>> x_a, x_b = a @ stretch + 5, b @ stretch + 5  # an anisotropic cone
        >>> raw = sts_spearman(x_a, x_b, scores)
        >>> w = Whitening.from_data(torch.cat([x_a, x_b]))
        >>> whitened = sts_spearman(x_a, x_b, scores, w.inv)
        >>> raw < 0.5 < 0.9 < whitened
        True
    """
    for name, t in (("embeddings_a", embeddings_a), ("embeddings_b", embeddings_b)):
        check_finite_tensor(name, t)
        if t.dim() != 2 or t.shape != embeddings_a.shape:
            raise ValueError(
                f"{name}: expected (N, D) like embeddings_a {_shape(embeddings_a)}, got {_shape(t)}"
            )
    if scores.shape != embeddings_a.shape[:1]:
        raise ValueError(f"scores: expected shape ({len(embeddings_a)},), got {_shape(scores)}")
    with torch.no_grad():
        if transform is not None:
            embeddings_a, embeddings_b = transform(embeddings_a), transform(embeddings_b)
        similarities = cosine(embeddings_a, embeddings_b)
    return spearman(similarities.double(), scores.to(similarities.device, torch.float64))


def bert_flow(
    dim: int,
    depth: int = 4,
    hidden_dims: Sequence[int] = (256,),
    first: nn.Module | None = None,
) -> ComposeFlow:
    r"""BERT-flow's density model of sentence vectors, as a vector Glow: ``depth`` steps, each
    (data side first) an :class:`~pyro_flowkit.transforms.ActNorm`, a fixed random
    :class:`~pyro_flowkit.transforms.Permute` and an
    :class:`~pyro_flowkit.transforms.AffineCoupling` (half masks, alternating; MLP conditioners
    with ``hidden_dims``),

    .. math::

        z = (g_K \circ \dots \circ g_1)(x), \qquad
        g_k = \text{coupling}_k \circ \pi_k \circ \text{actnorm}_k,

    trained by maximum likelihood under a standard normal :math:`z`; pairs are then scored by
    the cosine of their :math:`z`. Glow's learned 1x1 convolution (a dense invertible linear map
    for a vector) is replaced by a fixed permutation: the library's convolution is for images.

    ``first`` is a transform placed on the data side before the steps, e.g. a fitted
    :class:`~pyro_flowkit.transforms.whitening.Whitening` (a flow after whitening, which supplies
    the linear decorrelation in closed form). The steps then have no ActNorm: the whitening has
    standardised the vectors already, and an ActNorm initialised after it would blow the
    rounding noise along a null direction of a singular covariance (which the poolings of
    LayerNorm outputs have) up to unit variance, then take optimiser steps in the units of that
    noise (its shift is in data units) and diverge. Without ``first`` the ActNorms initialise
    from the first data batch scored: score a large one first. Returned in Pyro's order (base to
    data).

    Arguments:
        dim: the vectors' size.
        depth: the number of steps.
        hidden_dims: hidden widths of each coupling's conditioner.
        first: an optional transform on the data side of the steps.

    References:
        | On the Sentence Embeddings from Pre-trained Language Models (Li et al., 2020)
        | https://arxiv.org/abs/2011.05864
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> from pyro_flowkit.flows.distribution import flow_distribution
        >>> flow = bert_flow(6, depth=2, hidden_dims=(16,))
        >>> flow_distribution(flow, 6).log_prob(torch.randn(300, 6) * 3 + 1).shape
        torch.Size([300])
    """
    dim, depth = check_count("dim", dim, minimum=2), check_count("depth", depth)
    data_side: list[nn.Module] = [] if first is None else [first]
    for k in range(depth):
        data_side += [ActNorm(dim)] if first is None else []
        data_side += [
            Permute(torch.randperm(dim)),
            coupling("affine", half_mask(dim, flip=k % 2 == 1), hidden_dims),
        ]
    return compose(data_side[::-1])


def _shape(t: object) -> str:
    return f"shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
