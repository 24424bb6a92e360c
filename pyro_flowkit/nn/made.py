r"""A masked autoencoder (MADE) over sequences of categorical variables: the logits of each
position from the one-hot codes of the positions before it, all positions in one pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pyro_flowkit.validation import check_count

__all__ = ["CategoricalMADE"]


class _MaskedLinear(nn.Linear):
    mask: Tensor

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        super().__init__(mask.shape[1], mask.shape[0], bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class CategoricalMADE(nn.Module):
    r"""Logits :math:`\ell_m(c_{<m}) \in \mathbb R^K` of every position :math:`m = 1..M` of a
    sequence :math:`c \in \{0..K-1\}^M` from the one-hot codes of the positions before it
    (Germain et al.'s masked autoencoder with an ordering ``0, 1, ..., M-1``):

    .. math:: p(c) = \prod_{m=1}^M \operatorname{softmax}(\ell_m(c_{<m}))_{c_m}.

    The input units of position :math:`m` have degree :math:`m`, hidden units degrees cycling
    through :math:`1..M-1`, the logits of position :math:`m` degree :math:`m`; a weight is kept
    where the degree does not fall (hidden) or strictly rises (output), and a masked direct
    connection from input to output is added. The first position's logits are a learned bias.

    Arguments:
        num_positions: :math:`M`.
        num_classes: :math:`K`.
        hidden_dims: widths of the ReLU hidden layers.

    References:
        | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
        | https://arxiv.org/abs/1502.03509

    Example:
        >>> made = CategoricalMADE(4, 3, hidden_dims=(16,))
        >>> codes = torch.randint(0, 3, (5, 4))
        >>> made(nn.functional.one_hot(codes, 3).float()).shape
        torch.Size([5, 4, 3])
    """

    def __init__(
        self, num_positions: int, num_classes: int, hidden_dims: Sequence[int] = (256,)
    ) -> None:
        super().__init__()
        self.num_positions = check_count("num_positions", num_positions)
        self.num_classes = check_count("num_classes", num_classes)
        hidden_dims = tuple(hidden_dims)
        for h in hidden_dims:
            check_count("hidden_dims", h)
        m, k = num_positions, num_classes
        inputs = torch.arange(1, m + 1).repeat_interleave(k)
        degrees = [inputs]
        for h in hidden_dims:
            degrees.append(torch.arange(h) % max(m - 1, 1) + 1)
        layers = [
            _MaskedLinear(after[:, None] >= before[None, :])
            for before, after in zip(degrees[:-1], degrees[1:], strict=True)
        ]
        self.hidden = nn.ModuleList(layers)
        self.output = _MaskedLinear(inputs[:, None] > degrees[-1][None, :])
        self.direct = _MaskedLinear(inputs[:, None] > inputs[None, :], bias=False)

    def forward(self, onehot: Tensor) -> Tensor:
        """Logits ``(..., M, K)`` from one-hot (or any real) codes ``(..., M, K)``."""
        m, k = self.num_positions, self.num_classes
        if onehot.shape[-2:] != (m, k):
            raise ValueError(f"onehot: expected shape (..., {m}, {k}), got {tuple(onehot.shape)}")
        x = onehot.flatten(-2)
        h = x
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return (self.output(h) + self.direct(x)).unflatten(-1, (m, k))
