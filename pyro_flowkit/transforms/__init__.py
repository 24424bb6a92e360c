"""Bijections as Pyro ``TransformModule``s, each learnable one with a ``Conditional*`` twin.

Pyro's direction throughout: the forward map goes from the base (noise) to the data, and
``TransformedDistribution.log_prob`` runs the inverse.
"""

from pyro_flowkit.transforms._base import FlowTransform, as_event_shape
from pyro_flowkit.transforms.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    ConditionalAdditiveCoupling,
    ConditionalAffineCoupling,
    coupling,
)
from pyro_flowkit.transforms.logit import Logit
from pyro_flowkit.transforms.masks import (
    VectorPartition,
    alternating_mask,
    half_mask,
    vector_mask,
)
from pyro_flowkit.transforms.permute import Permute
from pyro_flowkit.transforms.scaling import ConditionalScaling, Scaling

__all__ = [
    "AdditiveCoupling",
    "AffineCoupling",
    "ConditionalAdditiveCoupling",
    "ConditionalAffineCoupling",
    "ConditionalScaling",
    "FlowTransform",
    "Logit",
    "Permute",
    "Scaling",
    "VectorPartition",
    "alternating_mask",
    "as_event_shape",
    "coupling",
    "half_mask",
    "vector_mask",
]
