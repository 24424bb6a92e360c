r"""Glow's activation normalisation: a per-channel affine map initialised from the data."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pyro_flowkit.transforms._base import EventShape, FlowTransform
from pyro_flowkit.validation import check_finite_tensor

_MIN_STD = 1e-6


class ActNorm(FlowTransform):
    r"""Per-channel affine map :math:`y = x \odot e^{s} + b`, initialised from the first data batch.

    In Pyro's direction the forward map goes from the base to the data, so the data side is the
    inverse :math:`x = (y - b) e^{-s}`. The first time the inverse runs while ``initialized`` is
    false, :math:`b` and :math:`e^{s}` are set to the per-channel mean and standard deviation of
    that batch (over every dimension but the channel), so the normalised batch has mean 0 and
    standard deviation 1 per channel; a channel whose standard deviation is below
    :math:`10^{-6}` (constant data, or a single vector) keeps the scale 1. ``initialized`` is a
    buffer saved in ``state_dict``, so a loaded model is not re-initialised. Sampling (the
    forward map) never initialises. :math:`\log|\det J| = HW \sum_c s_c` for images
    (:math:`\sum_c s_c` for vectors).

    Arguments:
        event_shape: ``(C, H, W)`` for images, ``D`` or ``(D,)`` for vectors.
        per_position: one loc and scale per entry of the event (statistics over the batch
            only) instead of per channel.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> t = ActNorm((2, 4, 4))
        >>> x = t.inv(3 + 5 * torch.randn(64, 2, 4, 4))  # initialises from this batch
        >>> bool(t.initialized), round(x.std().item(), 3)
        (True, 1.0)
    """

    def __init__(self, event_shape: EventShape, per_position: bool = False) -> None:
        super().__init__(event_shape)
        if self.event_dim not in (1, 3):
            raise ValueError(
                f"event_shape: expected (D,) or (C, H, W), got {tuple(self.event_shape)}"
            )
        self.per_position = bool(per_position)
        shape = (
            self.event_shape
            if self.per_position
            else (self.event_shape[0],) + (1,) * (self.event_dim - 1)
        )
        self.loc = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))
        self._known_initialized = False  # read the buffer once, not every pass (a GPU sync)
        self._pixels = 1 if self.per_position else self.event_shape[1:].numel()

    @torch.no_grad()
    def initialize(self, y: Tensor) -> None:
        """Set the parameters from the data batch ``y`` (shape ``batch + event_shape``).

        Raises ``ValueError`` if ``y`` has a NaN or infinite entry, and leaves the layer
        uninitialised: statistics of such a batch would make every later output NaN.
        """
        self._check_input(y, "y")
        check_finite_tensor("y (the first data batch, from which ActNorm initialises)", y)
        if self.per_position:
            units = y.reshape(-1, self.event_shape.numel()).T
        else:
            units = y.movedim(-self.event_dim, 0).reshape(self.event_shape[0], -1)
        std, mean = torch.std_mean(units, dim=1, correction=0)
        std = torch.where(std > _MIN_STD, std, torch.ones_like(std))
        self.loc.copy_(mean.view_as(self.loc))
        self.log_scale.copy_(std.log().view_as(self.log_scale))
        self.initialized.fill_(True)
        self._known_initialized = True

    def _load_from_state_dict(self, *args: object, **kwargs: object) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._known_initialized = False  # the loaded buffer decides

    def _ladj(self, t: Tensor) -> Tensor:
        return (self.log_scale.sum() * self._pixels).expand(t.shape[: t.dim() - self.event_dim])

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.addcmul(self.loc, x, self.log_scale.exp()), self._ladj(x)

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if not self._known_initialized:
            if not self.initialized:
                self.initialize(y)
            self._known_initialized = True
        return (y - self.loc) * torch.exp(-self.log_scale), self._ladj(y)
