"""The base distribution of the flows: a standard normal with a lean ``log_prob``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pyro.distributions import TorchDistribution, TransformedDistribution, constraints
from torch import Tensor
from torch.distributions.utils import _sum_rightmost

__all__ = ["FlowDistribution", "StandardNormal"]


class StandardNormal(TorchDistribution):
    r""":math:`\mathcal{N}(0, T^2 I)` over ``event_shape``: the base of every flow here.

    Equivalent to ``Normal(0, T).expand(event_shape).to_event(len(event_shape))``, but its
    ``log_prob``, :math:`-\lVert x \rVert^2 / (2T^2) - D \log(T \sqrt{2\pi})`, costs three tensor
    operations instead of eight, and it holds no parameter tensors (the device and dtype are
    fixed at construction).

    Arguments:
        event_shape: the event's shape.
        temperature: the standard deviation :math:`T`.
        device, dtype: of the samples.
        batch_shape: batch shape (as after ``expand``).
        validate_args: check ``log_prob``'s argument against the support.

    Example:
        >>> d = StandardNormal((2, 3))
        >>> d.log_prob(torch.zeros(5, 2, 3)).shape
        torch.Size([5])
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(
        self,
        event_shape: Sequence[int],
        temperature: float = 1.0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        batch_shape: Sequence[int] = (),
        validate_args: bool | None = None,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
        event_shape = torch.Size(event_shape)
        self.temperature = float(temperature)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype or torch.get_default_dtype()
        self._dims = tuple(range(-len(event_shape), 0))
        self._log_norm = event_shape.numel() * (
            math.log(self.temperature) + 0.5 * math.log(2 * math.pi)
        )
        super().__init__(torch.Size(batch_shape), event_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, len(self.event_shape))

    @property
    def mean(self) -> Tensor:
        return torch.zeros(
            self.batch_shape + self.event_shape, device=self.device, dtype=self.dtype
        )

    @property
    def variance(self) -> Tensor:
        return torch.full_like(self.mean, self.temperature**2)

    def rsample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        eps = torch.randn(shape, device=self.device, dtype=self.dtype)
        return eps if self.temperature == 1 else eps * self.temperature

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        square = (value * value).sum(self._dims)
        scale = -0.5 if self.temperature == 1 else -0.5 / self.temperature**2
        lp = square * scale - self._log_norm
        if lp.shape != self.batch_shape and self.batch_shape:
            lp = lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape))
        return lp

    def entropy(self) -> Tensor:
        h = self.event_shape.numel() * 0.5 + self._log_norm
        return torch.full(self.batch_shape, h, device=self.device, dtype=self.dtype)

    def expand(self, batch_shape: Sequence[int], _instance: object = None) -> StandardNormal:
        return StandardNormal(
            self.event_shape,
            self.temperature,
            device=self.device,
            dtype=self.dtype,
            batch_shape=batch_shape,
            validate_args=self._validate_args,
        )


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
