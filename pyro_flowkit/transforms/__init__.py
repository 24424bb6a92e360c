"""Bijections as Pyro ``TransformModule``s, each learnable one with a ``Conditional*`` twin.

Pyro's direction throughout: the forward map goes from the base (noise) to the data, and
``TransformedDistribution.log_prob`` runs the inverse.
"""

from pyro_flowkit.transforms._base import CachedTransform, FlowTransform, as_event_shape
from pyro_flowkit.transforms.actnorm import ActNorm
from pyro_flowkit.transforms.compose import ComposeFlow, ConditionalComposeFlow, compose
from pyro_flowkit.transforms.conv1x1 import InvertibleConv1x1
from pyro_flowkit.transforms.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    ConditionalAdditiveCoupling,
    ConditionalAffineCoupling,
    coupling,
)
from pyro_flowkit.transforms.inverse import ConditionalInverse, Inverse
from pyro_flowkit.transforms.logit import Logit
from pyro_flowkit.transforms.masks import (
    ChannelPartition,
    MaskedPartition,
    VectorPartition,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
    make_partition,
    vector_mask,
)
from pyro_flowkit.transforms.multiscale import ConditionalSqueezeBlock, SqueezeBlock
from pyro_flowkit.transforms.permute import Permute
from pyro_flowkit.transforms.residual import (
    ConditionalInvertibleResidual,
    InvertibleResidual,
    set_logdet,
)
from pyro_flowkit.transforms.scaling import ConditionalScaling, Scaling
from pyro_flowkit.transforms.split_prior import ConditionalSplitPrior, SplitPrior
from pyro_flowkit.transforms.squeeze import Squeeze, squeeze, unsqueeze
from pyro_flowkit.transforms.whitening import Whitening

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "CachedTransform",
    "ChannelPartition",
    "ComposeFlow",
    "ConditionalComposeFlow",
    "ConditionalAdditiveCoupling",
    "ConditionalAffineCoupling",
    "ConditionalInverse",
    "ConditionalInvertibleResidual",
    "ConditionalScaling",
    "ConditionalSplitPrior",
    "ConditionalSqueezeBlock",
    "FlowTransform",
    "Inverse",
    "InvertibleConv1x1",
    "InvertibleResidual",
    "Logit",
    "MaskedPartition",
    "Permute",
    "Scaling",
    "SplitPrior",
    "Squeeze",
    "SqueezeBlock",
    "VectorPartition",
    "Whitening",
    "alternating_mask",
    "as_event_shape",
    "channel_mask",
    "checkerboard_mask",
    "compose",
    "coupling",
    "half_mask",
    "make_partition",
    "set_logdet",
    "squeeze",
    "unsqueeze",
    "vector_mask",
]
