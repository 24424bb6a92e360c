"""NICE: additive couplings and a learned diagonal scaling (Dinh, Krueger & Bengio, 2014).

References:
    | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014)
    | https://arxiv.org/abs/1410.8516
"""

from __future__ import annotations

from collections.abc import Sequence

from typing_extensions import Unpack

from pyro_flowkit.flows._common import (
    COUPLING_DEFAULTS,
    CouplingOptions,
    check_context_dim,
    coupling_stack,
    resolve,
)
from pyro_flowkit.transforms import ComposeFlow, ConditionalComposeFlow, ConditionalScaling, Scaling
from pyro_flowkit.transforms._base import EventShape

__all__ = ["conditional_nice", "nice"]


def nice(
    event_shape: EventShape,
    num_layers: int = 4,
    hidden_dims: Sequence[int] = (256, 256),
    **options: Unpack[CouplingOptions],
) -> ComposeFlow:
    """NICE: ``num_layers`` additive couplings and a learned diagonal scaling.

    As in the paper, the scaling acts on the latent side (it is the first part in Pyro's
    base-to-data order). A new flow is the identity map.

    Arguments:
        event_shape: ``D`` or ``(D,)``, ``D >= 2``.
        num_layers: the number of additive couplings.
        hidden_dims: hidden widths of each coupling's MLP conditioner.
        **options: ``mask``, ``permutation``, ``dropout`` (:class:`CouplingOptions`).

    References:
        | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014)
        | https://arxiv.org/abs/1410.8516

    Example:
        >>> from pyro_flowkit.flows import flow_distribution
        >>> flow = nice(4, hidden_dims=(16,))
        >>> d = flow_distribution(flow, 4)
        >>> d.log_prob(torch.zeros(3, 4)).shape
        torch.Size([3])
    """
    opts = resolve("nice", options, COUPLING_DEFAULTS)
    layers = coupling_stack("additive", event_shape, 0, num_layers, hidden_dims, opts)
    return ComposeFlow([Scaling(event_shape), *layers])


def conditional_nice(
    event_shape: EventShape,
    context_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] = (256, 256),
    **options: Unpack[CouplingOptions],
) -> ConditionalComposeFlow:
    """:func:`nice` whose couplings and scaling also see a context; the same options.

    ``condition(context)`` with a context of shape ``batch + (context_dim,)`` returns the plain
    flow; the context broadcasts against leading sample dimensions of the input.
    """
    context_dim = check_context_dim(context_dim)
    opts = resolve("conditional_nice", options, COUPLING_DEFAULTS)
    layers = coupling_stack("additive", event_shape, context_dim, num_layers, hidden_dims, opts)
    scaling = ConditionalScaling(event_shape, context_dim, hidden_dims)
    return ConditionalComposeFlow([scaling, *layers])
