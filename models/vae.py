r"""Variational autoencoders (Kingma & Welling 2014) with a Gaussian or a conditional-flow encoder.

The model is :math:`z \sim \mathcal N(0, I)`, :math:`x \mid z \sim p_\theta(x \mid z)` with a
decoder network, and the amortised posterior :math:`q_\phi(z \mid x)` is fitted by maximising the
evidence lower bound

.. math:: \mathrm{ELBO}(x) = \mathbb E_{q_\phi(z \mid x)}
   \bigl[\log p_\theta(x \mid z) + \log p(z) - \log q_\phi(z \mid x)\bigr] \le \log p_\theta(x)

through Pyro's ``SVI(model, guide, Adam, Trace_ELBO())``. The importance-weighted bound of Burda
et al., :math:`\log \frac1K \sum_k p_\theta(x, z_k) / q_\phi(z_k \mid x)`, is tighter and tends
to :math:`\log p_\theta(x)` as :math:`K \to \infty`. With ``encoder="flow"`` the posterior is a
conditional RealNVP applied to the Gaussian (Rezende & Mohamed 2015).

:class:`_LatentVariableModel` holds everything :class:`VAE` and
:class:`~pyro_flowkit.models.FVAE` share: the Pyro ``model``/``guide``, ``fit``, ``elbo``,
``iwae_log_likelihood``, ``bits_per_dim``, ``sample`` and ``reconstruct``.

References:
    | Auto-Encoding Variational Bayes (Kingma & Welling, 2014) https://arxiv.org/abs/1312.6114
    | Importance Weighted Autoencoders (Burda et al., 2016) https://arxiv.org/abs/1509.00519
    | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015)
    | https://arxiv.org/abs/1505.05770
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule
from torch import Tensor, nn

from pyro_flowkit.distributions import FlowDistribution, StandardNormal
from pyro_flowkit.flows import conditional_realnvp
from pyro_flowkit.guides import encoder_posterior
from pyro_flowkit.inference.training import StepInfo, train
from pyro_flowkit.metrics import bits_per_dim
from pyro_flowkit.models._registration import register_params
from pyro_flowkit.nn.mlp import MLP
from pyro_flowkit.transforms import as_event_shape
from pyro_flowkit.transforms._base import EventShape
from pyro_flowkit.validation import check_count, check_positive

if TYPE_CHECKING:
    from pyro_flowkit.inference.ema import EMA

__all__ = ["VAE"]

LIKELIHOODS = ("bernoulli", "gaussian", "dequantized")
ENCODERS = ("gaussian", "flow")


class _LatentVariableModel(PyroModule):
    r"""A Pyro model :math:`z \sim \mathcal N(0, I)`, :math:`x \sim p(x \mid z)` with an amortised
    guide :math:`q(z \mid x)`; subclasses give :meth:`_posterior`, :meth:`_likelihood` and
    :meth:`_mean`.

    Every parameter is registered in Pyro's param store under ``f"{name}$$${parameter name}"``
    (as ``pyro.module(name, self)`` does) by both :meth:`model` and :meth:`guide`, so ``SVI``
    optimises each exactly once.
    """

    _has_density = True  # the likelihood is a density, so bits/dim are defined

    def __init__(
        self, event_shape: EventShape, latent_shape: EventShape, num_levels: int, name: str
    ) -> None:
        if not isinstance(name, str) or not name or "$$$" in name:
            raise ValueError(f"name: expected a non-empty string without '$$$', got {name!r}")
        super().__init__(name)
        check_count("num_levels", num_levels)
        self.name, self.num_levels = name, num_levels
        self.event_shape = as_event_shape(event_shape)
        self.latent_shape = as_event_shape(latent_shape)

    # ---------------------------------------------------------------- subclass hooks
    def _posterior(self, x: Tensor) -> FlowDistribution:
        """:math:`q(z \\mid x)` for a checked batch ``x``: a flow of an independent Normal."""
        raise NotImplementedError

    def _likelihood(self, z: Tensor) -> dist.Distribution:
        """:math:`p(x \\mid z)` with batch shape ``z``'s leading shape and event ``event_shape``."""
        raise NotImplementedError

    def _mean(self, z: Tensor) -> Tensor:
        """The decoder's mean :math:`E[x \\mid z]`."""
        raise NotImplementedError

    def _check_values(self, x: Tensor, name: str) -> None:
        """Raise ``ValueError`` on values outside the likelihood's support (none by default)."""

    # ---------------------------------------------------------------- checks
    def _like(self) -> Tensor:
        """A floating tensor of the module: new tensors take its device and dtype."""
        tensors = chain(self.parameters(), self.buffers())
        return next(t for t in tensors if t.is_floating_point())

    def _check_x(self, x: Tensor, name: str = "x") -> Tensor:
        """``x`` checked to be a finite batch ``(N,) + event_shape``, in the module's dtype."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{name}: expected a floating tensor, got {kind}")
        shape = ", ".join(map(str, self.event_shape))
        if x.dim() != len(self.event_shape) + 1 or x.shape[1:] != self.event_shape or not len(x):
            raise ValueError(f"{name}: expected shape (N, {shape}), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: expected finite values, got NaN or infinity")
        self._check_values(x, name)
        return x.to(self._like().dtype)

    # ---------------------------------------------------------------- Pyro
    def _prior(self, n: int) -> StandardNormal:
        like = self._like()
        return StandardNormal(
            self.latent_shape, device=like.device, dtype=like.dtype, validate_args=False
        ).expand((n,))

    def model(self, x: Tensor, subsample_size: int | None = None) -> None:
        r"""The generative model: ``f"{name}.z"`` :math:`\sim \mathcal N(0, I)` and the observed
        ``f"{name}.x"`` :math:`\sim p(x \mid z)`, in the plate ``f"{name}.data"`` over the rows
        of ``x`` (``subsample_size`` rows at a time, the log-likelihood scaled by
        :math:`N / n`)."""
        x = self._check_x(x)
        register_params(self, self.name)
        with pyro.plate(f"{self.name}.data", len(x), subsample_size=subsample_size) as idx:
            batch = x[idx]
            z = pyro.sample(f"{self.name}.z", self._prior(len(batch)))
            pyro.sample(f"{self.name}.x", self._likelihood(z), obs=batch)

    def guide(self, x: Tensor, subsample_size: int | None = None) -> None:
        r"""The amortised posterior: ``f"{name}.z"`` :math:`\sim q(z \mid x)` in the same plate
        (under ``SVI`` the model reuses the guide's subsample)."""
        x = self._check_x(x)
        register_params(self, self.name)
        with pyro.plate(f"{self.name}.data", len(x), subsample_size=subsample_size) as idx:
            pyro.sample(f"{self.name}.z", self._posterior(x[idx]))

    def posterior(self, x: Tensor) -> FlowDistribution:
        r""":math:`q(z \mid x)` for a batch ``x`` ``(N,) + event_shape``; batch shape ``(N,)``."""
        return self._posterior(self._check_x(x))

    # ---------------------------------------------------------------- fitting
    def fit(
        self,
        data: Tensor,
        steps: int,
        *,
        batch_size: int = 128,
        lr: float = 1e-3,
        progress: bool = True,
        seed: int | None = None,
        ema: EMA | None = None,
        callbacks: Sequence[Callable[[StepInfo], object]] = (),
        checkpoint: str | Path | None = None,
        resume: str | Path | None = None,
    ) -> list[float]:
        """Maximise the ELBO (``Trace_ELBO``) with Adam on minibatches, by
        :func:`~pyro_flowkit.inference.train` (the library's one loop: ``torchrun`` runs it
        data-parallel, checkpoints resume exactly).

        Arguments:
            data: the training set ``(N,) + event_shape``.
            steps: optimisation steps, one minibatch each.
            batch_size: rows per step (capped at ``N``).
            lr: Adam's learning rate.
            progress: show a tqdm progress bar.
            seed: passed to ``pyro.set_rng_seed`` first (``None``: the current RNG state); it
                also seeds the shuffling.
            ema: an :class:`~pyro_flowkit.inference.EMA` of the parameters, updated every step
                (evaluate with ``with ema.swapped(): ...``).
            callbacks, checkpoint, resume: as for :func:`~pyro_flowkit.inference.train`.

        Returns:
            The loss (negative ELBO) per example of every step.

        Raises:
            FloatingPointError: when the fit diverges (the loss or a parameter becomes NaN or
                infinite), with the step and the advice to lower ``lr``.
        """
        data = self._check_x(data, "data")
        check_count("steps", steps, minimum=0)
        check_count("batch_size", batch_size)
        check_positive("lr", lr)
        if seed is not None:
            pyro.set_rng_seed(seed)
        elbo, done = Trace_ELBO(), [0]

        def loss_fn(batch: Tensor) -> Tensor:
            # The model and guide are this class's own and their inputs are checked (_check_x),
            # so Pyro's argument validation could only catch a diverged fit (a NaN parameter, a
            # scale of 0), as a ValueError from whichever distribution meets it first; without
            # it the divergence reaches the loss, which the loop checks.
            with pyro.validation_enabled(False):
                return elbo.differentiable_loss(self.model, self.guide, batch) / len(batch)

        def count(info: StepInfo) -> None:
            done[0] = info.step

        try:
            history = train(
                loss_fn, data, params=self, steps=steps, batch_size=min(batch_size, len(data)),
                lr=lr, ema=ema, callbacks=[count, *callbacks], checkpoint=checkpoint,
                resume=resume, seed=0 if seed is None else seed, progress=progress,
                desc=type(self).__name__,
            )  # fmt: skip
        except FloatingPointError as error:
            raise FloatingPointError(self._divergence(str(error), lr)) from error
        except ValueError as error:  # e.g. a transform refusing a NaN input
            if self._parameters_finite():
                raise
            what = f"a parameter became NaN or infinite at step {done[0] + 1}"
            raise FloatingPointError(self._divergence(what, lr)) from error
        return list(history)

    def _parameters_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.parameters())

    def _divergence(self, what: str, lr: float) -> str:
        return (
            f"{type(self).__name__}.fit: {what}: the fit diverged; lower the learning rate "
            f"(lr={lr:g})"
        )

    # ---------------------------------------------------------------- evaluation
    def _log_weights(self, x: Tensor, num_samples: int) -> Tensor:
        r""":math:`\log p(x, z_k) - \log q(z_k \mid x)`, :math:`z_k \sim q`, shape ``(K, N)``."""
        q = self._posterior(x)
        z = q.rsample((num_samples,))  # the flows cache this pass: no network runs twice below
        return self._likelihood(z).log_prob(x) + self._prior(len(x)).log_prob(z) - q.log_prob(z)

    def _weight_chunks(self, x: Tensor, num_samples: int, batch_size: int) -> Iterator[Tensor]:
        check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)
        for start in range(0, num_samples, batch_size):
            lw = self._log_weights(x, min(batch_size, num_samples - start))
            if not bool(torch.isfinite(lw).all()):
                raise FloatingPointError(
                    "a log importance weight is not finite; the model or the encoder produced "
                    "NaN or infinity for these inputs"
                )
            yield lw

    @torch.no_grad()
    def elbo(self, x: Tensor, num_particles: int = 1, batch_size: int = 100) -> Tensor:
        r"""The ELBO of every row of ``x``, averaged over ``num_particles`` draws of
        :math:`z \sim q(z \mid x)` (drawn ``batch_size`` at a time); shape ``(N,)``."""
        x = self._check_x(x)
        chunks = self._weight_chunks(x, num_particles, batch_size)
        return sum(lw.sum(0) for lw in chunks) / num_particles

    @torch.no_grad()
    def iwae_log_likelihood(
        self, x: Tensor, num_samples: int = 1000, batch_size: int = 100
    ) -> Tensor:
        r"""The importance-weighted estimate of :math:`\log p(x)` for every row of ``x``.

        .. math:: \log \frac1K \sum_{k=1}^K \frac{p(x, z_k)}{q(z_k \mid x)},
           \qquad z_k \sim q(z \mid x),

        a lower bound in expectation that is at least the ELBO and tends to :math:`\log p(x)` as
        :math:`K` grows (Burda et al. 2016). The :math:`K` = ``num_samples`` draws are taken
        ``batch_size`` at a time (a running log-sum-exp), so memory stays bounded. Shape ``(N,)``.
        """
        x = self._check_x(x)
        total = None
        for lw in self._weight_chunks(x, num_samples, batch_size):
            part = lw.logsumexp(0)
            total = part if total is None else torch.logaddexp(total, part)
        return total - math.log(num_samples)

    def bits_per_dim(self, x: Tensor, num_samples: int = 1000, batch_size: int = 100) -> Tensor:
        r"""Bits/dim of dequantised data ``x`` in :math:`[0, 1)` (e.g.
        :func:`pyro_flowkit.data.dequantize` of integer levels), from
        :meth:`iwae_log_likelihood`: :func:`pyro_flowkit.metrics.bits_per_dim` with
        ``num_levels`` levels. Shape ``(N,)``."""
        if not self._has_density:
            raise ValueError(
                "likelihood: bits/dim need a density on [0, 1)^D; use 'dequantized', not "
                "'bernoulli'"
            )
        x = self._check_x(x)
        if not bool(((x >= 0) & (x < 1)).all()):
            raise ValueError("x: expected dequantised values in [0, 1)")
        log_p = self.iwae_log_likelihood(x, num_samples, batch_size)
        return bits_per_dim(log_p, self.event_shape.numel(), self.num_levels)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        r"""Decoder means :math:`E[x \mid z]` of :math:`z \sim \mathcal N(0, T^2 I)`, shape
        ``(n,) + event_shape``; :math:`T = 0` gives the mean at :math:`z = 0`."""
        check_count("n", n)
        if not (isinstance(temperature, int | float) and 0 <= temperature < math.inf):
            raise ValueError(f"temperature: expected a number >= 0, got {temperature!r}")
        like = self._like()
        z = torch.randn((n, *self.latent_shape), device=like.device, dtype=like.dtype)
        return self._mean(z * temperature)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The decoder mean at the centre of :math:`q(z \\mid x)`: the posterior's flow applied to
        its Gaussian's mean (no noise). Shape of ``x``."""
        q = self.posterior(x)
        z = q.base_dist.mean
        for t in q.transforms:
            z = t(z)
        return self._mean(z)


