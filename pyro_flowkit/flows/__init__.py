"""Builders of whole flows, one module per paper, and the distribution a flow defines.

=================  ==========================================================================
module             builders (each with its ``conditional_*`` twin)
=================  ==========================================================================
``nice``           :func:`nice` (Dinh et al. 2014)
``realnvp``        :func:`realnvp` on vectors and images, :func:`image_realnvp` (Dinh et al.
                   2017)
``glow``           :func:`glow` (Kingma & Dhariwal 2018)
``iresnet``        :func:`iresnet` (Behrmann et al. 2019)
``residual_flow``  :func:`residual_flow` (Chen et al. 2019)
=================  ==========================================================================

Every builder returns a :class:`~pyro_flowkit.transforms.ComposeFlow` (a Pyro
``ComposeTransformModule``; for ``conditional_*`` a ``ConditionalComposeFlow`` whose
``condition(context)`` returns one) whose forward map goes from the base to the data. A new flow
is the identity map (conditioners end in a zero-initialised layer), up to Glow's random 1x1
convolutions, and the same bijection in training and evaluation mode. The options of each family
are typed once (:class:`CouplingOptions`, :class:`RealNVPOptions`, :class:`GlowOptions`,
:class:`ResidualOptions`) and shared by the builder and its twin.
"""

from pyro_flowkit.flows._common import CouplingOptions
from pyro_flowkit.flows.distribution import flow_distribution, leaf_transforms
from pyro_flowkit.flows.glow import GlowOptions, conditional_glow, glow
from pyro_flowkit.flows.iresnet import ResidualOptions, conditional_iresnet, iresnet
from pyro_flowkit.flows.nice import conditional_nice, nice
from pyro_flowkit.flows.realnvp import (
    RealNVPOptions,
    conditional_realnvp,
    image_realnvp,
    realnvp,
)
from pyro_flowkit.flows.residual_flow import conditional_residual_flow, residual_flow

__all__ = [
    "CouplingOptions",
    "GlowOptions",
    "RealNVPOptions",
    "ResidualOptions",
    "conditional_glow",
    "conditional_iresnet",
    "conditional_nice",
    "conditional_realnvp",
    "conditional_residual_flow",
    "flow_distribution",
    "glow",
    "image_realnvp",
    "iresnet",
    "leaf_transforms",
    "nice",
    "realnvp",
    "residual_flow",
]
