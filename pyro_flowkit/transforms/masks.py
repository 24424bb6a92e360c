"""Coupling masks and the partition that splits an event along them.

A mask is a boolean tensor of the event's shape; ``True`` marks the entries that pass through a
coupling unchanged and condition the others (the :math:`b` of Dinh et al. 2017, eq. 9). A
partition splits events along a mask: vectors and image channels by blocks, other masks (the
checkerboard) by masking.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pyro_flowkit.transforms._base import image_event_shape


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


def checkerboard_mask(event_shape: tuple[int, int, int], flip: bool = False) -> Tensor:
    """RealNVP's checkerboard on a ``(C, H, W)`` event: pixels with even ``i + j`` are kept."""
    c, h, w = image_event_shape(event_shape)
    board = (torch.arange(h)[:, None] + torch.arange(w)) % 2 == 0
    return (~board if flip else board).expand(c, h, w).clone()


def channel_mask(event_shape: tuple[int, int, int], flip: bool = False) -> Tensor:
    """RealNVP's channel mask: the first ``ceil(C / 2)`` channels (the last ones with ``flip``)."""
    c, h, w = image_event_shape(event_shape)
    if c < 2:
        raise ValueError(f"event_shape: a channel mask needs 2+ channels, got {(c, h, w)}")
    return half_mask(c, flip)[:, None, None].expand(c, h, w).clone()


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

    dim = -1

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.dim() != 1:
            raise ValueError(
                f"mask: expected a 1-D boolean tensor, got {mask.dtype} "
                f"of shape {tuple(mask.shape)}"
            )
        self._init_blocks(mask)

    def _init_blocks(self, mask: Tensor) -> None:
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
    def event_shape(self) -> torch.Size:
        return self.mask.shape

    @property
    def kept_features(self) -> int:
        """Features (channels, for images) the conditioner receives."""
        return len(self.kept_index)

    @property
    def moved_features(self) -> int:
        """Features (channels, for images) the coupling maps."""
        return len(self.moved_index)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(x_kept, x_moved)``."""
        d, sizes = self.dim, [self.kept_features, self.moved_features]
        if self._layout == "kept_first":
            kept, moved = x.split(sizes, d)
            return kept, moved
        if self._layout == "moved_first":
            moved, kept = x.split(sizes[::-1], d)
            return kept, moved
        return x.index_select(d, self.kept_index), x.index_select(d, self.moved_index)

    def restrict(self, h: Tensor) -> Tensor:
        """The conditioner's output as the map's parameters (unchanged for a block split)."""
        return h

    def merge(self, kept: Tensor, moved: Tensor) -> Tensor:
        """Inverse of :meth:`split`; ``kept`` is broadcast to the leading shape of ``moved``."""
        d = self.dim
        if kept.shape[:d] != moved.shape[:d]:
            lead = torch.broadcast_shapes(kept.shape[:d], moved.shape[:d])
            kept = kept.expand(lead + kept.shape[d:])
            moved = moved.expand(lead + moved.shape[d:])
        if self._layout == "kept_first":
            return torch.cat([kept, moved], d)
        if self._layout == "moved_first":
            return torch.cat([moved, kept], d)
        return torch.cat([kept, moved], d).index_select(d, self.merge_index)

    def extra_repr(self) -> str:
        bits = "".join("1" if b else "0" for b in self.mask.flatten().tolist())
        return f"mask={bits if len(bits) <= 32 else bits[:16] + '...' + bits[-16:]}"


class ChannelPartition(VectorPartition):
    """Splits the channels of a ``(C, H, W)`` event: RealNVP's channel-wise mask.

    The conditioner receives the kept channels, ``(..., kept_features, H, W)``, and the coupling
    maps the others. Contiguous blocks of channels split by ``torch.split`` as for vectors.
    """

    dim = -3

    def __init__(self, mask: Tensor) -> None:
        nn.Module.__init__(self)
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.dim() != 3 or not _constant_per_channel(mask):
            raise ValueError(
                "mask: expected a (C, H, W) boolean tensor constant over each channel, "
                f"got {mask.dtype} of shape {tuple(mask.shape)}"
            )
        self._init_blocks(mask[:, 0, 0])
        self._shape = mask.shape

    @property
    def event_shape(self) -> torch.Size:
        return self._shape


class MaskedPartition(nn.Module):
    r"""RealNVP's masked coupling for any mask, e.g. the checkerboard on images.

    The conditioner receives the whole event with the moved entries zeroed, :math:`b \odot x`,
    and its output is zeroed on the kept entries, so the element-wise map leaves them unchanged
    (:math:`y = b \odot x + (1 - b) \odot (x \odot e^{s} + t)`, Dinh et al. 2017, eq. 9). For an
    image event the conditioner is convolutional and sees ``(..., C, H, W)``.
    """

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.dim() == 0:
            raise ValueError(f"mask: expected a boolean tensor, got {mask.dtype}")
        if mask.all() or not mask.any():
            raise ValueError("mask: expected both True and False entries, got only one kind")
        self.register_buffer("mask", mask.clone())
        dtype = torch.get_default_dtype()
        self.register_buffer("kept_weight", mask.to(dtype))
        self.register_buffer("moved_weight", (~mask).to(dtype))

    @property
    def event_shape(self) -> torch.Size:
        return self.mask.shape

    @property
    def kept_features(self) -> int:
        return self.mask.shape[0]

    moved_features = kept_features

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(b * x, x)``: the conditioner's input and the whole event."""
        return x * self.kept_weight, x

    def restrict(self, h: Tensor) -> Tensor:
        """Zero the parameters on the kept entries (a shift 0 and a log-scale 0 there)."""
        event = self.mask.dim()
        groups = h.shape[-event] // self.mask.shape[0]
        shape = h.shape[: h.dim() - event] + (groups,) + self.mask.shape
        return (h.reshape(shape) * self.moved_weight).reshape(h.shape)

    def merge(self, kept: Tensor, moved: Tensor) -> Tensor:
        """The mapped event: its kept entries are already unchanged."""
        return moved

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.mask.shape)}, kept={int(self.mask.sum())}"


Partition = VectorPartition | MaskedPartition


def make_partition(mask: Tensor | Partition) -> Partition:
    """The partition for ``mask``: block splits for vector and channel masks, masking otherwise."""
    if isinstance(mask, VectorPartition | MaskedPartition):
        return mask
    mask = torch.as_tensor(mask)
    if mask.dim() == 1:
        return VectorPartition(mask)
    if mask.dim() == 3 and mask.dtype == torch.bool and _constant_per_channel(mask):
        return ChannelPartition(mask)
    return MaskedPartition(mask)


def _constant_per_channel(mask: Tensor) -> bool:
    return bool((mask == mask[:, :1, :1]).all())


def _layout(kept: list[int], moved: list[int]) -> str:
    """``kept_first``/``moved_first`` when the mask is two contiguous blocks, else ``index``."""
    identity = list(range(len(kept) + len(moved)))
    if kept + moved == identity:
        return "kept_first"
    if moved + kept == identity:
        return "moved_first"
    return "index"
