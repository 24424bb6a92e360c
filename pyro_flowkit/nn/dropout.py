"""Dropout masks that cost one 64-bit random draw per eight entries."""

from __future__ import annotations

import torch
from torch import Tensor

_LEVELS = 256


def quantized_rate(p: float) -> float:
    """The drop rate :func:`keep_mask` realises for ``p``: ``p`` rounded to a multiple of 1/256."""
    return round(p * _LEVELS) / _LEVELS


def keep_mask(
    shape: torch.Size,
    p: float,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""A 0/1 mask of ``shape``, each entry 0 with probability :math:`p` (a multiple of 1/256).

    The mask is read from the bytes of random 64-bit integers, eight entries per draw: an eighth of
    the random numbers that ``torch.nn.functional.dropout`` draws, which on CPU is where dropout
    spends its time; the bytes become 0/1 by float arithmetic (no boolean tensors, which are slow
    on CPU). It follows ``torch.manual_seed``.

    References:
        | Dropout: A Simple Way to Prevent Neural Networks from Overfitting
        | (Srivastava et al., 2014) https://jmlr.org/papers/v15/srivastava14a.html
    """
    shape = torch.Size(shape)
    n = shape.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=device)
    levels = words.view(torch.uint8)[:n].view(shape).to(dtype or torch.get_default_dtype())
    # a byte b is kept iff b >= round(256 p): b - (round(256 p) - 1) clamped to [0, 1]
    return levels.sub_(round(p * _LEVELS) - 1).clamp_(0, 1)


class MaskPool:
    r"""Dropout masks as windows of one pre-drawn 0/1 sequence, at a random offset per call.

    A window of an i.i.d. Bernoulli sequence is itself i.i.d. Bernoulli, so every mask has exactly
    dropout's distribution; masks of different calls are windows at independent uniform offsets
    (the pool holds at least eight masks' worth, redrawn when a larger mask is asked for or the
    device or dtype change). Taking a mask then costs one random integer instead of one random
    byte per entry: on CPU this removes most of dropout's cost. The pool is drawn with torch's
    global generator at first use, so seeding before building the network reproduces a run.
    """

    def __init__(self, p: float) -> None:
        self.p = p
        self.pool: Tensor | None = None

    def take(self, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> Tensor:
        """A 0/1 mask of ``shape``, 0 with probability ``p`` (see :func:`quantized_rate`)."""
        n = shape.numel()
        pool = self.pool
        if pool is None or pool.numel() < 8 * n or pool.device != device or pool.dtype != dtype:
            pool = self.pool = keep_mask((max(8 * n, 1 << 16),), self.p, device, dtype)
        start = int(torch.randint(0, pool.numel() - n + 1, ()))
        return pool[start : start + n].view(shape)


def relu_dropout(h: Tensor, rate: float, masks: MaskPool, training: bool) -> Tensor:
    """ReLU then dropout at ``rate``, in place on the fresh pre-activation ``h``.

    Training multiplies by a 0/1 mask from ``masks``; evaluation scales by ``1 - rate`` (dropout's
    original formulation, so training pays for no rescaling). In place is safe because the layer
    that produced ``h`` (a linear map or a convolution) does not need its output for its backward.
    """
    if not rate:
        return torch.relu_(h)
    if training:
        return torch.relu_(h.mul_(masks.take(h.shape, h.device, h.dtype)))
    return torch.relu(h) * (1 - rate)
