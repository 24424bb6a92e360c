r"""Energy-based models :math:`p(x) \propto e^{-U(x)}` with a neural energy (Du & Mordatch 2019).

References:
    Implicit Generation and Generalization in Energy-Based Models (Du & Mordatch, 2019),
    https://arxiv.org/abs/1903.08689
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import Tensor, nn
from torch.distributions import constraints

from pyro_flowkit.nn.lipschitz import SpectralNormLinear
from pyro_flowkit.validation import check_count, check_positive

__all__ = ["EnergyModel", "energy_mlp"]


class _FlatPrior(dist.ImproperUniform):
    """The improper flat density on :math:`\\mathbb R^D` whose ``sample()`` gives the origin.

    Sampling is only used by Pyro's init strategies (``init_to_uniform`` then draws uniformly in
    ``(-2, 2)``); the density itself is the constant 1 (log-density 0).
    """

    like: Tensor | None = None

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        like = torch.empty(()) if self.like is None else self.like
        return like.new_zeros(self.shape(sample_shape))


def energy_mlp(
    features: int,
    hidden_dims: Sequence[int] = (128, 128),
    *,
    spectral_norm: float | None = None,
) -> nn.Sequential:
    r"""An energy network :math:`\mathbb R^D \to \mathbb R`: linear layers with SiLU between them.

    Arguments:
        features: the event size :math:`D`.
        hidden_dims: widths of the hidden layers.
        spectral_norm: if given, every layer's spectral norm is held at most this value
            (:class:`~pyro_flowkit.nn.SpectralNormLinear`), which bounds the energy's slope by
            ``spectral_norm ** (len(hidden_dims) + 1)``, as Du & Mordatch do for stable training.

    Returns:
        An ``nn.Sequential`` whose ``event_shape`` attribute, ``(features,)``, tells
        :class:`EnergyModel` the event shape.

    Example:
        >>> net = energy_mlp(2, (32,), spectral_norm=2.0)
        >>> net(torch.randn(5, 2)).shape
        torch.Size([5, 1])
    """
    check_count("features", features)
    widths = (features, *hidden_dims, 1)
    for width in hidden_dims:
        check_count("hidden_dims", width)
    if spectral_norm is not None:
        check_positive("spectral_norm", spectral_norm)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if spectral_norm is None:
            layers.append(nn.Linear(a, b))
        else:
            layers.append(SpectralNormLinear(a, b, spectral_norm, power_rtol=None, zero_init=False))
        if i < len(widths) - 2:
            layers.append(nn.SiLU())
    net = nn.Sequential(*layers)
    net.event_shape = torch.Size((features,))  # what EnergyModel reads, whatever the layers
    return net


_LINEAR = (nn.Linear, SpectralNormLinear)


def _event_shape(net: nn.Module, event_shape: int | Sequence[int] | None) -> torch.Size:
    if event_shape is None:
        event_shape = getattr(net, "event_shape", None)
    if event_shape is None:  # the input size of the first linear layer, spectrally normed or not
        first = next((m for m in net.modules() if isinstance(m, _LINEAR)), None)
        event_shape = None if first is None else first.weight.shape[1]
    if event_shape is None:
        raise ValueError(
            "event_shape: could not infer it from energy_net (no event_shape attribute and no "
            "nn.Linear or SpectralNormLinear layer); pass EnergyModel(net, event_shape=...)"
        )
    return torch.Size((event_shape,) if isinstance(event_shape, int) else event_shape)


class EnergyModel(PyroModule):
    r"""The density :math:`p(x) = e^{-U(x)} / Z` of an energy network :math:`U`.

    :meth:`energy` is the ``potential_fn`` that
    :func:`~pyro_flowkit.inference.sample_langevin` takes; :meth:`model` is the same density as a
    Pyro model (an improper flat ``"x"`` site plus ``pyro.factor("energy", -U(x))``) for
    :class:`~pyro_flowkit.inference.MALA` and the other ``pyro.infer.MCMC`` kernels. Train it with
    :func:`~pyro_flowkit.inference.train_ebm`.

    Arguments:
        energy_net: maps ``(N, *event_shape)`` to ``(N,)`` or ``(N, 1)`` energies.
        event_shape: the shape of one :math:`x` (inferred from ``energy_net.event_shape``, which
            :func:`energy_mlp` sets, or from its first ``nn.Linear`` or
            :class:`~pyro_flowkit.nn.SpectralNormLinear` when omitted).

    Example:
        >>> from pyro_flowkit.models import EnergyModel, energy_mlp
        >>> ebm = EnergyModel(energy_mlp(2, (16,)))
        >>> ebm.energy(torch.randn(7, 2)).shape
        torch.Size([7])
    """

    def __init__(
        self, energy_net: nn.Module, event_shape: int | Sequence[int] | None = None
    ) -> None:
        super().__init__()
        if not isinstance(energy_net, nn.Module):
            raise TypeError(f"energy_net: expected an nn.Module, got {type(energy_net).__name__}")
        self.energy_net = energy_net
        self.event_shape = _event_shape(energy_net, event_shape)

    def energy(self, x: Tensor) -> Tensor:
        """:math:`U(x)` for ``x`` of shape ``batch + event_shape``; returns shape ``batch``."""
        dims = len(self.event_shape)
        if tuple(x.shape[x.dim() - dims :]) != tuple(self.event_shape):
            raise ValueError(
                f"x: expected shape (..., {', '.join(map(str, self.event_shape))}), "
                f"got {tuple(x.shape)}"
            )
        batch = x.shape[: x.dim() - dims]
        out = self.energy_net(x.reshape((-1,) + tuple(self.event_shape)))
        if out.dim() == 2 and out.shape[1] == 1:
            out = out.squeeze(1)
        if out.shape != (batch.numel(),):
            raise ValueError(
                f"energy_net: expected one energy per input, shape ({batch.numel()},) or "
                f"({batch.numel()}, 1), got {tuple(out.shape)}"
            )
        return out.reshape(batch)

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`energy`."""
        return self.energy(x)

    def model(self) -> Tensor:
        """One draw ``"x"`` of :math:`p(x)`: a flat improper site weighted by :math:`e^{-U(x)}`."""
        like = next(self.energy_net.parameters(), None)
        flat = _FlatPrior(constraints.real, (), self.event_shape)
        flat.like = like
        x = pyro.sample("x", flat)
        pyro.factor("energy", -self.energy(x))
        return x
