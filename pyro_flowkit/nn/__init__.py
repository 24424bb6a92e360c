"""Conditioner networks for the flows: plain PyTorch modules with no Pyro logic."""

from pyro_flowkit.nn.conv import ConvNet
from pyro_flowkit.nn.dropout import MaskPool, keep_mask, quantized_rate, relu_dropout
from pyro_flowkit.nn.mlp import MLP

__all__ = ["MLP", "ConvNet", "MaskPool", "keep_mask", "quantized_rate", "relu_dropout"]
