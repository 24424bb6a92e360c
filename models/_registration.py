"""Registering a model's parameters in Pyro's param store, shared by the autoencoder models."""

from __future__ import annotations

import pyro
from pyro.params.param_store import param_with_module_name
from torch import nn

__all__ = ["register_params"]


def register_params(module: nn.Module, name: str) -> None:
    """``pyro.param(f"{name}$$${param}", p)`` for every parameter of ``module``, refusing a store
    that already holds another tensor under one of those names (a second model with the same
    ``name``): Pyro would silently train that tensor instead of ``module``'s."""
    for pname, p in module.named_parameters():
        full = param_with_module_name(name, pname)
        if pyro.param(full, p) is not p:
            raise ValueError(
                f"name: Pyro's param store holds another tensor under {full!r} (from another "
                f"model named {name!r}); give each model its own name or call "
                "pyro.clear_param_store()"
            )
