r"""Vectorised Langevin steps: unadjusted (ULA) and Metropolis-adjusted (MALA).

Every function here is pure apart from drawing random numbers from torch's global generator (so
``pyro.set_rng_seed`` makes runs reproducible). A :class:`LangevinState` carries the position, its
potential and the potential's gradient, so a step costs one potential-and-gradient evaluation: the
one at the proposal, which becomes the next state's cache.

Convention (potential :math:`U = -\log p` up to a constant, step :math:`h`, diagonal inverse mass
:math:`M^{-1}`, which is the identity unless given):

.. math:: x' = x - h\,M^{-1}\nabla U(x) + \sqrt{2h}\,M^{-1/2}\,\xi,\qquad \xi\sim\mathcal N(0, I).

ULA keeps every move; MALA accepts with probability

.. math:: \alpha = \min\Bigl(1, \frac{e^{-U(x')}\,q(x \mid x')}{e^{-U(x)}\,q(x' \mid x)}\Bigr),
   \qquad q(x'\mid x) = \mathcal N\bigl(x';\, x - hM^{-1}\nabla U(x),\, 2hM^{-1}\bigr).

ULA reports the same :math:`\alpha` as a diagnostic of its discretisation error, which is what its
step-size adaptation targets. A proposal whose potential or gradient is not finite is a
*divergence*: both kernels keep the old position and flag the chain, never returning NaN.

Any number of chains share the leading dimension: positions are ``(chains, *event)`` (an empty
event, positions ``(chains,)``, is a scalar per chain) and ``potential_fn`` maps them to
``(chains,)`` potentials.

A fixed inverse mass is checked where a sampler starts (:func:`check_inverse_mass`, called by
``sample_langevin``, the warm-up adapter and ``find_step_size``): a zero, negative or NaN entry
would freeze its coordinate or make every proposal diverge. The step functions themselves do not
check it (a check synchronises with the device at every step); a loop that calls them directly
checks its mass once with :func:`check_inverse_mass`.

References:
    Exponential convergence of Langevin distributions and their discrete approximations
    (Roberts & Tweedie, 1996), https://doi.org/10.2307/3318418

    Optimal scaling of discrete approximations to Langevin diffusions (Roberts & Rosenthal, 1998),
    https://doi.org/10.1111/1467-9868.00123
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from pyro_flowkit.validation import check_finite_tensor

__all__ = [
    "LangevinInfo",
    "LangevinState",
    "PotentialFn",
    "check_inverse_mass",
    "init_state",
    "mala_step",
    "potential_and_grad",
    "ula_step",
]

PotentialFn = Callable[[Tensor], Tensor]


class LangevinState(NamedTuple):
    """A batch of chains with cached potential and gradient.

    Attributes:
        position: ``(chains, *event)`` current points.
        potential: ``(chains,)`` values of :math:`U` at ``position``.
        grad: ``(chains, *event)`` values of :math:`\\nabla U` at ``position``.
    """

    position: Tensor
    potential: Tensor
    grad: Tensor


class LangevinInfo(NamedTuple):
    """What one step did, per chain (all ``(chains,)``).

    Attributes:
        acceptance_rate: the Metropolis-Hastings probability :math:`\\alpha` of the proposal
            (0 for a divergence).
        accepted: whether the chain moved.
        diverging: whether the proposal's potential or gradient was not finite.
    """

    acceptance_rate: Tensor
    accepted: Tensor
    diverging: Tensor


def potential_and_grad(potential_fn: PotentialFn, position: Tensor) -> tuple[Tensor, Tensor]:
    """Evaluate :math:`U` and :math:`\\nabla U` at ``position`` in one backward pass.

    The gradient is taken with respect to ``position`` only; parameters of a module inside
    ``potential_fn`` receive none.
    """
    with torch.enable_grad():
        x = position.detach().requires_grad_(True)
        potential = potential_fn(x)
        if not isinstance(potential, Tensor) or potential.shape != position.shape[:1]:
            shape = getattr(potential, "shape", type(potential).__name__)
            raise ValueError(
                f"potential_fn: expected a tensor of shape {tuple(position.shape[:1])} "
                f"(one potential per chain), got {shape}"
            )
        (grad,) = torch.autograd.grad(potential.sum(), x)
    return potential.detach(), grad


def init_state(potential_fn: PotentialFn, position: Tensor) -> LangevinState:
    """Build the state at ``position`` (``(chains, *event)``), raising if it is not finite."""
    if not isinstance(position, Tensor) or position.dim() < 1:
        got = getattr(position, "shape", position)
        raise ValueError(f"init: expected a tensor of shape (chains, *event), got {got!r}")
    potential, grad = potential_and_grad(potential_fn, position)
    bad = ~_finite(potential, grad)
    if bad.any():
        chains = bad.nonzero().flatten().tolist()
        raise ValueError(
            f"init: the potential or its gradient is not finite at the initial points of chains "
            f"{chains[:10]}; start them where the density is positive"
        )
    return LangevinState(position.detach(), potential, grad)


def _per_event(value: Tensor) -> Tensor:
    """``(chains, *event)`` as ``(chains, event size)``; a scalar event gives ``(chains, 1)``."""
    return value.reshape(value.shape[0], -1)


def _finite(potential: Tensor, grad: Tensor) -> Tensor:
    return torch.isfinite(potential) & torch.isfinite(_per_event(grad)).all(1)


def check_inverse_mass(inverse_mass: Tensor | None, position: Tensor) -> Tensor | None:
    r"""``inverse_mass`` if it is ``None`` or a diagonal :math:`M^{-1}` for ``position``.

    That is a tensor of finite entries above 0 whose shape broadcasts to ``position``'s
    ``(chains, *event)`` without growing it (one mass for all chains, ``event``-shaped, or one per
    chain, ``(chains, *event)``). Raises ``TypeError`` for a non-tensor and ``ValueError``
    otherwise: a zero entry freezes its coordinate, a negative or NaN one makes every proposal a
    divergence. The check synchronises with the device, so it belongs where a sampler starts,
    not in its loop.
    """
    if inverse_mass is None:
        return None
    check_finite_tensor("inverse_mass", inverse_mass)
    shape = tuple(position.shape)
    try:
        fits = torch.broadcast_shapes(inverse_mass.shape, position.shape) == position.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"inverse_mass: expected a shape broadcastable to {shape} (the positions), got "
            f"{tuple(inverse_mass.shape)}"
        )
    bad = int((inverse_mass <= 0).sum())
    if bad:
        raise ValueError(
            f"inverse_mass: expected positive entries (a diagonal M^-1), got {bad} entries <= 0 "
            f"of {inverse_mass.numel()} (smallest {inverse_mass.min().item():g})"
        )
    return inverse_mass


def _per_chain(value: Tensor | float, like: Tensor) -> Tensor:
    """Broadcast a scalar or ``(chains,)`` value against ``(chains, *event)``."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value.reshape(value.shape + (1,) * (like.dim() - value.dim()))


