"""What the flow builders share: event-shape checks, option handling, coupling stacks, levels.

Options are typed once per family (a ``TypedDict`` read by ``**options: Unpack[...]``), so a
builder and its conditional twin share one documented set; :func:`resolve` fills the defaults and
refuses a key the family does not have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

import torch
from pyro.distributions.conditional import ConditionalTransform
from torch import nn

from pyro_flowkit.transforms import (
    ConditionalSqueezeBlock,
    Permute,
    SqueezeBlock,
    as_event_shape,
    compose,
    coupling,
    vector_mask,
)
from pyro_flowkit.transforms._base import EventShape
from pyro_flowkit.validation import check_choice, check_count, check_rate

PERMUTATIONS = (None, "reverse", "random")


class CouplingOptions(TypedDict, total=False):
    """Options of the vector coupling flows (NICE, RealNVP on vectors).

    Keys:
        mask: ``"alternating"`` (odd/even features, default) or ``"half"`` (first/second half);
            consecutive couplings use complementary masks.
        permutation: ``None`` (default), ``"reverse"`` or ``"random"``: a fixed permutation
            between layers.
        dropout: dropout rate of the conditioners' hidden units in training mode (default 0: a
            new flow is the same bijection in training and evaluation mode). A rate above 0
            regularises a large flow on a small data set (0.3 keeps a vector flow of the default
            size from overfitting the 1497 digits, ``benchmarks/RESULTS.md``), but then each
            training-mode pass is a different random bijection and ``flow.inv(flow(x))`` is not
            ``x`` until ``flow.eval()``.
    """

    mask: str
    permutation: str | None
    dropout: float


COUPLING_DEFAULTS: dict[str, object] = {"mask": "alternating", "permutation": None, "dropout": 0.0}


def resolve(
    builder: str,
    given: Mapping[str, object],
    keys: type | Mapping[str, object],
    defaults: Mapping[str, object] | None = None,
) -> dict:
    """``defaults`` updated by ``given``; ``TypeError`` naming ``builder`` for a key that is not
    one of ``keys`` (a ``TypedDict`` of options, or the defaults themselves)."""
    allowed = getattr(keys, "__optional_keys__", None) or set(keys)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise TypeError(
            f"{builder}: unexpected option {unknown[0]!r}; expected one of {sorted(allowed)}"
        )
    return {**(defaults if defaults is not None else keys), **given}


def vector_dim(event_shape: EventShape) -> int:
    """The size ``D`` of a vector event ``(D,)`` with ``D >= 2`` (a coupling splits it)."""
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


def is_image(event_shape: EventShape) -> bool:
    return len(as_event_shape(event_shape)) == 3


def check_context_dim(context_dim: int) -> int:
    return check_count("context_dim", context_dim)


def refuse(options: Mapping[str, tuple[object, object]], what: str) -> None:
    """``ValueError`` for an option set away from its default where it does not apply."""
    for name, (value, default) in options.items():
        if value != default:
            raise ValueError(f"{name}: does not apply to {what}, got {value!r}")


def coupling_stack(
    kind: str,
    event_shape: EventShape,
    context_dim: int,
    num_layers: int,
    hidden_dims: Sequence[int],
    options: Mapping[str, object],
    **coupling_kwargs: float,
) -> list[nn.Module]:
    """Couplings with complementary masks (layer ``i`` flips the mask when ``i`` is odd).

    Alternating masks are realised as half masks in the basis that lists the even features first,
    and a :class:`~pyro_flowkit.transforms.Permute` into that basis and back at the two ends: the
    same map and parameters as per-layer alternating masks, but each layer splits by contiguous
    blocks. ``options`` are the :class:`CouplingOptions`, resolved.
    """
    dim = vector_dim(event_shape)
    check_count("num_layers", num_layers)
    mask = check_choice("mask", options["mask"], ("alternating", "half"))
    permutation = check_choice("permutation", options["permutation"], PERMUTATIONS)
    dropout = check_rate("dropout", options["dropout"])
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
        layers.append(coupling(kind, half, hidden_dims, context_dim, dropout, **coupling_kwargs))
    if mask == "alternating":
        layers = [Permute(evens_first), *layers, Permute(torch.argsort(evens_first))]
    return layers


def level(
    data_side: list[nn.Module], shape: torch.Size, squeezes: int, active: int
) -> list[nn.Module]:
    """Parts listed from the data side as one shape-keeping level of an image flow, in Pyro's
    order: a :class:`~pyro_flowkit.transforms.SqueezeBlock` unless it is the whole event."""
    parts = data_side[::-1]
    if squeezes == 0 and active == shape[0]:
        return parts
    conditional = any(isinstance(p, ConditionalTransform) for p in parts)
    cls = ConditionalSqueezeBlock if conditional else SqueezeBlock
    return [cls(parts, shape, squeezes, active)]


def compose_levels(levels: list[list[nn.Module]], context_dim: int) -> nn.Module:
    """The whole image flow in Pyro's order (the deepest level acts first on the base)."""
    return compose([p for parts in reversed(levels) for p in parts], conditional=context_dim > 0)
