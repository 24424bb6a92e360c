"""Inference algorithms that plug into Pyro, installed as ``pyro_flowkit.inference``."""

from pyro_flowkit.inference.training import minibatches, train

__all__ = ["minibatches", "train"]
