r"""Invertible residual blocks :math:`y = x + g(x)` with :math:`\mathrm{Lip}(g) < 1`.

The map is explicit in one direction; its inverse is the fixed point of
:math:`x \mapsto y - g(x)`, a contraction, so Banach iteration converges geometrically. The
log-det is :math:`\log\det(I + J_g) = \sum_{k \ge 1} (-1)^{k+1} \operatorname{tr}(J_g^k) / k`
(the series converges because :math:`\|J_g\|_2 < 1`), estimated three ways:

* ``"exact"``: ``slogdet`` of the autograd Jacobian (``D`` batched vector-Jacobian products);
  for small events, tests and evaluation.
* ``"series"``: the first ``n_terms`` terms, each trace by Hutchinson's estimator
  :math:`\operatorname{tr}(A) = \mathbb{E}[v^\top A v]` with Rademacher probes; biased by the
  truncated tail, at most :math:`D\,L^{n+1} / ((n+1)(1-L))` for :math:`L = \mathrm{Lip}(g)`.
* ``"roulette"``: Russian roulette: the first ``n_terms`` terms always, then a geometric number
  :math:`M` (:math:`P(M \ge m) = (1-p)^m`) of further terms, term :math:`n + m` weighted by
  :math:`1 / P(M \ge m)`: unbiased.

With ``neumann_grad=True`` the gradient is not back-propagated through the power series (whose
memory grows with the number of terms). It uses
:math:`\partial \log\det(I+J) = \operatorname{tr}((I+J)^{-1} \partial J)` with
:math:`(I+J)^{-1} \approx \sum_k (-1)^k J^k` from the very vector-Jacobian products of the
estimate: a surrogate :math:`w^\top J v` per sample (:math:`w` the detached Neumann sum) whose
gradient in the parameters, the input and any context is that estimator. Each sample keeps its
own surrogate, so the gradient is right for any upstream weights per sample.

References:
    | Invertible Residual Networks (Behrmann et al., 2019)
    | https://arxiv.org/abs/1811.00995
    | Residual Flows for Invertible Generative Modeling (Chen et al., 2019)
    | https://arxiv.org/abs/1906.02735
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch import Tensor, nn

from pyro_flowkit.errors import InversionError
from pyro_flowkit.nn.lipschitz import frozen_spectral_norms
from pyro_flowkit.transforms._base import (
    ContextBound,
    EventShape,
    FlowTransform,
    check_context,
    invalidate_caches,
    sum_event,
)
from pyro_flowkit.validation import check_count, check_positive, check_probability

__all__ = [
    "ConditionalInvertibleResidual",
    "InvertibleResidual",
    "banach_inverse",
    "exact_log_det",
    "power_series_log_det",
    "series_coefficients",
    "set_logdet",
]

LOGDETS = ("series", "roulette", "exact")
Net = Callable[[Tensor], Tensor]


def max_abs(t: Tensor) -> float:
    """The largest ``|t|`` as a float (0 for an empty tensor, e.g. ``sample((0,))``)."""
    return t.abs().max().item() if t.numel() else 0.0


def banach_inverse(
    g: Net,
    y: Tensor,
    tol: float,
    max_iter: int,
    history: list[Tensor] | None = None,
    floor: float = 0.0,
) -> tuple[Tensor, float, int, bool]:
    r"""Solve :math:`x + g(x) = y` by :math:`x_{k+1} = y - g(x_k)` from :math:`x_0 = y`.

    The step :math:`s_k = \max|x_{k+1} - x_k|` is the largest residual entry
    :math:`|x_k + g(x_k) - y|`. With the observed contraction rate :math:`q = s_k / s_{k-1}`,
    the error of :math:`x_{k+1}` is at most about :math:`s_k\,q / (1 - q)` (the a-posteriori
    Banach bound); iteration stops once that is at most ``tol``, or once :math:`s_k` is at
    most ``floor`` (the dtype's resolution). Runs without autograd; appends every iterate to
    ``history`` if given.

    Returns:
        ``(x, residual, iterations, converged)``.
    """
    x, previous, step, k = y, 0.0, math.inf, 0
    with torch.no_grad(), frozen_spectral_norms():
        for k in range(1, max_iter + 1):
            x_next = y - g(x)
            step = max_abs(x_next - x)
            x = x_next
            if history is not None:
                history.append(x)
            q = step / previous if previous else math.inf  # no rate at the first step
            if step <= floor or (q < 1 and step * q / (1 - q) <= tol):
                return x, step, k, True
            if math.isnan(step):
                break
            previous = step
    return x, step, k, False


def series_coefficients(mode: str, n_terms: int, geom_p: float = 0.5) -> list[float]:
    r"""Weights :math:`c_k` of the terms :math:`(-1)^{k+1} c_k \operatorname{tr}(J^k) / k`.

    ``"series"``: ``n_terms`` ones. ``"roulette"``: ``n_terms`` ones, then
    :math:`c_{n+m} = (1-p)^{-m}` for :math:`m = 1..M`, :math:`M` geometric on
    :math:`\{0, 1, \dots\}` with success probability :math:`p` (drawn from torch's CPU
    generator, so ``pyro.set_rng_seed`` fixes it).
    """
    if mode == "series":
        return [1.0] * n_terms
    extra = int(torch.empty(()).geometric_(geom_p).item()) - 1
    return [1.0] * n_terms + [(1 - geom_p) ** -m for m in range(1, extra + 1)]


def _vjp(out: Tensor, x: Tensor, w: Tensor, create_graph: bool) -> Tensor:
    return torch.autograd.grad(out, x, w, retain_graph=True, create_graph=create_graph)[0]


def _series_estimate(
    gx: Tensor, x: Tensor, v: Tensor, coeffs: Sequence[float], event_dim: int, create: bool
) -> Tensor:
    w, total = v, 0.0
    for k, c in enumerate(coeffs, 1):
        w = _vjp(gx, x, w, create)  # v^T J^k
        total = total + ((-1) ** (k + 1) * c / k) * sum_event(w * v, event_dim)
    return total


def _neumann_estimate(
    gx: Tensor, x: Tensor, v: Tensor, coeffs: Sequence[float], event_dim: int
) -> Tensor:
    w, total, neumann = v, 0.0, coeffs[0] * v
    for k, c in enumerate(coeffs, 1):
        w = _vjp(gx, x, w, False)  # v^T J^k, detached
        total = total + ((-1) ** (k + 1) * c / k) * sum_event(w * v, event_dim)
        if k < len(coeffs):  # d/dJ of term k+1 is (-1)^k c_{k+1} v^T J^k
            neumann = neumann + ((-1) ** k * coeffs[k]) * w
    surrogate = sum_event(_vjp(gx, x, neumann, True) * v, event_dim)  # w^T J v, per sample
    return total + (surrogate - surrogate.detach())


def power_series_log_det(
    gx: Tensor,
    x: Tensor,
    coeffs: Sequence[float],
    probes: Tensor,
    event_dim: int,
    *,
    neumann_grad: bool = True,
    create_graph: bool = True,
) -> Tensor:
    r"""Estimate :math:`\sum_k (-1)^{k+1} c_k \operatorname{tr}(J^k) / k` per sample.

    Arguments:
        gx: :math:`g(x)`, computed with a graph to ``x``.
        x: the input (``gx.shape``), requiring grad.
        coeffs: the weights :math:`c_1, \dots, c_K` (:func:`series_coefficients`).
        probes: ``(P,) + x.shape`` vectors with :math:`\mathbb{E}[v v^\top] = I`; the estimate
            is the mean over them (the scaled basis vectors :math:`\sqrt{D} e_i` give exact
            traces).
        event_dim: number of event dimensions of ``x``.
        neumann_grad: the memory-saving gradient (module docstring); else back-propagate
            through every term.
        create_graph: whether the estimate must be differentiable at all.
    """
    if not create_graph:
        terms = [_series_estimate(gx, x, v, coeffs, event_dim, False) for v in probes]
    elif neumann_grad:
        terms = [_neumann_estimate(gx, x, v, coeffs, event_dim) for v in probes]
    else:
        terms = [_series_estimate(gx, x, v, coeffs, event_dim, True) for v in probes]
    return torch.stack(terms).mean(0)


def exact_log_det(gx: Tensor, x: Tensor, event_dim: int, create_graph: bool = True) -> Tensor:
    r""":math:`\log|\det(I + J_g(x))|` per sample from the full Jacobian (batched VJPs)."""
    event = x.shape[x.dim() - event_dim :]
    batch = x.shape[: x.dim() - event_dim]
    d = event.numel()
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    basis = eye.view(d, *(1,) * len(batch), *event).expand(d, *x.shape)
    rows = torch.autograd.grad(
        gx, x, basis, retain_graph=True, create_graph=create_graph, is_grads_batched=True
    )[0]
    jac = rows.reshape(d, *batch, d).movedim(0, -2)  # jac[..., i, :] = d g_i / d x
    return torch.linalg.slogdet(eye + jac).logabsdet


def _implicit_gradient(x: Tensor, g: Net, fixed: Tensor, tol: float, max_iter: int) -> None:
    r"""Make the step :math:`x = y - g(x^*)` back-propagate the inverse's exact gradient.

    By the implicit function theorem :math:`\partial x = (I + J_g)^{-1} (\partial y -
    \partial_\theta g)`. The step's own graph gives the bracket; a hook on :math:`x` first
    turns the incoming gradient :math:`G` into :math:`u = G (I + J_g)^{-1}`, the fixed point of
    :math:`u = G - u J_g` (a contraction too), by vector-Jacobian products at :math:`x^*`.
    """
    with torch.enable_grad():
        z = fixed.detach().requires_grad_()
        gz = g(z)

    def hook(grad: Tensor) -> Tensor:
        limit = tol * max(1.0, max_abs(grad))
        u = grad
        for _ in range(max_iter):
            u_next = grad - _vjp(gz, z, u, False)
            step = max_abs(u_next - u)
            u = u_next
            if not step > limit:
                return u
        raise InversionError(
            f"the inverse's gradient solve stopped at residual {step:.3g} after {max_iter} "
            "iterations",
            step,
            max_iter,
        )

    x.register_hook(hook)


class InvertibleResidual(FlowTransform):
    r"""An invertible residual block :math:`y = x + g(x)`, :math:`\mathrm{Lip}(g) < 1`.

    Calling the transform applies the explicit map; ``.inv`` solves :math:`x + g(x) = y` by
    Banach iteration without autograd (:func:`banach_inverse`), then takes one differentiable
    step :math:`x = y - g(x^*)` whose backward pass solves for the exact (first-order) gradient
    of the inverse by the implicit function theorem, with the same tolerance (so
    reparameterised samples of a flow built with ``direction="density"`` have the right
    gradients; derivatives of second order through the inverse are not supported). If the
    estimated error is still above ``inverse_tol`` after ``inverse_max_iter`` iterations,
    :class:`~pyro_flowkit.InversionError` is raised with the residual and the iteration count.
    The inverse never runs power iterations of the spectral norms, and neither does anything in
    ``eval()`` mode, so the map is then fixed.
    ``log_abs_det_jacobian`` is :math:`\log\det(I + J_g)` estimated by ``logdet`` (module
    docstring); ``logdet`` may be reassigned, e.g. to ``"exact"`` for evaluation, and changes no
    parameter or buffer.

    Arguments:
        net: :math:`g`, a contraction on events of ``event_shape`` (e.g.
            :class:`~pyro_flowkit.nn.LipschitzMLP`, :class:`~pyro_flowkit.nn.LipschitzConvNet`)
            taking any leading batch dimensions.
        event_shape: the event's shape; by default ``net.event_shape``.
        logdet: ``"series"``, ``"roulette"`` or ``"exact"``.
        n_terms: terms of the series (``"roulette"``: terms always computed).
        n_hutchinson: probe vectors per sample.
        inverse_tol: accuracy of the inverse: iteration stops when the a-posteriori Banach bound
            on the largest error entry is below it (:func:`banach_inverse`), or when a step is
            below 16 ulps of the largest :math:`|y|` (the dtype's resolution).
        inverse_max_iter: iterations before :class:`~pyro_flowkit.InversionError`.
        neumann_grad: the memory-saving Neumann-series gradient of the log-det.
        geom_p: success probability of the roulette's geometric number of extra terms.

    References:
        | Invertible Residual Networks (Behrmann et al., 2019)
        | https://arxiv.org/abs/1811.00995
        | Residual Flows for Invertible Generative Modeling (Chen et al., 2019)
        | https://arxiv.org/abs/1906.02735

    Example:
        >>> from pyro_flowkit.nn import LipschitzMLP
        >>> t = InvertibleResidual(LipschitzMLP(2, (16,)), logdet="exact")
        >>> x = torch.randn(5, 2)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5), t.log_abs_det_jacobian(x, t(x)).shape
        (True, torch.Size([5]))
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        event_shape: EventShape | None = None,
        logdet: str = "series",
        n_terms: int = 5,
        n_hutchinson: int = 1,
        inverse_tol: float = 1e-6,
        inverse_max_iter: int = 100,
        neumann_grad: bool = True,
        geom_p: float = 0.5,
    ) -> None:
        if event_shape is None:
            event_shape = getattr(net, "event_shape", None)
            if event_shape is None:
                raise TypeError("event_shape: net has no event_shape attribute; pass event_shape")
        super().__init__(event_shape)
        self.net = net
        self.logdet = logdet
        check_count("n_terms", n_terms)
        check_count("n_hutchinson", n_hutchinson)
        check_count("inverse_max_iter", inverse_max_iter)
        check_positive("inverse_tol", inverse_tol)
        check_probability("geom_p", geom_p, open_low=True, open_high=True)
        self.n_terms, self.n_hutchinson = n_terms, n_hutchinson
        self.inverse_tol, self.inverse_max_iter = float(inverse_tol), inverse_max_iter
        self.neumann_grad, self.geom_p = bool(neumann_grad), float(geom_p)

    @property
    def logdet(self) -> str:
        """The log-det estimator: ``"series"``, ``"roulette"`` or ``"exact"``."""
        return self._logdet

    @logdet.setter
    def logdet(self, mode: str) -> None:
        if mode not in LOGDETS:
            raise ValueError(f"logdet: expected one of {LOGDETS}, got {mode!r}")
        self._logdet = mode
        invalidate_caches()  # wrappers (Inverse, blocks) cached passes of the old estimator

    def _g(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _prepare(self, t: Tensor) -> Tensor:
        """The input as the block sees it (a conditioned block broadcasts it to the context)."""
        return t

    def _log_det(self, gx: Tensor, x: Tensor, create_graph: bool) -> Tensor:
        if self.logdet == "exact":
            return exact_log_det(gx, x, self.event_dim, create_graph)
        coeffs = series_coefficients(self.logdet, self.n_terms, self.geom_p)
        shape = (self.n_hutchinson, *x.shape)  # Rademacher (randint: cheaper than bernoulli_)
        probes = torch.randint(0, 2, shape, device=x.device).to(x.dtype).mul_(2).sub_(1)
        return power_series_log_det(
            gx, x, coeffs, probes, self.event_dim,
            neumann_grad=self.neumann_grad, create_graph=create_graph,
        )  # fmt: skip

    def _map(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(g(x), log det(I + J_g(x)))``, with graphs only if grad mode is on."""
        grad_on = torch.is_grad_enabled()
        freeze = contextlib.nullcontext() if grad_on else frozen_spectral_norms()
        with torch.enable_grad(), freeze:
            # a fresh node: derivatives taken at it never run hooks on x (the inverse's)
            leaf = x.view_as(x) if x.requires_grad else x.detach().requires_grad_()
            gx = self._g(leaf)
            ladj = self._log_det(gx, leaf, grad_on)
        if not grad_on:
            return gx.detach(), ladj.detach()
        return gx, ladj

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._prepare(x)
        gx, ladj = self._map(x)
        return x + gx, ladj

    def _tolerance(self, y: Tensor) -> tuple[float, float]:
        """``(inverse_tol, floor)``: a step below 16 ulps of the largest ``|y|`` is converged."""
        floor = 16 * torch.finfo(y.dtype).eps * max(1.0, max_abs(y.detach()))
        return max(self.inverse_tol, floor), floor

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        y = self._prepare(y)
        tol, floor = self._tolerance(y)
        fixed, residual, iterations, converged = banach_inverse(
            self._g, y.detach(), tol, self.inverse_max_iter, floor=floor
        )
        if not converged:
            raise InversionError(
                f"the fixed-point inverse stopped at residual {residual:.3g} after {iterations} "
                f"iterations without reaching inverse_tol={self.inverse_tol:g}; "
                "Lip(g) may be close to 1",
                residual,
                iterations,
            )
        with frozen_spectral_norms():
            x = y - self._g(fixed)  # one differentiable step
            if x.requires_grad:
                _implicit_gradient(x, self._g, fixed, tol, self.inverse_max_iter)
            _, ladj = self._map(x)
        return x, ladj

    def extra_repr(self) -> str:
        return (
            f"event_shape={tuple(self.event_shape)}, logdet={self.logdet!r}, "
            f"n_terms={self.n_terms}, n_hutchinson={self.n_hutchinson}"
        )


class _ConditionedResidual(InvertibleResidual):
    """A block whose net sees a fixed context; inputs broadcast against the context's batch."""

    def __init__(self, net: ContextBound, event_shape: EventShape, **options: object) -> None:
        super().__init__(net, event_shape=event_shape, **options)
        self._context_batch = net.context.shape[:-1]

    def _prepare(self, t: Tensor) -> Tensor:
        batch = torch.broadcast_shapes(t.shape[: t.dim() - self.event_dim], self._context_batch)
        return t.expand(*batch, *self.event_shape)


class ConditionalInvertibleResidual(ConditionalTransformModule):
    r"""An invertible residual block :math:`y = x + g(x, c)` whose net also sees a context.

    The context enters :math:`g`'s input; Lipschitz continuity is enforced in :math:`x` only
    (:class:`~pyro_flowkit.nn.LipschitzMLP` adds it as an unconstrained bias of the first
    layer), which is all invertibility needs. ``condition(context)`` (shape
    ``batch + (context_dim,)``) returns an :class:`InvertibleResidual` sharing this module's
    parameters, with gradients reaching the context through the map and the log-det.

    Arguments:
        net: :math:`g(x, c)`.
        context_dim: size of the context; by default ``net.context_features``.
        event_shape: the event's shape; by default ``net.event_shape``.
        **options: the keyword arguments of :class:`InvertibleResidual`.

    Example:
        >>> from pyro_flowkit.nn import LipschitzMLP
        >>> t = ConditionalInvertibleResidual(LipschitzMLP(2, (16,), context_features=3))
        >>> t.condition(torch.randn(7, 3))(torch.randn(5, 1, 2)).shape
        torch.Size([5, 7, 2])
    """

    def __init__(
        self,
        net: nn.Module,
        context_dim: int | None = None,
        *,
        event_shape: EventShape | None = None,
        **options: object,
    ) -> None:
        super().__init__()
        context_dim = getattr(net, "context_features", None) if context_dim is None else context_dim
        if not context_dim:
            raise TypeError("context_dim: net has no context_features attribute; pass context_dim")
        self.net = net
        self.context_dim = context_dim
        probe = InvertibleResidual(net, event_shape=event_shape, **options)  # checks arguments
        self.event_shape = probe.event_shape
        self.options = options

    @property
    def logdet(self) -> str:
        """The log-det estimator of the blocks ``condition`` returns."""
        return self.options.get("logdet", "series")

    @logdet.setter
    def logdet(self, mode: str) -> None:
        if mode not in LOGDETS:
            raise ValueError(f"logdet: expected one of {LOGDETS}, got {mode!r}")
        self.options = {**self.options, "logdet": mode}

    def condition(self, context: Tensor) -> InvertibleResidual:
        """The plain block for ``context``."""
        check_context(context, self.context_dim)
        return _ConditionedResidual(
            ContextBound(self.net, context), self.event_shape, **self.options
        )


def set_logdet(module: nn.Module, mode: str) -> nn.Module:
    """Set the log-det estimator of every residual block in ``module`` (e.g. ``"exact"`` to
    evaluate a flow trained with ``"roulette"``); returns ``module``."""
    if mode not in LOGDETS:
        raise ValueError(f"mode: expected one of {LOGDETS}, got {mode!r}")
    for m in module.modules():
        if isinstance(m, InvertibleResidual | ConditionalInvertibleResidual):
            m.logdet = mode
    return module
