"""Shared pieces of every transform: event-shape checks, the log-det cache, bound conditioners."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pyro.distributions import constraints
from pyro.distributions.torch_transform import TransformModule
from torch import Tensor, nn

EventShape = int | Sequence[int]


def as_event_shape(event_shape: EventShape, name: str = "event_shape") -> torch.Size:
    """Return ``event_shape`` as a ``torch.Size`` of positive sizes, or raise ``ValueError``."""
    shape = (event_shape,) if isinstance(event_shape, int) else event_shape
    try:
        shape = torch.Size(shape)
    except TypeError:
        raise TypeError(
            f"{name}: expected an int or a tuple of ints, got {event_shape!r}"
        ) from None
    if len(shape) == 0 or any(s < 1 for s in shape):
        raise ValueError(f"{name}: expected positive sizes, got {tuple(shape)}")
    return shape


def check_event_shape(x: Tensor, event_shape: torch.Size, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` ends in ``event_shape``."""
    n = len(event_shape)
    if x.dim() < n or x.shape[x.dim() - n :] != event_shape:
        raise ValueError(
            f"{name}: expected a tensor whose trailing shape is {tuple(event_shape)}, "
            f"got shape {tuple(x.shape)}"
        )


def sum_event(t: Tensor, event_dim: int) -> Tensor:
    """Sum the rightmost ``event_dim`` dimensions of ``t``."""
    return t.sum(tuple(range(-event_dim, 0))) if event_dim else t


class FlowTransform(TransformModule):
    """Base of the library's transforms: an event shape, real (co)domain, a one-pass log-det.

    Subclasses implement :meth:`_forward` and :meth:`_backward`, each returning the mapped tensor
    and the log-det of the forward map at the pair, so that ``log_abs_det_jacobian`` after either
    direction reuses the value computed in that pass (DESIGN.md convention 4).
    """

    bijective = True

    def __init__(self, event_shape: EventShape) -> None:
        super().__init__(cache_size=1)
        self.event_shape = as_event_shape(event_shape)
        self._ladj_cache: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def event_dim(self) -> int:  # type: ignore[override]
        return len(self.event_shape)

    @property
    def domain(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.independent(constraints.real, self.event_dim)

    @property
    def codomain(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.independent(constraints.real, self.event_dim)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _call(self, x: Tensor) -> Tensor:
        check_event_shape(x, self.event_shape)
        y, ladj = self._forward(x)
        self._ladj_cache = (x, y, ladj)
        return y

    def _inverse(self, y: Tensor) -> Tensor:
        check_event_shape(y, self.event_shape, name="y")
        x, ladj = self._backward(y)
        self._ladj_cache = (x, y, ladj)
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        """``log |det dy/dx|``, shaped like the batch; free after a pass through ``x`` or ``y``."""
        cache = self._ladj_cache
        if cache is not None and cache[0] is x and cache[1] is y:
            return cache[2]
        check_event_shape(x, self.event_shape)
        return self._forward(x)[1]

    def clear_cache(self) -> None:
        """Drop the tensors kept for the next ``log_abs_det_jacobian`` call."""
        self._cached_x_y = None, None
        self._ladj_cache = None

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"


class ContextBound(nn.Module):
    """A conditioner ``net(x, context)`` with its context fixed: ``forward(x) = net(x, context)``.

    The network stays a submodule, so the transform returned by a ``Conditional*`` twin's
    ``condition(context)`` shares (and trains) the twin's parameters, and gradients reach the
    context.
    """

    def __init__(self, net: Callable[[Tensor, Tensor], Tensor], context: Tensor) -> None:
        super().__init__()
        self.net = net
        self.context = context

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x, self.context)


def check_context(context: Tensor, context_dim: int) -> None:
    """Raise ``ValueError`` unless ``context`` is a tensor ending in ``context_dim`` features."""
    if not isinstance(context, Tensor):
        raise TypeError(f"context: expected a tensor, got {type(context).__name__}")
    if context.dim() == 0 or context.shape[-1] != context_dim:
        raise ValueError(
            f"context: expected a tensor whose last dimension is {context_dim}, "
            f"got shape {tuple(context.shape)}"
        )
