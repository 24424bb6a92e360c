r"""Glow's invertible 1x1 convolution, in LU form or as a dense matrix."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pyro_flowkit.transforms._base import ImageTransform
from pyro_flowkit.validation import check_count


class InvertibleConv1x1(ImageTransform):
    r"""A learned channel mixing :math:`y_{:, h, w} = W x_{:, h, w}` at every pixel.

    With ``lu=True`` (Glow's LU form) :math:`W = P L (U + \operatorname{diag}(\sigma e^{s}))`:
    :math:`P` a fixed permutation, :math:`L` unit lower triangular, :math:`U` strictly upper
    triangular, and the signs :math:`\sigma` fixed buffers, so
    :math:`\log|\det J| = HW \sum_c s_c` costs nothing and the inverse is two triangular solves.
    With ``lu=False`` :math:`W` is a dense parameter whose log-determinant and inverse are computed
    in float64. :math:`W` starts as a random rotation (from torch's global generator), and the
    map runs as one batched matrix product over the pixels (a 1x1 convolution), not by
    broadcasting. It applies to any ``H, W``.

    Arguments:
        channels: the number of channels :math:`C`.
        lu: use the LU parametrisation.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> t = InvertibleConv1x1(4)
        >>> x = torch.randn(2, 4, 3, 3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    def __init__(self, channels: int, lu: bool = True) -> None:
        check_count("channels", channels)
        super().__init__()
        self.channels, self.lu = channels, bool(lu)
        w = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))[0]
        dtype = torch.get_default_dtype()
        if not self.lu:  # QR's factor is column-major: a parameter must own contiguous data
            self.weight = nn.Parameter(w.to(dtype).contiguous())
            return
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("permutation", p.to(dtype))
        self.register_buffer("sign_s", torch.sign(s).to(dtype))
        self.lower = nn.Parameter(torch.tril(lower, -1).to(dtype))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.log_s = nn.Parameter(s.abs().log().to(dtype))

    def _factors(self) -> tuple[Tensor, Tensor]:
        """``L`` and ``U + diag(sign_s * exp(log_s))``."""
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * self.log_s.exp())
        return lower, upper

    def weight_matrix(self) -> Tensor:
        """:math:`W`, shape ``(C, C)``."""
        if not self.lu:
            return self.weight
        lower, upper = self._factors()
        return self.permutation @ lower @ upper

    def inverse_matrix(self) -> Tensor:
        r""":math:`W^{-1} = U^{-1} L^{-1} P^\top` by triangular solves (float64 when dense)."""
        if not self.lu:
            return torch.linalg.inv(self.weight.double()).to(self.weight.dtype)
        # each solve reads one triangle only (the strict lower one of ``lower``, its diagonal
        # being 1; the upper one of ``upper``, whose diagonal is replaced) and its gradient is
        # masked to that triangle: the same result and gradients as with _factors' masked
        # matrices, in 3 small operations instead of 8
        half = torch.linalg.solve_triangular(
            self.lower, self.permutation.T, upper=False, unitriangular=True
        )
        upper = torch.diagonal_scatter(self.upper, self.sign_s * self.log_s.exp())
        return torch.linalg.solve_triangular(upper, half, upper=True)

    def log_abs_det_matrix(self) -> Tensor:
        r""":math:`\log|\det W|`."""
        if not self.lu:
            return torch.linalg.slogdet(self.weight.double())[1].to(self.weight.dtype)
        return self.log_s.sum()

    def _check_input(self, t: Tensor, name: str) -> None:
        if t.dim() < 3 or t.shape[-3] != self.channels:
            raise ValueError(
                f"{name}: expected a tensor whose trailing shape is ({self.channels}, H, W), "
                f"got shape {tuple(t.shape)}"
            )

    def _apply_matrix(self, x: Tensor, matrix: Tensor) -> tuple[Tensor, Tensor]:
        # a batched matrix product over the pixels: on CPU faster than conv2d's 1x1 kernel or
        # matmul's broadcast; einsum returns a permuted view, made contiguous (a later
        # transform may .view() it)
        flat = x.reshape(-1, self.channels, x.shape[-2:].numel())
        y = torch.einsum("ij,njp->nip", matrix, flat).contiguous().view(x.shape)
        ladj = self.log_abs_det_matrix() * x.shape[-2:].numel()
        return y, ladj.expand(x.shape[:-3])

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._apply_matrix(x, self.weight_matrix())

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._apply_matrix(y, self.inverse_matrix())

    def extra_repr(self) -> str:
        return f"channels={self.channels}, lu={self.lu}"
