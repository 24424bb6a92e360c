"""Deprecated: moved to :mod:`pyro_flowkit.app.mixture_demo`; this alias will be removed in 0.3."""

from pyro_flowkit._deprecation import warn_moved_module
from pyro_flowkit.app.mixture_demo import gmm_demo  # noqa: F401

__all__ = ["gmm_demo"]

warn_moved_module(__name__)
