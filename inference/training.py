"""The shared training loop: minibatches, an optimiser, a progress bar, loud numerical failures."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from pyro_flowkit.validation import check_count

__all__ = ["minibatches", "train"]


def minibatches(
    data: Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[Tensor]:
    """Endless minibatches of ``data`` (first dimension), reshuffled every epoch."""
    n = len(data)
    check_count("batch_size", batch_size)
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator).to(data.device)
        for start in range(0, n - batch_size + 1, batch_size):
            yield data[order[start : start + batch_size]]


def train(
    loss_fn: Callable[[Tensor], Tensor],
    params: Iterable[nn.Parameter],
    data: Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    clip_grad_norm: float | None = None,
    progress: bool = True,
    desc: str = "train",
    generator: torch.Generator | None = None,
) -> list[float]:
    """Minimise ``loss_fn(batch)`` over minibatches of ``data`` with Adam (or ``optimizer``).

    Arguments:
        loss_fn: maps a minibatch to a scalar loss (e.g. the mean negative log-likelihood).
        params: the parameters to optimise (ignored when ``optimizer`` is given).
        data: the training set; its first dimension indexes the examples.
        steps: number of optimisation steps.
        batch_size: examples per step (capped at ``len(data)``).
        lr: Adam's learning rate.
        optimizer: an optimiser to use instead of a new Adam.
        clip_grad_norm: clip the gradient's norm to this value when given.
        progress: show a tqdm progress bar with the running loss.
        desc: label of the progress bar.
        generator: random generator for the minibatch order.

    Returns:
        The loss of every step.

    Raises:
        FloatingPointError: when a loss is NaN or infinite (with the step at which it happened).
    """
    check_count("steps", steps, minimum=0)
    params = list(params)
    optimizer = optimizer or torch.optim.Adam(params, lr=lr)
    batches = minibatches(data, batch_size, generator)
    history: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        loss = loss_fn(next(batches))
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss became {value} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, clip_grad_norm)
        optimizer.step()
        history.append(value)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{value:.4g}")
    return history
