r"""Glow: ActNorm, invertible 1x1 convolutions, affine couplings and a learned split prior.

Per level a squeeze, ``depth`` steps (from the data side: ActNorm, 1x1 convolution, coupling with
a channel mask), then half of the channels are factored out with a
:class:`~pyro_flowkit.transforms.SplitPrior`. Each level is one
:class:`~pyro_flowkit.transforms.SqueezeBlock`, so every part maps ``(C, H, W)`` to
``(C, H, W)`` and the base is a standard normal over the whole event.

References:
    | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
    | https://arxiv.org/abs/1807.03039
"""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import nn
from typing_extensions import Unpack

from pyro_flowkit.flows._common import check_context_dim, compose_levels, level, resolve
from pyro_flowkit.transforms import (
    ActNorm,
    ComposeFlow,
    ConditionalComposeFlow,
    ConditionalSplitPrior,
    InvertibleConv1x1,
    Permute,
    SplitPrior,
    channel_mask,
    coupling,
)
from pyro_flowkit.transforms._base import EventShape, image_event_shape
from pyro_flowkit.validation import check_choice, check_count, check_rate

__all__ = ["GlowOptions", "conditional_glow", "glow"]

PERMUTATIONS = ("conv1x1", "shuffle", "reverse")


class GlowOptions(TypedDict, total=False):
    """Options of :func:`glow` and :func:`conditional_glow`.

    Keys:
        coupling: ``"affine"`` (default) or ``"additive"``.
        permutation: ``"conv1x1"`` (learned, default), ``"shuffle"`` (a fixed random
            permutation) or ``"reverse"`` (the channels reversed).
        lu: LU-parametrised 1x1 convolutions (default ``True``; else dense, with float64 log-det
            and inverse).
        dropout: dropout rate of the conditioners' hidden units in training mode (default 0:
            the same bijection in both modes). 0.2 regularises Glow on the small digits data
            (``benchmarks/RESULTS.md``); with a rate above 0 call ``eval()`` before sampling or
            evaluating.
        log_scale_bound: soft bound on every log-scale, couplings and split priors (default 2).
        prior_hidden_channels: width of the split priors' conditioners; 0 (Glow's choice, the
            default) for a single zero-initialised 3x3 convolution.
    """

    coupling: str
    permutation: str
    lu: bool
    dropout: float
    log_scale_bound: float
    prior_hidden_channels: int


DEFAULTS: dict[str, object] = {
    "coupling": "affine",
    "permutation": "conv1x1",
    "lu": True,
    "dropout": 0.0,
    "log_scale_bound": 2.0,
    "prior_hidden_channels": 0,
}


def glow(
    event_shape: EventShape,
    levels: int = 2,
    depth: int = 4,
    hidden_channels: int = 64,
    **options: Unpack[GlowOptions],
) -> ComposeFlow:
    r"""Glow on ``(C, H, W)``: per level a squeeze, ``depth`` steps, then the learned split prior.

    A step is (from the data side) :class:`~pyro_flowkit.transforms.ActNorm`, then
    :class:`~pyro_flowkit.transforms.InvertibleConv1x1` (or a fixed channel permutation), then
    a coupling with a channel mask whose conditioner is a
    :class:`~pyro_flowkit.nn.ConvNet` of width ``hidden_channels``. The flow is the identity at
    initialisation up to the random 1x1 convolutions; ActNorm initialises from the first batch
    scored. ``H`` and ``W`` must be multiples of :math:`2^{\text{levels}}`.

    Arguments:
        event_shape: ``(C, H, W)``.
        levels: number of levels :math:`L` (squeezes).
        depth: steps per level :math:`K`.
        hidden_channels: width of the coupling conditioners.
        **options: :class:`GlowOptions` (``coupling``, ``permutation``, ``lu``, ``dropout``,
            ``log_scale_bound``, ``prior_hidden_channels``).

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> from pyro_flowkit.flows import flow_distribution
        >>> flow = glow((1, 8, 8), levels=2, depth=2, hidden_channels=16)
        >>> d = flow_distribution(flow, (1, 8, 8), temperature=0.7)
        >>> d.log_prob(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5])
    """
    opts = resolve("glow", options, DEFAULTS)
    return _glow(event_shape, 0, levels, depth, hidden_channels, opts)


def conditional_glow(
    event_shape: EventShape,
    context_dim: int,
    levels: int = 2,
    depth: int = 4,
    hidden_channels: int = 64,
    **options: Unpack[GlowOptions],
) -> ConditionalComposeFlow:
    """:func:`glow` whose couplings and split priors also see a context vector, tiled over the
    image onto their conditioners' input; ActNorm and the 1x1 convolutions are shared by all
    contexts. ``condition(context)`` (shape ``batch + (context_dim,)``) returns the plain flow.

    Example:
        >>> flow = conditional_glow((1, 4, 4), context_dim=3, levels=1, depth=2,
        ...                         hidden_channels=8)
        >>> flow.condition(torch.randn(7, 3))(torch.randn(5, 7, 1, 4, 4)).shape
        torch.Size([5, 7, 1, 4, 4])
    """
    opts = resolve("conditional_glow", options, DEFAULTS)
    return _glow(event_shape, check_context_dim(context_dim), levels, depth, hidden_channels, opts)


def _glow(
    event_shape: EventShape,
    context_dim: int,
    levels: int,
    depth: int,
    hidden_channels: int,
    opts: dict,
) -> nn.Module:
    for name, value in [("levels", levels), ("depth", depth), ("hidden_channels", hidden_channels)]:
        check_count(name, value)
    check_choice("coupling", opts["coupling"], ("affine", "additive"))
    check_choice("permutation", opts["permutation"], PERMUTATIONS)
    check_rate("dropout", opts["dropout"])
    shape = image_event_shape(event_shape, levels)
    return compose_levels(
        [
            _level(shape, i, levels, depth, hidden_channels, context_dim, opts)
            for i in range(1, levels + 1)
        ],
        context_dim,
    )


def _level(
    shape: torch.Size,
    i: int,
    levels: int,
    depth: int,
    hidden_channels: int,
    context_dim: int,
    opts: dict,
) -> list[nn.Module]:
    """Level ``i`` (1-based): ``depth`` steps at ``i`` squeezes, then the split prior."""
    c, h, w = shape
    inner = (c * 2 ** (i + 1), h // 2**i, w // 2**i)
    kind, bound = opts["coupling"], opts["log_scale_bound"]
    extra = {"log_scale_bound": bound} if kind == "affine" else {}
    data_side: list[nn.Module] = []
    for _ in range(depth):
        data_side += [
            ActNorm(inner),
            _permutation(opts["permutation"], inner, opts["lu"]),
            coupling(
                kind, channel_mask(inner), hidden_channels, context_dim, opts["dropout"], **extra
            ),
        ]
    if i < levels:
        prior_hidden = opts["prior_hidden_channels"]
        data_side.append(
            ConditionalSplitPrior(inner, context_dim, bound, prior_hidden)
            if context_dim
            else SplitPrior(inner, bound, prior_hidden)
        )
    return level(data_side, shape, i, inner[0])


def _permutation(kind: str, inner: tuple[int, int, int], lu: bool) -> nn.Module:
    c = inner[0]
    if kind == "conv1x1":
        return InvertibleConv1x1(c, lu=lu)
    order = torch.randperm(c) if kind == "shuffle" else torch.arange(c - 1, -1, -1)
    return Permute(order, inner)
