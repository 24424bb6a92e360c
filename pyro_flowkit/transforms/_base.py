"""Shared pieces of every transform: event-shape checks, the log-det cache, bound conditioners."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pyro.distributions import constraints
from pyro.distributions.torch_transform import TransformModule
from torch import Tensor, nn

EventShape = int | Sequence[int]


def as_event_shape(event_shape: EventShape, name: str = "event_shape") -> torch.Size:
    """Return ``event_shape`` as a ``torch.Size`` of positive sizes, or raise ``ValueError``."""
    shape = (event_shape,) if isinstance(event_shape, int) else event_shape
    try:
        shape = torch.Size(shape)
    except TypeError:
        raise TypeError(
            f"{name}: expected an int or a tuple of ints, got {event_shape!r}"
        ) from None
    if len(shape) == 0 or any(s < 1 for s in shape):
        raise ValueError(f"{name}: expected positive sizes, got {tuple(shape)}")
    return shape


def image_event_shape(event_shape: EventShape, squeezes: int = 0) -> torch.Size:
    """``event_shape`` as ``(C, H, W)``, checked to allow ``squeezes`` factor-2 squeezes."""
    shape = as_event_shape(event_shape)
    if len(shape) != 3:
        raise ValueError(f"event_shape: expected (C, H, W), got {tuple(shape)}")
    f = 2**squeezes
    if shape[1] % f or shape[2] % f:
        raise ValueError(
            f"event_shape: {squeezes} squeezes need H and W to be multiples of {f}, "
            f"got {tuple(shape)}"
        )
    return shape


def check_event_shape(x: Tensor, event_shape: torch.Size, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` ends in ``event_shape``."""
    n = len(event_shape)
    if x.dim() < n or x.shape[x.dim() - n :] != event_shape:
        raise ValueError(
            f"{name}: expected a tensor whose trailing shape is {tuple(event_shape)}, "
            f"got shape {tuple(x.shape)}"
        )


def sum_event(t: Tensor, event_dim: int) -> Tensor:
    """Sum the rightmost ``event_dim`` dimensions of ``t``."""
    return t.sum(tuple(range(-event_dim, 0))) if event_dim else t


_config_epoch = [0]


def invalidate_caches() -> None:
    """Make every cached pass stale: a setting that is neither a parameter nor a mode changed
    (e.g. the log-det estimator of a residual block), so no earlier pass may be reused."""
    _config_epoch[0] += 1


