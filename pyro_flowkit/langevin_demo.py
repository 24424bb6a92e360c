"""Deprecated: moved to :mod:`pyro_flowkit.app.langevin_demo`; this alias will be removed in 0.3."""

from pyro_flowkit._deprecation import warn_moved_module
from pyro_flowkit.app.langevin_demo import ebm_demo, logistic_potential, mala_demo  # noqa: F401

__all__ = ["ebm_demo", "logistic_potential", "mala_demo"]

warn_moved_module(__name__)
