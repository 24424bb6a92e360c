r"""Training energy-based models by contrastive divergence with short-run Langevin chains.

Following Du & Mordatch (2019), each step draws negatives from a :class:`ReplayBuffer` (a fraction
``reinit_prob`` restarted from noise), runs ``langevin_steps`` of

.. math:: x \leftarrow x - h\,\mathrm{clip}(\nabla_x U(x)) + \sigma\,\xi,
   \qquad \xi\sim\mathcal N(0, I),

puts them back in the buffer, and takes a gradient step on

.. math:: \mathcal L = \overline{U(x^+)} - \overline{U(x^-)}
   + \alpha\,\bigl(\overline{U(x^+)^2} + \overline{U(x^-)^2}\bigr).

By default :math:`\sigma = \sqrt{2h}`, i.e. Langevin dynamics at temperature 1, so the learned
:math:`U` is the potential of the density that ``sample_langevin`` and the Pyro kernels then sample.
The paper's decoupled setting (:math:`h = 10`, :math:`\sigma = 0.005`, :math:`\alpha = 1`) samples
at a tiny temperature and is available through ``noise_scale``. At temperature 1, :math:`\alpha = 1`
holds data and negatives about one nat apart and the samples stay diffuse, hence the default
:math:`\alpha = 0.1`.

References:
    Implicit Generation and Generalization in Energy-Based Models (Du & Mordatch, 2019),
    https://arxiv.org/abs/1903.08689
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from pyro_flowkit.inference.langevin import init_state, ula_step
from pyro_flowkit.inference.sampling import check_step_size
from pyro_flowkit.inference.training import train
from pyro_flowkit.validation import (
    check_count,
    check_finite_tensor,
    check_positive,
    check_probability,
)

__all__ = ["ReplayBuffer", "langevin_dynamics", "train_ebm"]

EnergyFn = Callable[[Tensor], Tensor]


class ReplayBuffer:
    r"""Persistent negatives for short-run Langevin training (Du & Mordatch 2019, section 3.1).

    The buffer starts full of ``init_fn(capacity)`` noise. :meth:`sample` draws ``n`` stored
    points at random and replaces each by fresh noise with probability ``reinit_prob``;
    :meth:`update` writes the chains' end points back to the slots they came from.

    Arguments:
        capacity: number of stored points.
        init_fn: ``init_fn(n)`` returns ``(n, *event)`` noise (whose device and dtype the
            buffer keeps).
        reinit_prob: probability of restarting a drawn point from noise.

    Example:
        >>> import torch
        >>> buffer = ReplayBuffer(100, lambda n: torch.rand(n, 2))
        >>> x, slots = buffer.sample(8)
        >>> buffer.update(slots, x + 1.0)
        >>> len(buffer), x.shape
        (100, torch.Size([8, 2]))
    """

    def __init__(
        self, capacity: int, init_fn: Callable[[int], Tensor], reinit_prob: float = 0.05
    ) -> None:
        check_count("capacity", capacity)
        self.init_fn = init_fn
        self.reinit_prob = check_probability("reinit_prob", reinit_prob)
        self.data = self._noise(capacity)

    def _noise(self, n: int) -> Tensor:
        x = self.init_fn(n)
        if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] != n:
            raise ValueError(
                f"init_fn: expected a tensor with {n} rows, got {getattr(x, 'shape', x)!r}"
            )
        return x.detach()

    def __len__(self) -> int:
        return len(self.data)

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` starting points and the slots they came from (to pass to :meth:`update`)."""
        slots = torch.randint(len(self.data), (n,), device=self.data.device)
        x = self.data[slots]
        restart = torch.rand(n, device=x.device) < self.reinit_prob
        if restart.any():
            x[restart] = self._noise(int(restart.sum())).to(x)
        return x, slots

    def update(self, slots: Tensor, x: Tensor) -> None:
        """Store ``x`` in ``slots``."""
        self.data[slots] = x.detach().to(self.data)


def langevin_dynamics(
    energy_fn: EnergyFn,
    x: Tensor,
    steps: int,
    step_size: float,
    noise_scale: float | None = None,
    drift_clip: float | None = None,
) -> Tensor:
    r"""``steps`` moves :math:`x \leftarrow x - h\,\mathrm{clip}(\nabla U) + \sigma\xi` of a batch,
    by the library's one Langevin step (:func:`~pyro_flowkit.inference.ula_step`).

    ``energy_fn`` maps ``(N, *event)`` to ``(N,)``; :math:`\sigma \ge 0` defaults to
    :math:`\sqrt{2h}` (unadjusted Langevin at temperature 1); ``drift_clip`` :math:`c > 0` (or
    ``None``, no clipping) clips each gradient entry to :math:`[-c, c]`. Gradients reach ``x``
    only. Raises ``ValueError`` for a bad argument and ``FloatingPointError`` if a chain leaves the
    finite numbers.
    """
    _check_dynamics_args(steps, step_size, noise_scale, drift_clip)
    state = init_state(energy_fn, x.detach())
    diverged = torch.zeros_like(state.potential, dtype=torch.bool)
    for _ in range(steps):
        state, info = ula_step(
            state, energy_fn, step_size, noise_scale=noise_scale, drift_clip=drift_clip
        )
        diverged |= info.diverging  # no host synchronisation inside the loop
    if diverged.any():
        raise FloatingPointError(
            "langevin_dynamics: chains left the finite numbers; lower step_size or set drift_clip"
        )
    return state.position


