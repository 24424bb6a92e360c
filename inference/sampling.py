"""``sample_langevin``: many Langevin chains at once, with warm-up adaptation and statistics.

The loop adds no tensor operation of its own to a draw: the step's scales
(:func:`~pyro_flowkit.inference.langevin.step_scales`) are computed once the step size is fixed,
and the draws and statistics are kept as references and stacked into the output every 64 draws
(one copy per block, not four per draw). Nothing synchronises with the device inside the loop
except the optional progress bar (every 2% of the steps).
"""

from __future__ import annotations

import types
import warnings
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pyro_flowkit.inference.adaptation import WarmupAdapter
from pyro_flowkit.inference.langevin import (
    LangevinInfo,
    LangevinState,
    PotentialFn,
    StepScales,
    _accept,
    _forward,
    _log_ratio,
    _noise,
    _step,
    init_state,
    step_scales,
)
from pyro_flowkit.validation import check_count, check_positive, check_probability

__all__ = ["check_langevin_args", "check_step_size", "sample_langevin"]


def check_step_size(step_size: float) -> None:
    """Raise ``ValueError`` unless ``step_size`` is a positive number."""
    check_positive("step_size", step_size)


def check_langevin_args(step_size: float | None, target_accept_prob: float) -> None:
    """Raise ``ValueError`` for a non-positive step size or a target outside (0, 1); a step size
    of ``None`` (searched) passes."""
    if step_size is not None:
        check_step_size(step_size)
    check_probability("target_accept_prob", target_accept_prob, open_low=True, open_high=True)


def _check_counts(num_samples: int, num_warmup: int, thin: int) -> None:
    check_count("num_samples", num_samples)
    check_count("num_warmup", num_warmup, minimum=0)
    check_count("thin", thin)


