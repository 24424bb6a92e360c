r"""Normalizing flows as variational guides: a global flow posterior that honours Pyro's
initialisation, and amortised conditional-flow posteriors for local latents. Whether a fitted
guide can be trusted (PSIS :math:`\hat k`, ArviZ ``InferenceData``) is in
:mod:`pyro_flowkit.diagnostics`.

References:
    Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015),
    https://arxiv.org/abs/1505.05770
    Yes, but Did It Work?: Evaluating Variational Inference (Yao et al., 2018),
    https://arxiv.org/abs/1802.02538
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.transforms import AffineTransform
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median
from pyro.nn import PyroModule, PyroParam
from torch import Tensor, nn
from torch.distributions import biject_to

from pyro_flowkit import diagnostics, flows
from pyro_flowkit._deprecation import deprecated_alias
from pyro_flowkit.distributions import FlowDistribution
from pyro_flowkit.validation import check_count, check_positive

__all__ = [
    "AmortizedFlowGuide",
    "AutoFlow",
    "amortized_posterior",
    "encoder_posterior",
]

FLOWS = ("realnvp", "nice", "iresnet")
MIN_SCALE = 1e-4  # floor of an encoder's posterior scale


def _check_flow(flow: object) -> None:
    if not (flow in FLOWS if isinstance(flow, str) else callable(flow)):
        raise ValueError(f"flow: expected one of {FLOWS} or a callable, got {flow!r}")


def _build_flow(flow: str | Callable[[int], nn.Module], dim: int, **flow_kw: object) -> nn.Module:
    """A flow on ``dim``-vectors that starts as the identity (dropout off: a guide must be a fixed
    map so that its log-density is that of its samples); ``flow`` passed :func:`_check_flow`."""
    if not isinstance(flow, str):
        return flow(dim, **flow_kw)
    if dim < 2:
        raise ValueError(
            f"flow: a {flow} flow needs at least 2 latent dimensions, the model has {dim}; "
            "use AutoNormal for one dimension"
        )
    if flow == "iresnet":
        kw = {"logdet": "exact" if dim <= 32 else "roulette", "direction": "sample", **flow_kw}
        return flows.iresnet(dim, **kw)
    kw = {"hidden_dims": (64, 64), "dropout": 0.0, **flow_kw}
    return (flows.realnvp if flow == "realnvp" else flows.nice)(dim, **kw)


class AutoFlow(AutoContinuous):
    r"""A normalizing-flow posterior over the model's unconstrained latent vector.

    .. math:: z = \mu + \sigma \odot F(u), \qquad u \sim \mathcal N(0, I),

    with :math:`F` one of this library's flows, which starts as the identity, and :math:`\mu`
    initialised by ``init_loc_fn`` (unlike Pyro's ``AutoIAFNormal``, which starts at the origin).
    So SVI starts from ``N(init, init_scale^2 I)``, the start of ``AutoNormal``, and the flow
    bends the posterior from there. Works with ``SVI``, ``Predictive``, and ``median()`` /
    ``quantiles()``, which are per-coordinate quantiles of the unconstrained latent vector (exact
    for ``u = 0`` when :math:`F` is coordinate-wise monotone, else estimated from
    ``num_quantile_samples`` draws) mapped to each site's support.

    Arguments:
        model: the Pyro model.
        flow: ``"realnvp"`` (default), ``"nice"``, ``"iresnet"`` (``direction="sample"``, exact
            log-det up to 32 dimensions) or a callable ``dim -> TransformModule`` (base to latent).
        init_loc_fn: Pyro's per-site initialisation (default ``init_to_median``).
        init_scale: the initial :math:`\sigma`.
        num_quantile_samples: draws behind ``median()`` and ``quantiles()``.
        **flow_kw: passed to the flow builder (e.g. ``num_layers``, ``hidden_dims``).

    Example:
        >>> def model():
        ...     pyro.sample("a", dist.Normal(0.0, 1.0))
        ...     pyro.sample("b", dist.LogNormal(0.0, 1.0))
        >>> guide = AutoFlow(model, num_layers=2, hidden_dims=(8,))
        >>> sorted(guide().keys())
        ['a', 'b']
    """

    def __init__(
        self,
        model: Callable,
        flow: str | Callable[[int], nn.Module] = "realnvp",
        *,
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
        num_quantile_samples: int = 4000,
        **flow_kw: object,
    ) -> None:
        check_positive("init_scale", init_scale)
        check_count("num_quantile_samples", num_quantile_samples)
        _check_flow(flow)
        self._flow_spec, self._flow_kw = flow, flow_kw
        self._init_scale, self._num_quantile_samples = init_scale, num_quantile_samples
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args: object, **kwargs: object) -> None:
        super()._setup_prototype(*args, **kwargs)
        loc = self._init_loc()
        self.loc = nn.Parameter(loc)
        self.scale = PyroParam(
            torch.full_like(loc, self._init_scale), constraint=constraints.softplus_positive
        )
        self.flow = _build_flow(self._flow_spec, self.latent_dim, **self._flow_kw).to(loc)

    def get_base_dist(self) -> dist.Distribution:
        zero = self.loc.new_zeros(self.latent_dim)
        return dist.Normal(zero, torch.ones_like(zero)).to_event(1)

    def get_transform(self, *args: object, **kwargs: object) -> AffineTransform:
        # cached, so scoring the guide's own sample hands the flow the very tensor it produced
        # and the flow's cache answers: no inverse pass (an iterative one for iresnet)
        return AffineTransform(self.loc, self.scale, event_dim=1, cache_size=1)

    def get_posterior(self, *args: object, **kwargs: object) -> dist.TransformedDistribution:
        """:math:`q(z)`: the base through the flow, then the affine map."""
        transform = self.get_transform(*args, **kwargs)
        return dist.TransformedDistribution(self.get_base_dist(), [self.flow, transform])

    def _loc_scale(self, *args: object, **kwargs: object) -> tuple[Tensor, Tensor]:
        raise NotImplementedError("AutoFlow has no closed-form loc/scale; use quantiles()")

    @torch.no_grad()
    def median(self, *args: object, **kwargs: object) -> dict[str, Tensor]:
        """The per-coordinate posterior median of every latent site (see :meth:`quantiles`)."""
        return {k: v[0] for k, v in self.quantiles([0.5], *args, **kwargs).items()}

    @torch.no_grad()
    def quantiles(
        self, quantiles: list[float] | Tensor, *args: object, **kwargs: object
    ) -> dict[str, Tensor]:
        """Per-coordinate quantiles of the unconstrained latent vector, estimated from
        ``num_quantile_samples`` draws, mapped to each site's support; shape
        ``(len(quantiles),) + site shape``."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        posterior = self.get_posterior(*args, **kwargs)
        draws = posterior.sample((self._num_quantile_samples,))
        q = torch.as_tensor(quantiles, dtype=draws.dtype, device=draws.device)
        latents = torch.quantile(draws, q, dim=0)
        result: dict[str, list[Tensor]] = {}
        for latent in latents:
            for site, unconstrained in self._unpack_latent(latent):
                value = biject_to(site["fn"].support)(unconstrained)
                result.setdefault(site["name"], []).append(value)
        return {name: torch.stack(values) for name, values in result.items()}


def amortized_posterior(
    flow: nn.Module | None, loc: Tensor, scale: Tensor, context: Tensor | None = None
) -> FlowDistribution:
    r""":math:`q(z \mid x)`: :math:`z = F_h(\mu + \sigma \odot u)`, :math:`u \sim N(0, I)`.

    ``loc``, ``scale`` (and ``context`` :math:`h`) are an encoder's outputs of shape
    ``batch + (latent_dim,)`` (``batch + (context_dim,)``); ``flow`` is a conditional flow
    (``ConditionalTransformModule``; ``None`` gives the Gaussian posterior). A new conditional flow
    is the identity, so :math:`q` starts as the Gaussian encoder's. The flow's parts are scored one
    by one, and they cache their pass, so scoring a sample of :math:`q` runs no network again.
    """
    base = dist.Normal(loc, scale).to_event(1)
    parts = [] if flow is None else flows.leaf_transforms(flow.condition(context))
    return FlowDistribution(base, parts)


def encoder_posterior(
    out: Tensor, latent_dim: int, context_dim: int, flow: nn.Module | None
) -> FlowDistribution:
    r""":func:`amortized_posterior` from an encoder's output ``out`` of size
    ``2 * latent_dim + context_dim``: :math:`(\mu, \rho, h)` with
    :math:`\sigma = \operatorname{softplus}(\rho) + 10^{-4}`."""
    expected = 2 * latent_dim + context_dim
    if out.shape[-1] != expected:
        raise ValueError(
            f"encoder: expected outputs of size 2 * latent_dim + context_dim = {expected}, "
            f"got {tuple(out.shape)}"
        )
    loc, raw, context = out.split([latent_dim, latent_dim, context_dim], -1)
    scale = nn.functional.softplus(raw) + MIN_SCALE
    return amortized_posterior(flow, loc, scale, context if context_dim else None)


class AmortizedFlowGuide(PyroModule):
    r"""An amortised conditional-flow guide for one local latent site inside one plate.

    For rows :math:`x_i` of the data an encoder gives :math:`(\mu_i, \log\sigma_i, h_i)` and the
    guide samples :math:`z_i \sim q(z \mid x_i)` (:func:`amortized_posterior`, a conditional
    RealNVP with context :math:`h_i`) in the plate ``plate``; with ``subsample_size`` the plate
    subsamples and the model's plate of the same name sees the same indices (Pyro scales both by
    ``N / n``).

    Arguments:
        site: the model's latent sample site (event shape ``(latent_dim,)``).
        plate: the name of the model's plate over data rows.
        encoder: maps a batch of rows ``(n, ...)`` to ``(n, 2 * latent_dim + context_dim)``.
        latent_dim: the size of the latent vector.
        context_dim: the size of :math:`h` (0 gives a Gaussian amortised guide).
        data: picks the data from the guide's arguments (default: the first positional one).
        subsample_size: rows per step (``None``: all).
        **flow_kw: passed to :func:`~pyro_flowkit.flows.conditional_realnvp` (dropout defaults
            to 0).

    Example:
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        ...         pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)
        >>> guide = AmortizedFlowGuide("z", "data", nn.Linear(2, 2 * 2 + 3), 2, 3,
        ...                            num_layers=2, hidden_dims=(8,))
        >>> guide(torch.randn(5, 2))["z"].shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        site: str,
        plate: str,
        encoder: nn.Module,
        latent_dim: int,
        context_dim: int = 16,
        *,
        data: Callable[..., Tensor] | None = None,
        subsample_size: int | None = None,
        **flow_kw: object,
    ) -> None:
        super().__init__()
        check_count("latent_dim", latent_dim)
        check_count("context_dim", context_dim, minimum=0)
        self.site, self.plate, self.encoder = site, plate, encoder
        self.latent_dim, self.context_dim = latent_dim, context_dim
        self.subsample_size = subsample_size
        self._data = data or (lambda *args, **kwargs: args[0])
        self.flow = None
        if context_dim:
            kw = {"dropout": 0.0, "hidden_dims": (64, 64), **flow_kw}
            self.flow = flows.conditional_realnvp(latent_dim, context_dim, **kw)

    def posterior(self, x: Tensor) -> FlowDistribution:
        """:math:`q(z \\mid x)` for a batch of rows, batch shape ``(n,)``."""
        return encoder_posterior(self.encoder(x), self.latent_dim, self.context_dim, self.flow)

    def forward(self, *args: object, **kwargs: object) -> dict[str, Tensor]:
        x = self._data(*args, **kwargs)
        with pyro.plate(self.plate, len(x), subsample_size=self.subsample_size) as idx:
            z = pyro.sample(self.site, self.posterior(x[idx]))
        return {self.site: z}


# Deprecated: the diagnostics live in pyro_flowkit.diagnostics (one module for every posterior).
psis_diagnostic = deprecated_alias(
    "pyro_flowkit.guides.psis_diagnostic", diagnostics.psis_diagnostic
)
to_inference_data = deprecated_alias(
    "pyro_flowkit.guides.to_inference_data", diagnostics.from_guide
)
