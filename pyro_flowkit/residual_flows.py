r"""Builders of invertible-ResNet flows: i-ResNet and Residual Flows, for vectors and images.

Re-exported by :mod:`pyro_flowkit.flows`. A flow is a stack of
:class:`~pyro_flowkit.transforms.InvertibleResidual` blocks (optionally with
:class:`~pyro_flowkit.transforms.ActNorm` before each, on the data side). ``direction`` decides
which way is explicit (DESIGN.md convention 1): ``"density"`` makes data -> base the explicit map
(each block wrapped in :class:`~pyro_flowkit.transforms.Inverse`), so scoring and training by
likelihood never iterate and sampling solves fixed points; ``"sample"`` makes base -> data
explicit (for variational guides, which sample and score their own samples). Image events are
handled in levels: level :math:`l` squeezes :math:`l` times and runs its blocks, with
convolutional nets, on all channels (a :class:`~pyro_flowkit.transforms.SqueezeBlock`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_flowkit.image_flows import _block, _compose
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
from pyro_flowkit.validation import check_count

__all__ = ["conditional_iresnet", "conditional_residual_flow", "iresnet", "residual_flow"]

_DIRECTIONS = ("density", "sample")


def _residual_block(
    shape: torch.Size, hidden_dims: Sequence[int], context_dim: int, direction: str, **opts: object
) -> nn.Module:
    names = ("coeff", "n_power_iterations", "power_rtol", "power_vectors", "activation")
    net_opts = {k: opts.pop(k) for k in names if k in opts}
    if len(shape) == 1:
        net = LipschitzMLP(shape[0], hidden_dims, context_dim, **net_opts)
    else:
        net = LipschitzConvNet(shape, hidden_dims, context_dim, **net_opts)
    if context_dim:
        block = ConditionalInvertibleResidual(net, context_dim, **opts)
        return ConditionalInverse(block) if direction == "density" else block
    block = InvertibleResidual(net, **opts)
    return Inverse(block) if direction == "density" else block


def _level(
    inner: torch.Size, num_blocks: int, actnorm: bool, hidden_dims: Sequence[int], **opts: object
) -> list[nn.Module]:
    """One level's parts listed from the data side."""
    data_side: list[nn.Module] = []
    for _ in range(num_blocks):
        if actnorm:
            data_side.append(ActNorm(inner))
        data_side.append(_residual_block(inner, hidden_dims, **dict(opts)))
    return data_side


