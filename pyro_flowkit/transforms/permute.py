"""A fixed permutation of the features, stored as a buffer so it moves and saves with the flow."""

from __future__ import annotations

import torch
from torch import Tensor

from pyro_flowkit.transforms._base import EventShape, FlowTransform, as_event_shape


class Permute(FlowTransform):
    r"""Reorders the event's first dimension: :math:`y_i = x_{\pi(i)}`, log-det 0.

    For vectors it reorders the features, for ``(C, H, W)`` images the channels (Glow's
    ``"shuffle"`` and ``"reverse"`` alternatives to the 1x1 convolution). Placed between coupling
    layers so that every feature is transformed and conditioned upon. Unlike
    ``pyro.distributions.transforms.Permute`` the permutation is a buffer, so it follows
    ``.to(device)`` and is saved in ``state_dict``.

    Arguments:
        permutation: a 1-D tensor holding a permutation of ``0 .. n-1``.
        event_shape: the event's shape, whose first size is ``n``; ``(n,)`` by default.

    Example:
        >>> t = Permute(torch.tensor([2, 0, 1]))
        >>> t(torch.tensor([10.0, 20.0, 30.0]))
        tensor([30., 10., 20.])
    """

    def __init__(self, permutation: Tensor, event_shape: EventShape | None = None) -> None:
        permutation = torch.as_tensor(permutation)
        n = permutation.numel()
        if permutation.dim() != 1 or not torch.equal(
            torch.sort(permutation).values, torch.arange(n, device=permutation.device)
        ):
            raise ValueError(
                f"permutation: expected a 1-D permutation of 0..n-1, got {permutation.tolist()}"
            )
        shape = as_event_shape(n if event_shape is None else event_shape)
        if shape[0] != n:
            raise ValueError(
                f"event_shape: expected a first size of {n} (the permutation's), got {tuple(shape)}"
            )
        super().__init__(shape)
        self.register_buffer("permutation", permutation.long())
        self.register_buffer("inverse_permutation", torch.argsort(self.permutation))

    @classmethod
    def random(cls, dim: int, generator: torch.Generator | None = None) -> Permute:
        """A uniformly random permutation of ``dim`` features."""
        return cls(torch.randperm(dim, generator=generator))

    def _zero(self, t: Tensor) -> Tensor:
        return t.new_zeros(()).expand(t.shape[: t.dim() - self.event_dim])

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.index_select(-self.event_dim, self.permutation), self._zero(x)

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y.index_select(-self.event_dim, self.inverse_permutation), self._zero(y)
