"""Names that moved, kept working for one minor release with a ``DeprecationWarning``."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

#: old module -> where its contents live now (each old module is a thin alias, removed in 0.3)
MOVED_MODULES = {
    "pyro_flowkit.image_flows": "pyro_flowkit.flows",
    "pyro_flowkit.residual_flows": "pyro_flowkit.flows",
    "pyro_flowkit.cli": "pyro_flowkit.app.cli",
    "pyro_flowkit.demo": "pyro_flowkit.app.demo",
    "pyro_flowkit.langevin_demo": "pyro_flowkit.app.langevin_demo",
    "pyro_flowkit.mixture_demo": "pyro_flowkit.app.mixture_demo",
    "pyro_flowkit.vae_demo": "pyro_flowkit.app.vae_demo",
    "pyro_flowkit.plots": "pyro_flowkit.app.plots",
    "pyro_flowkit.inference.diagnostics": "pyro_flowkit.diagnostics",
}


def warn_moved_module(name: str) -> None:
    """Warn that the module ``name`` is an alias of its new home."""
    warnings.warn(
        f"{name} is deprecated and will be removed in 0.3: import from {MOVED_MODULES[name]}",
        DeprecationWarning,
        stacklevel=3,
    )


def deprecated_alias(old: str, new: Callable) -> Callable:
    """``new`` wrapped to warn, when called, that ``old`` is now ``new``."""
    new_name = f"{new.__module__}.{new.__name__}"

    @functools.wraps(new)
    def alias(*args: object, **kwargs: object) -> object:
        warnings.warn(
            f"{old} is deprecated and will be removed in 0.3: use {new_name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return new(*args, **kwargs)

    alias.__doc__ = f"Deprecated alias of :func:`{new_name}`."
    return alias
