"""Likelihood and sample metrics (exact W1 by optimal transport is :mod:`pyro_flowkit.ot`'s)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from pyro_flowkit.ot import wasserstein_exact
from pyro_flowkit.validation import check_count

__all__ = [
    "bits_per_dim",
    "dequantized_bits_per_dim",
    "mmd",
    "uniform_bits_per_dim",
    "wasserstein_exact",
]


def bits_per_dim(log_prob: Tensor | float, num_dims: int, num_levels: int) -> Tensor:
    r"""Bits per dimension of discrete data from the log-density of its dequantised version.

    .. math::
        \mathrm{bpd} = \frac{-\log p(y) + D \ln L}{D \ln 2}

    where :math:`y \in [0, 1]^D` is the dequantised data (:func:`pyro_flowkit.data.dequantize`),
    :math:`D` the number of dimensions and :math:`L` the number of levels. A uniform density gives
    :math:`\log_2 L` (4.087 bits for the 17-level digits).

    Arguments:
        log_prob: log-density (nats) of the dequantised data in :math:`[0, 1]^D`, any shape.
        num_dims: :math:`D`.
        num_levels: :math:`L`.

    Example:
        >>> bits_per_dim(torch.tensor(0.0), 64, 17)
        tensor(4.0875)
    """
    check_count("num_dims", num_dims)
    check_count("num_levels", num_levels)
    log_prob = torch.as_tensor(log_prob)
    return (-log_prob + num_dims * math.log(num_levels)) / (num_dims * math.log(2))


def uniform_bits_per_dim(num_levels: int) -> float:
    """:math:`\\log_2 L`, the bits/dim of the uniform density: the baseline any model must beat."""
    return math.log2(num_levels)


@torch.no_grad()
def dequantized_bits_per_dim(
    log_prob_fn: Callable[[Tensor], Tensor],
    v: Tensor,
    num_levels: int,
    num_draws: int = 4,
    generator: torch.Generator | None = None,
    batch_size: int = 1024,
) -> Tensor:
    r"""Per-example bits/dim of integer data ``v``, averaged over ``num_draws`` dequantisations.

    Each draw adds fresh uniform noise (:func:`pyro_flowkit.data.dequantize`), scores the result
    with ``log_prob_fn`` (the model's log-density on :math:`[0, 1]^D`) and converts with
    :func:`bits_per_dim`; the result is the mean over draws, one value per example. Put the model
    in ``eval()`` mode first if it has dropout.

    Arguments:
        log_prob_fn: maps a batch ``(n,) + event`` in :math:`[0, 1]` to ``(n,)`` log-densities.
        v: integer levels, shape ``(N,) + event``.
        num_levels: the number of levels :math:`L`.
        num_draws: dequantisation draws to average over.
        generator: random generator of the noise.
        batch_size: examples scored at once.
    """
    from pyro_flowkit.data import dequantize

    num_dims = v[0].numel()
    total = torch.zeros(len(v), dtype=v.dtype, device=v.device)
    for _ in range(num_draws):
        y = dequantize(v, num_levels, generator)
        lp = torch.cat([log_prob_fn(chunk) for chunk in y.split(batch_size)])
        total += bits_per_dim(lp, num_dims, num_levels).to(total)
    return total / num_draws


def mmd(x: Tensor, y: Tensor, bandwidth: float = 0.5) -> float:
    r"""Squared maximum mean discrepancy between two samples with a Gaussian kernel.

    .. math:: \widehat{\mathrm{MMD}}^2 = \overline{k(x, x')} + \overline{k(y, y')}
       - 2\,\overline{k(x, y)},\qquad k(a, b) = e^{-\|a - b\|^2 / (2 b_w^2)},

    the biased (V-statistic) estimate over all pairs of ``x`` ``(n, d)`` and ``y`` ``(m, d)``;
    two samples of one law give about :math:`(1/n + 1/m)(1 - \overline{k})`, not 0.

    References:
        A Kernel Two-Sample Test (Gretton et al., 2012), https://jmlr.org/papers/v13/gretton12a.html

    Example:
        >>> x = torch.randn(500, 2)
        >>> mmd(x, torch.randn(500, 2)) < mmd(x, torch.randn(500, 2) + 1.0)
        True
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        shapes = f"{tuple(x.shape)}, {tuple(y.shape)}"
        raise ValueError(f"x, y: expected (n, d) and (m, d) samples, got {shapes}")

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return torch.exp(-torch.cdist(a, b).square() / (2 * bandwidth**2)).mean()

    return (kernel(x, x) + kernel(y, y) - 2 * kernel(x, y)).item()