def _check_dynamics_args(
    steps: int, step_size: float, noise_scale: float | None, drift_clip: float | None
) -> None:
    check_count("steps", steps, minimum=0)
    check_step_size(step_size)
    if noise_scale is not None:
        check_positive("noise_scale", noise_scale, allow_zero=True)
    if drift_clip is not None:  # a negative clip turns every drift uphill; infinity: no clip
        check_positive("drift_clip", drift_clip, allow_inf=True)


def _default_buffer(data: Tensor, capacity: int = 10_000) -> ReplayBuffer:
    """Uniform noise over the data's bounding box, widened by 10% on each side."""
    low, high = data.amin(0), data.amax(0)
    pad = 0.1 * (high - low)
    low, high = low - pad, high + pad
    return ReplayBuffer(
        capacity, lambda n: low + (high - low) * torch.rand((n,) + low.shape).to(low)
    )


def _check_data(model: nn.Module, data: Tensor) -> None:
    """``data`` must be a finite ``(n, *event)`` tensor with ``n >= 1`` (and the model's event)."""
    check_finite_tensor("data", data)
    event = getattr(model, "event_shape", None)
    expected = "(n, *event)" if event is None else f"(n, {', '.join(map(str, event))})"
    if data.dim() < 1 or len(data) == 0 or (event is not None and data.shape[1:] != event):
        raise ValueError(
            f"data: expected a tensor of shape {expected} with n >= 1, got {tuple(data.shape)}"
        )


def train_ebm(
    model: nn.Module,
    data: Tensor,
    *,
    steps: int,
    step_size: float,
    langevin_steps: int = 60,
    noise_scale: float | None = None,
    l2_coeff: float = 0.1,
    buffer: ReplayBuffer | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    drift_clip: float | None = None,
    progress: bool = True,
) -> dict[str, list[float]]:
    r"""Fit an :class:`~pyro_flowkit.models.EnergyModel` to ``data`` by contrastive divergence.

    Arguments:
        model: an :class:`~pyro_flowkit.models.EnergyModel` (anything with ``energy(x) -> (N,)``
            and parameters).
        data: ``(n, *event)`` training points, all finite.
        steps: optimisation steps.
        langevin_steps: Langevin moves per step for the negatives.
        step_size: the Langevin :math:`h`.
        noise_scale: the Langevin noise :math:`\sigma \ge 0` (default :math:`\sqrt{2h}`,
            temperature 1).
        l2_coeff: :math:`\alpha`, the weight of the energies' squares.
        buffer: a :class:`ReplayBuffer` (default: 10 000 points of uniform noise over the data's
            bounding box widened by 10%, ``reinit_prob=0.05``).
        batch_size: data points and negatives per step.
        lr: Adam's learning rate (ignored with ``optimizer``).
        optimizer: an optimiser over ``model``'s parameters to use instead.
        drift_clip: clip each entry of :math:`\nabla_x U` in Langevin to :math:`[-c, c]`, for
            :math:`c > 0` (``None``: no clipping).
        progress: show a tqdm bar with the loss and the mean energies.

    Returns:
        ``{"loss": [...], "e_pos": [...], "e_neg": [...]}``, one entry per step (``e_pos`` and
        ``e_neg`` are the mean energies of the data batch and of the negatives).

    Raises:
        ValueError: for a bad argument, e.g. ``data`` with NaN or infinite entries.
        FloatingPointError: when the loss or a Langevin chain stops being finite.
    """
    check_count("steps", steps, minimum=0)
    check_count("langevin_steps", langevin_steps, minimum=0)
    _check_dynamics_args(langevin_steps, step_size, noise_scale, drift_clip)
    check_positive("l2_coeff", l2_coeff, allow_zero=True)
    check_count("batch_size", batch_size)
    if optimizer is None:
        check_positive("lr", lr)
    _check_data(model, data)
    buffer = buffer or _default_buffer(data)

    def loss_fn(positive: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        start, slots = buffer.sample(len(positive))
        model.eval()
        negative = langevin_dynamics(
            model.energy, start, langevin_steps, step_size, noise_scale, drift_clip
        )
        model.train()
        buffer.update(slots, negative)
        return _contrastive_loss(model, positive, negative, l2_coeff)

    try:
        history = train(
            loss_fn, data, params=model, optimizer=optimizer, lr=lr, steps=steps,
            batch_size=min(batch_size, len(data)), progress=progress, desc="train_ebm",
        )  # fmt: skip
    except FloatingPointError as error:
        raise FloatingPointError(f"train_ebm: {error}") from error
    finally:
        model.eval()
    return history.as_dict()


def _contrastive_loss(
    model: nn.Module, positive: Tensor, negative: Tensor, l2_coeff: float
) -> tuple[Tensor, dict[str, Tensor]]:
    r""":math:`E_+ - E_- + \alpha (E_+^2 + E_-^2)` (means over the batch) and the mean energies."""
    e_pos, e_neg = model.energy(torch.cat([positive, negative])).split(len(positive))
    loss = e_pos.mean() - e_neg.mean() + l2_coeff * (e_pos.square().mean() + e_neg.square().mean())
    return loss, {"e_pos": e_pos.detach().mean(), "e_neg": e_neg.detach().mean()}
