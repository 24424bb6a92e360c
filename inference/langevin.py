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
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from pyro_flowkit.validation import check_finite_tensor

__all__ = [
    "LangevinInfo",
    "LangevinState",
    "PotentialFn",
    "StepScales",
    "check_inverse_mass",
    "init_state",
    "mala_step",
    "potential_and_grad",
    "step_scales",
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
    return value if value.dim() == 2 else value.reshape(value.shape[0], -1)


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


class StepScales(NamedTuple):
    r"""The two scales of a Langevin move, :math:`h M^{-1}` (drift) and :math:`\sqrt{2 h M^{-1}}`
    (noise), broadcastable to the positions; see :func:`step_scales`."""

    drift: Tensor
    noise: Tensor


def step_scales(step_size: Tensor | float, inverse_mass: Tensor | None, like: Tensor) -> StepScales:
    r"""The scales :math:`h M^{-1}` and :math:`\sqrt{2 h M^{-1}}` of a move of ``like``'s chains.

    A loop whose step size and mass stay fixed computes them once and passes them to every
    step (``scales=``), which saves three tensor operations a step.
    """
    drift = _per_chain(step_size, like)
    if inverse_mass is not None:
        drift = drift * inverse_mass.to(like)
    return StepScales(drift, (2 * drift).sqrt())


def _noise(like: Tensor, dtype: torch.dtype | None) -> Tensor:
    """Standard normal noise shaped like ``like``, drawn in ``dtype`` (default: ``like``'s)."""
    if dtype is None or dtype == like.dtype:
        return torch.randn_like(like)
    return torch.randn(like.shape, dtype=dtype, device=like.device).to(like.dtype)


# The arithmetic of a step, apart from the potential and the random draws (which the caller makes,
# so that eager and compiled steps see the same numbers): plain functions that torch.compile can
# fuse (see ``_compiled``).


def _forward(
    x: Tensor, g: Tensor, drift: Tensor, scale: Tensor | float, noise: Tensor, clip: float | None
) -> tuple[Tensor, Tensor]:
    """The proposal :math:`x - h M^{-1} c(g) + \\sigma\\xi` and the kick :math:`\\sigma\\xi`."""
    kick = noise.mul_(scale)
    if clip is not None:
        g = g.clamp(-clip, clip)
    return torch.addcmul(kick, drift, g, value=-1.0).add_(x), kick


def _log_ratio(
    u: Tensor,
    g: Tensor,
    u_new: Tensor,
    g_new: Tensor,
    kick: Tensor,
    drift: Tensor,
    clip: float | None,
    tempered: bool,
) -> Tensor:
    """The log MH ratio of the move (see :func:`_propose`); NaN or infinite when not finite."""
    if tempered:  # a diagnostic: U(x) - U(x'), NaN if the new gradient is not finite
        return u - u_new + 0.0 * _per_event(g_new).sum(1)
    if clip is not None:
        g, g_new = g.clamp(-clip, clip), g_new.clamp(-clip, clip)
    a = g + g_new
    w = torch.addcmul(kick, drift, a, value=-0.5)
    correction = torch.linalg.vecdot(_per_event(a), _per_event(w))
    return torch.sub(u, u_new).add_(correction, alpha=0.5)


def _accept(
    state: tuple[Tensor, Tensor, Tensor],
    proposal: tuple[Tensor, Tensor, Tensor],
    log_ratio: Tensor,
    uniform: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The kept state and (acceptance probability, accepted, diverging); ``uniform`` ``None``:
    unadjusted (every finite proposal is kept)."""
    # a non-finite potential or gradient at the proposal makes the log ratio NaN or infinite;
    # mapped to -inf: never accepted, acceptance probability 0, a divergence
    log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf, posinf=-math.inf)
    diverging = log_ratio == -math.inf
    accept_prob = log_ratio.clamp(max=0.0).exp()
    accepted = ~diverging if uniform is None else uniform < accept_prob
    position = proposal[0]
    rows = accepted.view(accepted.shape + (1,) * (position.dim() - 1))  # one view, used twice
    kept = (
        torch.where(rows, position, state[0]),
        torch.where(accepted, proposal[1], state[1]),
        torch.where(rows, proposal[2], state[2]),
    )
    return (*kept, accept_prob, accepted, diverging)


def _backward(
    state: tuple[Tensor, Tensor, Tensor],
    proposal: tuple[Tensor, Tensor, Tensor],
    kick: Tensor,
    drift: Tensor,
    uniform: Tensor | None,
    clip: float | None,
    tempered: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`_log_ratio` then :func:`_accept` (one region for torch.compile)."""
    log_ratio = _log_ratio(
        state[1], state[2], proposal[1], proposal[2], kick, drift, clip, tempered
    )
    return _accept(state, proposal, log_ratio, uniform)


_COMPILED: dict[str, Callable] = {}


def _compiled(name: str) -> Callable:
    """``torch.compile`` of :func:`_forward` or :func:`_backward`, made once per process."""
    if name not in _COMPILED:
        fn = {"forward": _forward, "backward": _backward}[name]
        with warnings.catch_warnings():  # torch's imports for inductor warn of deprecations
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
            _COMPILED[name] = torch.compile(fn, dynamic=False)
    return _COMPILED[name]


def _propose(
    state: LangevinState,
    potential_fn: PotentialFn,
    step_size: Tensor | float,
    inverse_mass: Tensor | None,
    noise_scale: float | None = None,
    drift_clip: float | None = None,
    scales: StepScales | None = None,
    noise_dtype: torch.dtype | None = None,
) -> tuple[LangevinState, Tensor]:
    r"""One Langevin move from ``state`` and the log MH ratio of accepting it (fused arithmetic).

    The proposal is :math:`x' = x - h M^{-1} c(\nabla U(x)) + \sigma \xi` with
    :math:`\sigma = \sqrt{2 h M^{-1}}` and :math:`c` the (optional) clip. With
    :math:`a = c(\nabla U(x)) + c(\nabla U(x'))` the backward residual is
    :math:`x - (x' - h M^{-1} c(\nabla U(x'))) = h M^{-1} a - \sigma\xi`, and the log ratio of the
    two Gaussian kernels simplifies (with :math:`\sigma^2 = 2 h M^{-1}`) to

    .. math:: \log\frac{q(x \mid x')}{q(x' \mid x)} = \frac12 \sum a \odot
       \Bigl(\sigma\xi - \frac{h M^{-1}}{2} a\Bigr),

    which needs four operations instead of eight and has no cancellation of two
    :math:`O(1)` terms when :math:`h` is small. With ``noise_scale`` setting :math:`\sigma` (a
    tempered move, for ULA only) the ratio is the bare :math:`U(x) - U(x')`: a diagnostic, finite
    exactly when the proposal's potential and gradient are.
    """
    x = state.position
    if scales is None:
        scales = step_scales(step_size, inverse_mass, x)
    scale = scales.noise if noise_scale is None else noise_scale
    proposal, kick = _forward(
        x, state.grad, scales.drift, scale, _noise(x, noise_dtype), drift_clip
    )
    potential, grad = potential_and_grad(potential_fn, proposal)
    log_ratio = _log_ratio(
        state.potential, state.grad, potential, grad, kick, scales.drift, drift_clip,
        noise_scale is not None,
    )  # fmt: skip
    return LangevinState(proposal, potential, grad), log_ratio


def _step(
    state: LangevinState,
    potential_fn: PotentialFn,
    step_size: Tensor | float,
    inverse_mass: Tensor | None,
    adjusted: bool,
    noise_scale: float | None = None,
    drift_clip: float | None = None,
    scales: StepScales | None = None,
    noise_dtype: torch.dtype | None = None,
    compile: bool = False,
) -> tuple[LangevinState, LangevinInfo]:
    x = state.position
    if scales is None:
        scales = step_scales(step_size, inverse_mass, x)
    scale = scales.noise if noise_scale is None else noise_scale
    forward = _compiled("forward") if compile else _forward
    backward = _compiled("backward") if compile else _backward
    noise = _noise(x, noise_dtype)
    proposal, kick = forward(x, state.grad, scales.drift, scale, noise, drift_clip)
    potential, grad = potential_and_grad(potential_fn, proposal)
    uniform = torch.rand_like(state.potential) if adjusted else None
    *kept, accept_prob, accepted, diverging = backward(
        state, (proposal, potential, grad), kick, scales.drift, uniform, drift_clip,
        noise_scale is not None,
    )  # fmt: skip
    return LangevinState(*kept), LangevinInfo(accept_prob, accepted, diverging)


def mala_step(
    state: LangevinState,
    potential_fn: PotentialFn,
    step_size: Tensor | float | StepScales,
    *,
    inverse_mass: Tensor | None = None,
    noise_dtype: torch.dtype | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    r"""One Metropolis-adjusted Langevin step for every chain.

    .. math:: x' = x - h M^{-1}\nabla U(x) + \sqrt{2h M^{-1}}\,\xi, \qquad
       \text{kept with probability } \min\Bigl(1, \frac{e^{-U(x')}\,q(x \mid x')}
       {e^{-U(x)}\,q(x' \mid x)}\Bigr).

    One potential-and-gradient evaluation (at :math:`x'`) and about 18 small tensor operations
    (noise, proposal, the kernel ratio in its simplified form, the acceptance and the selection of
    the kept state); no synchronisation with the device.

    Arguments:
        state: the chains' :class:`LangevinState`, ``(chains, *event)`` positions.
        potential_fn: maps ``(chains, *event)`` to ``(chains,)`` potentials :math:`U`.
        step_size: :math:`h`, a float or a ``(chains,)`` tensor (one per chain), or the
            :class:`StepScales` of :func:`step_scales` (then ``inverse_mass`` is already in them),
            which a loop with a fixed step size computes once.
        inverse_mass: optional diagonal :math:`M^{-1}`, broadcastable to the positions, with
            finite entries above 0 (not checked here: see :func:`check_inverse_mass`).
        noise_dtype: the dtype the Gaussian noise is drawn in (default: the positions'). torch
            draws float64 normals one at a time and float32 ones vectorised, 5x faster:
            ``torch.float32`` makes that the cost of float64 chains, at float32 resolution of
            the noise (its tails are cut at 5.8 standard deviations, a probability of
            :math:`10^{-8}` per coordinate and step).

    Returns:
        The new state and a :class:`LangevinInfo`. Rejected and diverging chains keep their
        position, potential and gradient.

    References:
        Roberts & Tweedie (1996); Roberts & Rosenthal (1998), see the module docstring.

    Example:
        >>> import torch
        >>> from pyro_flowkit.inference import init_state, mala_step
        >>> potential = lambda x: 0.5 * x.square().sum(-1)
        >>> state = init_state(potential, torch.zeros(4, 2))
        >>> state, info = mala_step(state, potential, 0.5)
        >>> state.position.shape, info.acceptance_rate.shape
        (torch.Size([4, 2]), torch.Size([4]))
    """
    scales = step_size if isinstance(step_size, StepScales) else None
    return _step(
        state, potential_fn, step_size, inverse_mass, True, None, None, scales, noise_dtype
    )


def ula_step(
    state: LangevinState,
    potential_fn: PotentialFn,
    step_size: Tensor | float | StepScales,
    *,
    inverse_mass: Tensor | None = None,
    noise_scale: float | None = None,
    drift_clip: float | None = None,
    noise_dtype: torch.dtype | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    r"""One unadjusted Langevin step for every chain (see :func:`mala_step` for the arguments).

    .. math:: x' = x - h M^{-1}\nabla U(x) + \sqrt{2h M^{-1}}\,\xi, \qquad \text{always kept
       when finite.}

    Every finite proposal is kept, so the chain targets a density that is biased by :math:`O(h)`
    (for :math:`N(0, s^2)` the stationary variance is :math:`s^2 / (1 - h / (2 s^2))`).
    ``info.acceptance_rate`` is the MALA probability the move would have had. A proposal with a
    non-finite potential or gradient is not taken and is flagged in ``info.diverging``.

    Two options serve energy-based-model training (Du & Mordatch 2019), where short-run chains
    sample at a lower temperature: ``noise_scale`` replaces the noise's standard deviation
    :math:`\sqrt{2h M^{-1}}` by :math:`\sigma` (temperature :math:`\sigma^2 / 2h`), and
    ``drift_clip`` clips each entry of :math:`\nabla U` to :math:`[-c, c]`. Neither is checked
    here (see ``train_ebm``).

    References:
        Roberts & Tweedie (1996), see the module docstring.

    Example:
        >>> import torch
        >>> from pyro_flowkit.inference import init_state, ula_step
        >>> potential = lambda x: 0.5 * x.square().sum(-1)
        >>> state = init_state(potential, torch.zeros(4, 2))
        >>> state, info = ula_step(state, potential, 0.1, noise_scale=0.01, drift_clip=1.0)
        >>> bool(info.accepted.all())
        True
    """
    scales = step_size if isinstance(step_size, StepScales) else None
    return _step(
        state, potential_fn, step_size, inverse_mass, False, noise_scale, drift_clip, scales,
        noise_dtype,
    )  # fmt: skip
