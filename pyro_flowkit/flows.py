"""Builders of whole flows, and the distribution a flow defines over a standard normal base.

Every builder returns a :class:`~pyro_flowkit.transforms.ComposeFlow` (a Pyro
``ComposeTransformModule``; for ``conditional_*``, a ``ConditionalComposeFlow`` whose
``condition(context)`` returns one) whose forward map
goes from the base to the data. Each new flow is the identity map: conditioners end in a
zero-initialised layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import pyro.distributions as dist
import torch
from pyro.distributions.conditional import (
    ConditionalTransform,
    ConditionalTransformedDistribution,
)
from torch import nn
from torch.distributions import ComposeTransform, Transform

from pyro_flowkit.distributions import FlowDistribution, StandardNormal
from pyro_flowkit.image_flows import conditional_glow, glow, image_realnvp
from pyro_flowkit.residual_flows import (
    conditional_iresnet,
    conditional_residual_flow,
    iresnet,
    residual_flow,
)
from pyro_flowkit.transforms import (
    ComposeFlow,
    ConditionalComposeFlow,
    ConditionalScaling,
    Permute,
    Scaling,
    as_event_shape,
    coupling,
    vector_mask,
)
from pyro_flowkit.transforms._base import EventShape
from pyro_flowkit.validation import check_count, check_rate

__all__ = [
    "conditional_glow",
    "conditional_iresnet",
    "conditional_nice",
    "conditional_realnvp",
    "conditional_residual_flow",
    "flow_distribution",
    "glow",
    "iresnet",
    "leaf_transforms",
    "nice",
    "realnvp",
    "residual_flow",
]

_PERMUTATIONS = (None, "reverse", "random")


def _vector_dim(event_shape: EventShape) -> int:
    shape = as_event_shape(event_shape)
    if len(shape) != 1:
        raise ValueError(
            f"event_shape: expected a vector event (D,) here, got {tuple(shape)}; "
            "realnvp and glow also take (C, H, W) images"
        )
    if shape[0] < 2:
        raise ValueError(
            f"event_shape: a coupling flow needs at least 2 dimensions, got {shape[0]}"
        )
    return shape[0]


def _check_options(num_layers: int, mask: str, permutation: str | None, dropout: float) -> None:
    check_count("num_layers", num_layers)
    if mask not in ("alternating", "half"):
        raise ValueError(f"mask: expected 'alternating' or 'half', got {mask!r}")
    if permutation not in _PERMUTATIONS:
        raise ValueError(f"permutation: expected one of {_PERMUTATIONS}, got {permutation!r}")
    check_rate("dropout", dropout)


def _coupling_stack(
    kind: str,
    event_shape: EventShape,
    context_dim: int,
    num_layers: int,
    hidden_dims: Sequence[int],
    mask: str,
    permutation: str | None,
    dropout: float,
    **kwargs: float,
) -> list[nn.Module]:
    """Couplings with complementary masks (layer ``i`` flips the mask when ``i`` is odd).

    Alternating masks are realised as half masks in the basis that lists the even features first,
    and a :class:`Permute` into that basis and back at the two ends: the same map and parameters
    as per-layer alternating masks, but each layer splits by contiguous blocks.
    """
    dim = _vector_dim(event_shape)
    _check_options(num_layers, mask, permutation, dropout)
    evens_first = torch.cat([torch.arange(0, dim, 2), torch.arange(1, dim, 2)])
    to_basis = evens_first if mask == "alternating" else torch.arange(dim)
    layers: list[nn.Module] = []
    for i in range(num_layers):
        if i and permutation is not None:
            perm = (
                torch.arange(dim - 1, -1, -1) if permutation == "reverse" else torch.randperm(dim)
            )
            layers.append(Permute(torch.argsort(to_basis)[perm[to_basis]]))
        half = vector_mask("half", dim, i % 2 == 1)
        layers.append(coupling(kind, half, hidden_dims, context_dim, dropout, **kwargs))
    if mask == "alternating":
        layers = [Permute(evens_first), *layers, Permute(torch.argsort(evens_first))]
    return layers


def nice(
    event_shape: EventShape,
    num_layers: int = 4,
    hidden_dims: Sequence[int] = (256, 256),
    *,
    mask: str = "alternating",
    permutation: str | None = None,
    dropout: float = 0.0,
) -> ComposeFlow:
    """NICE: ``num_layers`` additive couplings and a learned diagonal scaling.

    As in the paper, the scaling acts on the latent side (it is the first part in Pyro's
    base-to-data order). A new flow is the identity map. The arguments are those of
    :func:`realnvp` (without ``log_scale_bound``: additive couplings have no scale).

    References:
        | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014)
        | https://arxiv.org/abs/1410.8516

    Example:
        >>> flow = nice(4, hidden_dims=(16,))
        >>> d = flow_distribution(flow, 4)
        >>> d.log_prob(torch.zeros(3, 4)).shape
        torch.Size([3])
    """
    layers = _coupling_stack(
        "additive", event_shape, 0, num_layers, hidden_dims, mask, permutation, dropout
    )
    return ComposeFlow([Scaling(event_shape), *layers])


def realnvp(
    event_shape: EventShape,
    num_layers: int | None = None,
    hidden_dims: Sequence[int] | None = None,
    *,
    mask: str = "alternating",
    permutation: str | None = None,
    dropout: float = 0.0,
    log_scale_bound: float = 2.0,
    num_scales: int | None = None,
    hidden_channels: int | None = None,
) -> ComposeFlow:
    r"""RealNVP: affine couplings on vectors, or the multi-scale architecture on images.

    Each coupling's log-scale is soft-clamped to :math:`\pm` ``log_scale_bound`` (see
    :class:`~pyro_flowkit.transforms.AffineCoupling`). A new flow is the identity map.

    Arguments:
        event_shape: ``D`` or ``(D,)`` for vectors, ``(C, H, W)`` for images.
        num_layers: number of couplings (vectors; default 8).
        hidden_dims: hidden widths of each coupling's MLP conditioner (vectors; default
            ``(256, 256)``).
        mask: ``"alternating"`` (odd/even features) or ``"half"`` (first/second half); consecutive
            couplings use complementary masks (vectors).
        permutation: ``None``, ``"reverse"`` or ``"random"``: a fixed permutation between layers
            (vectors).
        dropout: dropout rate of the conditioners' hidden units in training mode (default 0: a
            new flow is the same bijection in training and evaluation mode). A rate above 0
            regularises a large flow on a small data set (0.3 keeps a vector flow of the default
            size from overfitting the 1497 digits, ``benchmarks/RESULTS.md``), but then each
            training-mode pass is a different random bijection and ``flow.inv(flow(x))`` is not
            ``x`` until ``flow.eval()``.
        log_scale_bound: soft bound on every log-scale.
        num_scales: scales of the image architecture (default 2): per scale 3 checkerboard
            couplings, a squeeze, 3 channel couplings and half of the channels factored out; the
            last scale 4 checkerboard couplings (see
            :func:`~pyro_flowkit.image_flows.image_realnvp`).
        hidden_channels: width of the image conditioners (default 64).

    References:
        | Density estimation using Real NVP (Dinh et al., 2017)
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> flow = realnvp(4, num_layers=2, hidden_dims=(16,))
        >>> flow_distribution(flow, 4).rsample((5,)).shape
        torch.Size([5, 4])
        >>> image_flow = realnvp((1, 8, 8), hidden_channels=8)
        >>> flow_distribution(image_flow, (1, 8, 8)).rsample((5,)).shape
        torch.Size([5, 1, 8, 8])
    """
    return _realnvp(
        event_shape,
        0,
        num_layers,
        hidden_dims,
        mask=mask,
        permutation=permutation,
        dropout=dropout,
        log_scale_bound=log_scale_bound,
        num_scales=num_scales,
        hidden_channels=hidden_channels,
    )


def _is_image(event_shape: EventShape) -> bool:
    return len(as_event_shape(event_shape)) == 3


def _realnvp(
    event_shape: EventShape,
    context_dim: int,
    num_layers: int | None,
    hidden_dims: Sequence[int] | None,
    **opts: object,
) -> nn.Module:
    """The vector or image RealNVP, refusing options that belong to the other kind."""
    if _is_image(event_shape):
        vector_only = {
            "num_layers": (num_layers, None),
            "hidden_dims": (hidden_dims, None),
            "mask": (opts["mask"], "alternating"),
            "permutation": (opts["permutation"], None),
        }
        _refuse(vector_only, "image events (C, H, W)")
        return image_realnvp(
            event_shape,
            2 if opts["num_scales"] is None else opts["num_scales"],
            64 if opts["hidden_channels"] is None else opts["hidden_channels"],
            context_dim=context_dim,
            dropout=opts["dropout"],
            log_scale_bound=opts["log_scale_bound"],
        )
    image_only = {k: (opts[k], None) for k in ("num_scales", "hidden_channels")}
    _refuse(image_only, "vector events")
    layers = _coupling_stack(
        "affine",
        event_shape,
        context_dim,
        8 if num_layers is None else num_layers,
        (256, 256) if hidden_dims is None else hidden_dims,
        opts["mask"],
        opts["permutation"],
        opts["dropout"],
        log_scale_bound=opts["log_scale_bound"],
    )
    if context_dim:
        return ConditionalComposeFlow(layers)
    return ComposeFlow(layers)


def _refuse(options: dict[str, tuple], what: str) -> None:
    for name, (value, default) in options.items():
        if value != default:
            raise ValueError(f"{name}: does not apply to {what}, got {value!r}")


def _check_context_dim(context_dim: int) -> int:
    return check_count("context_dim", context_dim)


def conditional_nice(
    event_shape: EventShape,
    context_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] = (256, 256),
    *,
    mask: str = "alternating",
    permutation: str | None = None,
    dropout: float = 0.0,
) -> ConditionalComposeFlow:
    """NICE whose couplings and scaling also see a context; options as for :func:`nice`.

    ``condition(context)`` with a context of shape ``batch + (context_dim,)`` returns the plain
    flow; the context broadcasts against leading sample dimensions of the input.
    """
    context_dim = _check_context_dim(context_dim)
    layers = _coupling_stack(
        "additive", event_shape, context_dim, num_layers, hidden_dims, mask, permutation, dropout
    )
    scaling = ConditionalScaling(event_shape, context_dim, hidden_dims)
    return ConditionalComposeFlow([scaling, *layers])


def conditional_realnvp(
    event_shape: EventShape,
    context_dim: int,
    num_layers: int | None = None,
    hidden_dims: Sequence[int] | None = None,
    *,
    mask: str = "alternating",
    permutation: str | None = None,
    dropout: float = 0.0,
    log_scale_bound: float = 2.0,
    num_scales: int | None = None,
    hidden_channels: int | None = None,
) -> ConditionalComposeFlow:
    """RealNVP whose couplings also see a context; options as for :func:`realnvp`.

    ``condition(context)`` with a context of shape ``batch + (context_dim,)`` returns the plain
    flow; the context broadcasts against leading sample dimensions of the input. For image
    events the context vector is tiled over the image onto every conditioner's input.

    Example:
        >>> flow = conditional_realnvp(4, context_dim=2, num_layers=2, hidden_dims=(16,))
        >>> d = flow_distribution(flow, 4).condition(torch.randn(7, 2))
        >>> d.log_prob(torch.randn(5, 7, 4)).shape
        torch.Size([5, 7])
    """
    return _realnvp(
        event_shape,
        _check_context_dim(context_dim),
        num_layers,
        hidden_dims,
        mask=mask,
        permutation=permutation,
        dropout=dropout,
        log_scale_bound=log_scale_bound,
        num_scales=num_scales,
        hidden_channels=hidden_channels,
    )


def _parts(flow: Transform | ConditionalTransform) -> list:
    return list(getattr(flow, "parts", None) or getattr(flow, "transforms", None) or [flow])


def _check_flow_shape(flow: Transform | ConditionalTransform, shape: torch.Size) -> None:
    for part in _parts(flow):
        part = getattr(part, "transform", part)  # ConstantConditionalTransform
        own = getattr(part, "event_shape", None)
        if own is not None and torch.Size(own) != shape:
            raise ValueError(
                f"event_shape: the flow was built for events of shape {tuple(own)}, "
                f"got {tuple(shape)}"
            )


def _float_spec(flow: object) -> tuple[torch.device, torch.dtype]:
    tensors = chain(flow.parameters(), flow.buffers()) if isinstance(flow, nn.Module) else ()
    for t in tensors:
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def flow_distribution(
    flow: Transform | ConditionalTransform,
    event_shape: EventShape,
    temperature: float = 1.0,
) -> dist.TransformedDistribution | ConditionalTransformedDistribution:
    r"""The distribution of ``flow(u)``, :math:`u \sim \mathcal{N}(0, T^2 I)` on ``event_shape``.

    The base lives on the flow's device and dtype (build the distribution after moving the flow).
    A conditional flow gives a ``ConditionalTransformedDistribution`` whose ``condition(context)``
    is the flow's distribution for that context.

    Arguments:
        flow: a transform (base to data) or a conditional transform.
        event_shape: the event's shape; must match the flow's.
        temperature: :math:`T`, the base's standard deviation; :math:`T < 1` samples the typical
            set more tightly (Kingma & Dhariwal 2018). ``log_prob`` is that of the tempered model.
    """
    shape = as_event_shape(event_shape)
    _check_flow_shape(flow, shape)
    device, dtype = _float_spec(flow)
    base = StandardNormal(shape, temperature, device=device, dtype=dtype, validate_args=False)
    if isinstance(flow, ConditionalTransform):
        return _FlatConditionalDistribution(base, [flow])
    return FlowDistribution(base, leaf_transforms(flow))


def leaf_transforms(t: Transform) -> list[Transform]:
    """The parts of nested ``ComposeTransform``s in order: ``TransformedDistribution`` then scores
    part by part, without ``ComposeTransform`` rebuilding its inverse and intermediates per call."""
    if isinstance(t, ComposeTransform):
        return [leaf for part in t.parts for leaf in leaf_transforms(part)]
    return [t]


class _FlatConditionalDistribution(ConditionalTransformedDistribution):
    """``condition(context)`` gives a ``TransformedDistribution`` over the flow's leaf parts whose
    batch shape is the context's (``context.shape[:-1]``), so ``sample()`` draws one event per
    context row and ``sample((n,))`` has shape ``(n,) + batch + event``."""

    def condition(self, context: torch.Tensor) -> dist.TransformedDistribution:
        base = self.base_dist.condition(context).expand(context.shape[:-1])
        parts = [leaf for t in self.transforms for leaf in leaf_transforms(t.condition(context))]
        return FlowDistribution(base, parts)
