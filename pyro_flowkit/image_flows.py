"""Deprecated: the image flows moved to :mod:`pyro_flowkit.flows` (``flows.glow``,
``flows.realnvp``); this alias will be removed in 0.3."""

from pyro_flowkit._deprecation import warn_moved_module
from pyro_flowkit.flows.glow import conditional_glow, glow
from pyro_flowkit.flows.realnvp import image_realnvp

__all__ = ["conditional_glow", "glow", "image_realnvp"]

warn_moved_module(__name__)
