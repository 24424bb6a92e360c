"""Coupling masks and the partition that splits an event along them.

A mask is a boolean tensor of the event's shape; ``True`` marks the entries that pass through a
coupling unchanged and condition the others (the :math:`b` of Dinh et al. 2017, eq. 9).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def half_mask(dim: int, flip: bool = False) -> Tensor:
    """The first ``ceil(dim / 2)`` entries (the last ones with ``flip``) condition the rest."""
    _check_dim(dim)
    mask = torch.arange(dim) < (dim + 1) // 2
    return ~mask if flip else mask


def alternating_mask(dim: int, flip: bool = False) -> Tensor:
    """Even entries condition the odd ones (odd condition even with ``flip``), as in NICE."""
    _check_dim(dim)
    mask = torch.arange(dim) % 2 == 0
    return ~mask if flip else mask


def vector_mask(kind: str, dim: int, flip: bool) -> Tensor:
    """``half_mask`` or ``alternating_mask`` by name."""
    makers = {"half": half_mask, "alternating": alternating_mask}
    if kind not in makers:
        raise ValueError(f"mask: expected one of {sorted(makers)}, got {kind!r}")
    return makers[kind](dim, flip)


def _check_dim(dim: int) -> None:
    if not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim: a coupling needs at least 2 dimensions, got {dim!r}")


class VectorPartition(nn.Module):
    """Splits the last dimension into the mask's kept part and its moved part, and merges them.

    A mask whose kept entries form one contiguous block (a half mask) is split by ``torch.split``
    and merged by one ``cat``; any other mask falls back to index selection. The flow builders
    therefore realise alternating masks as half masks in a permuted basis, permuting once per
    pass instead of once per layer.
    """

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.dim() != 1:
            raise ValueError(
                f"mask: expected a 1-D boolean tensor, got {mask.dtype} "
                f"of shape {tuple(mask.shape)}"
            )
        kept = torch.nonzero(mask).flatten()
        moved = torch.nonzero(~mask).flatten()
        if len(kept) == 0 or len(moved) == 0:
            raise ValueError("mask: expected both True and False entries, got only one kind")
        self.register_buffer("mask", mask.clone())
        self.register_buffer("kept_index", kept)
        self.register_buffer("moved_index", moved)
        self.register_buffer("merge_index", torch.argsort(torch.cat([kept, moved])))
        self._layout = _layout(kept.tolist(), moved.tolist())

    @property
    def kept_features(self) -> int:
        return len(self.kept_index)

    @property
    def moved_features(self) -> int:
        return len(self.moved_index)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(x_kept, x_moved)``."""
        sizes = [self.kept_features, self.moved_features]
        if self._layout == "kept_first":
            kept, moved = x.split(sizes, -1)
            return kept, moved
        if self._layout == "moved_first":
            moved, kept = x.split(sizes[::-1], -1)
            return kept, moved
        return x.index_select(-1, self.kept_index), x.index_select(-1, self.moved_index)

    def merge(self, kept: Tensor, moved: Tensor) -> Tensor:
        """Inverse of :meth:`split`; ``kept`` is broadcast to the leading shape of ``moved``."""
        if kept.shape[:-1] != moved.shape[:-1]:
            lead = torch.broadcast_shapes(kept.shape[:-1], moved.shape[:-1])
            kept = kept.expand(lead + kept.shape[-1:])
            moved = moved.expand(lead + moved.shape[-1:])
        if self._layout == "kept_first":
            return torch.cat([kept, moved], -1)
        if self._layout == "moved_first":
            return torch.cat([moved, kept], -1)
        return torch.cat([kept, moved], -1).index_select(-1, self.merge_index)

    def extra_repr(self) -> str:
        bits = "".join("1" if b else "0" for b in self.mask.tolist())
        return f"mask={bits if len(bits) <= 32 else bits[:16] + '...' + bits[-16:]}"


def _layout(kept: list[int], moved: list[int]) -> str:
    """``kept_first``/``moved_first`` when the mask is two contiguous blocks, else ``index``."""
    identity = list(range(len(kept) + len(moved)))
    if kept + moved == identity:
        return "kept_first"
    if moved + kept == identity:
        return "moved_first"
    return "index"
