r"""The Gumbel tricks for categorical variables: Gumbel-max sampling (exact), and the
Gumbel-softmax relaxation with and without the straight-through forward pass, with the
temperature schedule of Su's article.

With :math:`g_i` independent standard Gumbel variables, :math:`\arg\max_i (\ell_i + g_i)` is
distributed exactly as :math:`\operatorname{softmax}(\ell)`; replacing the argmax by
:math:`\operatorname{softmax}((\ell + g) / \tau)` gives a differentiable sample on the simplex
(the Concrete / Gumbel-softmax distribution) that tends to the one-hot sample as
:math:`\tau \to 0`: the pathwise gradient's bias falls and its variance grows.

References:
    | Categorical Reparameterization with Gumbel-Softmax (Jang, Gu & Poole, 2017)
    | https://arxiv.org/abs/1611.01144
    | The Concrete Distribution: A Continuous Relaxation of Discrete Random Variables
    | (Maddison, Mnih & Teh, 2017) https://arxiv.org/abs/1611.00712
    | Su Jianlin (2019), "漫谈重参数：从正态分布到Gumbel Softmax" (reparameterisation from the
    | normal distribution to Gumbel softmax), https://kexue.fm/archives/6705
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import OneHotCategorical as _TorchOneHot
from torch.distributions import kl_divergence, register_kl

from pyro_flowkit.validation import check_count, check_interval, check_positive

__all__ = [
    "GumbelSoftmax",
    "GumbelSoftmaxStraightThrough",
    "gumbel_max",
    "gumbel_softmax_temperature",
]


def gumbel_max(
    logits: Tensor,
    sample_shape: torch.Size | tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Exact categorical draws by the Gumbel-max trick:
    :math:`\arg\max_i (\ell_i + g_i)`, :math:`g_i = -\log(-\log u_i)`, :math:`u_i \sim U(0, 1)`.

    .. math:: P\bigl(\arg\max_i (\ell_i + g_i) = k\bigr) = \frac{e^{\ell_k}}{\sum_i e^{\ell_i}}.

    Arguments:
        logits: unnormalised log-probabilities ``(..., K)``.
        sample_shape: leading shape of the draws.
        generator: random generator.

    Returns:
        Indices of shape ``sample_shape + logits.shape[:-1]``.

    References:
        | A* Sampling (Maddison, Tarlow & Minka, 2014) https://arxiv.org/abs/1411.0030

    Example:
        >>> draws = gumbel_max(torch.log(torch.tensor([0.2, 0.8])), (10000,))
        >>> abs(draws.float().mean().item() - 0.8) < 0.02
        True
    """
    shape = torch.Size(sample_shape) + logits.shape
    u = torch.rand(shape, generator=generator, dtype=logits.dtype, device=logits.device)
    tiny = torch.finfo(logits.dtype).tiny
    gumbel = -torch.log(-torch.log(u.clamp(min=tiny)))
    return (logits + gumbel).argmax(-1)


def gumbel_softmax_temperature(
    step: int, start: float = 1.0, end: float = 0.01, rate: float = 0.999
) -> float:
    r"""The annealed temperature :math:`\tau_t = \tau_\infty + (\tau_0 - \tau_\infty) r^t`; the
    defaults give Su's schedule :math:`\tau = 0.01 + 0.99 \times 0.999^t`.

    Example:
        >>> gumbel_softmax_temperature(0), round(gumbel_softmax_temperature(1000), 4)
        (1.0, 0.374)
    """
    check_count("step", step, minimum=0)
    end = check_positive("end", end)
    start = check_positive("start", start)
    rate = check_interval("rate", rate, 0, 1, what="a rate")
    return end + (start - end) * math.pow(rate, step)


def _floored(value: Tensor) -> Tensor:
    return value.clamp(min=torch.finfo(value.dtype).tiny)


def _discrete_kl(q: dist.RelaxedOneHotCategorical, p: _TorchOneHot) -> Tensor:
    return kl_divergence(dist.Categorical(logits=q.logits), dist.Categorical(logits=p.logits))


class GumbelSoftmax(dist.RelaxedOneHotCategorical):
    r"""Pyro's ``RelaxedOneHotCategorical`` (the Gumbel-softmax sample
    :math:`\operatorname{softmax}((\ell + g) / \tau)`, reparameterised) whose KL divergence to a
    ``OneHotCategorical`` prior is the KL of the categorical it relaxes,

    .. math:: \mathrm{KL}(q \Vert p) = \sum_i q_i (\log q_i - \log p_i),

    so ``TraceMeanField_ELBO`` estimates the discrete ELBO as Jang et al. do: the relaxed
    sample in the likelihood, the KL exact.

    Example:
        >>> q = GumbelSoftmax(torch.tensor(0.5), logits=torch.zeros(4))
        >>> p = dist.OneHotCategorical(logits=torch.tensor([0.0, 1.0, 2.0, 3.0]))
        >>> z = q.rsample()
        >>> bool(z.sum().isclose(torch.tensor(1.0))), kl_divergence(q, p).item() > 0
        (True, True)
    """

    def log_prob(self, value: Tensor) -> Tensor:
        """The relaxed density at ``value``, whose entries are floored at the dtype's smallest
        normal number (at a low temperature, float32 draws underflow to exact zeros, where the
        density's logarithm would give NaN)."""
        return super().log_prob(_floored(value))


class GumbelSoftmaxStraightThrough(dist.RelaxedOneHotCategoricalStraightThrough):
    r"""Pyro's ``RelaxedOneHotCategoricalStraightThrough``: a one-hot sample going forward
    (the Gumbel-max draw) and the Gumbel-softmax sample's gradient going backward; its KL to a
    ``OneHotCategorical`` prior is the categorical's, as for :class:`GumbelSoftmax`.

    Example:
        >>> q = GumbelSoftmaxStraightThrough(torch.tensor(0.5), logits=torch.zeros(4))
        >>> z = q.rsample((3,))
        >>> sorted(z.unique().tolist()), z.sum(-1).tolist()
        ([0.0, 1.0], [1.0, 1.0, 1.0])
    """

    def log_prob(self, value: Tensor) -> Tensor:
        """The relaxed density at the relaxed draw behind ``value``, floored as for
        :class:`GumbelSoftmax`."""
        soft = getattr(value, "_unquantize", value)
        return dist.RelaxedOneHotCategorical.log_prob(self, _floored(soft))


register_kl(GumbelSoftmax, _TorchOneHot)(_discrete_kl)
register_kl(GumbelSoftmaxStraightThrough, _TorchOneHot)(_discrete_kl)
