"""Deprecated: the residual flows moved to :mod:`pyro_flowkit.flows` (``flows.iresnet``,
``flows.residual_flow``); this alias will be removed in 0.3."""

from pyro_flowkit._deprecation import warn_moved_module
from pyro_flowkit.flows.iresnet import conditional_iresnet, iresnet
from pyro_flowkit.flows.residual_flow import conditional_residual_flow, residual_flow

__all__ = ["conditional_iresnet", "conditional_residual_flow", "iresnet", "residual_flow"]

warn_moved_module(__name__)
