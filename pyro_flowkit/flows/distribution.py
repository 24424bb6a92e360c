"""The distribution a flow defines over a standard normal base."""

from __future__ import annotations

from itertools import chain

import pyro.distributions as dist
import torch
from pyro.distributions.conditional import (
    ConditionalTransform,
    ConditionalTransformedDistribution,
)
from torch import nn
from torch.distributions import ComposeTransform, Transform

from pyro_flowkit.distributions import FlowDistribution, StandardNormal
from pyro_flowkit.transforms import as_event_shape
from pyro_flowkit.transforms._base import EventShape

__all__ = ["flow_distribution", "leaf_transforms"]


def _parts(flow: Transform | ConditionalTransform) -> list:
    return list(getattr(flow, "parts", None) or getattr(flow, "transforms", None) or [flow])


def _check_flow_shape(flow: Transform | ConditionalTransform, shape: torch.Size) -> None:
    for part in _parts(flow):
        part = getattr(part, "transform", part)  # ConstantConditionalTransform
        own = getattr(part, "event_shape", None)
        if own is not None and torch.Size(own) != shape:
            raise ValueError(
                f"event_shape: the flow was built for events of shape {tuple(own)}, "
                f"got {tuple(shape)}"
            )


def _float_spec(flow: object) -> tuple[torch.device, torch.dtype]:
    tensors = chain(flow.parameters(), flow.buffers()) if isinstance(flow, nn.Module) else ()
    for t in tensors:
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def flow_distribution(
    flow: Transform | ConditionalTransform,
    event_shape: EventShape,
    temperature: float = 1.0,
) -> dist.TransformedDistribution | ConditionalTransformedDistribution:
    r"""The distribution of ``flow(u)``, :math:`u \sim \mathcal{N}(0, T^2 I)` on ``event_shape``.

    The base lives on the flow's device and dtype (build the distribution after moving the flow).
    A conditional flow gives a ``ConditionalTransformedDistribution`` whose ``condition(context)``
    is the flow's distribution for that context.

    Arguments:
        flow: a transform (base to data) or a conditional transform.
        event_shape: the event's shape; must match the flow's.
        temperature: :math:`T`, the base's standard deviation; :math:`T < 1` samples the typical
            set more tightly (Kingma & Dhariwal 2018). ``log_prob`` is that of the tempered model.

    Example:
        >>> from pyro_flowkit.flows import realnvp
        >>> d = flow_distribution(realnvp(4, num_layers=2, hidden_dims=(8,)), 4)
        >>> d.log_prob(d.sample((3,))).shape
        torch.Size([3])
    """
    shape = as_event_shape(event_shape)
    _check_flow_shape(flow, shape)
    device, dtype = _float_spec(flow)
    base = StandardNormal(shape, temperature, device=device, dtype=dtype, validate_args=False)
    if isinstance(flow, ConditionalTransform):
        return _FlatConditionalDistribution(base, [flow])
    return FlowDistribution(base, leaf_transforms(flow))


def leaf_transforms(t: Transform) -> list[Transform]:
    """The parts of nested ``ComposeTransform``s in order: ``TransformedDistribution`` then scores
    part by part, without ``ComposeTransform`` rebuilding its inverse and intermediates per call."""
    if isinstance(t, ComposeTransform):
        return [leaf for part in t.parts for leaf in leaf_transforms(part)]
    return [t]


class _FlatConditionalDistribution(ConditionalTransformedDistribution):
    """``condition(context)`` gives a ``TransformedDistribution`` over the flow's leaf parts whose
    batch shape is the context's (``context.shape[:-1]``), so ``sample()`` draws one event per
    context row and ``sample((n,))`` has shape ``(n,) + batch + event``."""

    def condition(self, context: torch.Tensor) -> dist.TransformedDistribution:
        base = self.base_dist.condition(context).expand(context.shape[:-1])
        parts = [leaf for t in self.transforms for leaf in leaf_transforms(t.condition(context))]
        return FlowDistribution(base, parts)
