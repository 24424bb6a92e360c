"""Conditioner networks for the flows: plain PyTorch modules with no Pyro logic."""

from pyro_flowkit.nn.conv import ConvNet
from pyro_flowkit.nn.dropout import MaskPool, keep_mask, quantized_rate, relu_dropout
from pyro_flowkit.nn.lipschitz import (
    LipschitzConvNet,
    LipschitzMLP,
    LipSwish,
    SpectralNormConv2d,
    SpectralNormLinear,
    frozen_spectral_norms,
    refresh_spectral_norms,
)
from pyro_flowkit.nn.made import CategoricalMADE
from pyro_flowkit.nn.mlp import MLP
from pyro_flowkit.nn.vq import VectorQuantizer, VQOutput

__all__ = [
    "CategoricalMADE",
    "VQOutput",
    "VectorQuantizer",
    "MLP",
    "ConvNet",
    "LipSwish",
    "LipschitzConvNet",
    "LipschitzMLP",
    "MaskPool",
    "SpectralNormConv2d",
    "SpectralNormLinear",
    "frozen_spectral_norms",
    "keep_mask",
    "quantized_rate",
    "refresh_spectral_norms",
    "relu_dropout",
]
