"""``sample_langevin``: many Langevin chains at once, with warm-up adaptation and statistics."""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pyro_flowkit.inference.adaptation import WarmupAdapter
from pyro_flowkit.inference.langevin import (
    LangevinInfo,
    LangevinState,
    PotentialFn,
    _step,
    init_state,
)
from pyro_flowkit.validation import check_count, check_positive, check_probability

__all__ = ["check_langevin_args", "check_step_size", "sample_langevin"]


def check_step_size(step_size: float) -> None:
    """Raise ``ValueError`` unless ``step_size`` is a positive number."""
    check_positive("step_size", step_size)


def check_langevin_args(step_size: float, target_accept_prob: float) -> None:
    """Raise ``ValueError`` for a non-positive step size or a target outside (0, 1)."""
    check_step_size(step_size)
    check_probability("target_accept_prob", target_accept_prob, open_low=True, open_high=True)


def _check_counts(num_samples: int, num_warmup: int, thin: int) -> None:
    check_count("num_samples", num_samples)
    check_count("num_warmup", num_warmup, minimum=0)
    check_count("thin", thin)


class _Recorder:
    """Preallocated ``(chains, draws, ...)`` samples and statistics."""

    def __init__(self, state: LangevinState, num_samples: int) -> None:
        chains = state.position.shape[0]
        self.samples = state.position.new_empty((chains, num_samples) + state.position.shape[1:])
        like = state.potential
        self.stats = {
            "lp": like.new_empty(chains, num_samples),
            "acceptance_rate": like.new_empty(chains, num_samples),
            "step_size": like.new_empty(chains, num_samples),
            "diverging": torch.zeros(chains, num_samples, dtype=torch.bool, device=like.device),
        }
        self.accept_sum = torch.zeros_like(like)

    def add(self, info: LangevinInfo, draw: int) -> None:
        self.accept_sum += info.acceptance_rate
        self.stats["diverging"][:, draw] |= info.diverging

    def record(self, state: LangevinState, draw: int, thin: int, step_size: Tensor) -> None:
        self.samples[:, draw] = state.position
        self.stats["lp"][:, draw] = -state.potential
        self.stats["acceptance_rate"][:, draw] = self.accept_sum / thin
        self.stats["step_size"][:, draw] = step_size
        self.accept_sum.zero_()


def sample_langevin(
    potential_fn: PotentialFn,
    init: Tensor,
    num_samples: int,
    *,
    step_size: float,
    num_warmup: int = 0,
    adjusted: bool = True,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    inverse_mass: Tensor | None = None,
    target_accept_prob: float = 0.574,
    thin: int = 1,
    progress: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Run Langevin chains side by side, all in one tensor.

    Each step is :func:`~pyro_flowkit.inference.mala_step` (``adjusted=True``) or
    :func:`~pyro_flowkit.inference.ula_step`: :math:`x' = x - h M^{-1}\nabla U(x) + \sqrt{2h}
    M^{-1/2}\xi`. During ``num_warmup`` steps every chain tunes its own step size by dual averaging
    towards ``target_accept_prob`` (0.574 is optimal for MALA in high dimension, Roberts & Rosenthal
    1998), after an initial doubling search; with ``adapt_mass_matrix`` it also estimates its own
    diagonal :math:`M^{-1}` in Stan's windows. Warm-up draws are discarded.

    Arguments:
        potential_fn: maps ``(chains, *event)`` to ``(chains,)`` potentials :math:`U = -\log p + c`.
        init: ``(chains, *event)`` starting points (``(chains,)`` for a scalar per chain).
        num_samples: draws kept per chain (``num_samples * thin`` steps after warm-up).
        step_size: the initial step size :math:`h` (the final one without adaptation).
        num_warmup: adaptation steps, discarded.
        adjusted: MALA if true, ULA if false.
        adapt_step_size: tune :math:`h` per chain during warm-up.
        adapt_mass_matrix: estimate a diagonal inverse mass per chain during warm-up (only
            with at least 40 warm-up steps, and only with ``adapt_step_size``, as a new mass needs
            a new step size).
        inverse_mass: a fixed diagonal :math:`M^{-1}`, broadcastable to ``init``, with finite
            entries above 0 (the start of the adaptation when ``adapt_mass_matrix``).
        target_accept_prob: acceptance probability that the adaptation aims for.
        thin: keep every ``thin``-th step.
        progress: show a tqdm progress bar.

    Returns:
        ``samples`` of shape ``(chains, num_samples, *event)`` and a dict of ``(chains,
        num_samples)`` statistics: ``lp`` (:math:`-U`), ``acceptance_rate`` (mean MH probability
        over the thinned steps), ``step_size``, ``diverging`` (any divergence in the thinned
        steps).

    Example:
        >>> import torch
        >>> from pyro_flowkit.inference import sample_langevin
        >>> potential = lambda x: 0.5 * x.square().sum(-1)
        >>> samples, stats = sample_langevin(
        ...     potential, torch.zeros(8, 3), 200, step_size=0.5, num_warmup=100, progress=False
        ... )
        >>> samples.shape, stats["lp"].shape
        (torch.Size([8, 200, 3]), torch.Size([8, 200]))
    """
    check_langevin_args(step_size, target_accept_prob)
    _check_counts(num_samples, num_warmup, thin)
    state = init_state(potential_fn, init)
    # the adapter checks inverse_mass, once: the steps below (_step, not mala_step) check nothing
    adapter = WarmupAdapter(
        state,
        potential_fn,
        num_warmup,
        step_size,
        target_accept_prob,
        adapt_step_size=adapt_step_size,
        adapt_mass_matrix=adapt_mass_matrix,
        inverse_mass=inverse_mass,
    )
    recorder = _Recorder(state, num_samples)
    total = num_warmup + num_samples * thin
    bar = tqdm(total=total, desc="langevin", disable=not progress, leave=False)
    for t in range(total):
        state, info = _step(state, potential_fn, adapter.step_size, adapter.inverse_mass, adjusted)
        if t < num_warmup:
            adapter.update(state, info.acceptance_rate)
        else:
            draw, offset = divmod(t - num_warmup, thin)
            recorder.add(info, draw)
            if offset == thin - 1:
                recorder.record(state, draw, thin, adapter.step_size)
        _progress(bar, t, total, info, adapter.step_size)
    bar.close()
    return recorder.samples, recorder.stats


def _progress(bar: tqdm, t: int, total: int, info: LangevinInfo, step_size: Tensor) -> None:
    bar.update(1)
    if not bar.disable and (t % max(1, total // 50) == 0 or t == total - 1):
        bar.set_postfix(
            accept=f"{info.acceptance_rate.mean().item():.2f}",
            step=f"{step_size.mean().item():.2e}",
            refresh=False,
        )
