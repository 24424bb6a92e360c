r"""A VAE with categorical latents whose ELBO gradient comes from a choice of estimators:
Gumbel-softmax, straight-through Gumbel, REINFORCE with a leave-one-out baseline, or exact
enumeration.

The model: :math:`L` independent latents :math:`z_l \sim \mathrm{Categorical}(1/K)` (one-hot),
:math:`x \mid z \sim \mathrm{Bernoulli}(\sigma(\mathrm{dec}(z_1, \dots, z_L)))`; the guide:
:math:`q(z_l \mid x) = \mathrm{Categorical}(\operatorname{softmax}(\mathrm{enc}(x)_l))`. The
objective is the discrete ELBO

.. math:: \mathrm{ELBO}(x) = \mathbb E_{q(z \mid x)}[\log p(x \mid z)]
   - \sum_l \mathrm{KL}\bigl(q(z_l \mid x) \Vert p(z_l)\bigr),

whose KL is exact for every estimator, so the estimators differ only in how they estimate
the gradient of the expected log-likelihood:

- ``"gumbel_softmax"``: the decoder sees the relaxed sample
  :math:`\operatorname{softmax}((\ell + g) / \tau)` (Pyro's ``RelaxedOneHotCategorical``,
  :class:`~pyro_flowkit.inference.gumbel.GumbelSoftmax`; ``TraceMeanField_ELBO``): biased, the
  bias falling and the variance growing as :math:`\tau \to 0`;
- ``"straight_through"``: the decoder sees the one-hot Gumbel-max sample, the gradient is the
  relaxed one (``RelaxedOneHotCategoricalStraightThrough``);
- ``"reinforce"``: score-function gradients with a leave-one-out baseline over
  ``num_particles`` draws (:class:`~pyro_flowkit.inference.reinforce.ReinforceLOO_ELBO`):
  unbiased;
- ``"enumerate"``: the exact gradient, summing over all :math:`K^L` configurations
  (``TraceEnum_ELBO`` with the guide's sites enumerated in parallel).

References:
    | Categorical Reparameterization with Gumbel-Softmax (Jang, Gu & Poole, 2017)
    | https://arxiv.org/abs/1611.01144
    | The Concrete Distribution (Maddison, Mnih & Teh, 2017) https://arxiv.org/abs/1611.00712
    | Buy 4 REINFORCE Samples, Get a Baseline for Free! (Kool et al., 2019)
    | https://openreview.net/forum?id=r1lgTGL5DE
    | Importance Weighted Autoencoders (Burda et al., 2016) https://arxiv.org/abs/1509.00519
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from pyro.nn import PyroModule
from torch import Tensor

from pyro_flowkit.inference.gumbel import (
    GumbelSoftmax,
    GumbelSoftmaxStraightThrough,
    gumbel_softmax_temperature,
)
from pyro_flowkit.inference.reinforce import ReinforceLOO_ELBO
from pyro_flowkit.inference.training import StepInfo, train
from pyro_flowkit.models._registration import register_params
from pyro_flowkit.nn.mlp import MLP
from pyro_flowkit.validation import check_choice, check_count, check_positive

__all__ = ["ESTIMATORS", "CategoricalVAE"]

ESTIMATORS = ("gumbel_softmax", "straight_through", "reinforce", "enumerate")
Temperature = float | Callable[[int], float]


class CategoricalVAE(PyroModule):
    r"""A VAE with ``num_latents`` one-hot latents of ``num_classes`` values, MLP encoder and
    decoder and a Bernoulli likelihood, trained with the chosen gradient ``estimator``.

    Pyro sites: ``f"{name}.z{l}"`` for ``l < num_latents`` and the observed ``f"{name}.x"``, in
    the plate ``f"{name}.data"``. :meth:`objective` gives the ``(model, guide, elbo)`` of any
    estimator (for :func:`~pyro_flowkit.inference.train`,
    :func:`~pyro_flowkit.inference.estimators.gradient_error` or ``SVI``).

    Arguments:
        event_shape: ``D``, ``(D,)`` or ``(C, H, W)``; data in :math:`[0, 1]` (binarised).
        num_latents: :math:`L`.
        num_classes: :math:`K`.
        estimator: one of ``"gumbel_softmax"``, ``"straight_through"``, ``"reinforce"``,
            ``"enumerate"``.
        hidden_dims: hidden widths of the encoder's and the decoder's MLPs.
        temperature: :math:`\tau` of the Gumbel estimators, or a schedule ``step -> tau``
            (default Su's :math:`0.01 + 0.99 \times 0.999^t`, :func:`~pyro_flowkit.inference.
            gumbel.gumbel_softmax_temperature`); :meth:`fit` advances the step.
        num_particles: draws per step (at least 2 for ``"reinforce"``, default 4 there and 1
            for the Gumbel estimators).
        max_enumerate: the most configurations :math:`K^L` summed over (``"enumerate"``, and
            exact :meth:`elbo` / :meth:`log_likelihood`).
        name: prefix of the Pyro sites and params.

    Example:
        >>> vae = CategoricalVAE(16, num_latents=2, num_classes=3, hidden_dims=(8,),
        ...                      estimator="reinforce")
        >>> x = torch.rand(20, 16).round()
        >>> losses = vae.fit(x, 3, batch_size=10, progress=False)
        >>> vae.exact, vae.elbo(x).shape, vae.log_likelihood(x).shape
        (True, torch.Size([20]), torch.Size([20]))
    """

    def __init__(
        self,
        event_shape: int | tuple[int, ...],
        num_latents: int = 20,
        num_classes: int = 10,
        *,
        estimator: str = "gumbel_softmax",
        hidden_dims: Sequence[int] = (256,),
        temperature: Temperature = gumbel_softmax_temperature,
        num_particles: int | None = None,
        max_enumerate: int = 4096,
        name: str = "catvae",
    ) -> None:
        if not isinstance(name, str) or not name or "$$$" in name:
            raise ValueError(f"name: expected a non-empty string without '$$$', got {name!r}")
        super().__init__(name)
        self.name = name
        shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        self.event_shape = torch.Size(shape)
        self.num_latents = check_count("num_latents", num_latents)
        self.num_classes = check_count("num_classes", num_classes)
        self.max_enumerate = check_count("max_enumerate", max_enumerate)
        self.estimator = self._check_estimator(estimator)
        if not callable(temperature):
            check_positive("temperature", temperature)
        self.temperature = temperature
        default = 4 if estimator == "reinforce" else 1
        self.num_particles = check_count("num_particles", num_particles or default)
        self.step = 0
        features = self.event_shape.numel()
        width = num_latents * num_classes
        self.encoder = MLP(features, width, hidden_dims, zero_init=False)
        self.decoder = MLP(width, features, hidden_dims, zero_init=False)

    # ---------------------------------------------------------------- checks
    @property
    def num_configurations(self) -> int:
        """:math:`K^L`."""
        return self.num_classes**self.num_latents

    @property
    def exact(self) -> bool:
        """Whether :meth:`elbo` and :meth:`log_likelihood` sum over every configuration."""
        return self.num_configurations <= self.max_enumerate

    def _check_estimator(self, estimator: str) -> str:
        check_choice("estimator", estimator, ESTIMATORS)
        if estimator == "enumerate" and not self.exact:
            raise ValueError(
                f"estimator: 'enumerate' sums over num_classes ** num_latents = "
                f"{self.num_classes}**{self.num_latents} configurations, more than "
                f"max_enumerate={self.max_enumerate}"
            )
        return estimator

    def current_temperature(self) -> float:
        """:math:`\\tau` at the current step."""
        t = self.temperature
        return check_positive("temperature", t(self.step) if callable(t) else t)

    def _check_x(self, x: Tensor, name: str = "x") -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{name}: expected a floating tensor, got {kind}")
        if x.shape[1:] != self.event_shape or x.dim() != len(self.event_shape) + 1 or not len(x):
            shape = ", ".join(map(str, self.event_shape))
            raise ValueError(f"{name}: expected shape (N, {shape}), got {tuple(x.shape)}")
        if not bool(((x >= 0) & (x <= 1)).all()):
            raise ValueError(f"{name}: expected values in [0, 1]")
        return x.flatten(1).to(self.decoder.layers[0].weight.dtype)

    # ---------------------------------------------------------------- networks
    def _logits(self, x: Tensor) -> Tensor:
        """The encoder's logits ``(N, L, K)`` of flattened ``x``."""
        return self.encoder(x).unflatten(-1, (self.num_latents, self.num_classes))

    def _decoder_logits(self, zs: Sequence[Tensor]) -> Tensor:
        return self.decoder(torch.cat(torch.broadcast_tensors(*zs), -1))

    def _prior(self) -> dist.OneHotCategorical:
        w = self.decoder.layers[0].weight
        # validate_args=False: the Gumbel-softmax guide hands the prior relaxed values (their
        # density is not used: TraceMeanField_ELBO takes the registered discrete KL instead)
        return dist.OneHotCategorical(logits=w.new_zeros(self.num_classes), validate_args=False)

    # ---------------------------------------------------------------- Pyro
    def model(self, x: Tensor, subsample_size: int | None = None) -> None:
        r""":math:`z_l \sim \mathrm{OneHotCategorical}(1/K)`, ``f"{name}.x"`` observed."""
        x = self._check_x(x)
        register_params(self, self.name)
        with pyro.plate(f"{self.name}.data", len(x), subsample_size=subsample_size) as idx:
            prior = self._prior()
            zs = [pyro.sample(f"{self.name}.z{i}", prior) for i in range(self.num_latents)]
            likelihood = dist.Bernoulli(logits=self._decoder_logits(zs), validate_args=False)
            pyro.sample(f"{self.name}.x", likelihood.to_event(1), obs=x[idx])

    def guide(
        self,
        x: Tensor,
        subsample_size: int | None = None,
        *,
        estimator: str | None = None,
        temperature: float | None = None,
    ) -> None:
        """:math:`q(z_l \\mid x)` in the form the estimator (default: the model's) needs."""
        estimator = self.estimator if estimator is None else self._check_estimator(estimator)
        x = self._check_x(x)
        register_params(self, self.name)
        with pyro.plate(f"{self.name}.data", len(x), subsample_size=subsample_size) as idx:
            logits = self._logits(x[idx])
            for i in range(self.num_latents):
                q, infer = self._posterior(logits[:, i], estimator, temperature)
                pyro.sample(f"{self.name}.z{i}", q, infer=infer)

    def _posterior(
        self, logits: Tensor, estimator: str, temperature: float | None
    ) -> tuple[dist.Distribution, dict]:
        if estimator in ("gumbel_softmax", "straight_through"):
            tau = self.current_temperature() if temperature is None else temperature
            tau = logits.new_tensor(check_positive("temperature", tau))
            kind = GumbelSoftmax if estimator == "gumbel_softmax" else GumbelSoftmaxStraightThrough
            # validate_args=False: in float32 a sample at a low temperature can miss the simplex
            # by more than its tolerance; the guide's own draws need no checking
            return kind(tau, logits=logits, validate_args=False), {}
        infer = {"enumerate": "parallel"} if estimator == "enumerate" else {}
        return dist.OneHotCategorical(logits=logits), infer

    def make_elbo(self, estimator: str | None = None, num_particles: int | None = None) -> ELBO:
        """The Pyro ELBO of an estimator: ``TraceMeanField_ELBO`` (Gumbel), ``ReinforceLOO_ELBO``
        or ``TraceEnum_ELBO``."""
        estimator = self.estimator if estimator is None else self._check_estimator(estimator)
        k = (
            self.num_particles
            if num_particles is None
            else check_count("num_particles", num_particles)
        )
        if estimator == "enumerate":
            return TraceEnum_ELBO(max_plate_nesting=1)
        if estimator == "reinforce":
            return ReinforceLOO_ELBO(max(k, 2), plate=f"{self.name}.data", max_plate_nesting=1)
        return TraceMeanField_ELBO(num_particles=k, vectorize_particles=True, max_plate_nesting=1)

    def objective(
        self,
        estimator: str | None = None,
        temperature: float | None = None,
        num_particles: int | None = None,
    ) -> tuple[Callable, Callable, ELBO]:
        """``(model, guide, elbo)`` of ``estimator`` (default: the model's) at ``temperature``
        (default: the current one)."""
        estimator = self.estimator if estimator is None else self._check_estimator(estimator)
        guide = partial(self.guide, estimator=estimator, temperature=temperature)
        return self.model, guide, self.make_elbo(estimator, num_particles)

    # ---------------------------------------------------------------- fitting
    def fit(
        self,
        data: Tensor,
        steps: int,
        *,
        batch_size: int = 100,
        lr: float = 1e-3,
        progress: bool = True,
        seed: int | None = None,
        callbacks: Sequence[Callable[[StepInfo], object]] = (),
    ) -> list[float]:
        """Minimise the negative ELBO (per example) with Adam through
        :func:`~pyro_flowkit.inference.train`, advancing the temperature schedule every step.
        Returns the loss of every step (for ``"reinforce"``, the surrogate's value; for the
        others, the negative ELBO estimate)."""
        data = self._check_x(data, "data").reshape(len(data), *self.event_shape)
        check_count("steps", steps, minimum=0)
        if seed is not None:
            pyro.set_rng_seed(seed)
        model, guide, elbo = self.objective()

        def loss_fn(batch: Tensor) -> Tensor:
            return elbo.differentiable_loss(model, guide, batch) / len(batch)

        def advance(info: StepInfo) -> None:
            self.step += 1

        history = train(
            loss_fn, data, params=self, steps=steps, batch_size=min(batch_size, len(data)),
            lr=check_positive("lr", lr), callbacks=[advance, *callbacks],
            seed=0 if seed is None else seed, progress=progress, desc="CategoricalVAE",
        )  # fmt: skip
        return list(history)

    # ---------------------------------------------------------------- evaluation
    def _configurations(self, chunk: int) -> Iterator[Tensor]:
        """All :math:`K^L` index tuples ``(m, L)``, ``chunk`` at a time."""
        product = itertools.product(range(self.num_classes), repeat=self.num_latents)
        device = self.decoder.layers[0].weight.device
        while rows := list(itertools.islice(product, chunk)):
            yield torch.tensor(rows, device=device)

    def _log_joint_and_q(self, x: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\log p(x, z)` and :math:`\log q(z \mid x)` for index tuples ``codes``
        ``(..., L)`` broadcast against the rows of ``x``: shapes ``codes.shape[:-1]``."""
        onehot = F.one_hot(codes, self.num_classes).to(x.dtype)
        logits = self.decoder(onehot.flatten(-2))
        log_lik = dist.Bernoulli(logits=logits, validate_args=False).log_prob(x).sum(-1)
        log_prior = -self.num_latents * math.log(self.num_classes)
        log_q = (onehot * self._logits(x).log_softmax(-1)).sum((-1, -2))
        return log_lik + log_prior, log_q

    def _exact_terms(self, x: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(log p(x, z), log q(z | x))`` over every configuration, shapes ``(m, N)``."""
        for codes in self._configurations(max(1, 2**16 // len(x))):
            yield self._log_joint_and_q(x, codes[:, None, :])

    @torch.no_grad()
    def elbo(self, x: Tensor, num_samples: int = 1000) -> Tensor:
        r"""The ELBO of every row (nats): exact (a sum over the :math:`K^L` configurations) when
        :attr:`exact`, else the expected log-likelihood from ``num_samples`` draws of
        :math:`q` minus the exact KL. Shape ``(N,)``."""
        x = self._check_x(x)
        if self.exact:
            total = torch.zeros(len(x), dtype=x.dtype, device=x.device)
            for log_joint, log_q in self._exact_terms(x):
                total += (log_q.exp() * (log_joint - log_q)).sum(0)
            return total
        logits = self._logits(x).log_softmax(-1)
        kl = (logits.exp() * (logits + math.log(self.num_classes))).sum((-1, -2))
        codes = torch.distributions.Categorical(logits=logits).sample((num_samples,))
        log_joint, _ = self._log_joint_and_q(x, codes)
        log_prior = -self.num_latents * math.log(self.num_classes)
        return (log_joint - log_prior).mean(0) - kl

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, num_samples: int = 1000) -> Tensor:
        r""":math:`\log p(x)` of every row: exact (log-sum-exp over every configuration) when
        :attr:`exact`, else the IWAE bound :math:`\log \frac1S \sum_s p(x, z_s) / q(z_s \mid x)`
        with ``num_samples`` draws. Shape ``(N,)``."""
        x = self._check_x(x)
        if self.exact:
            parts = [log_joint.logsumexp(0) for log_joint, _ in self._exact_terms(x)]
            return torch.stack(parts).logsumexp(0)
        logits = self._logits(x)
        codes = torch.distributions.Categorical(logits=logits).sample((num_samples,))
        log_joint, log_q = self._log_joint_and_q(x, codes)
        return (log_joint - log_q).logsumexp(0) - math.log(num_samples)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder means at the most probable code of every latent; shape of ``x``."""
        flat = self._check_x(x)
        codes = self._logits(flat).argmax(-1)
        return self._mean(codes).reshape(x.shape)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Decoder means of ``n`` draws from the prior: ``(n,) + event_shape``."""
        device = self.decoder.layers[0].weight.device
        codes = torch.randint(self.num_classes, (check_count("n", n), self.num_latents),
                              device=device)  # fmt: skip
        return self._mean(codes).reshape(n, *self.event_shape)

    def _mean(self, codes: Tensor) -> Tensor:
        onehot = F.one_hot(codes, self.num_classes).to(self.decoder.layers[0].weight.dtype)
        return torch.sigmoid(self.decoder(onehot.flatten(-2)))
