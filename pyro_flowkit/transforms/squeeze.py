r"""Space-to-depth: RealNVP's squeeze of a ``(C, H, W)`` event into ``(f^2 C, H/f, W/f)``.

References:
    | Density estimation using Real NVP (Dinh et al., 2017), section 3.6
    | https://arxiv.org/abs/1605.08803
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyro_flowkit.transforms._base import ImageTransform
from pyro_flowkit.validation import check_count


def squeeze(x: Tensor, factor: int = 2) -> Tensor:
    """``(..., C, H, W) -> (..., f^2 C, H/f, W/f)``; channel ``c f^2 + i f + j`` holds the pixels
    ``(c, f h + i, f w + j)``, so a block of leading channels stays a block of leading channels."""
    n, f = x.dim() - 3, factor
    x = x.unflatten(-1, (x.shape[-1] // f, f)).unflatten(-3, (x.shape[-2] // f, f))
    x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return x.flatten(-5, -3)


def unsqueeze(y: Tensor, factor: int = 2) -> Tensor:
    """The inverse of :func:`squeeze`: ``(..., f^2 C, H, W) -> (..., C, f H, f W)``."""
    n, f = y.dim() - 3, factor
    y = y.unflatten(-3, (y.shape[-3] // (f * f), f, f))
    y = y.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return y.flatten(-2, -1).flatten(-3, -2)


class Squeeze(ImageTransform):
    r"""Space-to-depth :math:`(C, H, W) \to (f^2 C, H/f, W/f)`, a permutation (log-det 0).

    Each :math:`f \times f` block of pixels becomes :math:`f^2` channels of one pixel, trading
    spatial size for channels so that couplings can mix pixels that were far apart.
    ``forward_shape`` and ``inverse_shape`` give the event shapes on either side, so a
    ``TransformedDistribution`` over a ``(C, H, W)`` base has events ``(f^2 C, H/f, W/f)``.

    Arguments:
        factor: the block size :math:`f`; ``H`` and ``W`` must be multiples of it.

    References:
        | Density estimation using Real NVP (Dinh et al., 2017) https://arxiv.org/abs/1605.08803

    Example:
        >>> Squeeze()(torch.randn(5, 3, 8, 4)).shape
        torch.Size([5, 12, 4, 2])
    """

    def __init__(self, factor: int = 2) -> None:
        check_count("factor", factor, minimum=2)
        super().__init__()
        self.factor = factor

    def forward_shape(self, shape: torch.Size) -> torch.Size:
        *lead, c, h, w = self._checked(shape, "shape", spatial=True)
        f = self.factor
        return torch.Size((*lead, c * f * f, h // f, w // f))

    def inverse_shape(self, shape: torch.Size) -> torch.Size:
        *lead, c, h, w = self._checked(shape, "shape", spatial=False)
        f = self.factor
        return torch.Size((*lead, c // (f * f), h * f, w * f))

    def _checked(self, shape: torch.Size, name: str, spatial: bool) -> torch.Size:
        f = self.factor
        if len(shape) < 3:
            raise ValueError(
                f"{name}: expected a tensor whose trailing shape is (C, H, W), "
                f"got shape {tuple(shape)}"
            )
        if spatial and (shape[-2] % f or shape[-1] % f):
            raise ValueError(
                f"{name}: Squeeze(factor={f}) needs H and W divisible by {f}, "
                f"got shape {tuple(shape)}"
            )
        if not spatial and shape[-3] % (f * f):
            raise ValueError(
                f"{name}: the inverse of Squeeze(factor={f}) needs C divisible by {f * f}, "
                f"got shape {tuple(shape)}"
            )
        return torch.Size(shape)

    def _zero(self, t: Tensor) -> Tensor:
        return t.new_zeros(()).expand(t.shape[:-3])

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._checked(x.shape, "x", spatial=True)
        return squeeze(x, self.factor), self._zero(x)

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._checked(y.shape, "y", spatial=False)
        return unsqueeze(y, self.factor), self._zero(y)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self._zero(x)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
