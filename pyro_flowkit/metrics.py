"""Likelihood metrics."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["bits_per_dim", "dequantized_bits_per_dim", "uniform_bits_per_dim"]


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
    if not isinstance(num_dims, int) or num_dims < 1:
        raise ValueError(f"num_dims: expected a positive integer, got {num_dims!r}")
    if not isinstance(num_levels, int) or num_levels < 1:
        raise ValueError(f"num_levels: expected a positive integer, got {num_levels!r}")
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
