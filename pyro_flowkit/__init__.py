"""pyro-flowkit: normalizing flows, and the models built from them, as Pyro parts.

The layers, each importing only from those before it:

1. the flows and their parts: :mod:`~pyro_flowkit.transforms` (bijections), :mod:`~pyro_flowkit.nn`
   (conditioner networks), :mod:`~pyro_flowkit.flows` (builders, one module per paper),
   :mod:`~pyro_flowkit.guides` (flows as variational guides), :mod:`~pyro_flowkit.diagnostics`,
   :mod:`~pyro_flowkit.data`, :mod:`~pyro_flowkit.metrics`, :mod:`~pyro_flowkit.ot` (exact optimal
   transport), :mod:`~pyro_flowkit.text` (STS-benchmark, sentence encoders, STS scoring);
2. :mod:`pyro_flowkit.inference`: inference algorithms that plug into Pyro (Langevin kernels, EM,
   EBM training, Wasserstein critics and WGAN training, the training loop);
3. :mod:`pyro_flowkit.models`: Pyro models (VAE, f-VAE, mixtures, energy models);
4. ``pyro_flowkit.app``: the ``flowkit`` command line and its demos.

``models`` and ``inference`` live in the repository's top-level ``models/`` and ``inference/``
folders and load on first access (``fk.models``) or import (``import pyro_flowkit.models``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pyro_flowkit import (
    data,
    diagnostics,
    distributions,
    flows,
    guides,
    metrics,
    nn,
    ot,
    text,
    transforms,
    validation,
)
from pyro_flowkit._source import install_source_finder
from pyro_flowkit.errors import ConvergenceWarning, InversionError, NotFittedError

__version__ = "0.1.0"
__all__ = [
    "ConvergenceWarning",
    "InversionError",
    "NotFittedError",
    "data",
    "diagnostics",
    "distributions",
    "flows",
    "guides",
    "inference",
    "metrics",
    "models",
    "nn",
    "ot",
    "text",
    "transforms",
    "validation",
]

_LAZY = ("models", "inference")
install_source_finder(__name__, __file__, _LAZY)


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (``__all__``), the lazily loaded subpackages included."""
    return sorted({*__all__, "__version__"})