def _propose(
    state: LangevinState,
    potential_fn: PotentialFn,
    step_size: Tensor | float,
    inverse_mass: Tensor | None,
    noise_scale: float | None = None,
    drift_clip: float | None = None,
) -> tuple[LangevinState, Tensor]:
    r"""One Langevin move from ``state`` and the log MH ratio of accepting it (fused arithmetic).

    The proposal is :math:`x' = x - h M^{-1} \mathrm{clip}(\nabla U(x)) + \sigma \xi` with
    :math:`\sigma = \sqrt{2 h M^{-1}}`; the ratio uses the same (clipped) kernel both ways. With
    ``noise_scale`` setting :math:`\sigma` (a tempered move, for ULA only) the ratio is the bare
    :math:`U(x) - U(x')`: a diagnostic, finite exactly when the proposal's potential and gradient
    are (no proposal correction, which :math:`\sigma = 0` would leave undefined).
    """
    x, g = state.position, state.grad
    hm = _per_chain(step_size, x)  # h M^{-1}
    if inverse_mass is not None:
        hm = hm * inverse_mass.to(x)
    if drift_clip is not None:
        g = g.clamp(-drift_clip, drift_clip)
    noise = torch.randn_like(x)
    proposal = torch.addcmul(x, hm, g, value=-1.0)
    if noise_scale is not None:
        proposal.add_(noise, alpha=noise_scale)
        potential, grad = potential_and_grad(potential_fn, proposal)
        log_ratio = state.potential - potential + 0.0 * _per_event(grad).sum(1)  # NaN if grad is
        return LangevinState(proposal, potential, grad), log_ratio
    proposal.addcmul_((2 * hm).sqrt(), noise)  # sigma^2 = 2 h M^{-1}
    potential, grad = potential_and_grad(potential_fn, proposal)
    drift = grad if drift_clip is None else grad.clamp(-drift_clip, drift_clip)
    backward = torch.addcmul(x - proposal, hm, drift)  # x - (x' - h M^{-1} clip(grad U(x')))
    log_q = (0.5 * noise.square()).addcmul_(backward.square(), (4 * hm).reciprocal(), value=-1.0)
    log_ratio = state.potential - potential + _per_event(log_q).sum(1)
    return LangevinState(proposal, potential, grad), log_ratio


