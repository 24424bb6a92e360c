r"""Diagnostics in one place: ArviZ ``InferenceData`` from chains and from variational guides,
and the Pareto :math:`\hat k` that says whether a variational posterior can be trusted.

``from_chains`` converts draws of many chains (e.g. :func:`~pyro_flowkit.inference.sample_langevin`
output), ``from_guide`` draws from a fitted guide; both give ``InferenceData`` that ``az.summary``,
``az.rhat``, ``az.plot_trace`` read. ArviZ is imported through :func:`import_arviz`.

References:
    Yes, but Did It Work?: Evaluating Variational Inference (Yao et al., 2018),
    https://arxiv.org/abs/1802.02538
    Pareto Smoothed Importance Sampling (Vehtari et al., 2015), https://arxiv.org/abs/1507.02646
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from pyro import poutine
from pyro.infer import Predictive
from pyro.infer.importance import vectorized_importance_weights
from torch import Tensor

from pyro_flowkit.validation import check_count

if TYPE_CHECKING:
    import arviz

__all__ = ["from_chains", "from_guide", "import_arviz", "psis_diagnostic"]


def import_arviz() -> Any:  # noqa: ANN401 - the arviz module
    """Import ArviZ without its refactoring ``FutureWarning`` (arviz 0.x prints one on import)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz

    return arviz


def _to_numpy(value: Tensor) -> Any:  # noqa: ANN401 - numpy array
    return value.detach().cpu().numpy()


_STAT_DTYPES = {"diverging": bool}


def _to_numpy(value: Tensor) -> Any:  # noqa: ANN401 - numpy array
    return value.detach().cpu().numpy()


def from_chains(
    samples: Tensor | Mapping[str, Tensor],
    stats: Mapping[str, Tensor] | None = None,
    *,
    var_name: str = "x",
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, list[str]] | None = None,
) -> arviz.InferenceData:
    """Build an ArviZ ``InferenceData`` from :func:`~pyro_flowkit.inference.sample_langevin` output.

    Arguments:
        samples: a ``(chains, draws, *event)`` tensor (stored as ``var_name``) or a dict of them.
        stats: ``(chains, draws)`` statistics. ArviZ's reserved names (``lp``,
            ``acceptance_rate``, ``step_size``, ``diverging``, ...) keep their meaning, so
            ``az.plot_trace(idata, divergences=True)`` and the divergence count of
            ``az.summary`` work.
        var_name: the posterior variable's name when ``samples`` is a tensor.
        coords, dims: passed to ``az.from_dict``.

    Example:
        >>> from pyro_flowkit.inference import sample_langevin
        >>> samples, stats = sample_langevin(
        ...     lambda x: 0.5 * x.square().sum(-1), torch.zeros(2, 1), 50, step_size=1.0,
        ...     progress=False,
        ... )
        >>> idata = from_chains(samples, stats)
        >>> dict(idata.posterior.sizes)
        {'chain': 2, 'draw': 50, 'x_dim_0': 1}
    """
    if isinstance(samples, Tensor):
        samples = {var_name: samples}
    shapes = {name: tuple(value.shape[:2]) for name, value in samples.items()}
    if len(set(shapes.values())) != 1 or any(len(s) != 2 for s in shapes.values()):
        raise ValueError(
            f"samples: expected tensors sharing leading (chains, draws) dims, got shapes {shapes}"
        )
    (lead,) = set(shapes.values())
    posterior = {name: _to_numpy(value) for name, value in samples.items()}
    sample_stats = {}
    for name, value in (stats or {}).items():
        if tuple(value.shape[:2]) != lead:
            raise ValueError(
                f"stats[{name!r}]: expected leading shape {lead} (chains, draws), "
                f"got {tuple(value.shape)}"
            )
        array = _to_numpy(value)
        sample_stats[name] = array.astype(_STAT_DTYPES.get(name, array.dtype))
    az = import_arviz()
    return az.from_dict(
        posterior=posterior, sample_stats=sample_stats or None, coords=coords, dims=dims
    )


