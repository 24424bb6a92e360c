r"""Warm-up adaptation for Langevin chains, vectorised over chains.

* :class:`DualAveraging`: Nesterov's dual averaging of :math:`\log h` towards a target acceptance
  probability, one step size per chain (Hoffman & Gelman 2014, algorithm 5):

  .. math:: \bar H_t = (1 - \tfrac{1}{t + t_0})\bar H_{t-1} + \tfrac{1}{t+t_0}(\delta - \alpha_t),
     \quad \log h_t = \mu - \tfrac{\sqrt t}{\gamma}\bar H_t,
     \quad \log\bar h_t = t^{-\kappa}\log h_t + (1 - t^{-\kappa})\log\bar h_{t-1},

  with :math:`\mu = \log(10 h_0)`; :math:`\bar h` is the step size kept after warm-up.
* :func:`find_step_size`: doubles or halves each chain's step until the acceptance probability of
  one trial move crosses the target (the initial step-size search of Hoffman & Gelman).
* :class:`WarmupAdapter`: Stan's schedule. Step size only for the first 15% of warm-up, then
  windows in which each chain's diagonal inverse mass matrix is estimated from its own draws
  (Welford; shrunk towards 1e-3 as in Stan), with a fresh step-size search after each window, and
  step size only again for the last 25%.

References:
    The No-U-Turn Sampler (Hoffman & Gelman, 2014), https://arxiv.org/abs/1111.4246

    Stan Reference Manual, "HMC algorithm parameters": warm-up windows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pyro_flowkit.inference.langevin import (
    LangevinState,
    PotentialFn,
    _propose,
    check_inverse_mass,
)

__all__ = ["DualAveraging", "WarmupAdapter", "find_step_size"]


class DualAveraging:
    """Dual averaging of ``log(step_size)`` per chain (see the module docstring)."""

    def __init__(
        self,
        step_size: Tensor,
        target_accept_prob: float,
        *,
        t0: float = 10.0,
        kappa: float = 0.75,
        gamma: float = 0.05,
    ) -> None:
        self.target = target_accept_prob
        self.t0, self.kappa, self.gamma = t0, kappa, gamma
        self.mu = step_size.log() + math.log(10.0)
        self.h_bar = torch.zeros_like(self.mu)
        self.log_avg = step_size.log()  # a new tensor: updated in place
        self.t = 0

    def update(self, accept_prob: Tensor) -> Tensor:
        """Record one step's acceptance probabilities and return the next step sizes (six
        tensor operations: the two averages are in-place ``lerp_``)."""
        self.t += 1
        eta = 1.0 / (self.t + self.t0)
        gap = torch.nan_to_num(accept_prob, nan=0.0).neg_().add_(self.target)
        self.h_bar.lerp_(gap, eta)  # (1 - eta) h_bar + eta (target - accept)
        log_step = torch.add(self.mu, self.h_bar, alpha=-math.sqrt(self.t) / self.gamma)
        self.log_avg.lerp_(log_step, self.t ** (-self.kappa))
        return log_step.exp_()

    @property
    def final_step_size(self) -> Tensor:
        """The averaged step sizes, to keep after warm-up."""
        return self.log_avg.exp()


def find_step_size(
    state: LangevinState,
    potential_fn: PotentialFn,
    step_size: Tensor,
    target_accept_prob: float,
    *,
    inverse_mass: Tensor | None = None,
    max_doublings: int = 30,
) -> Tensor:
    """Per chain, double or halve ``step_size`` until a trial move's acceptance crosses the target.

    Costs one potential-and-gradient evaluation per doubling; the chains do not move.
    ``inverse_mass`` is checked by :func:`~pyro_flowkit.inference.langevin.check_inverse_mass`.
    """
    check_inverse_mass(inverse_mass, state.position)
    return _search_step_size(
        state, potential_fn, step_size, target_accept_prob, inverse_mass, max_doublings
    )


def _search_step_size(
    state: LangevinState,
    potential_fn: PotentialFn,
    step_size: Tensor,
    target_accept_prob: float,
    inverse_mass: Tensor | None,
    max_doublings: int = 30,
) -> Tensor:
    """:func:`find_step_size` without the check (for an inverse mass already checked or adapted)."""
    step_size = step_size.clone()
    direction = None
    active = torch.ones_like(step_size, dtype=torch.bool)
    for _ in range(max_doublings):
        _, log_ratio = _propose(state, potential_fn, step_size, inverse_mass)
        above = torch.nan_to_num(log_ratio, nan=-math.inf) > math.log(target_accept_prob)
        if direction is None:
            direction = torch.where(above, 2.0, 0.5).to(step_size)
        else:
            active &= above == (direction > 1)
        if not active.any():
            break
        step_size = torch.where(active, step_size * direction, step_size)
    return step_size


class WarmupAdapter:
    """Adapts step sizes (and, optionally, diagonal inverse masses) over ``num_warmup`` steps.

    Starts from ``step_size`` for every chain of ``state``, searched with :func:`find_step_size`
    first when there is warm-up to adapt in (``step_size=None``: searched from 1, always). Call
    :meth:`update` after every warm-up step with the new state and the step's acceptance
    probabilities; read :attr:`step_size` and :attr:`inverse_mass` for the next step. After the
    last warm-up step they hold the values to sample with. A given ``inverse_mass`` (the fixed
    mass, or the start of mass adaptation) is checked by
    :func:`~pyro_flowkit.inference.langevin.check_inverse_mass`.
    """

    def __init__(
        self,
        state: LangevinState,
        potential_fn: PotentialFn,
        num_warmup: int,
        step_size: float | None,
        target_accept_prob: float,
        *,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        inverse_mass: Tensor | None = None,
    ) -> None:
        self.potential_fn = potential_fn
        self.num_warmup = num_warmup
        self.target = target_accept_prob
        self.adapt_step_size = adapt_step_size
        self.inverse_mass = check_inverse_mass(inverse_mass, state.position)
        search = step_size is None or bool(num_warmup and adapt_step_size)
        h = torch.full_like(state.potential, 1.0 if step_size is None else float(step_size))
        if search:  # no step size given: searched from 1 even without warm-up
            h = _search_step_size(state, potential_fn, h, target_accept_prob, inverse_mass)
        self.step_size = h
        self.dual = DualAveraging(h, target_accept_prob)
        adapt_mass_matrix = adapt_mass_matrix and adapt_step_size  # a new mass needs a new step
        self.windows = _mass_windows(num_warmup) if adapt_mass_matrix else []
        self.t = 0
        self._reset_moments()

    def _reset_moments(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, state: LangevinState, accept_prob: Tensor) -> None:
        """Adapt after warm-up step ``self.t`` (counting from 0)."""
        self.t += 1
        if self.adapt_step_size:
            self.step_size = self.dual.update(accept_prob)
        window = next((w for w in self.windows if w[0] < self.t <= w[1]), None)
        if window is not None:
            self._accumulate(state.position)
            if self.t == window[1]:
                self._end_window(state)
        if self.t == self.num_warmup and self.adapt_step_size:
            self.step_size = self.dual.final_step_size

    def _accumulate(self, x: Tensor) -> None:
        """Welford's update of the window's mean and sum of squared deviations, in place."""
        self.count += 1
        if self.mean is None:
            self.mean, self.m2 = x.clone(), torch.zeros_like(x)
            return
        delta = x - self.mean
        self.mean.add_(delta, alpha=1.0 / self.count)
        self.m2.addcmul_(delta, x - self.mean)

    def _end_window(self, state: LangevinState) -> None:
        n = self.count
        variance = self.m2 / (n - 1)
        self.inverse_mass = (n / (n + 5.0)) * variance + 1e-3 * (5.0 / (n + 5.0))
        self._reset_moments()
        if self.adapt_step_size:
            start = _search_step_size(
                state, self.potential_fn, self.step_size, self.target, self.inverse_mass
            )
            self.step_size = start
            self.dual = DualAveraging(start, self.target)


def _mass_windows(num_warmup: int) -> list[tuple[int, int]]:
    """Stan-like windows ``(start, end]`` of warm-up steps: two, doubling, between 15% and 75%."""
    if num_warmup < 40:
        return []
    start, end = int(0.15 * num_warmup), int(0.75 * num_warmup)
    middle = start + (end - start) // 3
    return [(start, middle), (middle, end)]
