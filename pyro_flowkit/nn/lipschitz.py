r"""Lipschitz-constrained layers for invertible residual blocks: spectral normalisation.

A layer :math:`x \mapsto Wx + b` is :math:`\|W\|_2`-Lipschitz. The layers here use the weight
:math:`\tilde W = W / \max(1, \hat\sigma / c)`, where :math:`\hat\sigma` estimates the spectral
norm :math:`\sigma = \|W\|_2` by power iteration with persistent vectors :math:`u, v`
(``n_power_iterations`` per forward pass in training mode with gradients enabled, then more
until the estimate settles to ``power_rtol``; none in
``eval()`` mode, under ``torch.no_grad()`` or inside :func:`frozen_spectral_norms`, so the map is
then fixed). Power iteration approaches :math:`\sigma` from below, so after a weight update the
bound :math:`\|\tilde W\|_2 \le c` holds up to the estimate's lag; tests check it with the exact
norm (:meth:`exact_spectral_norm`). Composed with 1-Lipschitz activations (ELU,
:class:`LipSwish`), a network of :math:`L` such layers is :math:`c^L`-Lipschitz.

References:
    | Spectral Normalization for Generative Adversarial Networks (Miyato et al., 2018)
    | https://arxiv.org/abs/1802.05957
    | Invertible Residual Networks (Behrmann et al., 2019), section 3
    | https://arxiv.org/abs/1811.00995
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyro_flowkit.validation import check_count, check_interval, check_positive

__all__ = [
    "LipSwish",
    "LipschitzConvNet",
    "LipschitzMLP",
    "SpectralNormConv2d",
    "SpectralNormLinear",
    "frozen_spectral_norms",
    "refresh_spectral_norms",
]

_EPS = 1e-12
_frozen = [0]


@contextlib.contextmanager
def frozen_spectral_norms() -> Iterator[None]:
    """Within this block no spectral-norm layer runs power iterations (its map stays fixed)."""
    _frozen[0] += 1
    try:
        yield
    finally:
        _frozen[0] -= 1


def _check_coeff(coeff: float, *, contraction: bool = True) -> float:
    """``coeff`` as a float: in (0, 1) for a contraction (residual blocks), else just positive."""
    if contraction:
        return check_interval(
            "coeff", coeff, 0, 1, open_low=True, open_high=True, what="a Lipschitz coefficient"
        )
    return check_positive("coeff", coeff)


def _orthonormal(block: Tensor, old: Tensor) -> Tensor:
    """The rows of ``block`` (``k`` vectors, any trailing shape) orthonormalised by QR, or
    ``old`` if they vanish (a zero weight keeps its vectors)."""
    flat = block.flatten(1)
    q = torch.linalg.qr(flat.T).Q.T.reshape(block.shape)
    return torch.where(flat.norm() > _EPS, q, old)


class _SpectralNorm(nn.Module):
    """Block power iteration on ``V = orth(W^T U)``, ``U = orth(W V)`` for a linear operator W.

    A block of ``k`` vectors (subspace iteration) rather than one: when the two largest singular
    values of a training weight cross, a single vector sits on what has become the second
    singular vector, a saddle it leaves only slowly, and the estimate lags the true norm by the
    gap; the block holds the top-``k`` subspace through such crossings. The estimate is the
    largest singular value of the ``k x k`` matrix :math:`U^\top W V`.
    """

    def _init_vectors(
        self, u_shape: tuple, v_shape: tuple, coeff: float, iters: int, rtol: float | None, k: int
    ) -> None:
        self.coeff = _check_coeff(coeff, contraction=False)
        check_count("n_power_iterations", iters, minimum=0)
        check_count("power_vectors", k)
        if rtol is not None:
            check_positive("power_rtol", rtol)
        self.n_power_iterations, self.power_rtol = iters, rtol
        k = min(k, math.prod(u_shape), math.prod(v_shape))
        self.register_buffer("u", _orthonormal(torch.randn(k, *u_shape), torch.zeros(())))
        self.register_buffer("v", _orthonormal(torch.randn(k, *v_shape), torch.zeros(())))
        self.refresh_spectral_norm()

    def _op(self, v: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def _adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def _projected_norm(self, u: Tensor, wv: Tensor) -> Tensor:
        return torch.linalg.matrix_norm(u.flatten(1) @ wv.flatten(1).T, ord=2)

    @torch.no_grad()
    def power_iteration(self, n: int, rtol: float | None = None, max_iter: int = 100) -> float:
        r"""Run ``n`` iterations, then, if ``rtol`` is given, more (``max_iter`` in all) until
        :math:`\hat\sigma` changes by at most ``rtol`` relative; updates the persistent vectors
        in place and returns :math:`\hat\sigma` (``nan`` if it was not computed)."""
        w = self.weight.detach()
        u, v, previous, sigma = self.u, self.v, math.nan, math.nan
        for i in range(max(n, max_iter) if rtol is not None else n):
            v = _orthonormal(self._adjoint(u, w), v)
            wv = self._op(v, w)
            u = _orthonormal(wv, u)
            if rtol is not None and i + 1 >= n:
                sigma = self._projected_norm(u, wv).item()
                if abs(sigma - previous) <= rtol * sigma:
                    break
                previous = sigma
        self.u.copy_(u)
        self.v.copy_(v)
        return sigma

    def refresh_spectral_norm(self, max_iter: int = 500, rtol: float = 1e-6) -> float:
        r"""Iterate until :math:`\hat\sigma` changes by less than ``rtol`` (after loading or
        editing weights by hand); returns the estimate."""
        return self.power_iteration(1, rtol, max_iter)

    def sigma_estimate(self) -> Tensor:
        r""":math:`\hat\sigma = \|U^\top W V\|_2` (differentiable in W; the vectors are
        cloned, so a later power iteration does not invalidate a graph that used them)."""
        return self._projected_norm(self.u.clone(), self._op(self.v.clone(), self.weight))

    def normalized_weight(self) -> Tensor:
        r""":math:`\tilde W = W / \max(1, \hat\sigma / c)`, after the step's power iterations."""
        if self.training and torch.is_grad_enabled() and not _frozen[0]:
            self.power_iteration(self.n_power_iterations, self.power_rtol)
        factor = (self.sigma_estimate() / self.coeff).clamp_min(1.0)
        return self.weight / factor

    def extra_repr(self) -> str:
        return (
            f"coeff={self.coeff}, n_power_iterations={self.n_power_iterations}, "
            f"power_rtol={self.power_rtol}"
        )


