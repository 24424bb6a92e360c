"""Deprecated: moved to :mod:`pyro_flowkit.app.cli`; this alias will be removed in 0.3."""

from pyro_flowkit._deprecation import warn_moved_module
from pyro_flowkit.app.cli import main  # noqa: F401

__all__ = ["main"]

warn_moved_module(__name__)
