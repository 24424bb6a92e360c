r"""Coupling layers: NICE's additive coupling and RealNVP's affine coupling, with conditional twins.

A coupling splits the event by a mask into a kept part :math:`x_A` and a moved part :math:`x_B`
and maps (in Pyro's direction, base to data)

.. math::
    y_A = x_A, \qquad y_B = x_B \odot e^{s(x_A)} + t(x_A),

with :math:`s = 0` for the additive coupling. The Jacobian is triangular, so
:math:`\log|\det J| = \sum s(x_A)`, and the inverse costs one conditioner pass as well.

References:
    | NICE: Non-linear Independent Components Estimation (Dinh, Krueger & Bengio, 2014)
    | https://arxiv.org/abs/1410.8516
    | Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017)
    | https://arxiv.org/abs/1605.08803
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch import Tensor, nn

from pyro_flowkit.nn import MLP, ConvNet
from pyro_flowkit.transforms._base import ContextBound, FlowTransform, check_context, sum_event
from pyro_flowkit.transforms.masks import Partition, make_partition
from pyro_flowkit.validation import check_positive

Conditioner = Callable[[Tensor], Tensor]


_LOG2E = 1.4426950408889634


def _bounded_scale(raw: Tensor, bound: float, inverse: bool) -> tuple[Tensor, Tensor]:
    r"""The scale :math:`e^{\pm s}` with :math:`s = b \tanh(h/b)`, and :math:`\sigma(2h/b)`.

    :math:`s = b(2u - 1)` with :math:`u = \sigma(2h/b)`, and :math:`e^{\pm s}` is computed as
    :math:`2^{\pm b \log_2 e\,(2u - 1)}`: on CPU, ``torch.tanh`` and ``torch.exp`` wake the
    OpenMP pool on tensors of 2048+ entries (MKL's vector-math grain); ``sigmoid`` and ``exp2``
    do not.
    """
    u = torch.sigmoid(raw if bound == 2 else raw * (2 / bound))
    c = bound * _LOG2E
    scale = torch.exp2(u * (-2 * c) + c if inverse else u * (2 * c) - c)
    return scale, u


class _Coupling(FlowTransform):
    """Split, run the conditioner on the kept part, map the moved part element-wise, merge."""

    params_per_feature = 1

    def __init__(self, mask: Tensor | Partition, conditioner: Conditioner) -> None:
        partition = make_partition(mask)
        super().__init__(partition.event_shape)
        self.partition = partition
        self.conditioner = conditioner

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        kept, moved = self.partition.split(x)
        h = self.partition.restrict(self.conditioner(kept))
        moved, ladj = self._map(moved, h, inverse=False)
        return self.partition.merge(kept, moved), ladj

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        kept, moved = self.partition.split(y)
        h = self.partition.restrict(self.conditioner(kept))
        moved, ladj = self._map(moved, h, inverse=True)
        return self.partition.merge(kept, moved), ladj

    def _map(self, moved: Tensor, h: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class AdditiveCoupling(_Coupling):
    r"""NICE's additive coupling :math:`y_B = x_B + t(x_A)`, volume preserving (log-det 0).

    Arguments:
        mask: boolean tensor of the event's shape, ``True`` on the entries that are kept and
            condition the others (or a partition from
            :func:`~pyro_flowkit.transforms.masks.make_partition`). Vector masks and image
            channel masks (:func:`channel_mask`) split by blocks; any other image mask
            (:func:`checkerboard_mask`) is applied by masking, as in RealNVP.
        conditioner: network mapping ``x_A`` to the shift ``t``: ``batch + (n_kept,)`` to
            ``batch + (n_moved,)`` for vectors, ``batch + (C_kept, H, W)`` to
            ``batch + (C_moved, H, W)`` for a channel mask, the masked image
            ``batch + (C, H, W)`` to ``batch + (C, H, W)`` for a checkerboard (e.g. a
            :class:`~pyro_flowkit.nn.ConvNet`). Zero-initialise its last layer to start at the
            identity.

    References:
        | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014)
        | https://arxiv.org/abs/1410.8516

    Example:
        >>> from pyro_flowkit.transforms import alternating_mask
        >>> t = AdditiveCoupling(alternating_mask(4), MLP(2, 2, hidden_dims=(8,)))
        >>> t(torch.ones(3, 4)).shape
        torch.Size([3, 4])
    """

    def _map(self, moved: Tensor, h: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        out = moved - h if inverse else moved + h
        return out, out.new_zeros(()).expand(out.shape[: out.dim() - self.event_dim])


class AffineCoupling(_Coupling):
    r"""RealNVP's affine coupling :math:`y_B = x_B \odot e^{s} + t` with a soft-bounded scale.

    The conditioner's output is split into :math:`(t, h)` and the log-scale is the soft clamp
    :math:`s = b \tanh(h / b)`: it starts at 0 (identity), keeps a unit gradient near 0, and never
    exceeds :math:`\pm b`, which keeps a few outlying inputs from driving the density to extremes
    (unlike a hard clamp, whose gradient vanishes at the bound). ``log_abs_det_jacobian`` is
    :math:`\sum s`, computed in the same pass as the map.

    Arguments:
        mask: boolean tensor of the event's shape, ``True`` on the kept entries (or a
            partition); as for :class:`AdditiveCoupling`.
        conditioner: network mapping ``x_A`` to twice the moved features (channels, for
            images): the shift then the unbounded log-scale, concatenated along the event's
            first dimension.
        log_scale_bound: the bound :math:`b > 0` on each log-scale.

    References:
        | Density estimation using Real NVP (Dinh et al., 2017)
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> from pyro_flowkit.transforms import half_mask
        >>> t = AffineCoupling(half_mask(4), MLP(2, 4, hidden_dims=(8,)))
        >>> x = torch.randn(3, 4)
        >>> torch.allclose(t.inv(t(x)), x)
        True
    """

    params_per_feature = 2

    def __init__(
        self,
        mask: Tensor | Partition,
        conditioner: Conditioner,
        log_scale_bound: float = 2.0,
    ) -> None:
        super().__init__(mask, conditioner)
        self.log_scale_bound = _check_bound(log_scale_bound)

    def _map(self, moved: Tensor, h: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        shift, raw = h.chunk(2, dim=-self.event_dim)
        b = self.log_scale_bound
        scale, u = _bounded_scale(raw, b, inverse)
        out = (moved - shift) * scale if inverse else torch.addcmul(shift, moved, scale)
        # sum of s = b (2u - 1) over the event, taken on u to save a full-size operation
        n = u.shape[u.dim() - self.event_dim :].numel()
        return out, sum_event(u, self.event_dim) * (2 * b) - b * n

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, log_scale_bound={self.log_scale_bound}"


class _ConditionalCoupling(ConditionalTransformModule):
    """The conditional twin: ``condition(context)`` binds the context into the conditioner."""

    plain: type[_Coupling] = _Coupling

    def __init__(self, mask: Tensor | Partition, conditioner: nn.Module, **kwargs: float) -> None:
        super().__init__()
        self.partition = make_partition(mask)
        self.conditioner = conditioner
        self.kwargs = kwargs
        self.context_dim = getattr(conditioner, "context_features", None)

    @property
    def event_shape(self) -> torch.Size:
        return self.partition.event_shape

    def condition(self, context: Tensor) -> _Coupling:
        """The plain coupling for ``context`` (shape ``batch + (context_dim,)``)."""
        if self.context_dim is not None:
            check_context(context, self.context_dim)
        return self.plain(self.partition, ContextBound(self.conditioner, context), **self.kwargs)


class ConditionalAdditiveCoupling(_ConditionalCoupling):
    r"""Conditional NICE coupling :math:`y_B = x_B + t(x_A, c)`.

    Arguments:
        mask: as for :class:`AdditiveCoupling`.
        conditioner: network ``(x_A, context) -> t``, e.g. an :class:`~pyro_flowkit.nn.MLP` with
            ``context_features``; the context broadcasts against leading sample dimensions.
    """

    plain = AdditiveCoupling


class ConditionalAffineCoupling(_ConditionalCoupling):
    r"""Conditional RealNVP coupling :math:`y_B = x_B \odot e^{s(x_A, c)} + t(x_A, c)`.

    Arguments:
        mask: as for :class:`AffineCoupling`.
        conditioner: network ``(x_A, context) -> (t, h)`` with ``2 * n_moved`` outputs.
        log_scale_bound: the soft bound on each log-scale.
    """

    plain = AffineCoupling

    def __init__(
        self, mask: Tensor | Partition, conditioner: nn.Module, log_scale_bound: float = 2.0
    ) -> None:
        super().__init__(mask, conditioner, log_scale_bound=_check_bound(log_scale_bound))


def _check_bound(bound: float) -> float:
    return check_positive("log_scale_bound", bound)


def conditioner_for(
    partition: Partition,
    params_per_feature: int,
    hidden: Sequence[int] | int,
    context_dim: int = 0,
    dropout: float = 0.0,
) -> nn.Module:
    """A fresh conditioner sized for ``partition``: an MLP for vectors, a ConvNet for images."""
    sizes = partition.kept_features, partition.moved_features * params_per_feature
    if len(partition.event_shape) == 1:
        return MLP(*sizes, hidden, context_features=context_dim, dropout=dropout)
    if not isinstance(hidden, int):
        raise ValueError(f"hidden: expected an int (channels) for an image mask, got {hidden!r}")
    return ConvNet(*sizes, hidden, context_features=context_dim, dropout=dropout)


def coupling(
    kind: str,
    mask: Tensor,
    hidden: Sequence[int] | int = (256, 256),
    context_dim: int = 0,
    dropout: float = 0.0,
    **kwargs: float,
) -> _Coupling | _ConditionalCoupling:
    """Build an additive (``kind="additive"``) or affine coupling with a fresh conditioner.

    A 1-D mask gets an :class:`~pyro_flowkit.nn.MLP` with hidden widths ``hidden``; a
    ``(C, H, W)`` mask (:func:`checkerboard_mask`, :func:`channel_mask`) gets a
    :class:`~pyro_flowkit.nn.ConvNet` of width ``hidden`` (an int). With ``context_dim > 0`` the
    conditional twin is returned. ``kwargs`` go to the coupling (``log_scale_bound``).

    Example:
        >>> from pyro_flowkit.transforms import checkerboard_mask
        >>> t = coupling("affine", checkerboard_mask((2, 4, 4)), hidden=8)
        >>> t(torch.randn(3, 2, 4, 4)).shape
        torch.Size([3, 2, 4, 4])
    """
    classes = {
        "additive": (AdditiveCoupling, ConditionalAdditiveCoupling),
        "affine": (AffineCoupling, ConditionalAffineCoupling),
    }
    if kind not in classes:
        raise ValueError(f"coupling: expected one of {sorted(classes)}, got {kind!r}")
    plain, conditional = classes[kind]
    partition = make_partition(mask)
    net = conditioner_for(partition, plain.params_per_feature, hidden, context_dim, dropout)
    if context_dim:
        return conditional(partition, net, **kwargs)
    return plain(partition, net, **kwargs)
