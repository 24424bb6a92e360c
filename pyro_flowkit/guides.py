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

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.distributions.transforms import AffineTransform, ComposeTransform
from pyro.distributions.util import sum_rightmost
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median
from pyro.nn import PyroModule, PyroParam
from torch import Tensor, nn
from torch.distributions import biject_to
from torch.distributions.transforms import IndependentTransform, Transform
from torch.distributions.utils import _sum_rightmost

from pyro_flowkit import diagnostics, flows
from pyro_flowkit._deprecation import deprecated_alias
from pyro_flowkit.distributions import FlowDistribution
from pyro_flowkit.transforms import AdditiveCoupling, AffineCoupling
from pyro_flowkit.transforms._base import CachedTransform
from pyro_flowkit.validation import check_count, check_positive

__all__ = [
    "AmortizedFlowGuide",
    "AutoFlow",
    "FlowPosterior",
    "amortized_posterior",
    "encoder_posterior",
]

FLOWS = ("realnvp", "nice", "iresnet")
MIN_SCALE = 1e-4  # floor of an encoder's posterior scale
NUM_LAYERS, HIDDEN_DIMS = 4, (32,)  # AutoFlow's default coupling flow


def _check_flow(flow: object) -> None:
    if not (flow in FLOWS if isinstance(flow, str) else callable(flow)):
        raise ValueError(f"flow: expected one of {FLOWS} or a callable, got {flow!r}")


def _build_flow(flow: str | Callable[[int], nn.Module], dim: int, **flow_kw: object) -> nn.Module:
    """A flow on ``dim``-vectors that starts as the identity (dropout off: a guide must be a fixed
    map so that its log-density is that of its samples); ``flow`` passed :func:`_check_flow`.
    The couplings of ``"realnvp"`` and ``"nice"`` get :class:`_GuideNet` conditioners."""
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
    hidden = tuple(flow_kw.get("hidden_dims", HIDDEN_DIMS))
    kw = {"num_layers": NUM_LAYERS, "mask": "half", **flow_kw, "hidden_dims": (1,)}
    built = (flows.realnvp if flow == "realnvp" else flows.nice)(dim, **kw)
    for part in built.modules():
        if isinstance(part, AffineCoupling | AdditiveCoupling):
            outputs = part.partition.moved_features * part.params_per_feature
            part.conditioner = _GuideNet(part.partition.kept_features, outputs, hidden)
    return built


class _GuideNet(nn.Module):
    r"""A ReLU perceptron for the couplings of :class:`AutoFlow` whose Adam steps move its
    output by :math:`O(\text{lr}\sqrt n)` rather than :math:`O(\text{lr}\, n)` for width
    :math:`n`.

    Layer :math:`l` computes :math:`h_l = b_l + W_l h_{l-1} / \sqrt{n_{l-1}}` with
    :math:`n_{l-1}` its fan-in; :math:`W_l` is initialised at :math:`\sqrt{n_{l-1}}` times
    PyTorch's default, so a new net computes what an ``nn.Linear`` stack would, and the last
    layer is zero (the coupling starts as the identity). Adam moves every entry of :math:`W_l`
    by about lr per step and those moves are coherent (a one-sample gradient is rank one), so in
    the usual parametrisation an output moves by lr times the sum of its inputs' magnitudes,
    width times faster than a bias; through a stack of couplings those moves compound, and the
    flow blew up within a few steps at the learning rates of Pyro's tutorials (0.01-0.03).
    Dividing the whole fan-in out (the mean-field parametrisation) is stable too but learns too
    slowly (banana ELBO -0.40 against -0.16 after 1500 steps); the square root keeps both. All
    weights and biases are one parameter: Pyro keeps one optimiser per parameter tensor, and
    each costs about as much as a small layer's forward and backward pass.
    """

    fan_in_power = 0.5  # the factor n ** -fan_in_power on each layer (1 would be mean-field)

    def __init__(self, in_features: int, out_features: int, hidden_dims: Sequence[int]) -> None:
        super().__init__()
        for h in hidden_dims:
            check_count("hidden_dims", h)
        widths = (in_features, *hidden_dims, out_features)
        blocks, layout, start = [], [], 0
        for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            block = torch.zeros(n_out, n_in + 1)
            alpha = n_in**-self.fan_in_power
            if k < len(widths) - 2:  # nn.Linear's default, times the factor divided out below
                bound = n_in**-0.5
                block[:, :n_in].uniform_(-bound, bound).div_(alpha)
                block[:, n_in].uniform_(-bound, bound)
            blocks.append(block.flatten())
            layout.append((start, n_out, n_in, alpha))
            start += block.numel()
        self.weight = nn.Parameter(torch.cat(blocks))
        self._layout = tuple(layout)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        h = x.reshape(-1, self.in_features)
        last = len(self._layout) - 1
        for k, (start, n_out, n_in, alpha) in enumerate(self._layout):
            block = self.weight[start : start + n_out * (n_in + 1)].view(n_out, n_in + 1)
            h = torch.addmm(block[:, n_in], h, block[:, :n_in].t(), alpha=alpha)
            if k < last:
                h = torch.relu_(h)
        return h.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        widths = [n_in for _, _, n_in, _ in self._layout] + [self.out_features]
        return f"widths={tuple(widths)}"