class SpectralNormLinear(_SpectralNorm):
    r"""A linear layer :math:`x \mapsto \tilde W x + b` with :math:`\|\tilde W\|_2 \le c`.

    Arguments:
        in_features: input size.
        out_features: output size.
        coeff: the bound :math:`c > 0` on the spectral norm (below 1 for residual blocks).
        n_power_iterations: power iterations per training forward pass (at least).
        power_rtol: then iterate (100 times at most) until the estimate changes by at most this
            relative amount, so that the bound holds while the weights move fast; ``None`` for
            exactly ``n_power_iterations`` (no host synchronisation on a GPU).
        power_vectors: size of the block of power-iteration vectors (1 is classic power
            iteration, which lags the norm when the top singular values cross).
        bias: learn a bias.
        zero_init: start with :math:`W = 0` (and :math:`b = 0`), so a residual block is the
            identity map at initialisation.

    Example:
        >>> layer = SpectralNormLinear(4, 3, coeff=0.9)
        >>> bool(layer.exact_spectral_norm() <= 0.9 + 1e-4)
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        coeff: float = 0.97,
        n_power_iterations: int = 1,
        *,
        power_rtol: float | None = 1e-4,
        power_vectors: int = 4,
        bias: bool = True,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        check_count("in_features", in_features)
        check_count("out_features", out_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        bound = 0.0 if zero_init else 1 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        self._init_vectors(
            (out_features,), (in_features,), coeff, n_power_iterations, power_rtol, power_vectors
        )

    def _op(self, v: Tensor, weight: Tensor) -> Tensor:
        return v @ weight.T

    def _adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        return u @ weight

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)

    @torch.no_grad()
    def exact_spectral_norm(self) -> Tensor:
        """:math:`\\|\\tilde W\\|_2` by SVD (the current normalised weight, no power iteration)."""
        with frozen_spectral_norms():
            return torch.linalg.matrix_norm(self.normalized_weight(), ord=2)


class SpectralNormConv2d(_SpectralNorm):
    r"""A "same" convolution (stride 1, odd kernel) whose operator norm on inputs of shape
    ``(in_channels, *input_size)`` is at most :math:`c`.

    Power iteration runs on the convolution itself (``conv2d`` and its adjoint
    ``conv_transpose2d`` on an input of the actual size, zero padding included), not on the
    reshaped kernel, whose norm is a different number. The bound holds for that input size only,
    so other sizes raise ``ValueError``.

    Arguments:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: an odd kernel size.
        input_size: ``(H, W)`` of the inputs.
        coeff, n_power_iterations, power_rtol, power_vectors, bias, zero_init: as for
            :class:`SpectralNormLinear` (``zero_init``: a zero kernel).

    References:
        | Residual Flows for Invertible Generative Modeling (Chen et al., 2019), appendix
        | https://arxiv.org/abs/1906.02735

    Example:
        >>> conv = SpectralNormConv2d(2, 4, 3, input_size=(5, 5), coeff=0.9)
        >>> conv(torch.randn(7, 2, 5, 5)).shape
        torch.Size([7, 4, 5, 5])
        >>> bool(conv.exact_spectral_norm() <= 0.9 + 1e-4)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        input_size: Sequence[int],
        coeff: float = 0.97,
        n_power_iterations: int = 1,
        *,
        power_rtol: float | None = 1e-4,
        power_vectors: int = 4,
        bias: bool = True,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        check_count("in_channels", in_channels)
        check_count("out_channels", out_channels)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd positive int, got {kernel_size!r}")
        self.input_size = tuple(int(s) for s in input_size)
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"input_size: expected (H, W), got {tuple(input_size)!r}")
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        bound = 0.0 if zero_init else 1 / math.sqrt(in_channels * kernel_size**2)
        nn.init.uniform_(self.weight, -bound, bound)
        shape = self.input_size
        self._init_vectors(
            (out_channels, *shape), (in_channels, *shape), coeff, n_power_iterations, power_rtol,
            power_vectors,
        )  # fmt: skip

    def _op(self, v: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(v, weight, padding=self.padding)

    def _adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        return F.conv_transpose2d(u, weight, padding=self.padding)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.input_size or x.dim() != 4:
            raise ValueError(
                f"x: expected shape (N, {self.weight.shape[1]}, {self.input_size[0]}, "
                f"{self.input_size[1]}), got {tuple(x.shape)}"
            )
        return F.conv2d(x, self.normalized_weight(), self.bias, padding=self.padding)

    @torch.no_grad()
    def exact_spectral_norm(self) -> Tensor:
        """The operator norm on the input size, by SVD of the convolution's full matrix."""
        with frozen_spectral_norms():
            weight = self.normalized_weight()
        n = self.v[0].numel()
        basis = torch.eye(n, dtype=weight.dtype, device=weight.device).view(n, *self.v.shape[1:])
        matrix = self._op(basis, weight).reshape(n, -1)
        return torch.linalg.matrix_norm(matrix, ord=2)


def refresh_spectral_norms(module: nn.Module, max_iter: int = 500, rtol: float = 1e-6) -> None:
    """Converge the power iteration of every spectral-norm layer in ``module`` (after loading or
    editing weights by hand, so the next pass does not use a stale estimate)."""
    for m in module.modules():
        if isinstance(m, _SpectralNorm):
            m.refresh_spectral_norm(max_iter, rtol)


class LipSwish(nn.Module):
    r"""LipSwish, :math:`x \sigma(\beta x) / 1.1` with a learned :math:`\beta > 0`: 1-Lipschitz.

    The derivative of :math:`x \sigma(\beta x)` is at most about 1.0998 for every
    :math:`\beta`, hence the division by 1.1; unlike ELU its derivative is smooth, which the
    log-det's gradient needs.

    References:
        | Residual Flows for Invertible Generative Modeling (Chen et al., 2019), section 4
        | https://arxiv.org/abs/1906.02735
    """

    def __init__(self) -> None:
        super().__init__()
        self.raw_beta = nn.Parameter(torch.tensor(math.log(math.e - 1)))  # softplus -> 1

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(F.softplus(self.raw_beta) * x) / 1.1


_ACTIVATIONS = {"elu": nn.ELU, "lipswish": LipSwish}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {tuple(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


class LipschitzMLP(nn.Module):
    r""":math:`g(x, c) = W_L \phi(\dots \phi(W_1 x + V c + b_1) \dots) + b_L` with every
    :math:`\|W_l\|_2 \le` ``coeff``: Lipschitz in :math:`x` with constant at most
    :math:`\text{coeff}^L`, for any context :math:`c`.

    The context (optional) enters as a bias of the first layer through an unconstrained map
    :math:`V`, so Lipschitz continuity is enforced in :math:`x` only. The last layer starts at
    zero, so an invertible residual block on this net starts as the identity.

    Arguments:
        features: the event size :math:`D` (input and output).
        hidden_dims: widths of the hidden layers.
        context_features: size of the context's last dimension; 0 for no context.
        coeff: Lipschitz coefficient of each layer.
        activation: ``"elu"`` or ``"lipswish"``.
        **spectral: ``n_power_iterations``, ``power_rtol``, ``power_vectors`` of every layer
            (:class:`SpectralNormLinear`).

    Example:
        >>> net = LipschitzMLP(3, (16,), context_features=2)
        >>> net(torch.randn(5, 7, 3), torch.randn(7, 2)).shape
        torch.Size([5, 7, 3])
    """

    def __init__(
        self,
        features: int,
        hidden_dims: Sequence[int] = (128,),
        context_features: int = 0,
        *,
        coeff: float = 0.9,
        activation: str = "elu",
        **spectral: object,
    ) -> None:
        super().__init__()
        check_count("features", features)
        check_count("context_features", context_features, minimum=0)
        _check_coeff(coeff)
        widths = (features, *_hidden("hidden_dims", hidden_dims), features)
        last = len(widths) - 2
        self.layers = nn.ModuleList(
            SpectralNormLinear(a, b, coeff, zero_init=i == last, **spectral)
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )
        self.activations = nn.ModuleList(_activation(activation) for _ in widths[2:])
        self.context = (
            nn.Linear(context_features, widths[1], bias=False) if context_features else None
        )
        self.event_shape = torch.Size((features,))
        self.context_features = context_features

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.layers[0](x)
        if self.context is not None:
            h = h + self.context(context)
        for act, layer in zip(self.activations, self.layers[1:], strict=True):
            h = layer(act(h))
        return h


def _hidden(name: str, dims: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(dims)
    if not dims:
        raise ValueError(f"{name}: expected at least one hidden layer, got {dims}")
    for h in dims:
        check_count(name, h)
    return dims


class LipschitzConvNet(nn.Module):
    r"""The convolutional :math:`g` of an invertible residual block on ``(C, H, W)`` events.

    A 3x3 convolution to ``hidden_channels[0]``, 1x1 convolutions between the hidden widths, and
    a zero-initialised 3x3 convolution back to ``C`` channels, with a 1-Lipschitz activation
    between them (i-ResNet's 3-1-3 block for two hidden widths). Every convolution is a
    :class:`SpectralNormConv2d` with coefficient ``coeff`` on the event's spatial size, so
    :math:`g` is :math:`\text{coeff}^L`-Lipschitz in :math:`x`. A context vector enters as a
    per-channel bias of the first layer. Any leading batch dimensions are flattened inside.

    Arguments:
        event_shape: ``(C, H, W)``.
        hidden_channels: widths of the hidden layers.
        context_features: size of the context vector; 0 for no context.
        coeff: Lipschitz coefficient of each layer.
        activation: ``"elu"`` or ``"lipswish"``.
        **spectral: ``n_power_iterations``, ``power_rtol``, ``power_vectors`` of every layer
            (:class:`SpectralNormLinear`).

    Example:
        >>> net = LipschitzConvNet((2, 4, 4), (8,), context_features=3)
        >>> net(torch.randn(5, 7, 2, 4, 4), torch.randn(7, 3)).shape
        torch.Size([5, 7, 2, 4, 4])
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        hidden_channels: Sequence[int] = (64,),
        context_features: int = 0,
        *,
        coeff: float = 0.9,
        activation: str = "elu",
        **spectral: object,
    ) -> None:
        super().__init__()
        check_count("context_features", context_features, minimum=0)
        _check_coeff(coeff)
        self.event_shape = torch.Size(event_shape)
        if len(self.event_shape) != 3:
            raise ValueError(f"event_shape: expected (C, H, W), got {tuple(event_shape)}")
        c, *size = self.event_shape
        widths = (c, *_hidden("hidden_channels", hidden_channels), c)
        n = len(widths) - 1
        self.layers = nn.ModuleList(
            SpectralNormConv2d(
                a, b, 3 if i in (0, n - 1) else 1, size, coeff, zero_init=i == n - 1,
                **spectral,
            )
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )  # fmt: skip
        self.activations = nn.ModuleList(_activation(activation) for _ in widths[2:])
        self.context = (
            nn.Linear(context_features, widths[1], bias=False) if context_features else None
        )
        self.context_features = context_features

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        batch = x.shape[:-3]
        h = self.layers[0](x.reshape(-1, *self.event_shape))
        if self.context is not None:
            h = h.view(*batch, *h.shape[1:]) + self.context(context)[..., None, None]
            batch = h.shape[:-3]
            h = h.reshape(-1, *h.shape[-3:])
        for act, layer in zip(self.activations, self.layers[1:], strict=True):
            h = layer(act(h))
        return h.view(*batch, *self.event_shape)
