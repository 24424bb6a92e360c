r"""Langevin kernels for ``pyro.infer.MCMC``: :class:`MALA`, :class:`ULA` and :class:`SGLD`.

They wrap the pure steps of :mod:`pyro_flowkit.inference.langevin` (one chain per kernel, as
Pyro's MCMC drives chains one at a time; use :func:`~pyro_flowkit.inference.sample_langevin` for
thousands of chains in one tensor). The latent sites are flattened into one unconstrained vector,
initialised by Pyro's ``initialize_model`` (constrained sites are sampled in unconstrained space
with the log-Jacobian in the potential; enumerable discrete sites are summed out).

Warm-up follows :class:`~pyro_flowkit.inference.WarmupAdapter` (step-size search, dual averaging
towards ``target_accept_prob``, diagonal mass windows). The kernel counts its own steps and fixes
its step size when warm-up ends: Pyro's ``MCMC`` never calls ``end_warmup``.

References:
    Bayesian Learning via Stochastic Gradient Langevin Dynamics (Welling & Teh, 2011),
    https://www.stats.ox.ac.uk/~teh/research/compstats/WelTeh2011a.pdf
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
from pyro.infer.autoguide.initialization import init_to_uniform
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from torch import Tensor

from pyro_flowkit.inference.adaptation import WarmupAdapter
from pyro_flowkit.inference.langevin import (
    LangevinInfo,
    LangevinState,
    StepScales,
    _step,
    init_state,
    step_scales,
)
from pyro_flowkit.inference.sampling import check_langevin_args
from pyro_flowkit.validation import check_count, check_interval, check_positive

__all__ = ["MALA", "SGLD", "ULA", "polynomial_decay"]

Params = dict[str, Tensor]


class _Flattener:
    """Maps a dict of site values to one ``(1, D)`` vector and back."""

    def __init__(self, params: Params) -> None:
        self.names = sorted(params)
        self.shapes = [params[name].shape for name in self.names]
        self.sizes = [shape.numel() for shape in self.shapes]

    def flatten(self, params: Params) -> Tensor:
        return torch.cat([params[name].reshape(-1) for name in self.names]).unsqueeze(0)

    def unflatten(self, flat: Tensor) -> Params:
        parts = flat.reshape(-1).split(self.sizes)
        return {n: p.reshape(s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}


class _LangevinKernel(MCMCKernel):
    """Shared set-up, bookkeeping and diagnostics of the three kernels."""

    adjusted = True
    _fixed_step = True  # the step size stays fixed after warm-up (not SGLD's schedule)

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable[[Params], Tensor] | None = None,
        *,
        step_size: float = 0.1,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        target_accept_prob: float = 0.574,
        transforms: dict | None = None,
        max_plate_nesting: int | None = None,
        jit_compile: bool = False,
        init_strategy: Callable = init_to_uniform,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError(
                "model, potential_fn: expected exactly one of them, got "
                + ("both" if model is not None else "neither")
            )
        check_langevin_args(step_size, target_accept_prob)
        self.model = model
        self.potential_fn = potential_fn
        self.step_size = float(step_size)
        self.adapt_step_size = adapt_step_size
        self.adapt_mass_matrix = adapt_mass_matrix
        self.target_accept_prob = float(target_accept_prob)
        self.transforms = transforms
        self._user_transforms = transforms
        self._init_options = {
            "max_plate_nesting": max_plate_nesting,
            "jit_compile": jit_compile,
            "init_strategy": init_strategy,
        }
        self._reset()
        super().__init__()

    def _reset(self) -> None:
        self._t = 0
        self._warmup_steps = 0
        self._initial_params: Params | None = None
        self._state: LangevinState | None = None
        self._last: Params | None = None
        self._adapter: WarmupAdapter | None = None
        self._flags: list[Tensor] = []  # one diverging flag per draw, read at the end
        self._flag_blocks: list[Tensor] = []  # ... packed 1024 at a time (a byte per draw)
        self._accept_sum: Tensor | float = 0.0
        self._accept_count = 0
        self._last_accept: Tensor | None = None
        self._scales: StepScales | None = None

    @property
    def initial_params(self) -> Params | None:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: Params) -> None:
        self._initial_params = params

    def setup(self, warmup_steps: int, *args: object, **kwargs: object) -> None:
        """Initialise the model (if any), the flat potential, the first state and adaptation."""
        self._warmup_steps = warmup_steps
        if self.model is not None:
            self._initialize_model(args, kwargs)
        elif self._initial_params is None:
            raise ValueError(
                "initial_params: a kernel built from potential_fn needs them; pass "
                "MCMC(kernel, ..., initial_params={name: tensor})"
            )
        if self.transforms is None:
            self.transforms = {}
        self._flat = _Flattener(self._initial_params)
        self._state = init_state(self._flat_potential, self._flat.flatten(self._initial_params))
        self._last = self._initial_params  # MCMC's first sample() starts here: no re-evaluation
        self._start_adaptation()

    def _initialize_model(self, args: tuple, kwargs: dict) -> None:
        params, self.potential_fn, self.transforms, _ = initialize_model(
            self._wrap_model(self.model),
            model_args=args,
            model_kwargs=kwargs,
            transforms=self._user_transforms,
            initial_params=self._initial_params,
            **self._init_options,
        )
        if self._initial_params is None:
            self._initial_params = params

    def _wrap_model(self, model: Callable) -> Callable:
        return model

    def _flat_potential(self, flat: Tensor) -> Tensor:
        return self.potential_fn(self._flat.unflatten(flat)).reshape(1)

    def _start_adaptation(self) -> None:
        self._adapter = WarmupAdapter(
            self._state,
            self._flat_potential,
            self._warmup_steps,
            self.step_size,
            self.target_accept_prob,
            adapt_step_size=self.adapt_step_size,
            adapt_mass_matrix=self.adapt_mass_matrix,
        )

    def _current_step_size(self) -> Tensor:
        return self._adapter.step_size

    def _move(self, warming_up: bool) -> tuple[LangevinState, LangevinInfo]:
        # the adapter's own (adapted) inverse mass: nothing to check at every step; the scales
        # are computed once the step size is fixed
        scales = self._scales
        if scales is None:
            scales = step_scales(
                self._current_step_size(), self._adapter.inverse_mass, self._state.position
            )
            if not warming_up and self._fixed_step:
                self._scales = scales
        return _step(self._state, self._flat_potential, None, None, self.adjusted, scales=scales)

    def sample(self, params: Params) -> Params:
        """One Langevin step from ``params`` (a dict of unconstrained site values)."""
        if params is not self._last:
            self._state = init_state(self._flat_potential, self._flat.flatten(params))
        warming_up = self._t < self._warmup_steps
        self._state, info = self._move(warming_up)
        if warming_up:
            self._adapter.update(self._state, info.acceptance_rate)
        self._record(info, warming_up)
        self._t += 1
        self._last = self._flat.unflatten(self._state.position)
        return self._last

    def _record(self, info: LangevinInfo, warming_up: bool) -> None:
        # tensors, read by logging() and diagnostics(): no synchronisation with the device here
        self._last_accept = info.acceptance_rate
        if warming_up:
            return
        self._accept_sum = self._accept_sum + info.acceptance_rate
        self._accept_count += 1
        self._flags.append(info.diverging)
        if len(self._flags) == 1024:
            self._flag_blocks.append(torch.cat(self._flags))
            self._flags = []

    def logging(self) -> OrderedDict:
        """What the progress bar shows: step size and the last acceptance probability."""
        last = float("nan") if self._last_accept is None else self._last_accept.item()
        return OrderedDict(
            [
                ("step size", f"{self._current_step_size().item():.2e}"),
                ("acc. prob", f"{last:.3f}"),
            ]
        )

    def diagnostics(self) -> dict:
        """``divergences`` (indices of post-warm-up draws) and the mean ``acceptance rate``."""
        count = self._accept_count
        rate = float(self._accept_sum) / count if count else float("nan")
        flags = self._flag_blocks + ([torch.cat(self._flags)] if self._flags else [])
        draws = torch.cat(flags).nonzero().flatten().tolist() if flags else []
        return {"divergences": draws, "acceptance rate": rate}

    def cleanup(self) -> None:
        """Forget the chain, so the next sequential chain starts afresh."""
        self._reset()
        self.transforms = self._user_transforms


class MALA(_LangevinKernel):
    r"""Metropolis-adjusted Langevin kernel for ``pyro.infer.MCMC``.

    .. math:: x' = x - h M^{-1}\nabla U(x) + \sqrt{2h} M^{-1/2}\xi, \quad
       \text{accepted with the Metropolis-Hastings probability}.

    Arguments:
        model: a Pyro model (exactly one of ``model`` and ``potential_fn``).
        potential_fn: a callable from a dict of unconstrained values to a scalar potential; then
            ``MCMC(..., initial_params=...)`` gives the start.
        step_size: the initial :math:`h` (searched and adapted during warm-up).
        adapt_step_size, adapt_mass_matrix: what warm-up tunes (diagonal mass needs at least 40
            warm-up steps).
        target_accept_prob: the acceptance probability warm-up aims for (0.574, Roberts &
            Rosenthal 1998).
        transforms, max_plate_nesting, jit_compile, init_strategy: as for Pyro's ``HMC``.

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro.infer import MCMC
        >>> from pyro_flowkit.inference import MALA
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> mcmc = MCMC(MALA(model), num_samples=100, warmup_steps=100, disable_progbar=True)
        >>> mcmc.run(torch.randn(20) + 3.0)
        >>> mcmc.get_samples()["mu"].shape
        torch.Size([100])
    """


class ULA(_LangevinKernel):
    r"""Unadjusted Langevin kernel for ``pyro.infer.MCMC`` (every finite move is kept).

    Its stationary law is biased by :math:`O(h)`. Warm-up adapts :math:`h` so that the MALA
    acceptance probability the move *would* have (a measure of that bias) reaches
    ``target_accept_prob``, 0.9 by default. Arguments as for :class:`MALA`.
    """

    adjusted = False

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable[[Params], Tensor] | None = None,
        *,
        target_accept_prob: float = 0.9,
        **kwargs: object,
    ) -> None:
        super().__init__(model, potential_fn, target_accept_prob=target_accept_prob, **kwargs)


def polynomial_decay(
    step_size: float, *, gamma: float = 0.55, t0: float = 100.0
) -> Callable[[int], float]:
    r"""Welling & Teh's step schedule :math:`h_t = h_0 (1 + t / t_0)^{-\gamma}`.

    With :math:`0.5 < \gamma \le 1`, :math:`\sum h_t = \infty` and :math:`\sum h_t^2 < \infty`.
    """
    check_interval("gamma", gamma, 0.5, 1, open_low=True)
    check_positive("t0", t0)
    return lambda t: step_size * (1.0 + t / t0) ** (-gamma)


class _PlateSubsample(Messenger):
    """Draws a fresh minibatch of indices for one ``pyro.plate`` each time the model runs."""

    def __init__(self, plate: str, subsample_size: int) -> None:
        super().__init__()
        self.plate, self.subsample_size = plate, subsample_size
        self.seen = False

    def _process_message(self, msg: dict) -> None:
        fn = msg["fn"]
        if msg["type"] != "sample" or msg["name"] != self.plate or not isinstance(fn, _Subsample):
            return
        self.seen = True
        if msg["value"] is None and self.subsample_size < fn.size:
            msg["value"] = torch.randperm(fn.size, device=fn.device)[: self.subsample_size]


class SGLD(_LangevinKernel):
    r"""Stochastic-gradient Langevin dynamics for ``pyro.infer.MCMC`` (Welling & Teh 2011).

    .. math:: x_{t+1} = x_t - h_t \nabla \tilde U(x_t) + \sqrt{2 h_t}\,\xi_t,\qquad
       \tilde U(x) = -\log p(x) - \frac{N}{n}\sum_{i \in B_t} \log p(y_i \mid x),

    with a fresh minibatch :math:`B_t` of ``subsample_size`` indices of the plate named ``plate``
    at every step (the model indexes its data with the plate's indices, ``with pyro.plate("data",
    N) as idx: ... obs=y[idx]``; Pyro scales the minibatch by :math:`N/n`), no Metropolis
    correction, and :math:`h_t` from ``schedule`` (default :func:`polynomial_decay` of
    ``step_size``). Only global latent variables make sense here. A move to a non-finite potential
    or gradient is not taken and is counted in ``diagnostics()["divergences"]``.

    Arguments:
        model, potential_fn: as for :class:`MALA` (``subsample_size`` needs ``model``).
        step_size: :math:`h_0`.
        subsample_size: minibatch size :math:`n` (``None``: the full data).
        plate: the name of the data plate to subsample.
        schedule: step size as a function of the step number, overriding ``step_size``.
        transforms, max_plate_nesting, jit_compile, init_strategy: as for Pyro's ``HMC``.
    """

    adjusted = False
    _fixed_step = False

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable[[Params], Tensor] | None = None,
        *,
        step_size: float = 1e-3,
        subsample_size: int | None = None,
        plate: str = "data",
        schedule: Callable[[int], float] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(
            model, potential_fn, step_size=step_size, adapt_step_size=False,
            adapt_mass_matrix=False, **kwargs,
        )  # fmt: skip
        if subsample_size is not None:
            if model is None:
                raise ValueError("subsample_size: needs model=, not potential_fn=")
            check_count("subsample_size", subsample_size)
        self.subsample_size = subsample_size
        self.plate = plate
        self.schedule = polynomial_decay(step_size) if schedule is None else schedule

    def _wrap_model(self, model: Callable) -> Callable:
        if self.subsample_size is None:
            return model
        self._subsampler = _PlateSubsample(self.plate, self.subsample_size)
        return self._subsampler(model)

    def _initialize_model(self, args: tuple, kwargs: dict) -> None:
        super()._initialize_model(args, kwargs)
        if self.subsample_size is not None and not self._subsampler.seen:
            raise ValueError(f"plate: the model has no pyro.plate named {self.plate!r}")

    def _current_step_size(self) -> Tensor:
        h = self.schedule(self._t)
        if not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
            raise ValueError(
                f"schedule: expected a positive step size at step {self._t}, got {h!r}"
            )
        return torch.full_like(self._state.potential, float(h))