def _is_identity(t: Transform) -> bool:
    """Whether ``t`` is the identity (what ``biject_to`` gives for real supports)."""
    while isinstance(t, IndependentTransform):
        t = t.base_transform
    return isinstance(t, ComposeTransform) and not t.parts


class FlowPosterior(TorchDistribution):
    r"""The posterior of :class:`AutoFlow` over the unconstrained latent vector:

    .. math:: z = \mu + \sigma \odot F(u), \qquad u \sim \mathcal N(0, I), \qquad
        \log q(z) = \log \mathcal N(u; 0, I) - \log\lvert\det J_F(u)\rvert - \sum_i \log\sigma_i.

    A draw computes :math:`\log q` in the same pass (each part's log-det comes with its output)
    and keeps it, so scoring the draw, as SVI does next, runs nothing again; any other value is
    scored through the inverse of every part. Batch shapes (Pyro's vectorised particles) are
    leading sample dimensions of the flow.

    Arguments:
        loc: :math:`\mu`, shape ``(D,)``.
        scale: :math:`\sigma > 0`, shape ``(D,)``.
        parts: the flow :math:`F` as a list of transforms on ``D``-vectors, base to latent.
        batch_shape: the distribution's batch shape.

    Example:
        >>> from pyro_flowkit.flows import leaf_transforms, realnvp
        >>> flow = realnvp(3, num_layers=2, hidden_dims=(8,))
        >>> q = FlowPosterior(torch.zeros(3), torch.ones(3), leaf_transforms(flow))
        >>> z = q.rsample((4,))
        >>> torch.allclose(q.log_prob(z), dist.Normal(0.0, 1.0).log_prob(z).sum(-1))
        True
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: Tensor,
        scale: Tensor,
        parts: list,
        batch_shape: torch.Size | tuple = (),
    ) -> None:
        self.loc, self.scale, self.parts = loc, scale, parts
        self._draw: tuple[Tensor, Tensor, Tensor] | None = None
        super().__init__(torch.Size(batch_shape), loc.shape[-1:], validate_args=False)

    def expand(self, batch_shape: torch.Size | tuple, _instance: object = None) -> FlowPosterior:
        return FlowPosterior(self.loc, self.scale, self.parts, batch_shape)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        u = torch.randn(
            self._extended_shape(torch.Size(sample_shape)),
            dtype=self.loc.dtype,
            device=self.loc.device,
        )
        x, ladj = u, None
        for t in self.parts:
            if isinstance(t, CachedTransform):  # its log-det comes with its output
                y, part = t._forward(x)
            else:
                y = t(x)
                part = _sum_rightmost(t.log_abs_det_jacobian(x, y), 1 - t.domain.event_dim)
            ladj = part if ladj is None else ladj + part
            x = y
        z = torch.addcmul(self.loc, self.scale, x)
        log_q = (u * u).sum(-1) * -0.5 - self._log_norm()
        if ladj is not None:
            log_q = log_q - ladj
        self._draw = (z, log_q, u)
        return z

    def _log_norm(self) -> Tensor:
        """:math:`\\sum_i \\log \\sigma_i + \\tfrac D2 \\log 2\\pi`."""
        return self.scale.log().sum() + 0.5 * self.loc.shape[-1] * math.log(2 * math.pi)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._draw is not None and value is self._draw[0]:
            return self._draw[1]
        x = (value - self.loc) / self.scale
        ladj = None
        for t in reversed(self.parts):
            if isinstance(t, CachedTransform):
                x, part = t.inverse_and_log_det(x)
            else:
                y, x = x, t.inv(x)
                part = _sum_rightmost(t.log_abs_det_jacobian(x, y), 1 - t.domain.event_dim)
            ladj = part if ladj is None else ladj + part
        log_q = (x * x).sum(-1) * -0.5 - self._log_norm()
        return log_q if ladj is None else log_q - ladj


class AutoFlow(AutoContinuous):
    r"""A normalizing-flow posterior over the model's unconstrained latent vector.

    .. math:: z = \mu + \sigma \odot F(u), \qquad u \sim \mathcal N(0, I),

    with :math:`F` one of this library's flows, which starts as the identity, and :math:`\mu`
    initialised by ``init_loc_fn`` (unlike Pyro's ``AutoIAFNormal``, which starts at the origin).
    So SVI starts from ``N(init, init_scale^2 I)``, the start of ``AutoNormal``, and the flow
    bends the posterior from there (:class:`FlowPosterior`). Works with ``SVI``, ``Predictive``,
    and ``median()`` / ``quantiles()``, which are per-coordinate quantiles of the unconstrained
    latent vector estimated from ``num_quantile_samples`` draws, mapped to each site's support.

    Every call checks its draw: if the latent vector, its log-density or a value on a site's
    support is not finite (the parameters went non-finite, or one step moved them so far that a
    constrained value overflowed), it raises ``FloatingPointError`` naming the guide, the call
    (the SVI step when each step calls the guide once) and what to try, before the model sees
    the draw.

    Arguments:
        model: the Pyro model.
        flow: ``"realnvp"`` (default), ``"nice"``, ``"iresnet"`` (``direction="sample"``, exact
            log-det up to 32 dimensions) or a callable ``dim -> TransformModule`` (base to latent).
        init_loc_fn: Pyro's per-site initialisation (default ``init_to_median``).
        init_scale: the initial :math:`\sigma`.
        num_quantile_samples: draws behind ``median()`` and ``quantiles()``.
        **flow_kw: passed to the flow builder (e.g. ``num_layers``, ``hidden_dims``). The
            default ``"realnvp"`` and ``"nice"`` flows have ``num_layers=4`` couplings, each
            conditioned by a ``hidden_dims=(32,)`` perceptron whose layers divide their input by
            the square root of its width (:class:`_GuideNet`: an Adam step then moves the
            output by about lr times that root, not lr times the width), so that SVI stays
            finite at the learning rates of Pyro's tutorials (Adam lr 0.01-0.1 on eight
            schools); the step costs about what ``AutoIAFNormal``'s does at equal size.

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
        self._calls = 0
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args: object, **kwargs: object) -> None:
        super()._setup_prototype(*args, **kwargs)
        loc = self._init_loc()
        self.loc = nn.Parameter(loc)
        self.scale = PyroParam(
            torch.full_like(loc, self._init_scale), constraint=constraints.softplus_positive
        )
        self.flow = _build_flow(self._flow_spec, self.latent_dim, **self._flow_kw).to(loc)
        self._parts = flows.leaf_transforms(self.flow)
        self._sites = self._site_layout()

    def _site_layout(self) -> list[tuple]:
        """Per latent site, once: its name, support transform (``None`` for the real line),
        slice of the latent vector, unconstrained shape, event dims and plates."""
        layout, pos = [], 0
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            shape = self._unconstrained_shapes[name]
            size = shape.numel()
            fn = site["fn"]
            transform = biject_to(fn.support)
            real = _is_identity(transform)
            event_dim = fn.event_dim + len(shape) - len(site["value"].shape)
            frames = tuple(f.name for f in self._cond_indep_stacks[name])
            layout.append((name, None if real else transform, pos, pos + size, shape, event_dim,
                           fn.event_dim, frames))  # fmt: skip
            pos += size
        return layout

    def get_base_dist(self) -> dist.Distribution:
        zero = self.loc.new_zeros(self.latent_dim)
        return dist.Normal(zero, torch.ones_like(zero)).to_event(1)

    def get_transform(self, *args: object, **kwargs: object) -> ComposeTransform:
        """The map from the base to the latent vector: the flow, then the affine map."""
        affine = AffineTransform(self.loc, self.scale, event_dim=1)
        return ComposeTransform([*flows.leaf_transforms(self.flow), affine])

    def get_posterior(self, *args: object, **kwargs: object) -> FlowPosterior:
        """:math:`q(z)` (:class:`FlowPosterior`): the base through the flow, then the affine
        map."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        self.flow  # noqa: B018 (registers the flow's parameters with Pyro, as SVI needs)
        return FlowPosterior(self.loc, self.scale, self._parts)

    def forward(self, *args: object, **kwargs: object) -> dict[str, Tensor]:
        """A draw of every latent site (Pyro's ``AutoContinuous`` protocol: an auxiliary site
        for the latent vector, then one ``Delta`` site per latent), checked to be finite."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        self._calls += 1
        posterior = self.get_posterior(*args, **kwargs)
        latent = pyro.sample(f"_{self._pyro_name}_latent", posterior, infer={"is_auxiliary": True})
        plates = self._create_plates(*args, **kwargs)
        batch = latent.shape[:-1]
        masked = poutine.get_mask() is False
        draw = posterior._draw
        check = latent.sum() + (draw[1].sum() if draw is not None and draw[0] is latent else 0)
        sites = []
        for name, transform, start, stop, shape, event_dim, site_event_dim, frames in self._sites:
            if batch:  # torch.broadcast_shapes costs as much as a small layer: only if needed
                shape = torch.broadcast_shapes(shape, batch + (1,) * event_dim)
            unconstrained = latent[..., start:stop].view(shape)
            if transform is None:
                value, log_density = unconstrained, 0.0
            else:
                value = transform(unconstrained)
                check = check + transform.inv(value).sum()
                log_density = 0.0
                if not masked:
                    log_density = transform.inv.log_abs_det_jacobian(value, unconstrained)
                    log_density = sum_rightmost(
                        log_density, log_density.dim() - value.dim() + site_event_dim
                    )
            sites.append((name, value, log_density, site_event_dim, frames))
        if not torch.isfinite(check):
            raise FloatingPointError(self._nonfinite_message(latent))
        result = {}
        for name, value, log_density, site_event_dim, frames in sites:
            delta = dist.Delta(value, log_density, event_dim=site_event_dim, validate_args=False)
            with ExitStack() as stack:
                for frame in frames:
                    stack.enter_context(plates[frame])
                result[name] = pyro.sample(name, delta)
        return result

    def _nonfinite_message(self, latent: Tensor) -> str:
        bad = [
            name
            for name, p in [("loc", self.loc), ("scale", self.scale)]
            + [(f"flow.{n}", p) for n, p in self.flow.named_parameters()]
            if not bool(torch.isfinite(p).all())
        ]
        if bad:
            what = "parameters " + ", ".join(bad[:4]) + (" ..." if len(bad) > 4 else "")
            what += " are not finite"
        elif not bool(torch.isfinite(latent).all()):
            what = "the parameters are finite but the flow's output overflowed"
        else:
            what = (
                "a latent value overflowed or reached the edge of its support after the "
                "constraint transform (e.g. exp(z) = 0 or inf)"
            )
        return (
            f"{type(self).__name__}: a non-finite posterior draw at call {self._calls} (the SVI "
            f"step, if each step calls the guide once): {what}. Try a smaller learning rate "
            "(e.g. Adam lr=0.003), ClippedAdam with clip_norm, a smaller init_scale, a smaller "
            "flow (num_layers, hidden_dims), or init_loc_fn=init_to_feasible for a start nearer "
            "the posterior's bulk"
        )

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
