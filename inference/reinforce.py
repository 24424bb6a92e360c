r"""REINFORCE (the score-function estimator) with a leave-one-out baseline, as a Pyro ELBO.

For a guide site :math:`z \sim q_\phi` that cannot be reparameterised, the gradient of
:math:`\mathbb E_q[f(z)]` is :math:`\mathbb E_q[f(z) \nabla_\phi \log q_\phi(z)]` (plus the
expectation of :math:`\nabla_\phi f`). With :math:`K` draws :math:`z_1..z_K` the leave-one-out
baseline :math:`b_k = \frac{1}{K-1} \sum_{j \ne k} f(z_j)` is independent of :math:`z_k`, so

.. math:: \hat g = \frac1K \sum_{k=1}^K \Bigl[(f(z_k) - b_k)\, \nabla_\phi \log q_\phi(z_k)
   + \nabla f(z_k)\Bigr]

stays unbiased and, with :math:`f(z_k) - b_k`, has far less variance than :math:`f(z_k)` alone
(Kool et al. 2019's "free" baseline; Mnih & Rezende 2016 use it inside VIMCO).

References:
    | Simple statistical gradient-following algorithms for connectionist reinforcement
    | learning (Williams, 1992) https://doi.org/10.1007/BF00992696
    | Buy 4 REINFORCE Samples, Get a Baseline for Free! (Kool, van Hoof & Welling, 2019)
    | https://openreview.net/forum?id=r1lgTGL5DE
    | Variational Inference for Monte Carlo Objectives (Mnih & Rezende, 2016)
    | https://arxiv.org/abs/1602.06725
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.poutine import Trace
from torch import Tensor
from torch.distributions import kl_divergence

from pyro_flowkit.validation import check_count

__all__ = ["ReinforceLOO_ELBO"]

PARTICLES = "num_particles_vectorized"  # the name of Pyro's vectorised particle plate


class ReinforceLOO_ELBO(ELBO):  # noqa: N801 (Pyro's naming: Trace_ELBO, TraceEnum_ELBO)
    r"""The ELBO with score-function gradients and a leave-one-out baseline over
    ``num_particles`` vectorised draws; reparameterised sites keep their pathwise gradients.

    The cost that multiplies a site's score is, for sites inside the plate named ``plate``,
    the sum of the terms (log-likelihood, latent log-density ratios) of the same row of that
    plate, and for other sites the whole trace's; the baseline of row :math:`i` in draw
    :math:`k` is the mean of the other draws' costs of row :math:`i`. Sites of the rows must not
    influence sites outside the plate (true of a plate over independent data rows). With
    ``analytic_kl`` a latent whose guide and model distributions have a registered
    ``kl_divergence`` contributes :math:`-\mathrm{KL}(q \Vert p)` exactly (as
    ``TraceMeanField_ELBO`` does) instead of its Monte Carlo log-density ratio.

    Arguments:
        num_particles: draws :math:`K \ge 2` (vectorised over an outer plate).
        plate: the name of the plate over data rows (per-row costs and baselines); ``None``
            gives one cost per draw.
        max_plate_nesting: as for Pyro's ELBOs (guessed by default).
        analytic_kl: use registered KL divergences.

    Example:
        >>> def model():
        ...     z = pyro.sample("z", dist.Categorical(logits=torch.zeros(3)))
        ...     pyro.sample("x", dist.Normal(z.float(), 1.0), obs=torch.tensor(2.0))
        >>> def guide():
        ...     logits = pyro.param("logits", torch.zeros(3))
        ...     pyro.sample("z", dist.Categorical(logits=logits))
        >>> loss = ReinforceLOO_ELBO(num_particles=8).differentiable_loss(model, guide)
        >>> loss.backward()
        >>> pyro.param("logits").unconstrained().grad.shape
        torch.Size([3])
    """

    def __init__(
        self,
        num_particles: int = 4,
        plate: str | None = None,
        max_plate_nesting: float = float("inf"),
        analytic_kl: bool = True,
    ) -> None:
        if check_count("num_particles", num_particles) < 2:
            raise ValueError(
                f"num_particles: expected at least 2 (the baseline leaves one out), got "
                f"{num_particles}"
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
        )
        self.plate, self.analytic_kl = plate, analytic_kl

    def _get_trace(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[Trace, Trace]:
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    # ---------------------------------------------------------------- the estimator
    def surrogate_and_elbo(
        self, model: Callable, guide: Callable, *args: object, **kwargs: object
    ) -> tuple[Tensor, Tensor]:
        """The surrogate objective (whose gradient is the estimator) and the ELBO estimate
        (the mean over draws), both scalars."""
        ((model_trace, guide_trace),) = self._get_traces(model, guide, args, kwargs)
        terms = _Terms(self.num_particles, self.plate, self.max_plate_nesting)
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                terms.add(site, site["log_prob"])
                continue
            q = guide_trace.nodes[name]
            kl = self._kl(q, site)
            if kl is None:
                terms.add(site, site["log_prob"] - q["log_prob"])
            else:
                terms.add(q, -kl)
        for name, q in guide_trace.nodes.items():
            if q["type"] != "sample" or q["is_observed"] and not q["infer"].get("is_auxiliary"):
                continue
            if name not in model_trace.nodes:  # an auxiliary guide site, e.g. pyro.factor
                terms.add(q, -q["log_prob"])
            if not q["fn"].has_rsample and not q["is_observed"]:
                terms.add_score(q, q["log_prob"])
        return terms.surrogate(), terms.elbo()

    def _kl(self, q: dict, p: dict) -> Tensor | None:
        if not self.analytic_kl:
            return None
        try:
            kl = kl_divergence(q["fn"], p["fn"])
        except NotImplementedError:
            return None
        return scale_and_mask(kl, scale=q["scale"], mask=q["mask"])

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: object, **kwargs: object
    ) -> Tensor:
        """Minus the surrogate: its gradient is minus the estimator of the ELBO's gradient."""
        return -self.surrogate_and_elbo(model, guide, *args, **kwargs)[0]

    def loss(self, model: Callable, guide: Callable, *args: object, **kwargs: object) -> float:
        """Minus the ELBO estimate (mean over the draws)."""
        with torch.no_grad():
            return -float(self.surrogate_and_elbo(model, guide, *args, **kwargs)[1])

    def loss_and_grads(
        self, model: Callable, guide: Callable, *args: object, **kwargs: object
    ) -> float:
        """Minus the ELBO estimate, after backpropagating minus the surrogate (for ``SVI``)."""
        surrogate, elbo = self.surrogate_and_elbo(model, guide, *args, **kwargs)
        (-surrogate).backward()
        return -float(elbo)


