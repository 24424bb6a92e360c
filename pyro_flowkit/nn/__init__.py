"""Conditioner networks for the flows: plain PyTorch modules with no Pyro logic."""

from pyro_flowkit.nn.dropout import MaskPool, keep_mask, quantized_rate
from pyro_flowkit.nn.mlp import MLP

__all__ = ["MLP", "MaskPool", "keep_mask", "quantized_rate"]
