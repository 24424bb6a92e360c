r"""Multi-scale image flows that keep the event's shape (DESIGN.md, convention 3).

A :class:`SqueezeBlock` squeezes the ``(C, H, W)`` event ``k`` times, applies its transforms to
the leading ``active`` channels, and unsqueezes: from outside every block maps ``(C, H, W)`` to
``(C, H, W)``. Because :func:`~pyro_flowkit.transforms.squeeze.squeeze` keeps a block of leading
channels a block of leading channels, "factor out half of the channels" at one level is "the
next level is active on the leading half", and factored channels pass through deeper levels
unchanged, to the standard normal base.

References:
    | Density estimation using Real NVP (Dinh et al., 2017), section 3.6
    | https://arxiv.org/abs/1605.08803
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.conditional import ConditionalTransform, ConditionalTransformModule
from torch import Tensor, nn
from torch.distributions import Transform

from pyro_flowkit.transforms._base import (
    CachedTransform,
    EventShape,
    FlowTransform,
    as_event_shape,
    image_event_shape,
    sum_event,
)
from pyro_flowkit.transforms.squeeze import squeeze, unsqueeze


def _inner_shape(shape: torch.Size, squeezes: int, active: int | None) -> torch.Size:
    c, h, w = image_event_shape(shape, squeezes)
    f = 2**squeezes
    channels = c * f * f
    active = channels if active is None else active
    if not 1 <= active <= channels:
        raise ValueError(f"active_channels: expected 1..{channels}, got {active!r}")
    return torch.Size((active, h // f, w // f))


def _step(t: Transform, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
    """One part's map and log-det summed to the batch shape, bypassing its cache."""
    if isinstance(t, CachedTransform):
        y, ladj = t._backward(x) if inverse else t._forward(x)
    elif inverse:
        y = t.inv(x)
        ladj = t.log_abs_det_jacobian(y, x)
    else:
        y = t(x)
        ladj = t.log_abs_det_jacobian(x, y)
    return y, sum_event(ladj, 3 - t.event_dim)


class SqueezeBlock(FlowTransform):
    r"""Applies ``parts`` to the leading ``active_channels`` channels after ``squeezes`` squeezes.

    The map, in Pyro's order (``parts[0]`` first), and its log-det are those of the parts on the
    squeezed active channels; the other channels are unchanged. One block holds a whole level, so
    the event is squeezed and unsqueezed once per level, not once per layer.

    Arguments:
        parts: transforms on events of shape ``(active_channels, H / 2^k, W / 2^k)``.
        event_shape: ``(C, H, W)``.
        squeezes: :math:`k`, the number of factor-2 squeezes.
        active_channels: the leading channels the parts see (all by default).

    Example:
        >>> from pyro_flowkit.transforms import ActNorm
        >>> block = SqueezeBlock([ActNorm((2, 2, 2))], (1, 4, 4), squeezes=1, active_channels=2)
        >>> block(torch.randn(5, 1, 4, 4)).shape
        torch.Size([5, 1, 4, 4])
    """

    def __init__(
        self,
        parts: Sequence[Transform],
        event_shape: EventShape,
        squeezes: int = 1,
        active_channels: int | None = None,
    ) -> None:
        super().__init__(event_shape)
        inner = _inner_shape(self.event_shape, squeezes, active_channels)
        _check_parts(parts, inner)
        self.parts = nn.ModuleList(parts)
        self.squeezes, self.active_channels, self.inner_shape = squeezes, inner[0], inner

    def _run(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        for _ in range(self.squeezes):
            x = squeeze(x)
        active, rest = x.split([self.active_channels, x.shape[-3] - self.active_channels], -3)
        total = x.new_zeros(x.shape[:-3])
        for t in reversed(self.parts) if inverse else self.parts:
            active, ladj = _step(t, active, inverse)
            total = total + ladj
        x = torch.cat([active, rest], -3) if rest.shape[-3] else active
        for _ in range(self.squeezes):
            x = unsqueeze(x)
        return x, total

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(x, inverse=False)

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(y, inverse=True)

    def extra_repr(self) -> str:
        return (
            f"event_shape={tuple(self.event_shape)}, squeezes={self.squeezes}, "
            f"active_channels={self.active_channels}"
        )


class ConditionalSqueezeBlock(ConditionalTransformModule):
    """A :class:`SqueezeBlock` some of whose parts are conditional transforms.

    ``condition(context)`` conditions those parts and returns the plain block; the other parts
    (ActNorm, 1x1 convolutions) are shared as they are.
    """

    def __init__(
        self,
        parts: Sequence[Transform | ConditionalTransform],
        event_shape: EventShape,
        squeezes: int = 1,
        active_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        inner = _inner_shape(self.event_shape, squeezes, active_channels)
        _check_parts(parts, inner)
        self.parts = nn.ModuleList(parts)
        self.squeezes, self.active_channels = squeezes, inner[0]

    def condition(self, context: Tensor) -> SqueezeBlock:
        """The plain block for ``context``."""
        parts = [
            p.condition(context) if isinstance(p, ConditionalTransform) else p for p in self.parts
        ]
        return SqueezeBlock(parts, self.event_shape, self.squeezes, self.active_channels)


def _check_parts(parts: Sequence[Transform], inner: torch.Size) -> None:
    for i, p in enumerate(parts):
        if not isinstance(p, Transform | ConditionalTransform) or not isinstance(p, nn.Module):
            raise TypeError(f"parts[{i}]: expected a transform module, got {type(p).__name__}")
        own = getattr(p, "event_shape", None)
        if own is not None and torch.Size(own) != inner:
            raise ValueError(
                f"parts[{i}]: expected a transform on events of shape {tuple(inner)}, "
                f"got one built for {tuple(own)}"
            )
