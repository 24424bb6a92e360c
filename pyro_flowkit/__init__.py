"""pyro-flowkit: normalizing flows, and the models built from them, as Pyro parts.

``pyro_flowkit.transforms``, ``.flows``, ``.nn``, ``.data`` and ``.metrics`` load with the package;
``pyro_flowkit.models`` and ``pyro_flowkit.inference`` load on first access.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pyro_flowkit import data, distributions, flows, metrics, nn, transforms
from pyro_flowkit.errors import ConvergenceWarning, InversionError, NotFittedError

__version__ = "0.1.0"
__all__ = [
    "ConvergenceWarning",
    "InversionError",
    "NotFittedError",
    "data",
    "distributions",
    "flows",
    "guides",
    "inference",
    "metrics",
    "models",
    "nn",
    "transforms",
]

_LAZY = {"models", "inference", "cli", "guides"}


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
