r"""The f-VAE: a VAE whose posterior is a flow of noise, between a VAE and Glow (Su & Wu 2018).

The latent :math:`z` has the data's shape. The posterior is :math:`z = F_x(u)`,
:math:`u \sim \mathcal N(0, I)`, with

.. math:: F_x(u) = F(\sigma_1 u + E(x)),

for an invertible flow :math:`F` (Glow for images), an encoder mean :math:`E` and a learned
scalar :math:`\sigma_1`; the model is :math:`z \sim \mathcal N(0, I)`,
:math:`x \mid z \sim \mathcal N(G(F^{-1}(z)), \sigma_2^2 I)` with a decoder mean :math:`G`. With
:math:`v = \sigma_1 u + E(x)` the loss (negative ELBO) of one draw is

.. math:: L(x, u) = -\log \mathcal N(x; G(v), \sigma_2^2 I) - \log \mathcal N(F(v); 0, I)
   + \log \mathcal N(v; E(x), \sigma_1^2 I) - \log\bigl|\det \partial F / \partial v\bigr|.

With :math:`F` affine (e.g. the identity) this is exactly a Gaussian VAE; with a fixed
:math:`\sigma_1`, :math:`E = G = \mathrm{id}`, the :math:`F`-dependent part is the negative
log-likelihood of a flow on the noisy inputs :math:`x + \sigma_1 u`: a Glow trained on noisy data.

References:
    | f-VAEs: Improve VAEs with Conditional Flows (Su & Wu, 2018)
    | https://arxiv.org/abs/1809.05861
"""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.distributions import Transform

from pyro_flowkit.distributions import FlowDistribution
from pyro_flowkit.flows import glow, leaf_transforms, realnvp
from pyro_flowkit.models.vae import _LatentVariableModel
from pyro_flowkit.nn.conv import ConvNet
from pyro_flowkit.nn.mlp import MLP
from pyro_flowkit.transforms._base import EventShape
from pyro_flowkit.validation import check_count, check_positive

__all__ = ["FVAE"]

FLOWS = ("glow", "realnvp", "identity")
NETS = ("identity", "conv", "mlp")


class _Residual(nn.Module):
    """:math:`x + n(x)` for a network :math:`n` whose last layer starts at zero (the identity)."""

    def __init__(self, net: nn.Module, event_shape: torch.Size, flatten: bool) -> None:
        super().__init__()
        self.net, self.event_shape, self.flatten = net, event_shape, flatten

    def forward(self, x: Tensor) -> Tensor:
        if not self.flatten:
            return x + self.net(x)
        k = len(self.event_shape)
        return x + self.net(x.flatten(-k)).unflatten(-1, self.event_shape)


def _mean_net(kind: str, arg: str, shape: torch.Size, hidden: int) -> nn.Module:
    if kind not in NETS:
        raise ValueError(f"{arg}: expected one of {NETS}, got {kind!r}")
    if kind == "identity":
        return nn.Identity()
    if kind == "conv":
        if len(shape) != 3:
            raise ValueError(f"{arg}: 'conv' needs an image event_shape (C, H, W), got {shape}")
        return _Residual(ConvNet(shape[0], shape[0], hidden), shape, flatten=False)
    return _Residual(MLP(shape.numel(), shape.numel(), (hidden,)), shape, flatten=True)


def _build_flow(
    flow: str | nn.Module, shape: torch.Size, flow_kw: dict[str, Any] | None
) -> nn.Module | None:
    if isinstance(flow, Transform) and isinstance(flow, nn.Module):
        if flow_kw:
            raise ValueError("flow_kw: only applies when flow names a builder")
        own = getattr(flow, "event_shape", None)
        if own is not None and torch.Size(own) != shape:
            raise ValueError(
                f"flow: built for events of shape {tuple(own)}, expected {tuple(shape)}"
            )
        return flow
    if not isinstance(flow, str):
        raise TypeError(f"flow: expected one of {FLOWS} or a transform module, got {flow!r}")
    if flow not in FLOWS:
        raise ValueError(f"flow: expected one of {FLOWS} or a transform module, got {flow!r}")
    if flow == "identity":
        if flow_kw:
            raise ValueError("flow_kw: does not apply to flow='identity'")
        return None
    kw = {"dropout": 0.0, **(flow_kw or {})}
    if flow == "glow":
        if len(shape) != 3:
            raise ValueError(
                f"flow: 'glow' needs an image event_shape (C, H, W), got {tuple(shape)}; use "
                "'realnvp' for vectors"
            )
        return glow(shape, **kw)
    return realnvp(shape, **kw)


