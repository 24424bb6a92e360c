"""Deprecated: moved to :mod:`pyro_flowkit.diagnostics` (``from_chains``); this alias will be
removed in 0.3."""

from pyro_flowkit._deprecation import warn_moved_module
from pyro_flowkit.diagnostics import from_chains as to_inference_data  # noqa: F401
from pyro_flowkit.diagnostics import import_arviz  # noqa: F401

__all__ = ["import_arviz", "to_inference_data"]

warn_moved_module(__name__)
