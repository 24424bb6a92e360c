"""The convolutional conditioner of image couplings and split priors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyro_flowkit.nn.dropout import MaskPool, quantized_rate, relu_dropout
from pyro_flowkit.validation import check_count, check_rate


class ConvNet(nn.Module):
    r"""RealNVP/Glow's conditioner: 3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv.

    It maps images of shape ``A + (in_channels, H, W)`` to ``A + (out_channels, H, W)`` (any
    leading shape ``A``; the convolutions see ``(N, C, H, W)``). With ``hidden_channels=0`` it is
    the single zero-initialised 3x3 convolution of Glow's split prior. A context vector of
    ``context_features`` entries is tiled over the image and enters the first convolution as
    extra input channels: its share, a convolution of the tiled context, is computed once per
    context row (shape ``B + (context_features,)``) and broadcast, so the output has shape
    ``broadcast(A, B) + (out_channels, H, W)``. The last convolution (and the context's, when it
    is the only one) starts at zero, so a coupling built on it starts as the identity.

    Arguments:
        in_channels: channels of the input image.
        out_channels: channels of the output.
        hidden_channels: width of the two hidden layers; 0 for a single convolution.
        context_features: size of the context vector; 0 for none.
        dropout: probability of zeroing each hidden unit in training mode (as
            :class:`~pyro_flowkit.nn.MLP`: evaluation mode scales by :math:`1 - p` instead).
        zero_init: zero the last convolution's weight and bias.

    References:
        | Density estimation using Real NVP (Dinh et al., 2017) https://arxiv.org/abs/1605.08803
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> net = ConvNet(2, 4, hidden_channels=8, context_features=3)
        >>> net(torch.randn(5, 7, 2, 4, 4), torch.randn(7, 3)).shape
        torch.Size([5, 7, 4, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 64,
        context_features: int = 0,
        *,
        dropout: float = 0.0,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        check_count("in_channels", in_channels)
        check_count("out_channels", out_channels)
        check_count("hidden_channels", hidden_channels, minimum=0)
        check_count("context_features", context_features, minimum=0)
        first = hidden_channels or out_channels
        self.convs = nn.ModuleList([nn.Conv2d(in_channels, first, 3, padding=1)])
        if hidden_channels:
            self.convs.append(nn.Conv2d(hidden_channels, hidden_channels, 1))
            self.convs.append(nn.Conv2d(hidden_channels, out_channels, 3, padding=1))
        self.context_conv = (
            nn.Conv2d(context_features, first, 3, padding=1, bias=False)
            if context_features
            else None
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.context_features = context_features
        self.dropout = quantized_rate(check_rate("dropout", dropout))
        self._masks = MaskPool(dropout)
        if zero_init:
            nn.init.zeros_(self.convs[-1].weight)
            nn.init.zeros_(self.convs[-1].bias)
            if self.context_conv is not None and not hidden_channels:
                nn.init.zeros_(self.context_conv.weight)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Map ``x`` (and ``context``) to the output; leading dimensions broadcast."""
        if x.dim() < 3 or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"x: expected a tensor of shape (..., {self.in_channels}, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-3]
        h = self.convs[0](x.reshape(-1, *x.shape[-3:]))
        if self.context_conv is not None:
            h = h.reshape(*lead, *h.shape[-3:]) + self._context_share(context, x.shape[-2:])
            lead = h.shape[:-3]
            h = h.reshape(-1, *h.shape[-3:])
        for conv in self.convs[1:]:
            h = conv(relu_dropout(h, self.dropout, self._masks, self.training))
        return h.reshape(*lead, *h.shape[-3:])

    def _context_share(self, context: Tensor | None, image: torch.Size) -> Tensor:
        if context is None or context.dim() == 0 or context.shape[-1] != self.context_features:
            got = None if context is None else tuple(context.shape)
            raise ValueError(
                f"context: expected a tensor whose last dimension is {self.context_features}, "
                f"got {got}"
            )
        c = context.reshape(-1, self.context_features, 1, 1).expand(-1, -1, *image)
        share = F.conv2d(c, self.context_conv.weight, padding=1)
        return share.reshape(*context.shape[:-1], *share.shape[-3:])
