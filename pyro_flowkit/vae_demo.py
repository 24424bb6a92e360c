"""Deprecated: moved to :mod:`pyro_flowkit.app.vae_demo`; this alias will be removed in 0.3."""

from pyro_flowkit._deprecation import warn_moved_module
from pyro_flowkit.app.vae_demo import vae_demo  # noqa: F401

__all__ = ["vae_demo"]

warn_moved_module(__name__)
