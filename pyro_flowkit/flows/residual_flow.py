"""Residual Flows: i-ResNets with the unbiased Russian-roulette log-det, LipSwish activations
and ActNorm before every block (Chen et al., 2019).

References:
    | Residual Flows for Invertible Generative Modeling (Chen et al., 2019)
    | https://arxiv.org/abs/1906.02735
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from typing_extensions import Unpack

from pyro_flowkit.flows._common import check_context_dim, resolve
from pyro_flowkit.flows.iresnet import ResidualOptions, residual_stack
from pyro_flowkit.transforms._base import EventShape

__all__ = ["conditional_residual_flow", "residual_flow"]

DEFAULTS: dict[str, object] = {
    "activation": "lipswish",
    "actnorm": True,
    "levels": None,
    "n_power_iterations": 1,
}


def residual_flow(
    event_shape: EventShape,
    num_blocks: int = 4,
    hidden_dims: Sequence[int] = (128,),
    lipschitz: float = 0.9,
    logdet: str = "roulette",
    direction: str = "density",
    **options: Unpack[ResidualOptions],
) -> nn.Module:
    r""":func:`~pyro_flowkit.flows.iresnet` with Residual Flows' choices: the unbiased
    Russian-roulette log-det, LipSwish activations and ActNorm before every block (the same
    arguments and :class:`~pyro_flowkit.flows.ResidualOptions`, other defaults).

    References:
        | Residual Flows for Invertible Generative Modeling (Chen et al., 2019)
        | https://arxiv.org/abs/1906.02735

    Example:
        >>> flow = residual_flow((1, 4, 4), num_blocks=1, hidden_dims=(8,))
        >>> flow.inv(torch.randn(3, 1, 4, 4)).shape
        torch.Size([3, 1, 4, 4])
    """
    opts = resolve("residual_flow", options, ResidualOptions, DEFAULTS)
    return residual_stack(
        event_shape, 0, num_blocks, hidden_dims, lipschitz, logdet, direction, opts
    )


def conditional_residual_flow(
    event_shape: EventShape,
    context_dim: int,
    num_blocks: int = 4,
    hidden_dims: Sequence[int] = (128,),
    lipschitz: float = 0.9,
    logdet: str = "roulette",
    direction: str = "density",
    **options: Unpack[ResidualOptions],
) -> nn.Module:
    """:func:`residual_flow` with a context, as :func:`~pyro_flowkit.flows.conditional_iresnet`.

    Example:
        >>> flow = conditional_residual_flow(2, context_dim=3, num_blocks=1)
        >>> flow.condition(torch.randn(3)).inv(torch.randn(5, 2)).shape
        torch.Size([5, 2])
    """
    opts = resolve("conditional_residual_flow", options, ResidualOptions, DEFAULTS)
    context_dim = check_context_dim(context_dim)
    return residual_stack(
        event_shape, context_dim, num_blocks, hidden_dims, lipschitz, logdet, direction, opts
    )