class _Recorder:
    """The draws and statistics, ``(chains, draws, ...)``, filled a block of draws at a time.

    :meth:`add` keeps references to the step's tensors (every step makes new ones), so a draw
    costs no tensor operation; every ``block`` draws they are stacked into the output.
    """

    def __init__(self, state: LangevinState, num_samples: int, thin: int, block: int = 64) -> None:
        chains = state.position.shape[0]
        self.samples = state.position.new_empty((chains, num_samples) + state.position.shape[1:])
        like = state.potential
        self.stats = {
            "lp": like.new_empty(chains, num_samples),
            "acceptance_rate": like.new_empty(chains, num_samples),
            "step_size": like.new_empty(chains, num_samples),
            "diverging": torch.zeros(chains, num_samples, dtype=torch.bool, device=like.device),
        }
        self.thin, self.block, self.done = thin, block, 0
        self._positions: list[Tensor] = []
        self._potentials: list[Tensor] = []
        self._accept: list[Tensor] = []
        self._diverging: list[Tensor] = []

    def add(self, state: LangevinState, info: LangevinInfo, keep: bool) -> None:
        """One post-warm-up step; ``keep``: the last of ``thin`` steps (its state is a draw)."""
        self._accept.append(info.acceptance_rate)
        self._diverging.append(info.diverging)
        if keep:
            self._positions.append(state.position)
            self._potentials.append(state.potential)
            if len(self._positions) == self.block:
                self.flush()

    def flush(self) -> None:
        """Stack the kept references into the output."""
        n = len(self._positions)
        if not n:
            return
        chains, rows = self.samples.shape[0], slice(self.done, self.done + n)
        self.samples[:, rows] = torch.stack(self._positions, 1)
        self.stats["lp"][:, rows] = torch.stack(self._potentials, 1).neg_()
        accept = torch.stack(self._accept, 1).view(chains, n, self.thin)
        diverging = torch.stack(self._diverging, 1).view(chains, n, self.thin)
        self.stats["acceptance_rate"][:, rows] = accept.mean(2) if self.thin > 1 else accept[..., 0]
        self.stats["diverging"][:, rows] = diverging.any(2) if self.thin > 1 else diverging[..., 0]
        self.done += n
        for kept in (self._positions, self._potentials, self._accept, self._diverging):
            kept.clear()

    def result(self, step_size: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self.flush()
        self.stats["step_size"].copy_(step_size[:, None].expand_as(self.stats["step_size"]))
        return self.samples, self.stats


def sample_langevin(
    potential_fn: PotentialFn,
    init: Tensor,
    num_samples: int,
    *,
    step_size: float | None = None,
    num_warmup: int = 0,
    adjusted: bool = True,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    inverse_mass: Tensor | None = None,
    target_accept_prob: float | None = None,
    thin: int = 1,
    noise_dtype: torch.dtype | None = None,
    compile: bool = False,
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
        potential_fn: maps ``(chains, *event)`` to ``(chains,)`` potentials :math:`U = -\log p + c`
            (:class:`~pyro_flowkit.inference.potential.ModelPotential` makes one from a Pyro model).
        init: ``(chains, *event)`` starting points (``(chains,)`` for a scalar per chain).
        num_samples: draws kept per chain (``num_samples * thin`` steps after warm-up).
        step_size: the initial step size :math:`h` (the final one without adaptation). ``None``
            (the default): each chain's is searched, from 1, by doubling or halving until a
            trial move's acceptance probability crosses ``target_accept_prob`` (Hoffman &
            Gelman's heuristic; with warm-up, dual averaging takes it from there).
        num_warmup: adaptation steps, discarded.
        adjusted: MALA if true, ULA if false.
        adapt_step_size: tune :math:`h` per chain during warm-up.
        adapt_mass_matrix: estimate a diagonal inverse mass per chain during warm-up (only
            with at least 40 warm-up steps, and only with ``adapt_step_size``, as a new mass needs
            a new step size).
        inverse_mass: a fixed diagonal :math:`M^{-1}`, broadcastable to ``init``, with finite
            entries above 0 (the start of the adaptation when ``adapt_mass_matrix``).
        target_accept_prob: acceptance probability that the adaptation aims for (default 0.574
            for MALA; 0.9 for ULA, as for the ``ULA`` kernel: ULA keeps every move, and aiming
            for MALA's 0.574 gives steps near ULA's stability limit, where chains can explode).
        thin: keep every ``thin``-th step.
        noise_dtype: draw the Gaussian noise in this dtype (see
            :func:`~pyro_flowkit.inference.mala_step`): ``torch.float32`` makes float64 chains
            draw their noise 5x faster, at float32 resolution.
        compile: run each step through ``torch.compile``, the potential and its gradient
            (``torch.func.grad_and_value``) fused with the step's arithmetic; the random draws
            stay eager, so a compiled run sees the same noise as an eager one. The first call
            on a potential pays the compilation (seconds; the steps of the last four potentials
            are kept, and a new inverse-mass shape compiles once more); the potential must be
            traceable (a graph break falls back to eager for that part). On a CPU it pays for
            potentials of a few operations, and loses where the noise dominates
            (``benchmarks/langevin.py --suite overhead``).
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
    if target_accept_prob is None:
        target_accept_prob = 0.574 if adjusted else 0.9
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
    step = _cached_compiled_step(potential_fn, adjusted) if compile else None
    recorder = _Recorder(state, num_samples, thin)
    total = num_warmup + num_samples * thin
    bar = tqdm(total=total, desc="langevin", disable=not progress, leave=False)
    scales = None
    for t in range(total):
        if scales is None:  # new step sizes (every warm-up step) or masses
            scales = step_scales(adapter.step_size, adapter.inverse_mass, state.position)
        if step is None:
            state, info = _step(
                state, potential_fn, None, None, adjusted, scales=scales, noise_dtype=noise_dtype
            )
        else:
            state, info = step(state, scales, noise_dtype)
        if t < num_warmup:
            adapter.update(state, info.acceptance_rate)
            scales = None
        else:
            recorder.add(state, info, (t - num_warmup) % thin == thin - 1)
        if not bar.disable:
            _progress(bar, t, total, info, adapter.step_size)
    bar.close()
    return recorder.result(adapter.step_size)


_COMPILED_STEPS: OrderedDict[tuple[int, bool], tuple[PotentialFn, Callable]] = OrderedDict()
_COMPILED_KEEP = 4  # compiled steps kept, the most recently used (each holds its potential)


def _cached_compiled_step(potential_fn: PotentialFn, adjusted: bool) -> Callable:
    """:func:`_compiled_step`, kept for the last few potentials, so that another
    ``sample_langevin`` call on the same potential does not compile again."""
    key = (id(potential_fn), adjusted)
    entry = _COMPILED_STEPS.get(key)
    if entry is None or entry[0] is not potential_fn:
        entry = _COMPILED_STEPS[key] = (potential_fn, _compiled_step(potential_fn, adjusted))
        while len(_COMPILED_STEPS) > _COMPILED_KEEP:
            _COMPILED_STEPS.popitem(last=False)
    _COMPILED_STEPS.move_to_end(key)
    return entry[1]


def _compiled_step(
    potential_fn: PotentialFn, adjusted: bool
) -> Callable[[LangevinState, StepScales, torch.dtype | None], tuple[LangevinState, LangevinInfo]]:
    """A step whose arithmetic, potential and gradient run as one ``torch.compile`` graph."""

    def value_and_sum(x: Tensor) -> tuple[Tensor, Tensor]:
        potential = potential_fn(x)
        return potential.sum(), potential

    grad_and_value = torch.func.grad_and_value(value_and_sum, has_aux=True)

    def arithmetic(
        x: Tensor, u: Tensor, g: Tensor, drift: Tensor, scale: Tensor, noise: Tensor,
        uniform: Tensor | None,
    ) -> tuple[Tensor, ...]:  # fmt: skip
        proposal, kick = _forward(x, g, drift, scale, noise, None)
        grad, (_, potential) = grad_and_value(proposal)
        log_ratio = _log_ratio(u, g, potential, grad, kick, drift, None, False)
        return _accept((x, u, g), (proposal, potential, grad), log_ratio, uniform)

    # a copy of the code object per call: torch.compile caches its graphs per code object, up to
    # a recompilation limit (8), after which it would run every new potential uncompiled
    fresh = types.FunctionType(
        arithmetic.__code__.replace(), arithmetic.__globals__, arithmetic.__name__,
        arithmetic.__defaults__, arithmetic.__closure__,
    )  # fmt: skip
    with warnings.catch_warnings():  # torch's own imports for inductor warn of its deprecations
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
        compiled = torch.compile(fresh, dynamic=False)

    def step(
        state: LangevinState, scales: StepScales, noise_dtype: torch.dtype | None
    ) -> tuple[LangevinState, LangevinInfo]:
        noise = _noise(state.position, noise_dtype)
        uniform = torch.rand_like(state.potential) if adjusted else None
        *kept, accept_prob, accepted, diverging = compiled(
            *state, scales.drift, scales.noise, noise, uniform
        )
        return LangevinState(*kept), LangevinInfo(accept_prob, accepted, diverging)

    return step


def _progress(bar: tqdm, t: int, total: int, info: LangevinInfo, step_size: Tensor) -> None:
    bar.update(1)
    if t % max(1, total // 50) == 0 or t == total - 1:
        bar.set_postfix(
            accept=f"{info.acceptance_rate.mean().item():.2f}",
            step=f"{step_size.mean().item():.2e}",
            refresh=False,
        )
