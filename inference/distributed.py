"""Data-parallel helpers over ``torch.distributed`` (gloo on CPU, NCCL on GPU; ``torchrun``).

Every helper is a no-op in a single process, so code that calls them runs unchanged with and
without ``torchrun``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as tdist
from torch import Tensor
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

__all__ = [
    "all_reduce_mean",
    "average_gradients",
    "broadcast_tensors",
    "distributed",
    "gather_chains",
    "rank",
    "world_size",
]


def distributed() -> bool:
    """Whether ``torch.distributed`` is initialised with more than one process."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def world_size() -> int:
    """The number of processes (1 without ``torch.distributed``)."""
    return tdist.get_world_size() if distributed() else 1


def rank() -> int:
    """This process's rank (0 without ``torch.distributed``)."""
    return tdist.get_rank() if distributed() else 0


def _reduce_flat(tensors: Sequence[Tensor], op: str) -> None:
    """All-reduce (``"mean"``) or broadcast from rank 0 (``"broadcast"``) ``tensors`` in place,
    as one flat buffer per dtype (one message, not one per tensor)."""
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = _flatten_dense_tensors(group)
        if op == "mean":
            tdist.all_reduce(flat)
            flat /= tdist.get_world_size()
        else:
            tdist.broadcast(flat, src=0)
        for t, value in zip(group, _unflatten_dense_tensors(flat, group), strict=True):
            t.copy_(value)


@torch.no_grad()
def average_gradients(params: Sequence[Tensor]) -> None:
    """Replace every parameter's gradient by its mean over the processes (a missing gradient
    counts as zero, so every process sends the same buffer)."""
    if not distributed():
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    _reduce_flat([p.grad for p in params], "mean")


@torch.no_grad()
def broadcast_tensors(tensors: Sequence[Tensor]) -> None:
    """Copy rank 0's values of ``tensors`` (parameters, buffers) into every process's."""
    if distributed() and tensors:
        _reduce_flat(list(tensors), "broadcast")


def all_reduce_mean(value: Tensor) -> Tensor:
    """The mean of ``value`` over the processes (``value`` itself in one process)."""
    if not distributed():
        return value
    value = value.detach().clone()
    tdist.all_reduce(value)
    return value / tdist.get_world_size()


def gather_chains(
    samples: Tensor | Mapping[str, Tensor], stats: Mapping[str, Tensor] | None = None
) -> tuple[Tensor | dict[str, Tensor], dict[str, Tensor] | None]:
    """Concatenate every process's chains (the leading dimension) in rank order, on every
    process: the output of :func:`~pyro_flowkit.inference.sample_langevin` run on each rank (with
    its own chains, e.g. on its own GPU) becomes one set of chains for
    :func:`~pyro_flowkit.diagnostics.from_chains`. Every process must hold the same number of
    chains and draws."""
    if not distributed():
        return samples, None if stats is None else dict(stats)

    def gather(t: Tensor) -> Tensor:
        sent = t.to(torch.uint8) if t.dtype == torch.bool else t.contiguous()  # gloo: no bool
        parts = [torch.empty_like(sent) for _ in range(tdist.get_world_size())]
        tdist.all_gather(parts, sent)
        return torch.cat(parts).to(t.dtype)

    if isinstance(samples, Tensor):
        gathered: Tensor | dict[str, Tensor] = gather(samples)
    else:
        gathered = {name: gather(value) for name, value in samples.items()}
    return gathered, None if stats is None else {k: gather(v) for k, v in stats.items()}