def _select(keep_new: Tensor, new: LangevinState, old: LangevinState) -> LangevinState:
    def pick(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(keep_new.reshape(keep_new.shape + (1,) * (a.dim() - 1)), a, b)

    return LangevinState(*(pick(a, b) for a, b in zip(new, old, strict=True)))


def _step(
    state: LangevinState,
    potential_fn: PotentialFn,
    step_size: Tensor | float,
    inverse_mass: Tensor | None,
    adjusted: bool,
    noise_scale: float | None = None,
    drift_clip: float | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    proposal, log_ratio = _propose(
        state, potential_fn, step_size, inverse_mass, noise_scale, drift_clip
    )
    # a non-finite potential or gradient at the proposal makes the log ratio non-finite
    finite = torch.isfinite(log_ratio)
    accept_prob = torch.where(finite, log_ratio.clamp(max=0.0), -math.inf).exp()
    accepted = torch.rand_like(accept_prob) < accept_prob if adjusted else finite
    new_state = _select(accepted, proposal, state)
    return new_state, LangevinInfo(accept_prob, accepted, ~finite)


def mala_step(
    state: LangevinState,
    potential_fn: PotentialFn,
    step_size: Tensor | float,
    *,
    inverse_mass: Tensor | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    r"""One Metropolis-adjusted Langevin step for every chain.

    Arguments:
        state: the chains' :class:`LangevinState`, ``(chains, *event)`` positions.
        potential_fn: maps ``(chains, *event)`` to ``(chains,)`` potentials :math:`U`.
        step_size: :math:`h`, a float or a ``(chains,)`` tensor (one per chain).
        inverse_mass: optional diagonal :math:`M^{-1}`, broadcastable to the positions, with
            finite entries above 0 (not checked here: see :func:`check_inverse_mass`).

    Returns:
        The new state and a :class:`LangevinInfo`. Rejected and diverging chains keep their
        position, potential and gradient.

    Example:
        >>> import torch
        >>> from pyro_flowkit.inference import init_state, mala_step
        >>> potential = lambda x: 0.5 * x.square().sum(-1)
        >>> state = init_state(potential, torch.zeros(4, 2))
        >>> state, info = mala_step(state, potential, 0.5)
        >>> state.position.shape, info.acceptance_rate.shape
        (torch.Size([4, 2]), torch.Size([4]))
    """
    return _step(state, potential_fn, step_size, inverse_mass, adjusted=True)


def ula_step(
    state: LangevinState,
    potential_fn: PotentialFn,
    step_size: Tensor | float,
    *,
    inverse_mass: Tensor | None = None,
    noise_scale: float | None = None,
    drift_clip: float | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    r"""One unadjusted Langevin step for every chain (see :func:`mala_step` for the arguments).

    Every finite proposal is kept, so the chain targets a density that is biased by :math:`O(h)`
    (for :math:`N(0, s^2)` the stationary variance is :math:`s^2 / (1 - h / (2 s^2))`).
    ``info.acceptance_rate`` is the MALA probability the move would have had. A proposal with a
    non-finite potential or gradient is not taken and is flagged in ``info.diverging``.

    Two options serve energy-based-model training (Du & Mordatch 2019), where short-run chains
    sample at a lower temperature: ``noise_scale`` replaces the noise's standard deviation
    :math:`\sqrt{2h M^{-1}}` by :math:`\sigma` (temperature :math:`\sigma^2 / 2h`), and
    ``drift_clip`` clips each entry of :math:`\nabla U` to :math:`[-c, c]`. Neither is checked
    here (see ``train_ebm``).
    """
    return _step(state, potential_fn, step_size, inverse_mass, False, noise_scale, drift_clip)