class VAE(_LatentVariableModel):
    r"""A variational autoencoder with MLP encoder and decoder, as a Pyro model and guide.

    The encoder maps the flattened :math:`x` to :math:`q_0(z \mid x) = \mathcal N(\mu(x),
    \operatorname{diag} \sigma(x)^2)` with :math:`\sigma = \operatorname{softplus}(\cdot) +
    10^{-4}`; with ``encoder="flow"`` it also gives a context :math:`h(x)` and the posterior is
    :math:`z = f_{h(x)}(z_0)`, :math:`z_0 \sim q_0`, for a conditional RealNVP :math:`f`
    (:func:`~pyro_flowkit.flows.conditional_realnvp`), so that :math:`\log q(z \mid x) = \log
    q_0(z_0 \mid x) - \log|\det \partial f_h / \partial z_0|`. The flow starts as the identity,
    i.e. as the Gaussian VAE. The decoder maps :math:`z` to

    - ``"bernoulli"``: logits :math:`\ell(z)`, :math:`x \sim \mathrm{Bernoulli}(\sigma(\ell))`
      per pixel. Fractional :math:`x \in [0, 1]` are scored by the same formula
      :math:`x \ell - \operatorname{softplus}(\ell)` (the cross-entropy, not a normalised
      density);
    - ``"gaussian"``: :math:`x \sim \mathcal N(m(z), \operatorname{diag} e^{2s})` with a learned
      per-pixel log-scale :math:`s`, for any real data;
    - ``"dequantized"``: the same Normal with mean :math:`\operatorname{sigmoid}(m(z))`, for
      dequantised data :math:`y \in [0, 1)` (:func:`pyro_flowkit.data.dequantize`); the mass the
      Normal puts outside :math:`[0, 1)` is wasted, so :meth:`bits_per_dim` is an upper bound.

    Arguments:
        event_shape: ``D``, ``(D,)`` or ``(C, H, W)``; data come as ``(N,) + event_shape``.
        latent_dim: size of :math:`z`.
        likelihood: ``"bernoulli"``, ``"gaussian"`` or ``"dequantized"``.
        encoder: ``"gaussian"`` or ``"flow"``.
        hidden_dims: hidden widths of the encoder's and the decoder's MLPs.
        flow_layers, flow_hidden_dims: couplings and their conditioners' widths (flow encoder).
        context_dim: size of the context :math:`h(x)` (flow encoder).
        num_levels: levels of the quantised data, for :meth:`bits_per_dim`.
        init_scale: the decoder's initial per-pixel noise scale (Gaussian likelihoods; default
            1 for ``"gaussian"``, 0.1 for ``"dequantized"``, whose pixels lie in [0, 1)).
        name: prefix of the Pyro sites (``f"{name}.z"``, ``f"{name}.x"``, plate
            ``f"{name}.data"``) and params.

    Example:
        >>> vae = VAE(64, latent_dim=4, hidden_dims=(32,), encoder="flow")
        >>> x = torch.rand(10, 64).round()
        >>> losses = vae.fit(x, 5, batch_size=5, progress=False)
        >>> vae.elbo(x).shape, vae.sample(3).shape
        (torch.Size([10]), torch.Size([3, 64]))
    """

    def __init__(
        self,
        event_shape: EventShape,
        latent_dim: int = 16,
        *,
        likelihood: str = "bernoulli",
        encoder: str = "gaussian",
        hidden_dims: Sequence[int] = (256, 256),
        flow_layers: int = 4,
        flow_hidden_dims: Sequence[int] = (64, 64),
        context_dim: int = 32,
        num_levels: int = 17,
        init_scale: float | None = None,
        name: str = "vae",
    ) -> None:
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder: expected one of {ENCODERS}, got {encoder!r}")
        check_count("latent_dim", latent_dim)
        super().__init__(event_shape, latent_dim, num_levels, name)
        self.likelihood, self.latent_dim = likelihood, latent_dim
        self._has_density = likelihood != "bernoulli"
        features = self.event_shape.numel()
        self.context_dim = 0
        self.flow = None
        if encoder == "flow":
            check_count("context_dim", context_dim)
            check_count("flow_layers", flow_layers)
            if latent_dim < 2:
                raise ValueError(f"latent_dim: the flow encoder needs 2 or more, got {latent_dim}")
            self.context_dim = context_dim
            self.flow = conditional_realnvp(
                latent_dim, context_dim, flow_layers, flow_hidden_dims, dropout=0.0
            )
        out = 2 * latent_dim + self.context_dim
        self.encoder_net = MLP(features, out, hidden_dims, zero_init=False)
        self.decoder_net = MLP(latent_dim, features, hidden_dims, zero_init=False)
        self.log_scale = None
        if likelihood != "bernoulli":
            if init_scale is None:  # dequantised pixels live in [0, 1): start at 0.1, not 1
                init_scale = 0.1 if likelihood == "dequantized" else 1.0
            check_positive("init_scale", init_scale)
            start = torch.full(self.event_shape, math.log(init_scale))
            self.log_scale = nn.Parameter(start)

    def _check_values(self, x: Tensor, name: str) -> None:
        if self.likelihood == "bernoulli" and not bool(((x >= 0) & (x <= 1)).all()):
            raise ValueError(f"{name}: expected values in [0, 1] for likelihood='bernoulli'")
        if self.likelihood == "dequantized" and not bool(((x >= 0) & (x < 1)).all()):
            raise ValueError(f"{name}: expected values in [0, 1) for likelihood='dequantized'")

    def _posterior(self, x: Tensor) -> FlowDistribution:
        out = self.encoder_net(x.flatten(1))
        return encoder_posterior(out, self.latent_dim, self.context_dim, self.flow)

    def _decode(self, z: Tensor) -> Tensor:
        return self.decoder_net(z).unflatten(-1, self.event_shape)

    def _likelihood(self, z: Tensor) -> dist.Distribution:
        k = len(self.event_shape)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=self._decode(z), validate_args=False).to_event(k)
        return dist.Normal(self._mean(z), self.log_scale.exp()).to_event(k)

    def _mean(self, z: Tensor) -> Tensor:
        out = self._decode(z)
        return out if self.likelihood == "gaussian" else torch.sigmoid(out)
