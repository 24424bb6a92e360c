r"""RealNVP: affine couplings on vectors, and the multi-scale architecture on images.

On ``(C, H, W)`` images, per scale: 3 affine couplings with alternating checkerboard masks, a
squeeze, 3 with alternating channel masks, then half of the channels are factored out (they go on
to the base unchanged); the last scale has 4 checkerboard couplings. Each scale is one
:class:`~pyro_flowkit.transforms.SqueezeBlock`, so every part maps ``(C, H, W)`` to
``(C, H, W)`` and the base is a standard normal over the whole event.

References:
    | Density estimation using Real NVP (Dinh, Sohl-Dickstein & Bengio, 2017)
    | https://arxiv.org/abs/1605.08803
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from typing_extensions import Unpack

from pyro_flowkit.flows._common import (
    COUPLING_DEFAULTS,
    CouplingOptions,
    check_context_dim,
    compose_levels,
    coupling_stack,
    is_image,
    level,
    refuse,
    resolve,
)
from pyro_flowkit.transforms import (
    ComposeFlow,
    ConditionalComposeFlow,
    channel_mask,
    checkerboard_mask,
    compose,
    coupling,
)
from pyro_flowkit.transforms._base import EventShape, image_event_shape
from pyro_flowkit.validation import check_count, check_rate

__all__ = ["RealNVPOptions", "conditional_realnvp", "image_realnvp", "realnvp"]


class RealNVPOptions(CouplingOptions, total=False):
    """Options of :func:`realnvp` and :func:`conditional_realnvp`: :class:`CouplingOptions`
    (``mask`` and ``permutation`` for vectors only) and

    Keys:
        log_scale_bound: the soft bound :math:`b` on every log-scale, :math:`s = b \\tanh(h/b)`
            (default 2; :class:`~pyro_flowkit.transforms.AffineCoupling`).
        num_scales: scales of the image architecture (images only; default 2).
        hidden_channels: width of the image conditioners (images only; default 64).
    """

    log_scale_bound: float
    num_scales: int | None
    hidden_channels: int | None


DEFAULTS: dict[str, object] = {
    **COUPLING_DEFAULTS,
    "log_scale_bound": 2.0,
    "num_scales": None,
    "hidden_channels": None,
}


def realnvp(
    event_shape: EventShape,
    num_layers: int | None = None,
    hidden_dims: Sequence[int] | None = None,
    **options: Unpack[RealNVPOptions],
) -> ComposeFlow:
    r"""RealNVP: affine couplings on vectors, or the multi-scale architecture on images.

    Each coupling's log-scale is soft-clamped to :math:`\pm` ``log_scale_bound``. A new flow is
    the identity map.

    Arguments:
        event_shape: ``D`` or ``(D,)`` for vectors, ``(C, H, W)`` for images.
        num_layers: number of couplings (vectors; default 8).
        hidden_dims: hidden widths of each coupling's MLP conditioner (vectors; default
            ``(256, 256)``).
        **options: :class:`RealNVPOptions` (``mask``, ``permutation``, ``dropout``,
            ``log_scale_bound``, ``num_scales``, ``hidden_channels``).

    References:
        | Density estimation using Real NVP (Dinh et al., 2017)
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> from pyro_flowkit.flows import flow_distribution
        >>> flow = realnvp(4, num_layers=2, hidden_dims=(16,))
        >>> flow_distribution(flow, 4).rsample((5,)).shape
        torch.Size([5, 4])
        >>> image_flow = realnvp((1, 8, 8), hidden_channels=8)
        >>> flow_distribution(image_flow, (1, 8, 8)).rsample((5,)).shape
        torch.Size([5, 1, 8, 8])
    """
    opts = resolve("realnvp", options, DEFAULTS)
    return _realnvp(event_shape, 0, num_layers, hidden_dims, opts)


def conditional_realnvp(
    event_shape: EventShape,
    context_dim: int,
    num_layers: int | None = None,
    hidden_dims: Sequence[int] | None = None,
    **options: Unpack[RealNVPOptions],
) -> ConditionalComposeFlow:
    """:func:`realnvp` whose couplings also see a context; the same options.

    ``condition(context)`` with a context of shape ``batch + (context_dim,)`` returns the plain
    flow; the context broadcasts against leading sample dimensions of the input. For image
    events the context vector is tiled over the image onto every conditioner's input.

    Example:
        >>> from pyro_flowkit.flows import flow_distribution
        >>> flow = conditional_realnvp(4, context_dim=2, num_layers=2, hidden_dims=(16,))
        >>> d = flow_distribution(flow, 4).condition(torch.randn(7, 2))
        >>> d.log_prob(torch.randn(5, 7, 4)).shape
        torch.Size([5, 7])
    """
    opts = resolve("conditional_realnvp", options, DEFAULTS)
    return _realnvp(event_shape, check_context_dim(context_dim), num_layers, hidden_dims, opts)


def _realnvp(
    event_shape: EventShape,
    context_dim: int,
    num_layers: int | None,
    hidden_dims: Sequence[int] | None,
    opts: dict,
) -> nn.Module:
    """The vector or image RealNVP, refusing options that belong to the other kind."""
    if is_image(event_shape):
        vector_only = {
            "num_layers": (num_layers, None),
            "hidden_dims": (hidden_dims, None),
            "mask": (opts["mask"], "alternating"),
            "permutation": (opts["permutation"], None),
        }
        refuse(vector_only, "image events (C, H, W)")
        return image_realnvp(
            event_shape,
            2 if opts["num_scales"] is None else opts["num_scales"],
            64 if opts["hidden_channels"] is None else opts["hidden_channels"],
            context_dim=context_dim,
            dropout=opts["dropout"],
            log_scale_bound=opts["log_scale_bound"],
        )
    refuse({k: (opts[k], None) for k in ("num_scales", "hidden_channels")}, "vector events")
    layers = coupling_stack(
        "affine",
        event_shape,
        context_dim,
        8 if num_layers is None else num_layers,
        (256, 256) if hidden_dims is None else hidden_dims,
        opts,
        log_scale_bound=opts["log_scale_bound"],
    )
    return compose(layers, conditional=context_dim > 0)


def image_realnvp(
    event_shape: EventShape,
    num_scales: int = 2,
    hidden_channels: int = 64,
    *,
    context_dim: int = 0,
    dropout: float = 0.0,
    log_scale_bound: float = 2.0,
) -> nn.Module:
    r"""RealNVP's multi-scale architecture on ``(C, H, W)`` (called by :func:`realnvp`).

    Conditioners are :class:`~pyro_flowkit.nn.ConvNet`\ s of width ``hidden_channels``. ``H``
    and ``W`` must be multiples of :math:`2^{\text{num_scales} - 1}`.

    References:
        | Density estimation using Real NVP (Dinh et al., 2017), section 3.6
        | https://arxiv.org/abs/1605.08803
    """
    check_count("num_scales", num_scales)
    check_count("hidden_channels", hidden_channels)
    check_rate("dropout", dropout)
    shape = image_event_shape(event_shape, num_scales - 1)
    if shape[1] * shape[2] < 4 ** (num_scales - 1) * 2:
        raise ValueError(
            f"num_scales: {num_scales} scales leave a single pixel at the last scale of an event "
            f"of shape {tuple(shape)}, where a checkerboard mask is undefined"
        )
    c, h, w = shape

    def couple(mask: torch.Tensor) -> nn.Module:
        return coupling(
            "affine", mask, hidden_channels, context_dim, dropout, log_scale_bound=log_scale_bound
        )

    levels = []
    for s in range(num_scales):
        inner = (c * 2**s, h // 2**s, w // 2**s)  # active channels at s squeezes
        last = s == num_scales - 1
        board = [couple(checkerboard_mask(inner, i % 2 == 1)) for i in range(4 if last else 3)]
        levels.append(level(board, shape, s, inner[0]))
        if not last:
            squeezed = (4 * inner[0], inner[1] // 2, inner[2] // 2)
            chans = [couple(channel_mask(squeezed, i % 2 == 1)) for i in range(3)]
            levels.append(level(chans, shape, s + 1, squeezed[0]))
    return compose_levels(levels, context_dim)
