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
    guide: Callable,
    model: Callable,
    *args: object,
    num_samples: int = 1000,
    num_chains: int = 4,
    parallel: bool | None = None,
    **kwargs: object,
) -> object:
    """ArviZ ``InferenceData`` of a fitted guide: ``posterior`` (guide draws of the model's latent
    sites), ``posterior_predictive`` (the observed sites resampled from the model at those draws)
    and ``observed_data``.

    The ``num_samples`` draws are taken in one vectorised pass (``Predictive(parallel=True)``;
    ``parallel=None`` falls back to one trace per draw for a model that cannot be vectorised) and
    split into ``num_chains`` "chains" of ``num_samples / num_chains`` draws, so that ArviZ's
    summaries work. Guide draws are independent: their ``r_hat`` is 1 up to Monte Carlo noise and
    their ESS is about the number of draws, whatever the fit's quality. They measure only how
    precisely the draws estimate the *guide's* expectations, not whether the guide matches the
    posterior: ask :func:`psis_diagnostic` for that.

    Example:
        >>> def model(y):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> guide = pyro.infer.autoguide.AutoNormal(model)
        >>> idata = from_guide(guide, model, torch.zeros(3), num_samples=40)
        >>> sorted(idata.groups()), dict(idata.posterior.sizes)
        (['observed_data', 'posterior', 'posterior_predictive'], {'chain': 4, 'draw': 10})
    """
    check_count("num_samples", num_samples)
    check_count("num_chains", num_chains)
    if num_samples % num_chains:
        raise ValueError(
            f"num_samples: expected a multiple of num_chains={num_chains}, got {num_samples}"
        )
    trace = poutine.trace(model).get_trace(*args, **kwargs)
    sites = [s for s in trace.nodes.values() if s["type"] == "sample"]
    observed = {s["name"]: s["value"] for s in sites if s["is_observed"]}
    latent = [s["name"] for s in sites if not s["is_observed"]]
    draws = _predict(model, guide, num_samples, latent, parallel, args, kwargs)
    replicated = _predict(
        poutine.uncondition(model), draws, num_samples, list(observed), parallel, args, kwargs
    )
    az = import_arviz()

    def chains(d: dict[str, Tensor]) -> dict[str, object]:
        # Predictive pads plate dimensions; keep each site's own shape after the draw dimension
        shapes = {k: trace.nodes[k]["value"].shape for k in d}
        return {k: _to_numpy(v.reshape((num_chains, -1, *shapes[k]))) for k, v in d.items()}

    return az.from_dict(
        posterior=chains(draws),
        posterior_predictive=chains(replicated),
        observed_data={k: _to_numpy(v) for k, v in observed.items()},
    )


def _predict(
    model: Callable,
    source: Callable | dict[str, Tensor],
    num_samples: int,
    sites: list[str],
    parallel: bool | None,
    args: tuple,
    kwargs: dict,
) -> dict[str, Tensor]:
    """``Predictive`` draws of ``sites`` from a guide (a callable ``source``) or at given
    posterior samples (a dict), vectorised unless that fails and ``parallel`` is ``None``."""
    given = {"guide": source} if callable(source) else {"posterior_samples": source}

    def run(vectorised: bool) -> dict[str, Tensor]:
        predictive = Predictive(
            model, num_samples=num_samples, return_sites=sites, parallel=vectorised, **given
        )
        return {k: v.detach() for k, v in predictive(*args, **kwargs).items()}

    if parallel is not None:
        return run(parallel)
    try:
        return run(True)
    except (RuntimeError, ValueError, NotImplementedError):  # a model that cannot vectorise
        return run(False)
