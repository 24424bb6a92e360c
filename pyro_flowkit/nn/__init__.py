"""Conditioner networks for the flows: plain PyTorch modules with no Pyro logic."""

from pyro_flowkit.nn.dropout import keep_mask, quantized_rate
from pyro_flowkit.nn.mlp import MLP

__all__ = ["MLP", "keep_mask", "quantized_rate"]
