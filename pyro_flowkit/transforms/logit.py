r"""RealNVP's logit preprocessing of data in :math:`[0, 1]` as a transform with its log-det."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from torch import Tensor

from pyro_flowkit.transforms._base import CachedTransform
from pyro_flowkit.validation import check_interval


class Logit(CachedTransform):
    r""":math:`y = \operatorname{logit}(\alpha + (1 - 2\alpha) x)`, element-wise (``event_dim=0``).

    Density models of images in :math:`[0, 1]` are fitted on :math:`y`; counting this map's
    log-det, :math:`\log(1-2\alpha) + \operatorname{softplus}(y) + \operatorname{softplus}(-y)`
    per entry, gives the density of :math:`x` itself, so bits/dim are reported on the original
    scale. Put its inverse last in a ``TransformedDistribution`` (``[flow, Logit(0.05).inv]``) to
    model the data. The map is a bijection from
    :math:`(-\alpha / (1-2\alpha), (1-\alpha)/(1-2\alpha)) \supset [0, 1]` onto the reals, so
    samples can fall slightly outside :math:`[0, 1]`.

    Arguments:
        alpha: the margin :math:`\alpha \in [0, 1/2)` that keeps the logit finite at 0 and 1.

    References:
        | Density estimation using Real NVP (Dinh et al., 2017), section 4.1
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> t = Logit(0.05)
        >>> t(torch.tensor([0.5]))
        tensor([0.])
    """

    codomain = constraints.real
    sign = +1  # increasing, so TransformedDistribution has cdf and icdf

    def __init__(self, alpha: float = 0.05) -> None:
        check_interval("alpha", alpha, 0, 0.5, open_high=True)
        super().__init__()
        self.alpha = float(alpha)
        self._log_slope = math.log1p(-2 * self.alpha)

    @property
    def domain(self) -> constraints.Constraint:  # type: ignore[override]
        a = self.alpha
        return constraints.interval(-a / (1 - 2 * a), (1 - a) / (1 - 2 * a))

    def _ladj(self, y: Tensor) -> Tensor:
        # log|dy/dx| from y, stable for large |y|: log(1 - 2a) - log p - log(1 - p), p = sigmoid(y)
        return F.softplus(y) + F.softplus(-y) + self._log_slope

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.logit(self.alpha + (1 - 2 * self.alpha) * x)
        return y, self._ladj(y)

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha), self._ladj(y)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