def _residual_flow(
    event_shape: EventShape,
    context_dim: int,
    num_blocks: int,
    hidden_dims: Sequence[int],
    lipschitz: float,
    direction: str,
    levels: int | None,
    actnorm: bool,
    **opts: object,
) -> nn.Module:
    check_count("num_blocks", num_blocks)
    _check_coeff(lipschitz)
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction: expected one of {_DIRECTIONS}, got {direction!r}")
    shape = as_event_shape(event_shape)
    coeff = lipschitz ** (1 / (len(tuple(hidden_dims)) + 1))  # L layers: Lip(g) <= lipschitz
    opts.update(coeff=coeff, context_dim=context_dim, direction=direction)
    if len(shape) == 1:
        if levels is not None:
            raise ValueError(f"levels: only for (C, H, W) images, got event_shape {tuple(shape)}")
        inners = [(shape, 0)]
    else:
        levels = 2 if levels is None else levels
        check_count("levels", levels)
        c, h, w = image_event_shape(shape, levels - 1)
        inners = [(torch.Size((c * 4**s, h // 2**s, w // 2**s)), s) for s in range(levels)]
    blocks = [
        _block(_level(inner, num_blocks, actnorm, hidden_dims, **opts), shape, s, inner[0])
        for inner, s in inners
    ]
    return _compose(blocks, context_dim)


def iresnet(
    event_shape: EventShape,
    num_blocks: int = 4,
    hidden_dims: Sequence[int] = (128,),
    lipschitz: float = 0.9,
    logdet: str = "series",
    direction: str = "density",
    *,
    activation: str = "elu",
    actnorm: bool = False,
    levels: int | None = None,
    n_power_iterations: int = 1,
    **options: object,
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
        activation: ``"elu"`` or ``"lipswish"``.
        actnorm: an :class:`~pyro_flowkit.transforms.ActNorm` before each block (data side).
        levels: image levels; level :math:`l = 0, 1, \dots` squeezes :math:`l` times (default
            2; ``H`` and ``W`` must be multiples of :math:`2^{\text{levels} - 1}`).
        n_power_iterations: power iterations per training pass of every layer.
        **options: ``power_rtol`` and ``power_vectors`` to every layer
            (:class:`~pyro_flowkit.nn.SpectralNormLinear`); ``n_terms``, ``n_hutchinson``,
            ``inverse_tol``, ``inverse_max_iter``, ``neumann_grad``, ``geom_p`` to every block.

    References:
        | Invertible Residual Networks (Behrmann et al., 2019)
        | https://arxiv.org/abs/1811.00995

    Example:
        >>> from pyro_flowkit.flows import flow_distribution
        >>> flow = iresnet(2, num_blocks=2, hidden_dims=(32,))
        >>> flow_distribution(flow, 2).log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """
    return _residual_flow(
        event_shape, 0, num_blocks, hidden_dims, lipschitz, direction, levels, actnorm,
        logdet=logdet, activation=activation, n_power_iterations=n_power_iterations, **options,
    )  # fmt: skip


def residual_flow(
    event_shape: EventShape,
    num_blocks: int = 4,
    hidden_dims: Sequence[int] = (128,),
    lipschitz: float = 0.9,
    logdet: str = "roulette",
    direction: str = "density",
    *,
    activation: str = "lipswish",
    actnorm: bool = True,
    levels: int | None = None,
    n_power_iterations: int = 1,
    **options: object,
) -> nn.Module:
    r""":func:`iresnet` with Residual Flows' choices: the unbiased Russian-roulette log-det,
    LipSwish activations and ActNorm before every block.

    References:
        | Residual Flows for Invertible Generative Modeling (Chen et al., 2019)
        | https://arxiv.org/abs/1906.02735

    Example:
        >>> flow = residual_flow((1, 4, 4), num_blocks=1, hidden_dims=(8,))
        >>> flow.inv(torch.randn(3, 1, 4, 4)).shape
        torch.Size([3, 1, 4, 4])
    """
    return _residual_flow(
        event_shape, 0, num_blocks, hidden_dims, lipschitz, direction, levels, actnorm,
        logdet=logdet, activation=activation, n_power_iterations=n_power_iterations, **options,
    )  # fmt: skip


def conditional_iresnet(
    event_shape: EventShape,
    context_dim: int,
    num_blocks: int = 4,
    hidden_dims: Sequence[int] = (128,),
    lipschitz: float = 0.9,
    logdet: str = "series",
    direction: str = "density",
    *,
    activation: str = "elu",
    actnorm: bool = False,
    levels: int | None = None,
    n_power_iterations: int = 1,
    **options: object,
) -> nn.Module:
    """:func:`iresnet` whose blocks' nets also see a context vector (as a bias of their first
    layer; Lipschitz in the input only). ActNorm layers are shared by all contexts.
    ``condition(context)`` (shape ``batch + (context_dim,)``) returns the plain flow.

    Example:
        >>> flow = conditional_iresnet(2, context_dim=3, num_blocks=2, direction="sample")
        >>> flow.condition(torch.randn(7, 3))(torch.randn(5, 7, 2)).shape
        torch.Size([5, 7, 2])
    """
    check_count("context_dim", context_dim)
    return _residual_flow(
        event_shape, context_dim, num_blocks, hidden_dims, lipschitz, direction, levels, actnorm,
        logdet=logdet, activation=activation, n_power_iterations=n_power_iterations, **options,
    )  # fmt: skip


def conditional_residual_flow(
    event_shape: EventShape,
    context_dim: int,
    num_blocks: int = 4,
    hidden_dims: Sequence[int] = (128,),
    lipschitz: float = 0.9,
    logdet: str = "roulette",
    direction: str = "density",
    *,
    activation: str = "lipswish",
    actnorm: bool = True,
    levels: int | None = None,
    n_power_iterations: int = 1,
    **options: object,
) -> nn.Module:
    """:func:`residual_flow` with a context, as :func:`conditional_iresnet`.

    Example:
        >>> flow = conditional_residual_flow(2, context_dim=3, num_blocks=1)
        >>> flow.condition(torch.randn(3)).inv(torch.randn(5, 2)).shape
        torch.Size([5, 2])
    """
    check_count("context_dim", context_dim)
    return _residual_flow(
        event_shape, context_dim, num_blocks, hidden_dims, lipschitz, direction, levels, actnorm,
        logdet=logdet, activation=activation, n_power_iterations=n_power_iterations, **options,
    )  # fmt: skip
