r"""Glow's learned prior of the factored-out half, as an affine coupling on the channels.

At the end of a level Glow factors out half of the channels, :math:`z_2`, and models it as
:math:`\mathcal{N}(\mu(z_1), e^{2 s(z_1)})` given the kept half :math:`z_1`, with :math:`(\mu, s)`
a zero-initialised convolution of :math:`z_1`. Written as the transform
:math:`z_2 = \mu(z_1) + e^{s(z_1)} \odot u`, :math:`u \sim \mathcal{N}(0, I)`, this is an affine
coupling with a channel mask, so the base stays :math:`\mathcal{N}(0, I)` over the whole event
(DESIGN.md, convention 3) and the prior's log-density is the coupling's log-det plus the base's.

References:
    | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
    | https://arxiv.org/abs/1807.03039
"""

from __future__ import annotations

import torch  # noqa: F401 (the docstring examples use it)
from torch import nn

from pyro_flowkit.transforms._base import EventShape, image_event_shape
from pyro_flowkit.transforms.coupling import (
    AffineCoupling,
    ConditionalAffineCoupling,
    conditioner_for,
)
from pyro_flowkit.transforms.masks import Partition, channel_mask, make_partition


def _split(
    event_shape: EventShape, context_dim: int, hidden_channels: int
) -> tuple[Partition, nn.Module]:
    """The channel partition and its conditioner (one zero-initialised conv when hidden is 0)."""
    partition = make_partition(channel_mask(tuple(image_event_shape(event_shape))))
    return partition, conditioner_for(partition, 2, hidden_channels, context_dim)


class SplitPrior(AffineCoupling):
    r"""The learned prior of the last :math:`\lfloor C/2 \rfloor` channels given the first ones.

    :math:`y_2 = \mu(y_1) + e^{s(y_1)} \odot x_2`, :math:`y_1 = x_1`, with :math:`(\mu, h)` one
    zero-initialised 3x3 convolution of :math:`y_1` and :math:`s = b \tanh(h / b)`.

    Arguments:
        event_shape: ``(C, H, W)`` with ``C >= 2``.
        log_scale_bound: the soft bound :math:`b` on the log-scale.
        hidden_channels: 0 (Glow) for a single convolution, else the width of a
            :class:`~pyro_flowkit.nn.ConvNet` conditioner.

    Example:
        >>> t = SplitPrior((4, 2, 2))
        >>> t(torch.randn(3, 4, 2, 2)).shape
        torch.Size([3, 4, 2, 2])
    """

    def __init__(
        self, event_shape: EventShape, log_scale_bound: float = 2.0, hidden_channels: int = 0
    ) -> None:
        super().__init__(*_split(event_shape, 0, hidden_channels), log_scale_bound=log_scale_bound)


class ConditionalSplitPrior(ConditionalAffineCoupling):
    r"""The split prior with a context: :math:`\mu` and :math:`s` also see the context, tiled.

    Arguments:
        event_shape: ``(C, H, W)`` with ``C >= 2``.
        context_dim: size of the context vector.
        log_scale_bound: the soft bound on the log-scale.
        hidden_channels: as for :class:`SplitPrior`.
    """

    def __init__(
        self,
        event_shape: EventShape,
        context_dim: int,
        log_scale_bound: float = 2.0,
        hidden_channels: int = 0,
    ) -> None:
        partition, net = _split(event_shape, context_dim, hidden_channels)
        super().__init__(partition, net, log_scale_bound=log_scale_bound)
