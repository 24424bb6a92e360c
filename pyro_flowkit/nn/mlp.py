"""Multi-layer perceptron conditioners whose last layer starts at zero."""

from __future__ import annotations

from collections.abc import Sequence

import torch  # noqa: F401 (the docstring examples use it)
from torch import Tensor, nn

from pyro_flowkit.nn.dropout import MaskPool, quantized_rate, relu_dropout
from pyro_flowkit.validation import check_count, check_rate


class MLP(nn.Module):
    r"""A ReLU perceptron :math:`h = W_L \sigma(\dots \sigma(W_1 x + V c + b_1) \dots) + b_L`.

    The context :math:`c` (optional) enters the first layer through its own bias-free linear map,
    so an input of shape ``A + (in_features,)`` and a context of shape ``B + (context_features,)``
    give an output of shape ``broadcast(A, B) + (out_features,)``: the context's share of the first
    layer is computed once per context row, not once per sample. The last layer (and the context
    map when there is no hidden layer) is zero-initialised, so a coupling built on this network
    starts as the identity map (Dinh et al. 2017, Kingma & Dhariwal 2018).

    Arguments:
        in_features: size of the input's last dimension.
        out_features: size of the output's last dimension.
        hidden_dims: widths of the hidden layers (may be empty).
        context_features: size of the context's last dimension; 0 for no context.
        dropout: probability :math:`p` of zeroing each hidden unit in training mode (masks from a
            :class:`~pyro_flowkit.nn.MaskPool`); as in the original formulation of dropout,
            evaluation mode scales the hidden units by :math:`1 - p` instead, so training pays
            for no rescaling.
        zero_init: zero the output layer's weight and bias.

    Example:
        >>> net = MLP(3, 4, hidden_dims=(8,), context_features=2)
        >>> net(torch.randn(5, 7, 3), torch.randn(7, 2)).shape
        torch.Size([5, 7, 4])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_dims: Sequence[int] = (256, 256),
        context_features: int = 0,
        *,
        dropout: float = 0.0,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        check_count("in_features", in_features)
        check_count("out_features", out_features)
        check_count("context_features", context_features, minimum=0)
        hidden_dims = tuple(hidden_dims)
        for h in hidden_dims:
            check_count("hidden_dims", h)
        widths = (in_features, *hidden_dims, out_features)
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.context_layer = (
            nn.Linear(context_features, widths[1], bias=False) if context_features else None
        )
        self.dropout = quantized_rate(check_rate("dropout", dropout))
        self._masks = MaskPool(dropout)
        self.in_features = in_features
        self.context_features = context_features
        if zero_init:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)
            if self.context_layer is not None and not hidden_dims:
                nn.init.zeros_(self.context_layer.weight)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Map ``x`` (and ``context``) to the output; leading dimensions broadcast."""
        h = self.layers[0](x)
        if self.context_layer is not None:
            if context is None:
                raise ValueError(
                    f"context: this network expects a context of {self.context_features} "
                    "features, got None"
                )
            h = h + self.context_layer(context)
        for i, layer in enumerate(self.layers):  # (slicing a ModuleList builds a new one)
            if i:
                h = layer(relu_dropout(h, self.dropout, self._masks, self.training))
        return h
