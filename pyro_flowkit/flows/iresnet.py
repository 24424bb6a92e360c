r"""Invertible ResNets: stacks of residual blocks :math:`x + g(x)` with :math:`\mathrm{Lip}(g) < 1`.

A flow is a stack of :class:`~pyro_flowkit.transforms.InvertibleResidual` blocks (optionally with
:class:`~pyro_flowkit.transforms.ActNorm` before each, on the data side). ``direction`` decides
which way is explicit (DESIGN.md convention 1): ``"density"`` makes data -> base the explicit map
(each block wrapped in :class:`~pyro_flowkit.transforms.Inverse`), so scoring and training by
likelihood never iterate and sampling solves fixed points; ``"sample"`` makes base -> data
explicit (for variational guides, which sample and score their own samples). Image events are
handled in levels: level :math:`l` squeezes :math:`l` times and runs its blocks, with
convolutional nets, on all channels (a :class:`~pyro_flowkit.transforms.SqueezeBlock`).
Residual Flows' choices are :func:`~pyro_flowkit.flows.residual_flow`.

References:
    | Invertible Residual Networks (Behrmann et al., 2019)
    | https://arxiv.org/abs/1811.00995
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

import torch
from torch import nn
from typing_extensions import Unpack

from pyro_flowkit.flows._common import check_context_dim, compose_levels, level, resolve
from pyro_flowkit.nn.lipschitz import LipschitzConvNet, LipschitzMLP, _check_coeff
from pyro_flowkit.transforms import (
    ActNorm,
    ConditionalInverse,
    ConditionalInvertibleResidual,
    Inverse,
    InvertibleResidual,
    as_event_shape,
)
from pyro_flowkit.transforms._base import EventShape, image_event_shape
from pyro_flowkit.validation import check_choice, check_count

__all__ = ["ResidualOptions", "conditional_iresnet", "iresnet", "residual_stack"]

DIRECTIONS = ("density", "sample")
_NET_KEYS = ("n_power_iterations", "power_rtol", "power_vectors", "activation")


class ResidualOptions(TypedDict, total=False):
    """Options of the residual flows (:func:`iresnet`, :func:`~pyro_flowkit.flows.residual_flow`
    and their conditional twins).

    Keys:
        activation: ``"elu"`` (i-ResNet's default) or ``"lipswish"`` (Residual Flows').
        actnorm: an :class:`~pyro_flowkit.transforms.ActNorm` before each block (data side).
        levels: image levels; level :math:`l = 0, 1, \\dots` squeezes :math:`l` times (images
            only; default 2; ``H`` and ``W`` must be multiples of :math:`2^{\\text{levels}-1}`).
        n_power_iterations: power iterations per training pass of every layer (default 1).
        power_rtol, power_vectors: the block power iteration of every layer
            (:class:`~pyro_flowkit.nn.SpectralNormLinear`).
        n_terms, n_hutchinson, inverse_tol, inverse_max_iter, neumann_grad, geom_p: of every
            block (:class:`~pyro_flowkit.transforms.InvertibleResidual`).
    """

    activation: str
    actnorm: bool
    levels: int | None
    n_power_iterations: int
    power_rtol: float | None
    power_vectors: int
    n_terms: int
    n_hutchinson: int
    inverse_tol: float
    inverse_max_iter: int
    neumann_grad: bool
    geom_p: float


IRESNET_DEFAULTS: dict[str, object] = {
    "activation": "elu",
    "actnorm": False,
    "levels": None,
    "n_power_iterations": 1,
}


def iresnet(
    event_shape: EventShape,
    num_blocks: int = 4,
    hidden_dims: Sequence[int] = (128,),
    lipschitz: float = 0.9,
    logdet: str = "series",
    direction: str = "density",
    **options: Unpack[ResidualOptions],
) -> nn.Module:
    r"""An invertible ResNet: ``num_blocks`` residual blocks :math:`x + g(x)` per level.

    Each :math:`g` is a :class:`~pyro_flowkit.nn.LipschitzMLP` (vectors) or
    :class:`~pyro_flowkit.nn.LipschitzConvNet` (images: 3x3, 1x1..., 3x3 convolutions) whose
    layers are spectrally normalised to ``lipschitz``; its last layer starts at zero, so the
    flow starts as the identity.

    Arguments:
        event_shape: ``D`` or ``(D,)`` for vectors, ``(C, H, W)`` for images.
        num_blocks: residual blocks (per level for images).
        hidden_dims: hidden widths of each :math:`g` (hidden channels for images).
        lipschitz: the bound :math:`c < 1` on :math:`\mathrm{Lip}(g)`: each of the :math:`L`
            layers of :math:`g` is normalised to :math:`c^{1/L}`.
        logdet: ``"series"``, ``"roulette"`` or ``"exact"``
            (:class:`~pyro_flowkit.transforms.InvertibleResidual`); only an attribute, so a
            trained state dict loads into a flow built with another mode.
        direction: ``"density"`` (data -> base explicit) or ``"sample"`` (base -> data).
        **options: :class:`ResidualOptions`.

    References:
        | Invertible Residual Networks (Behrmann et al., 2019)
        | https://arxiv.org/abs/1811.00995

    Example:
        >>> from pyro_flowkit.flows import flow_distribution
        >>> flow = iresnet(2, num_blocks=2, hidden_dims=(32,))
        >>> flow_distribution(flow, 2).log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """
    opts = resolve("iresnet", options, ResidualOptions, IRESNET_DEFAULTS)
    return residual_stack(
        event_shape, 0, num_blocks, hidden_dims, lipschitz, logdet, direction, opts
    )


def conditional_iresnet(
    event_shape: EventShape,
    context_dim: int,
    num_blocks: int = 4,
    hidden_dims: Sequence[int] = (128,),
    lipschitz: float = 0.9,
    logdet: str = "series",
    direction: str = "density",
    **options: Unpack[ResidualOptions],
) -> nn.Module:
    """:func:`iresnet` whose blocks' nets also see a context vector (as a bias of their first
    layer; Lipschitz in the input only). ActNorm layers are shared by all contexts.
    ``condition(context)`` (shape ``batch + (context_dim,)``) returns the plain flow.

    Example:
        >>> flow = conditional_iresnet(2, context_dim=3, num_blocks=2, direction="sample")
        >>> flow.condition(torch.randn(7, 3))(torch.randn(5, 7, 2)).shape
        torch.Size([5, 7, 2])
    """
    opts = resolve("conditional_iresnet", options, ResidualOptions, IRESNET_DEFAULTS)
    context_dim = check_context_dim(context_dim)
    return residual_stack(
        event_shape, context_dim, num_blocks, hidden_dims, lipschitz, logdet, direction, opts
    )


def residual_stack(
    event_shape: EventShape,
    context_dim: int,
    num_blocks: int,
    hidden_dims: Sequence[int],
    lipschitz: float,
    logdet: str,
    direction: str,
    opts: Mapping[str, object],
) -> nn.Module:
    """The residual flow of every builder here; ``opts`` are resolved :class:`ResidualOptions`."""
    check_count("num_blocks", num_blocks)
    _check_coeff(lipschitz)
    check_choice("direction", direction, DIRECTIONS)
    shape = as_event_shape(event_shape)
    coeff = lipschitz ** (1 / (len(tuple(hidden_dims)) + 1))  # L layers: Lip(g) <= lipschitz
    levels = opts["levels"]
    if len(shape) == 1:
        if levels is not None:
            raise ValueError(f"levels: only for (C, H, W) images, got event_shape {tuple(shape)}")
        inners = [(shape, 0)]
    else:
        levels = check_count("levels", 2 if levels is None else levels)
        c, h, w = image_event_shape(shape, levels - 1)
        inners = [(torch.Size((c * 4**s, h // 2**s, w // 2**s)), s) for s in range(levels)]
    net_opts = {k: opts[k] for k in _NET_KEYS if k in opts}
    block_opts = {k: v for k, v in opts.items() if k not in (*_NET_KEYS, "actnorm", "levels")}
    parts = [
        level(
            _level(
                inner,
                num_blocks,
                hidden_dims,
                context_dim,
                direction,
                bool(opts["actnorm"]),
                dict(net_opts, coeff=coeff),
                dict(block_opts, logdet=logdet),
            ),
            shape,
            s,
            inner[0],
        )  # fmt: skip
        for inner, s in inners
    ]
    return compose_levels(parts, context_dim)


def _level(
    inner: torch.Size,
    num_blocks: int,
    hidden_dims: Sequence[int],
    context_dim: int,
    direction: str,
    actnorm: bool,
    net_opts: dict,
    block_opts: dict,
) -> list[nn.Module]:
    """One level's parts listed from the data side."""
    data_side: list[nn.Module] = []
    for _ in range(num_blocks):
        if actnorm:
            data_side.append(ActNorm(inner))
        data_side.append(_block(inner, hidden_dims, context_dim, direction, net_opts, block_opts))
    return data_side


def _block(
    shape: torch.Size,
    hidden_dims: Sequence[int],
    context_dim: int,
    direction: str,
    net_opts: dict,
    block_opts: dict,
) -> nn.Module:
    if len(shape) == 1:
        net = LipschitzMLP(shape[0], hidden_dims, context_dim, **net_opts)
    else:
        net = LipschitzConvNet(shape, hidden_dims, context_dim, **net_opts)
    if context_dim:
        block = ConditionalInvertibleResidual(net, context_dim, **block_opts)
        return ConditionalInverse(block) if direction == "density" else block
    block = InvertibleResidual(net, **block_opts)
    return Inverse(block) if direction == "density" else block