class FVAE(_LatentVariableModel):
    r"""The f-VAE of Su & Wu (2018) as a Pyro model and guide (see the module's docstring).

    In Pyro's direction (base to data) the flow module ``self.flow`` maps the latent :math:`z`
    to :math:`v`, i.e. it is :math:`F^{-1}`, and the posterior uses its inverse :math:`F`: the
    guide is ``TransformedDistribution(Normal(E(x), sigma1), [F])`` with the flow's parts
    inverted, so :math:`\log q(z \mid x) = \log \mathcal N(v; E(x), \sigma_1^2 I) - \log|\det
    \partial F/\partial v|`. Because the flow's transforms cache their last pass, the model's
    :math:`F^{-1}(z)` of the guide's sample is read from the cache: no network runs twice in one
    ELBO. ``flow_distribution(fvae.flow, event_shape)`` is the learned density of
    :math:`v = F^{-1}(z)`; ActNorm layers initialise from the first batch of :math:`v`.

    Arguments:
        event_shape: ``D``, ``(D,)`` or ``(C, H, W)``; data come as ``(N,) + event_shape``.
        flow: ``"glow"`` (images, :func:`~pyro_flowkit.flows.glow`), ``"realnvp"``
            (:func:`~pyro_flowkit.flows.realnvp`), ``"identity"`` (:math:`F_x` affine: a Gaussian
            VAE) or a transform module (base to data) on ``event_shape``.
        encoder: :math:`E`: ``"identity"``, ``"conv"`` (images) or ``"mlp"``; the networks are
            residual, :math:`x + n(x)` with :math:`n` zero at initialisation.
        decoder: :math:`G`, the same options (default: as ``encoder``).
        flow_kw: keyword arguments of the flow's builder; ``dropout`` defaults to 0 here.
        hidden: width of the ``"conv"`` (channels) or ``"mlp"`` (units) networks.
        learn_sigma: learn :math:`\sigma_1` and :math:`\sigma_2` (else both stay fixed).
        sigma1, sigma2: their initial values.
        fixed_noise: keep :math:`\sigma_1` fixed (a flow trained on noisy inputs).
        num_levels: levels of the quantised data, for :meth:`bits_per_dim`.
        name: prefix of the Pyro sites and params.

    Example:
        >>> fvae = FVAE((1, 8, 8), flow_kw=dict(levels=1, depth=1, hidden_channels=8))
        >>> x = torch.rand(10, 1, 8, 8)
        >>> losses = fvae.fit(x, 3, batch_size=5, progress=False)
        >>> fvae.elbo(x).shape, fvae.sample(2, temperature=0.7).shape
        (torch.Size([10]), torch.Size([2, 1, 8, 8]))
    """

    def __init__(
        self,
        event_shape: EventShape,
        *,
        flow: str | nn.Module = "glow",
        encoder: str = "identity",
        decoder: str | None = None,
        flow_kw: dict[str, Any] | None = None,
        hidden: int = 32,
        learn_sigma: bool = True,
        sigma1: float = 0.1,
        sigma2: float = 0.1,
        fixed_noise: bool = False,
        num_levels: int = 17,
        name: str = "fvae",
    ) -> None:
        super().__init__(event_shape, event_shape, num_levels, name)
        check_count("hidden", hidden)
        self._set_log_scale("sigma1", sigma1, learn_sigma and not fixed_noise)
        self._set_log_scale("sigma2", sigma2, learn_sigma)
        self.flow = _build_flow(flow, self.event_shape, flow_kw)
        self._parts = [] if self.flow is None else leaf_transforms(self.flow)
        self.encoder_net = _mean_net(encoder, "encoder", self.event_shape, hidden)
        decoder = encoder if decoder is None else decoder
        self.decoder_net = _mean_net(decoder, "decoder", self.event_shape, hidden)

    def _set_log_scale(self, arg: str, value: float, learn: bool) -> None:
        check_positive(arg, value)
        log_value = torch.tensor(math.log(value))
        if learn:
            setattr(self, f"log_{arg}", nn.Parameter(log_value))
        else:
            self.register_buffer(f"log_{arg}", log_value)

    @property
    def sigma1(self) -> Tensor:
        r""":math:`\sigma_1`, the posterior's noise scale."""
        return self.log_sigma1.exp()

    @property
    def sigma2(self) -> Tensor:
        r""":math:`\sigma_2`, the decoder's noise scale."""
        return self.log_sigma2.exp()

    def _posterior(self, x: Tensor) -> FlowDistribution:
        base = dist.Normal(self.encoder_net(x), self.sigma1).to_event(len(self.event_shape))
        return FlowDistribution(base, [t.inv for t in reversed(self._parts)])

    def _likelihood(self, z: Tensor) -> dist.Distribution:
        return dist.Normal(self._mean(z), self.sigma2).to_event(len(self.event_shape))

    def _mean(self, z: Tensor) -> Tensor:
        v = z
        for t in self._parts:  # F^{-1}: free (cached) for the sample the guide just drew
            v = t(v)
        return self.decoder_net(v)
