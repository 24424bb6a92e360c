r"""NICE's diagonal scaling layer :math:`y = x \odot e^{s}`, and its conditional twin.

References:
    | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014), section 3.3
    | https://arxiv.org/abs/1410.8516
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch import Tensor, nn

from pyro_flowkit.nn import MLP
from pyro_flowkit.transforms._base import (
    EventShape,
    FlowTransform,
    as_event_shape,
    check_context,
    sum_event,
)


class _DiagonalScale(FlowTransform):
    """:math:`y = x e^{s}` with :math:`\\log|\\det J| = \\sum s`; subclasses supply :math:`s`."""

    def log_scale_value(self) -> Tensor:
        raise NotImplementedError

    def _ladj(self, s: Tensor, batch: torch.Size) -> Tensor:
        ladj = sum_event(s, self.event_dim)
        return ladj.expand(torch.broadcast_shapes(batch, ladj.shape))

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.log_scale_value()
        y = x * torch.exp(s)
        return y, self._ladj(s, y.shape[: y.dim() - self.event_dim])

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        s = self.log_scale_value()
        x = y * torch.exp(-s)
        return x, self._ladj(s, x.shape[: x.dim() - self.event_dim])


class Scaling(_DiagonalScale):
    r"""A learned diagonal scale :math:`y = x \odot e^{s}`, the top layer of NICE.

    With additive (volume-preserving) couplings below it, this layer carries the whole log-det
    :math:`\sum_i s_i`, letting NICE give more weight to some dimensions than to others.
    :math:`s` starts at 0 (identity).

    Arguments:
        event_shape: the event's shape (an int for vectors).

    References:
        | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014)
        | https://arxiv.org/abs/1410.8516

    Example:
        >>> t = Scaling(3)
        >>> t(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(self, event_shape: EventShape) -> None:
        super().__init__(event_shape)
        self.log_scale = nn.Parameter(torch.zeros(self.event_shape))

    def log_scale_value(self) -> Tensor:
        return self.log_scale


class _ConditionedScaling(_DiagonalScale):
    """A :class:`Scaling` whose log-scale is a network's output for a fixed context."""

    def __init__(self, event_shape: torch.Size, net: MLP, context: Tensor) -> None:
        super().__init__(event_shape)
        self.net = net
        self.context = context

    def log_scale_value(self) -> Tensor:
        return self.net(self.context).unflatten(-1, self.event_shape)


class ConditionalScaling(ConditionalTransformModule):
    r"""A diagonal scale :math:`y = x \odot e^{s(c)}` whose log-scale is an MLP of the context.

    Arguments:
        event_shape: the event's shape.
        context_dim: size of the context's last dimension.
        hidden_dims: hidden widths of the MLP (its last layer is zero-initialised).

    Example:
        >>> t = ConditionalScaling(3, context_dim=2, hidden_dims=(8,))
        >>> t.condition(torch.randn(5, 2))(torch.ones(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self, event_shape: EventShape, context_dim: int, hidden_dims: Sequence[int] = (64,)
    ) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        self.context_dim = context_dim
        self.net = MLP(context_dim, self.event_shape.numel(), hidden_dims)

    def condition(self, context: Tensor) -> _ConditionedScaling:
        """The plain scaling for ``context`` (shape ``batch + (context_dim,)``)."""
        check_context(context, self.context_dim)
        return _ConditionedScaling(self.event_shape, self.net, context)
