"""Deprecated: moved to :mod:`pyro_flowkit.app.demo`; this alias will be removed in 0.3."""

from pyro_flowkit._deprecation import warn_moved_module
from pyro_flowkit.app.demo import FitResult, build_flow, demo, fit  # noqa: F401

__all__ = ["FitResult", "build_flow", "demo", "fit"]

warn_moved_module(__name__)