def _log_weights(
    model: Callable,
    guide: Callable,
    num_samples: int,
    max_plate_nesting: int | None,
    *args: object,
    **kwargs: object,
) -> Tensor:
    """:math:`\\log p(x, z_s) - \\log q(z_s)` for ``num_samples`` guide draws (in one
    vectorised pass when ``max_plate_nesting`` is given)."""
    if max_plate_nesting is not None:
        log_w, _, _ = vectorized_importance_weights(
            model, guide, *args, num_samples=num_samples, max_plate_nesting=max_plate_nesting,
            **kwargs,
        )  # fmt: skip
        return log_w.detach()
    weights = []
    for _ in range(num_samples):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        weights.append(model_trace.log_prob_sum() - guide_trace.log_prob_sum())
    return torch.stack(weights).detach()


@torch.no_grad()
def psis_diagnostic(
    model: Callable,
    guide: Callable,
    *args: object,
    num_samples: int = 1000,
    max_plate_nesting: int | None = None,
    **kwargs: object,
) -> float:
    r"""Pareto :math:`\hat k` of the importance weights :math:`p(x, z) / q(z)`, :math:`z \sim q`.

    Computed by ArviZ's Pareto-smoothed importance sampling (``az.psislw``) on ``num_samples``
    log-weights (drawn in one vectorised pass when ``max_plate_nesting`` is given, as for
    ``Trace_ELBO(vectorize_particles=True)``; else one trace at a time). Yao et al. (2018):
    :math:`\hat k < 0.5` the variational posterior is close
    enough for importance sampling to correct it; :math:`0.5 < \hat k < 0.7` usable with care;
    above 0.7 it should not be trusted.

    Example:
        >>> def model():
        ...     pyro.sample("x", dist.Normal(0.0, 1.0))
        >>> def guide():  # a little wider than the posterior: safe
        ...     pyro.sample("x", dist.Normal(0.0, 1.2))
        >>> psis_diagnostic(model, guide, num_samples=1000) < 0.5
        True
    """
    check_count("num_samples", num_samples)
    log_w = _log_weights(model, guide, num_samples, max_plate_nesting, *args, **kwargs)
    if not torch.isfinite(log_w).all():
        raise FloatingPointError("psis_diagnostic: a log importance weight is not finite")
    az = import_arviz()
    _, khat = az.psislw(log_w.double().cpu().numpy())
    return float(khat)


@torch.no_grad()
def from_guide(
    guide: Callable, model: Callable, *args: object, num_samples: int = 1000, **kwargs: object
) -> object:
    """ArviZ ``InferenceData`` of a fitted guide: ``posterior`` (guide draws of the model's latent
    sites, one chain), ``posterior_predictive`` (the observed sites resampled from the model at
    those draws) and ``observed_data``.

    Example:
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> guide = pyro.infer.autoguide.AutoNormal(model)
        >>> idata = from_guide(guide, model, torch.zeros(3), num_samples=10)
        >>> sorted(idata.groups())
        ['observed_data', 'posterior', 'posterior_predictive']
    """
    check_count("num_samples", num_samples)
    trace = poutine.trace(model).get_trace(*args, **kwargs)
    observed = {
        name: site["value"]
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and site["is_observed"]
    }
    latent = [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"]
    ]
    draws = Predictive(model, guide=guide, num_samples=num_samples, return_sites=latent)(
        *args, **kwargs
    )
    unobserved = poutine.uncondition(model)
    predictive = Predictive(unobserved, posterior_samples=draws, return_sites=list(observed))
    replicated = predictive(*args, **kwargs)
    az = import_arviz()

    def chain(d: dict[str, Tensor]) -> dict[str, object]:
        # Predictive pads plate dimensions; keep each site's own shape after the draw dimension
        shapes = {k: trace.nodes[k]["value"].shape for k in d}
        return {k: v.detach().reshape((-1, *shapes[k])).cpu().numpy()[None] for k, v in d.items()}

    return az.from_dict(
        posterior=chain(draws),
        posterior_predictive=chain(replicated),
        observed_data={k: v.detach().cpu().numpy() for k, v in observed.items()},
    )