class CachedTransform(TransformModule):
    """A transform that keeps its last pass ``(x, y, log-det)`` and reuses it only while valid.

    Subclasses implement :meth:`_forward` and :meth:`_backward`, each returning the mapped tensor
    and the log-det of the forward map at the pair. ``t(x)`` after ``t.inv(y)`` returned ``x`` (or
    ``t.inv(y)`` after ``t(x)`` returned ``y``) and ``log_abs_det_jacobian(x, y)`` reuse that pass,
    so sample-then-score runs no network twice (DESIGN.md convention 4). Unlike torch's identity
    cache, a pass is reused only if no parameter and no parameter's gradient has changed since
    (their version counters), and grad mode and train/eval mode are the same: training on one fixed
    data tensor, scoring it twice with a backward in between, or scoring it under ``no_grad``
    between steps never sees a stale result or a freed graph. (One gap: ``backward()``, then
    ``zero_grad(set_to_none=True)`` and no optimiser step leave the stamp unchanged; call
    :meth:`clear_cache` before scoring the same tensor again.)
    """

    bijective = True

    def __init__(self) -> None:
        super().__init__(cache_size=1)
        self._pass: tuple[Tensor, Tensor, Tensor, tuple] | None = None
        self._watched: tuple[tuple[nn.Module, str], ...] | None = None
        self._dtype: torch.dtype | bool | None = None  # the parameters' dtype, at the first pass

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _check_input(self, t: Tensor, name: str) -> None:
        """Raise on an input of the wrong shape (nothing to check by default)."""

    def _stamp(self) -> tuple:
        """What must not change for a pass to be reused: modes, parameters and their gradients."""
        if self._watched is None:  # (owner, name): a parameter replaced in place is seen too
            self._watched = tuple((m, n) for m in self.modules() for n in m._parameters)
        stamp = [torch.is_grad_enabled(), self.training, _config_epoch[0]]
        for owner, name in self._watched:
            p = owner._parameters[name]
            if p is None:
                continue
            g = p.grad  # a backward through the pass frees its graph and touches these
            stamp += (id(p), p._version, id(g), 0 if g is None else g._version)
        return tuple(stamp)

    def _cached(self, x: Tensor | None, y: Tensor | None) -> tuple | None:
        p = self._pass
        if p is None or (x is not None and p[0] is not x) or (y is not None and p[1] is not y):
            return None
        return p if p[3] == self._stamp() else None

    def __call__(self, x: Tensor) -> Tensor:
        hit = self._cached(x, None)
        return hit[1] if hit is not None else self._call(x)

    def _inv_call(self, y: Tensor) -> Tensor:
        hit = self._cached(None, y)
        return hit[0] if hit is not None else self._inverse(y)

    def _call(self, x: Tensor) -> Tensor:
        self._check_input(x, "x")
        self._check_dtype(x, "x")
        y, ladj = self._forward(x)
        self._pass = (x, y, ladj, self._stamp())
        return y

    def _inverse(self, y: Tensor) -> Tensor:
        self._check_input(y, "y")
        self._check_dtype(y, "y")
        x, ladj = self._backward(y)
        self._pass = (x, y, ladj, self._stamp())
        return x

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, log|det dy/dx|)`` for ``x = t.inv(y)``, in one pass (or none after ``t(x)``)."""
        hit = self._cached(None, y)
        if hit is not None:
            return hit[0], hit[2]
        x = self._inverse(y)
        return x, self._pass[2]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        """``log |det dy/dx|``, shaped like the batch; free right after a pass through x or y."""
        hit = self._cached(x, y)
        if hit is not None:
            return hit[2]
        self._check_input(x, "x")
        return self._forward(x)[1]

    def clear_cache(self) -> None:
        """Forget the last pass."""
        self._pass = None

    def _apply(self, fn: Callable, *args: object, **kwargs: object) -> CachedTransform:
        self._pass, self._watched = None, None  # .to(), .double(): new tensors, new versions
        self._dtype = None
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args: object, **kwargs: object) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._dtype = None  # assign=True may bring tensors of another dtype

    def __getstate__(self) -> dict:
        """The state without the cached pass, so ``copy.deepcopy`` and pickling work after a
        training pass (the cache holds tensors of an autograd graph, which cannot be copied)."""
        return forget_pass(super().__getstate__())

    def _check_dtype(self, t: Tensor, name: str) -> None:
        """Raise ``TypeError`` if ``t``'s dtype is not that of the parameters and buffers."""
        if self._dtype is None:  # looked up once; False: no floating parameter or buffer
            self._dtype = float_dtype(self) or False
        if self._dtype and t.dtype != self._dtype:
            raise TypeError(
                f"{name}: expected a {self._dtype} tensor (the dtype of {type(self).__name__}'s "
                f"parameters), got {t.dtype}; convert one of them: {name}.to({self._dtype}), "
                f"or the flow's .to({t.dtype})"
            )


def float_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first floating parameter or buffer (``None`` if it has none)."""
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def forget_pass(state: dict) -> dict:
    """A transform's ``__getstate__`` with every cached pass removed (ours and torch's)."""
    state = dict(state)
    for key, empty in [("_pass", None), ("_watched", None), ("_cached_x_y", (None, None))]:
        if key in state:
            state[key] = empty
    if "_dtype" in state:
        state["_dtype"] = None
    return state


class FlowTransform(CachedTransform):
    """Base of the library's transforms on events of a fixed shape, with real (co)domain."""

    def __init__(self, event_shape: EventShape) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        # built once: torch's ComposeTransform reads these many times per pass
        self._event_dim = len(self.event_shape)
        self._space = constraints.independent(constraints.real, self._event_dim)

    @property
    def event_dim(self) -> int:  # type: ignore[override]
        return self._event_dim

    @property
    def domain(self) -> constraints.Constraint:  # type: ignore[override]
        return self._space

    @property
    def codomain(self) -> constraints.Constraint:  # type: ignore[override]
        return self._space

    def _check_input(self, t: Tensor, name: str) -> None:
        check_event_shape(t, self.event_shape, name)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"


class ImageTransform(CachedTransform):
    """Base of the transforms on ``(C, H, W)`` events of any size (real domain and codomain)."""

    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)


class ContextBound(nn.Module):
    """A conditioner ``net(x, context)`` with its context fixed: ``forward(x) = net(x, context)``.

    The network stays a submodule, so the transform returned by a ``Conditional*`` twin's
    ``condition(context)`` shares (and trains) the twin's parameters, and gradients reach the
    context.
    """

    def __init__(self, net: Callable[[Tensor, Tensor], Tensor], context: Tensor) -> None:
        super().__init__()
        self.net = net
        self.context = context

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x, self.context)


def check_context(context: Tensor, context_dim: int) -> None:
    """Raise ``ValueError`` unless ``context`` is a tensor ending in ``context_dim`` features."""
    if not isinstance(context, Tensor):
        raise TypeError(f"context: expected a tensor, got {type(context).__name__}")
    if context.dim() == 0 or context.shape[-1] != context_dim:
        raise ValueError(
            f"context: expected a tensor whose last dimension is {context_dim}, "
            f"got shape {tuple(context.shape)}"
        )
