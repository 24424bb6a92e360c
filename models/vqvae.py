r"""VQ-VAE (van den Oord et al. 2017) as a Pyro model and guide.

An encoder maps an image to a grid of vectors :math:`z_e(x) \in \mathbb R^{h \times w \times d}`;
the guide puts a point mass on their nearest codes :math:`z_q(x)`
(:class:`~pyro_flowkit.nn.vq.VectorQuantizer`), the model draws the grid of codes from a prior
:math:`p(z_q)` (uniform while the autoencoder trains, then an autoregressive prior fitted to
the training codes) and the image from the decoder's likelihood. For a point mass the entropy
term vanishes, so

.. math:: \mathrm{ELBO}(x) = \log p(x \mid z_q(x)) + \log p(z_q(x)) \le \log p(x),

a bound that holds for any choice of :math:`z_q(x)` (:math:`p(x)` is a sum over codes with
nonnegative terms). Training adds the VQ terms (commitment, and the codebook term for a codebook
trained by gradient) as a factor of the guide, so ``SVI(model, guide, optim, Trace_ELBO())``
minimises :math:`-\mathrm{ELBO} + \beta \lVert z_e - \mathrm{sg}(z_q) \rVert^2 (+ \dots)`;
with the default EMA codebook the codebook moves in the guide's forward pass.

References:
    | Neural Discrete Representation Learning (van den Oord et al., 2017)
    | https://arxiv.org/abs/1711.00937
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule
from torch import Tensor, nn

from pyro_flowkit.inference.training import StepInfo, train
from pyro_flowkit.metrics import bits_per_dim
from pyro_flowkit.models._registration import register_params
from pyro_flowkit.models.code_prior import AutoregressiveCategorical, CodeGrid, uniform_codes
from pyro_flowkit.nn.made import CategoricalMADE
from pyro_flowkit.nn.vq import VectorQuantizer
from pyro_flowkit.validation import check_choice, check_count, check_positive

__all__ = ["VQVAE", "conv_decoder", "conv_encoder"]

LIKELIHOODS = ("dequantized", "gaussian")


def conv_encoder(
    in_channels: int, code_dim: int, hidden_channels: int = 64, downsamples: int = 1
) -> nn.Sequential:
    """3x3 conv, ``downsamples`` stride-2 4x4 convs (each halves H and W), 3x3 conv, 1x1 conv to
    ``code_dim`` channels; ReLU in between."""
    h = check_count("hidden_channels", hidden_channels)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, h, 3, padding=1), nn.ReLU()]
    for _ in range(check_count("downsamples", downsamples, minimum=0)):
        layers += [nn.Conv2d(h, h, 4, stride=2, padding=1), nn.ReLU()]
    layers += [nn.Conv2d(h, h, 3, padding=1), nn.ReLU(), nn.Conv2d(h, code_dim, 1)]
    return nn.Sequential(*layers)


def conv_decoder(
    out_channels: int, code_dim: int, hidden_channels: int = 64, downsamples: int = 1
) -> nn.Sequential:
    """The mirror of :func:`conv_encoder`: 3x3 conv, ``downsamples`` stride-2 4x4 transposed
    convs (each doubles H and W), 3x3 conv to ``out_channels``."""
    h = check_count("hidden_channels", hidden_channels)
    layers: list[nn.Module] = [nn.Conv2d(code_dim, h, 3, padding=1), nn.ReLU()]
    for _ in range(check_count("downsamples", downsamples, minimum=0)):
        layers += [nn.ConvTranspose2d(h, h, 4, stride=2, padding=1), nn.ReLU()]
    layers += [nn.Conv2d(h, out_channels, 3, padding=1)]
    return nn.Sequential(*layers)


class VQVAE(PyroModule):
    r"""A VQ-VAE on images ``(C, H, W)``: convolutional encoder to a grid of ``code_dim``-vectors,
    vector quantisation with ``num_codes`` codes, convolutional decoder.

    The Pyro sites (in the plate ``f"{name}.data"`` over rows): ``f"{name}.z"``, the grid of
    codes ``(h, w, code_dim)`` (guide: a ``Delta`` at the straight-through value, i.e. the
    nearest codes; model: :class:`~pyro_flowkit.models.code_prior.CodeGrid` of the prior), the
    guide's factor ``f"{name}.vq"`` (the VQ terms, so that ``Trace_ELBO`` trains the encoder to
    commit) and the observed ``f"{name}.x"``. The likelihood is a Normal per pixel with a
    learned scale, around ``sigmoid(decoder)`` for ``"dequantized"`` data in :math:`[0, 1)`
    (:func:`pyro_flowkit.data.dequantize`) or around ``decoder`` for ``"gaussian"``.

    Arguments:
        event_shape: ``(C, H, W)``.
        num_codes: codebook size :math:`K`.
        code_dim: size :math:`d` of each code.
        hidden_channels, downsamples: sizes of :func:`conv_encoder` / :func:`conv_decoder`
            (the grid is ``(H, W) / 2**downsamples``).
        encoder, decoder: modules to use instead (``(N, C, H, W) -> (N, d, h, w)`` and back).
        commitment, decay, restart_after: of the :class:`~pyro_flowkit.nn.vq.VectorQuantizer`
            (``decay=None``: the codebook is trained by gradient).
        likelihood: ``"dequantized"`` or ``"gaussian"``.
        init_scale: the likelihood's initial scale (default 0.1 for dequantised pixels, else 1).
        num_levels: levels of the quantised data, for :meth:`bits_per_dim`.
        name: prefix of the Pyro sites and params.

    References:
        | Neural Discrete Representation Learning (van den Oord et al., 2017)
        | https://arxiv.org/abs/1711.00937

    Example:
        >>> vq = VQVAE((1, 8, 8), num_codes=16, code_dim=4, hidden_channels=16)
        >>> x = torch.rand(32, 1, 8, 8)
        >>> losses = vq.fit(x, 3, batch_size=16, progress=False)
        >>> vq.encode(x).shape, vq.reconstruct(x).shape
        (torch.Size([32, 4, 4]), torch.Size([32, 1, 8, 8]))
        >>> prior_losses = vq.fit_prior(x, 3, batch_size=16, hidden_dims=(16,), progress=False)
        >>> vq.sample(5).shape, vq.bits_per_dim(x).shape
        (torch.Size([5, 1, 8, 8]), torch.Size([32]))
    """

    def __init__(
        self,
        event_shape: tuple[int, int, int],
        num_codes: int = 64,
        code_dim: int = 16,
        *,
        hidden_channels: int = 64,
        downsamples: int = 1,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        commitment: float = 0.25,
        decay: float | None = 0.99,
        restart_after: int = 100,
        likelihood: str = "dequantized",
        init_scale: float | None = None,
        num_levels: int = 17,
        name: str = "vqvae",
    ) -> None:
        if not isinstance(name, str) or not name or "$$$" in name:
            raise ValueError(f"name: expected a non-empty string without '$$$', got {name!r}")
        super().__init__(name)
        shape = tuple(event_shape) if isinstance(event_shape, Sequence) else (event_shape,)
        if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(f"event_shape: expected (C, H, W), got {event_shape!r}")
        self.event_shape = torch.Size(shape)
        self.name = name
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        self.num_levels = check_count("num_levels", num_levels)
        self.num_codes, self.code_dim = num_codes, code_dim
        self.quantizer = VectorQuantizer(
            num_codes, code_dim, commitment=commitment, decay=decay, restart_after=restart_after
        )
        c = shape[0]
        self.encoder = encoder or conv_encoder(c, code_dim, hidden_channels, downsamples)
        self.decoder = decoder or conv_decoder(c, code_dim, hidden_channels, downsamples)
        if init_scale is None:
            init_scale = 0.1 if likelihood == "dequantized" else 1.0
        start = math.log(check_positive("init_scale", init_scale))
        self.log_scale = nn.Parameter(torch.full(self.event_shape, start))
        self.prior: CategoricalMADE | None = None
        with torch.no_grad():
            grid = self.encoder(torch.zeros(1, *shape))
        if grid.dim() != 4 or grid.shape[1] != code_dim:
            raise ValueError(
                f"encoder: expected an output (N, {code_dim}, h, w), got {tuple(grid.shape)}"
            )
        self.grid = tuple(grid.shape[2:])

    # ---------------------------------------------------------------- helpers
    @property
    def num_positions(self) -> int:
        """:math:`M = h w`, the codes per image."""
        return math.prod(self.grid)

    def _like(self) -> Tensor:
        return self.log_scale

    def _check_x(self, x: Tensor, name: str = "x") -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{name}: expected a floating tensor, got {kind}")
        if x.dim() != 4 or x.shape[1:] != self.event_shape or not len(x):
            shape = ", ".join(map(str, self.event_shape))
            raise ValueError(f"{name}: expected shape (N, {shape}), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: expected finite values, got NaN or infinity")
        if self.likelihood == "dequantized" and not bool(((x >= 0) & (x < 1)).all()):
            raise ValueError(f"{name}: expected values in [0, 1) for likelihood='dequantized'")
        return x.to(self._like().dtype)

    def _trained(self) -> list[nn.Module | Tensor]:
        return [self.encoder, self.decoder, self.quantizer, self.log_scale]

    @contextmanager
    def _frozen(self) -> Iterator[None]:
        """The quantiser in evaluation mode (its codebook does not move)."""
        was = self.quantizer.training
        self.quantizer.eval()
        try:
            yield
        finally:
            self.quantizer.train(was)

    def _grid(self, x: Tensor) -> Tensor:
        """Encoder outputs as a grid ``(N, h, w, d)``."""
        return self.encoder(x).permute(0, 2, 3, 1)

    def _decode_grid(self, z: Tensor) -> Tensor:
        return self.decoder(z.permute(0, 3, 1, 2))

    def _likelihood(self, z: Tensor) -> dist.Distribution:
        return dist.Normal(self._mean(z), self.log_scale.exp()).to_event(3)

    def _mean(self, z: Tensor) -> Tensor:
        out = self._decode_grid(z)
        return torch.sigmoid(out) if self.likelihood == "dequantized" else out

    def index_prior(self) -> dist.TorchDistribution:
        """The prior over the code indices ``(M,)``: uniform until :meth:`fit_prior`, then the
        fitted autoregressive prior."""
        if self.prior is None:
            return uniform_codes(self.num_positions, self.num_codes, self._like())
        return AutoregressiveCategorical(self.prior)

    # ---------------------------------------------------------------- Pyro
    def model(self, x: Tensor, subsample_size: int | None = None) -> None:
        r"""``f"{name}.z"`` :math:`\sim p(z_q)` over the code grid, ``f"{name}.x"``
        :math:`\sim p(x \mid z_q)` observed, in the plate ``f"{name}.data"``."""
        x = self._check_x(x)
        register_params(self, self.name)
        prior = CodeGrid(self.index_prior(), self.quantizer, self.grid)
        with pyro.plate(f"{self.name}.data", len(x), subsample_size=subsample_size) as idx:
            batch = x[idx]
            z = pyro.sample(f"{self.name}.z", prior.expand((len(batch),)))
            pyro.sample(f"{self.name}.x", self._likelihood(z), obs=batch)

    def guide(self, x: Tensor, subsample_size: int | None = None) -> None:
        r"""``f"{name}.z"`` as a point mass on the nearest codes (the straight-through value),
        and the factor ``f"{name}.vq"`` carrying the VQ terms of each row."""
        x = self._check_x(x)
        register_params(self, self.name)
        with pyro.plate(f"{self.name}.data", len(x), subsample_size=subsample_size) as idx:
            out = self.quantizer(self._grid(x[idx]), reduction="none")
            pyro.sample(f"{self.name}.z", dist.Delta(out.value, event_dim=3))
            pyro.factor(f"{self.name}.vq", out.loss.flatten(1).sum(-1), has_rsample=True)

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
        callbacks: Sequence[Callable[[StepInfo], object]] = (),
        checkpoint: str | Path | None = None,
        resume: str | Path | None = None,
    ) -> list[float]:
        """Train encoder, decoder, likelihood scale (and a gradient-trained codebook) by
        ``Trace_ELBO`` with Adam through :func:`~pyro_flowkit.inference.train` (the EMA codebook
        moves in the guide). Returns the loss (negative ELBO plus the VQ terms) per example of
        every step."""
        data = self._check_x(data, "data")
        check_count("steps", steps, minimum=0)
        check_count("batch_size", batch_size)
        check_positive("lr", lr)
        if seed is not None:
            pyro.set_rng_seed(seed)
        elbo = Trace_ELBO()

        def loss_fn(batch: Tensor) -> Tensor:
            return elbo.differentiable_loss(self.model, self.guide, batch) / len(batch)

        self.train()
        history = train(
            loss_fn, data, params=self._trained(), steps=steps,
            batch_size=min(batch_size, len(data)), lr=lr, callbacks=callbacks,
            checkpoint=checkpoint, resume=resume, seed=0 if seed is None else seed,
            progress=progress, desc="VQVAE",
        )  # fmt: skip
        return list(history)

    def fit_prior(
        self,
        data: Tensor,
        steps: int,
        *,
        hidden_dims: Sequence[int] = (256,),
        batch_size: int = 128,
        lr: float = 1e-3,
        progress: bool = True,
        seed: int | None = None,
    ) -> list[float]:
        r"""Fit an autoregressive prior (:class:`~pyro_flowkit.nn.made.CategoricalMADE`) to the
        codes of ``data``: maximum likelihood, i.e. maximising the ELBO's only term that
        depends on the prior, :math:`\log p(z_q(x))`, with the autoencoder fixed. Returns the
        negative log-likelihood (nats per image) of every step."""
        data = self._check_x(data, "data")
        if seed is not None:
            pyro.set_rng_seed(seed)
        codes = self.encode(data).flatten(1)
        like = self._like()
        made = CategoricalMADE(self.num_positions, self.num_codes, hidden_dims)
        self.prior = made.to(device=like.device, dtype=like.dtype)
        prior = AutoregressiveCategorical(self.prior)

        def loss_fn(batch: Tensor) -> Tensor:
            return -prior.log_prob(batch).mean()

        history = train(
            loss_fn, codes, params=self.prior, steps=steps,
            batch_size=min(batch_size, len(codes)), lr=lr, seed=0 if seed is None else seed,
            progress=progress, desc="VQVAE prior",
        )  # fmt: skip
        return list(history)

    # ---------------------------------------------------------------- use
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """The code indices of ``x``: shape ``(N, h, w)``."""
        x = self._check_x(x)
        return self.quantizer.nearest(self._grid(x))

    @torch.no_grad()
    def decode(self, indices: Tensor) -> Tensor:
        """Decoder means of code grids ``(N, h, w)``: shape ``(N, C, H, W)``."""
        if indices.shape[1:] != self.grid or indices.dim() != 3:
            raise ValueError(
                f"indices: expected shape (N, {', '.join(map(str, self.grid))}), got "
                f"{tuple(indices.shape)}"
            )
        if bool(((indices < 0) | (indices >= self.num_codes)).any()):
            raise ValueError(f"indices: expected values in 0..{self.num_codes - 1}")
        return self._mean(self.quantizer.lookup(indices))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """``decode(encode(x))``."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Decoder means of ``n`` code grids drawn from the prior: ``(n, C, H, W)``."""
        codes = self.index_prior().sample((check_count("n", n),))
        return self.decode(codes.unflatten(-1, self.grid))

    @torch.no_grad()
    def elbo(self, x: Tensor) -> Tensor:
        r""":math:`\log p(x \mid z_q(x)) + \log p(z_q(x))` of every row (nats), a lower bound on
        :math:`\log p(x)`; shape ``(N,)``."""
        x = self._check_x(x)
        with self._frozen():
            z = self.quantizer(self._grid(x)).value
        codes = self.quantizer.nearest(z).flatten(1)
        return self._likelihood(z).log_prob(x) + self.index_prior().log_prob(codes)

    def bits_per_dim(self, x: Tensor) -> Tensor:
        """Bits/dim of dequantised data in :math:`[0, 1)` from :meth:`elbo` (an upper bound),
        with ``num_levels`` levels; shape ``(N,)``."""
        if self.likelihood != "dequantized":
            raise ValueError("likelihood: bits/dim need likelihood='dequantized'")
        return bits_per_dim(self.elbo(x), self.event_shape.numel(), self.num_levels)

    @torch.no_grad()
    def perplexity(self, x: Tensor) -> float:
        """:math:`\\exp` of the entropy of code use over all codes of ``x`` (1 to ``num_codes``)."""
        counts = torch.bincount(self.encode(x).flatten(), minlength=self.num_codes)
        p = counts.double() / counts.sum()
        return math.exp(-float(torch.special.xlogy(p, p).sum()))
