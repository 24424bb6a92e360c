"""Builders of multi-scale image flows on ``(C, H, W)`` events: RealNVP and Glow.

Re-exported by :mod:`pyro_flowkit.flows` (``flows.glow``, ``flows.realnvp`` with an image
shape, and their ``conditional_*`` twins). Each level is one
:class:`~pyro_flowkit.transforms.SqueezeBlock`, so every part of the returned flow maps
``(C, H, W)`` to ``(C, H, W)`` and the base is a standard normal over the whole event.
"""

from __future__ import annotations

import torch
from pyro.distributions.conditional import (
    ConditionalTransform,
)
from torch import nn

from pyro_flowkit.transforms import (
    ActNorm,
    ComposeFlow,
    ConditionalComposeFlow,
    ConditionalSplitPrior,
    ConditionalSqueezeBlock,
    InvertibleConv1x1,
    Permute,
    SplitPrior,
    SqueezeBlock,
    channel_mask,
    checkerboard_mask,
    coupling,
)
from pyro_flowkit.transforms._base import EventShape, image_event_shape
from pyro_flowkit.validation import check_count

__all__ = ["conditional_glow", "glow", "image_realnvp"]

_GLOW_PERMUTATIONS = ("conv1x1", "shuffle", "reverse")


def _block(
    data_side: list[nn.Module], shape: torch.Size, squeezes: int, active: int
) -> list[nn.Module]:
    """Parts listed from the data side as one shape-keeping level, in Pyro's order."""
    parts = data_side[::-1]
    if squeezes == 0 and active == shape[0]:
        return parts
    conditional = any(isinstance(p, ConditionalTransform) for p in parts)
    cls = ConditionalSqueezeBlock if conditional else SqueezeBlock
    return [cls(parts, shape, squeezes, active)]


def _compose(blocks: list[nn.Module], context_dim: int) -> nn.Module:
    """The whole flow in Pyro's order (the deepest level acts first on the base)."""
    parts = [p for level in reversed(blocks) for p in level]
    if context_dim:
        return ConditionalComposeFlow(parts)
    return ComposeFlow(parts)


