"""The base distribution of the flows: a standard normal with a lean ``log_prob``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pyro.distributions import Independent, Normal, TransformedDistribution
from torch import Tensor
from torch.distributions.utils import _sum_rightmost

from pyro_flowkit.validation import check_positive

__all__ = ["FlowDistribution", "StandardNormal"]


class StandardNormal(Independent):
    r""":math:`\mathcal{N}(0, T^2 I)` over ``event_shape``: the base of every flow here.

    It is ``Normal(0, T).expand(event_shape).to_event(len(event_shape))`` (an ``Independent`` over
    a ``Normal``, with the same samples, moments and ``expand``), whose ``log_prob``,
    :math:`-\lVert x \rVert^2 / (2T^2) - D \log(T \sqrt{2\pi})`, takes three tensor operations
    instead of eight.

    Arguments:
        event_shape: the event's shape.
        temperature: the standard deviation :math:`T`.
        device, dtype: of the samples.
        validate_args: check ``log_prob``'s argument against the support.

    Example:
        >>> d = StandardNormal((2, 3))
        >>> d.log_prob(torch.zeros(5, 2, 3)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        temperature: float = 1.0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        validate_args: bool | None = None,
    ) -> None:
        check_positive("temperature", temperature)
        event_shape = torch.Size(event_shape)
        loc = torch.zeros(event_shape, device=device, dtype=dtype or torch.get_default_dtype())
        normal = Normal(loc, torch.full_like(loc, temperature), validate_args=False)
        super().__init__(normal, len(event_shape), validate_args=validate_args)
        self.temperature = float(temperature)
        self._log_norm = event_shape.numel() * (
            math.log(self.temperature) + 0.5 * math.log(2 * math.pi)
        )

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        square = (value * value).sum(tuple(range(-len(self.event_shape), 0)))
        lp = square * (-0.5 / self.temperature**2) - self._log_norm
        if self.batch_shape and lp.shape != self.batch_shape:
            lp = lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape))
        return lp

    def expand(self, batch_shape: Sequence[int], _instance: object = None) -> StandardNormal:
        new = _instance if _instance is not None else StandardNormal.__new__(StandardNormal)
        new = super().expand(batch_shape, new)
        new.temperature, new._log_norm = self.temperature, self._log_norm
        return new


class FlowDistribution(TransformedDistribution):
    """A ``TransformedDistribution`` whose ``log_prob`` takes each part's inverse and log-det in one
    call (:meth:`~pyro_flowkit.transforms.CachedTransform.inverse_and_log_det`) and sums the
    log-dets once; otherwise the same distribution, with the same validation."""

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        event_dim = len(self.event_shape)
        y, total = value, None
        for t in reversed(self.transforms):
            if hasattr(t, "inverse_and_log_det"):
                x, ladj = t.inverse_and_log_det(y)
            else:
                x = t.inv(y)
                ladj = t.log_abs_det_jacobian(x, y)
            event_dim += t.domain.event_dim - t.codomain.event_dim
            ladj = _sum_rightmost(ladj, event_dim - t.domain.event_dim)
            total = ladj if total is None else total + ladj
            y = x
        base = _sum_rightmost(
            self.base_dist.log_prob(y), event_dim - len(self.base_dist.event_shape)
        )
        return base if total is None else base - total
