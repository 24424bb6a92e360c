r"""How far a stochastic ELBO gradient is from the exact one: bias and variance of an
estimator, measured against enumeration on a model small enough to enumerate.

With :math:`g_1, \dots, g_n` independent draws of the estimator and :math:`g^*` the exact
gradient (``TraceEnum_ELBO`` over every discrete configuration),

.. math:: \widehat{\mathrm{Var}} = \frac{1}{n-1} \sum_i \lVert g_i - \bar g \rVert^2, \qquad
   \widehat{\mathrm{bias}^2} = \lVert \bar g - g^* \rVert^2 - \widehat{\mathrm{Var}} / n,

both unbiased estimates of :math:`\mathrm{tr}\,\mathrm{Cov}(g)` and of
:math:`\lVert \mathbb E g - g^* \rVert^2` (the plain :math:`\lVert \bar g - g^* \rVert^2` is
inflated by the mean's own variance, :math:`\mathrm{tr}\,\mathrm{Cov}(g) / n`), and the mean
squared error is their sum.

References:
    | Categorical Reparameterization with Gumbel-Softmax (Jang, Gu & Poole, 2017)
    | https://arxiv.org/abs/1611.01144
    | Monte Carlo Gradient Estimation in Machine Learning (Mohamed, Rosca, Figurnov & Mnih,
    | 2020) https://arxiv.org/abs/1906.10652
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, config_enumerate
from torch import Tensor, nn
from tqdm.auto import tqdm

from pyro_flowkit.validation import check_count

__all__ = ["GradientError", "gradient_error"]


@dataclass(frozen=True)
class GradientError:
    """Bias and variance of a gradient estimator against the exact gradient.

    Attributes:
        bias_squared: :math:`\\lVert \\mathbb E g - g^* \\rVert^2` (unbiased estimate; may come
            out slightly negative for an unbiased estimator).
        variance: :math:`\\mathrm{tr}\\,\\mathrm{Cov}(g)`, the expected squared distance of a draw
            from the estimator's mean.
        mse: :math:`\\mathbb E \\lVert g - g^* \\rVert^2` = ``bias_squared + variance``.
        bias_squared_se: the standard error of ``bias_squared``.
        exact_norm_squared: :math:`\\lVert g^* \\rVert^2`, the scale to compare with.
        num_draws: the number of draws.
    """

    bias_squared: float
    variance: float
    mse: float
    bias_squared_se: float
    exact_norm_squared: float
    num_draws: int

    @property
    def relative_bias_squared(self) -> float:
        """``bias_squared / exact_norm_squared``."""
        return self.bias_squared / self.exact_norm_squared

    @property
    def relative_variance(self) -> float:
        """``variance / exact_norm_squared``."""
        return self.variance / self.exact_norm_squared


ParamSpec = nn.Module | Tensor | Iterable[nn.Module | Tensor]


def _tensors(spec: ParamSpec) -> list[Tensor]:
    if isinstance(spec, nn.Module):
        return [p for p in spec.parameters() if p.requires_grad]
    if isinstance(spec, Tensor):
        return [spec]
    out: list[Tensor] = []
    for item in spec:
        out += _tensors(item)
    return out


def _discover(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> list[Tensor]:
    """The unconstrained tensors of every ``pyro.param`` site of ``guide`` and ``model``."""
    found: dict[int, Tensor] = {}
    for fn in (guide, model):
        trace = poutine.trace(fn, param_only=True).get_trace(*args, **kwargs)
        for site in trace.nodes.values():
            value = site["value"]
            value = value.unconstrained() if hasattr(value, "unconstrained") else value
            if value.requires_grad:
                found.setdefault(id(value), value)
    return list(found.values())


def _flat_grad(loss: Tensor, params: list[Tensor]) -> Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1).double()
            for g, p in zip(grads, params, strict=True)
        ]
    )


def _summary(draws: Tensor, exact: Tensor) -> GradientError:
    n = len(draws)
    mean = draws.mean(0)
    centred = draws - mean
    variance = float(centred.pow(2).sum() / (n - 1))
    offset = mean - exact
    bias_squared = float(offset.pow(2).sum()) - variance / n
    # se of ||mean - g*||^2 - Var/n: 4 b' S b / n + 2 tr(S^2) / n^2 (delta method, Gaussian mean)
    projected = float((centred @ offset).pow(2).sum() / (n - 1))
    gram = centred @ centred.T / (n - 1)
    trace_s2 = float(gram.pow(2).sum())
    se = math.sqrt(max(4 * projected / n + 2 * trace_s2 / n**2, 0.0))
    return GradientError(
        bias_squared=bias_squared,
        variance=variance,
        mse=bias_squared + variance,
        bias_squared_se=se,
        exact_norm_squared=float(exact.pow(2).sum()),
        num_draws=n,
    )


def gradient_error(
    model: Callable,
    guide: Callable,
    estimator: object,
    num_draws: int = 1000,
    *args: object,
    exact: tuple[Callable, Callable, object] | None = None,
    params: ParamSpec | Mapping[str, ParamSpec] | None = None,
    progress: bool = False,
    **kwargs: object,
) -> GradientError | dict[str, GradientError]:
    r"""Bias and variance of ``estimator``'s gradient of the negative ELBO of
    ``(model, guide)`` at ``*args, **kwargs``, against the exact gradient.

    The exact gradient is ``TraceEnum_ELBO().differentiable_loss`` of ``exact`` (a
    ``(model, guide, elbo)`` triple; by default ``model`` with ``guide``'s sites enumerated in
    parallel, for a guide whose latent sites are all discrete). Both objectives must be the
    same ELBO (e.g. the two :meth:`~pyro_flowkit.models.CategoricalVAE.objective` triples of one
    model): only the gradient's estimation may differ.

    Arguments:
        model, guide: the pair the estimator differentiates.
        estimator: an ELBO (``Trace_ELBO``, ``TraceMeanField_ELBO``,
            :class:`~pyro_flowkit.inference.reinforce.ReinforceLOO_ELBO`, ...): anything with
            ``differentiable_loss(model, guide, *args, **kwargs)``.
        num_draws: independent draws of the estimator (at least 2).
        *args, **kwargs: the model's and guide's arguments.
        exact: the enumerable ``(model, guide, elbo)``.
        params: the tensors the gradient is taken with respect to (modules and/or tensors; a
            mapping of names to those gives one result per group, from the same draws); by
            default every ``pyro.param`` site of the exact objective (unconstrained).
        progress: a tqdm progress bar over the draws.

    Returns:
        A :class:`GradientError` (one per group for a mapping).

    Example:
        >>> from pyro.infer import Trace_ELBO
        >>> def model():
        ...     z = pyro.sample("z", dist.Categorical(logits=torch.zeros(3)))
        ...     pyro.sample("x", dist.Normal(z.float(), 1.0), obs=torch.tensor(2.0))
        >>> def guide():
        ...     logits = pyro.param("logits", torch.zeros(3))
        ...     pyro.sample("z", dist.Categorical(logits=logits))
        >>> err = gradient_error(model, guide, Trace_ELBO(), 500)
        >>> abs(err.bias_squared) < 3 * err.bias_squared_se, err.variance > 0
        (True, True)
    """
    check_count("num_draws", num_draws, minimum=2)
    if not hasattr(estimator, "differentiable_loss"):
        raise TypeError(
            f"estimator: expected an ELBO with differentiable_loss, got {type(estimator).__name__}"
        )
    if exact is None:
        exact = (model, config_enumerate(guide, "parallel"), TraceEnum_ELBO())
    exact_model, exact_guide, exact_elbo = exact
    if params is None:
        groups = {"all": _discover(exact_model, exact_guide, args, kwargs)}
    elif isinstance(params, Mapping):
        groups = {name: _tensors(spec) for name, spec in params.items()}
    else:
        groups = {"all": _tensors(params)}
    for name, tensors in groups.items():
        if not tensors:
            raise ValueError(f"params: expected trainable tensors, got none ({name!r})")
    flat = [p for tensors in groups.values() for p in tensors]
    sizes = [sum(p.numel() for p in tensors) for tensors in groups.values()]
    target = _flat_grad(exact_elbo.differentiable_loss(exact_model, exact_guide, *args, **kwargs),
                        flat)  # fmt: skip
    draws = torch.stack(
        [
            _flat_grad(estimator.differentiable_loss(model, guide, *args, **kwargs), flat)
            for _ in tqdm(range(num_draws), desc="gradient draws", disable=not progress)
        ]
    )
    if not bool(torch.isfinite(draws).all()):
        raise FloatingPointError("gradient_error: a draw of the estimator is not finite")
    results = {
        name: _summary(d, t)
        for name, d, t in zip(groups, draws.split(sizes, dim=1), target.split(sizes), strict=True)
    }
    if params is None or not isinstance(params, Mapping):
        return results["all"]
    return results