def _realnvp_blocks(
    shape: torch.Size,
    num_scales: int,
    hidden_channels: int,
    context_dim: int,
    dropout: float,
    log_scale_bound: float,
) -> list[list[nn.Module]]:
    c, h, w = shape

    def couple(mask: torch.Tensor) -> nn.Module:
        return coupling(
            "affine", mask, hidden_channels, context_dim, dropout, log_scale_bound=log_scale_bound
        )

    blocks = []
    for s in range(num_scales):
        inner = (c * 2**s, h // 2**s, w // 2**s)  # active channels at s squeezes
        last = s == num_scales - 1
        board = [couple(checkerboard_mask(inner, i % 2 == 1)) for i in range(4 if last else 3)]
        blocks.append(_block(board, shape, s, inner[0]))
        if not last:
            squeezed = (4 * inner[0], inner[1] // 2, inner[2] // 2)
            chans = [couple(channel_mask(squeezed, i % 2 == 1)) for i in range(3)]
            blocks.append(_block(chans, shape, s + 1, squeezed[0]))
    return blocks


def image_realnvp(
    event_shape: EventShape,
    num_scales: int = 2,
    hidden_channels: int = 64,
    *,
    context_dim: int = 0,
    dropout: float = 0.0,
    log_scale_bound: float = 2.0,
) -> nn.Module:
    r"""RealNVP's multi-scale architecture on ``(C, H, W)`` (called by ``flows.realnvp``).

    Per scale: 3 affine couplings with alternating checkerboard masks, a squeeze, 3 with
    alternating channel masks, then half of the channels are factored out (they go on to the
    base unchanged); the last scale has 4 checkerboard couplings. Conditioners are
    :class:`~pyro_flowkit.nn.ConvNet`\ s of width ``hidden_channels``. ``H`` and ``W`` must be
    multiples of :math:`2^{\text{num_scales} - 1}`.

    References:
        | Density estimation using Real NVP (Dinh et al., 2017), section 3.6
        | https://arxiv.org/abs/1605.08803
    """
    check_count("num_scales", num_scales)
    check_count("hidden_channels", hidden_channels)
    shape = image_event_shape(event_shape, num_scales - 1)
    if shape[1] * shape[2] < 4 ** (num_scales - 1) * 2:
        raise ValueError(
            f"num_scales: {num_scales} scales leave a single pixel at the last scale of an event "
            f"of shape {tuple(shape)}, where a checkerboard mask is undefined"
        )
    blocks = _realnvp_blocks(
        shape, num_scales, hidden_channels, context_dim, dropout, log_scale_bound
    )
    return _compose(blocks, context_dim)


def _permutation(kind: str, inner: tuple[int, int, int], lu: bool) -> nn.Module:
    c = inner[0]
    if kind == "conv1x1":
        return InvertibleConv1x1(c, lu=lu)
    order = torch.randperm(c) if kind == "shuffle" else torch.arange(c - 1, -1, -1)
    return Permute(order, inner)


def _glow_blocks(
    shape: torch.Size,
    levels: int,
    depth: int,
    hidden_channels: int,
    context_dim: int,
    **opts: object,
) -> list[list[nn.Module]]:
    c, h, w = shape
    kind, bound = opts["coupling"], opts["log_scale_bound"]
    extra = {"log_scale_bound": bound} if kind == "affine" else {}
    blocks = []
    for level in range(1, levels + 1):
        inner = (c * 2 ** (level + 1), h // 2**level, w // 2**level)
        data_side: list[nn.Module] = []
        for _ in range(depth):
            mask = channel_mask(inner)
            data_side += [
                ActNorm(inner),
                _permutation(opts["permutation"], inner, opts["lu"]),
                coupling(kind, mask, hidden_channels, context_dim, opts["dropout"], **extra),
            ]
        if level < levels:
            prior_hidden = opts["prior_hidden_channels"]
            data_side.append(
                ConditionalSplitPrior(inner, context_dim, bound, prior_hidden)
                if context_dim
                else SplitPrior(inner, bound, prior_hidden)
            )
        blocks.append(_block(data_side, shape, level, inner[0]))
    return blocks


def _glow(
    event_shape: EventShape,
    context_dim: int,
    levels: int,
    depth: int,
    hidden_channels: int,
    **opts: object,
) -> nn.Module:
    for name, value in [("levels", levels), ("depth", depth), ("hidden_channels", hidden_channels)]:
        check_count(name, value)
    if opts["coupling"] not in ("affine", "additive"):
        raise ValueError(f"coupling: expected 'affine' or 'additive', got {opts['coupling']!r}")
    if opts["permutation"] not in _GLOW_PERMUTATIONS:
        raise ValueError(
            f"permutation: expected one of {_GLOW_PERMUTATIONS}, got {opts['permutation']!r}"
        )
    shape = image_event_shape(event_shape, levels)
    return _compose(
        _glow_blocks(shape, levels, depth, hidden_channels, context_dim, **opts), context_dim
    )


def glow(
    event_shape: EventShape,
    levels: int = 2,
    depth: int = 4,
    hidden_channels: int = 64,
    *,
    coupling: str = "affine",
    permutation: str = "conv1x1",
    lu: bool = True,
    dropout: float = 0.0,
    log_scale_bound: float = 2.0,
    prior_hidden_channels: int = 0,
) -> ComposeFlow:
    r"""Glow on ``(C, H, W)``: per level a squeeze, ``depth`` steps, then the learned split prior.

    A step is (from the data side) :class:`~pyro_flowkit.transforms.ActNorm`, then
    :class:`~pyro_flowkit.transforms.InvertibleConv1x1` (or a fixed channel permutation), then
    a coupling with a channel mask whose conditioner is a
    :class:`~pyro_flowkit.nn.ConvNet` of width ``hidden_channels``. After each level but the last,
    half of the channels are factored out with a
    :class:`~pyro_flowkit.transforms.SplitPrior`. The flow is the identity at initialisation up
    to the random 1x1 convolutions; ActNorm initialises from the first batch scored.
    ``H`` and ``W`` must be multiples of :math:`2^{\text{levels}}`.

    Arguments:
        event_shape: ``(C, H, W)``.
        levels: number of levels :math:`L` (squeezes).
        depth: steps per level :math:`K`.
        hidden_channels: width of the coupling conditioners.
        coupling: ``"affine"`` or ``"additive"``.
        permutation: ``"conv1x1"`` (learned), ``"shuffle"`` (a fixed random permutation) or
            ``"reverse"`` (the channels reversed).
        lu: LU-parametrised 1x1 convolutions (else dense, with float64 log-det and inverse).
        dropout: dropout rate of the conditioners' hidden units in training mode (default 0:
            the same bijection in both modes). 0.2 regularises Glow on the small digits data
            (``benchmarks/RESULTS.md``); with a rate above 0 call ``eval()`` before sampling or
            evaluating.
        log_scale_bound: soft bound on every log-scale (couplings and split priors).
        prior_hidden_channels: width of the split priors' conditioners; 0 (Glow's choice) for a
            single zero-initialised 3x3 convolution.

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
    return _glow(
        event_shape,
        0,
        levels,
        depth,
        hidden_channels,
        coupling=coupling,
        permutation=permutation,
        lu=lu,
        dropout=dropout,
        log_scale_bound=log_scale_bound,
        prior_hidden_channels=prior_hidden_channels,
    )


def conditional_glow(
    event_shape: EventShape,
    context_dim: int,
    levels: int = 2,
    depth: int = 4,
    hidden_channels: int = 64,
    *,
    coupling: str = "affine",
    permutation: str = "conv1x1",
    lu: bool = True,
    dropout: float = 0.0,
    log_scale_bound: float = 2.0,
    prior_hidden_channels: int = 0,
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
    check_count("context_dim", context_dim)
    return _glow(
        event_shape,
        context_dim,
        levels,
        depth,
        hidden_channels,
        coupling=coupling,
        permutation=permutation,
        lu=lu,
        dropout=dropout,
        log_scale_bound=log_scale_bound,
        prior_hidden_channels=prior_hidden_channels,
    )