class _Terms:
    """Per-draw costs, split into rows of the plate ``plate`` ``(K, n)`` and the rest ``(K,)``,
    with the score terms of the non-reparameterised guide sites."""

    def __init__(self, num_particles: int, plate: str | None, max_plate_nesting: float) -> None:
        self.k, self.plate, self.nesting = num_particles, plate, int(max_plate_nesting)
        self.rows: Tensor | float = 0.0
        self.whole: Tensor | float = 0.0
        self.row_scores: Tensor | float = 0.0
        self.whole_scores: Tensor | float = 0.0

    def _split(self, site: dict, value: Tensor) -> tuple[Tensor, bool]:
        """``value`` summed down to ``(K, n)`` (in the plate) or ``(K,)``; and which."""
        value = torch.as_tensor(value)
        frames = {f.name: f.dim for f in site["cond_indep_stack"] if f.vectorized}
        rank = max(self.nesting, value.dim())
        value = value.reshape((1,) * (rank - value.dim()) + value.shape)
        keep = [rank + frames[PARTICLES]] if PARTICLES in frames else []
        in_plate = self.plate is not None and self.plate in frames
        if in_plate:
            keep.append(rank + frames[self.plate])
        rest = [d for d in range(rank) if d not in keep]
        out = value.sum(rest) if rest else value
        if not keep:
            return out.expand(self.k), False
        if not in_plate:
            return out.reshape(-1).expand(self.k), False
        if PARTICLES not in frames:
            out = out.unsqueeze(0)
        return out.expand(self.k, out.shape[-1]), True

    def add(self, site: dict, value: Tensor) -> None:
        v, in_rows = self._split(site, value)
        if in_rows:
            self.rows = self.rows + v
        else:
            self.whole = self.whole + v

    def add_score(self, site: dict, log_q: Tensor) -> None:
        v, in_rows = self._split(site, log_q)
        if in_rows:
            self.row_scores = self.row_scores + v
        else:
            self.whole_scores = self.whole_scores + v

    def _totals(self) -> Tensor:
        rows = self.rows.sum(-1) if isinstance(self.rows, Tensor) else self.rows
        return torch.as_tensor(rows + self.whole)

    @staticmethod
    def _advantage(cost: Tensor) -> Tensor:
        """``cost - leave-one-out mean`` along the draws (dimension 0), detached."""
        cost = cost.detach()
        k = cost.shape[0]
        return cost - (cost.sum(0, keepdim=True) - cost) / (k - 1)

    def surrogate(self) -> Tensor:
        totals = self._totals()
        out = totals.sum()
        if isinstance(self.row_scores, Tensor):
            out = out + (self._advantage(torch.as_tensor(self.rows)) * self.row_scores).sum()
        if isinstance(self.whole_scores, Tensor):
            out = out + (self._advantage(totals) * self.whole_scores).sum()
        return out / self.k

    def elbo(self) -> Tensor:
        return self._totals().detach().mean()
