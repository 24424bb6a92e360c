r"""Mixtures of multivariate Bernoulli distributions (binary data) fit by EM, and as Pyro models.

:math:`p(x) = \sum_k w_k \prod_j p_{kj}^{x_j} (1 - p_{kj})^{1 - x_j}`. The E-step's log-densities
are one matrix product, :math:`x\,(\log p - \log(1-p))^\top + \sum_j \log(1 - p_{kj})`; the M-step
sets :math:`w_k = N_k / N` and :math:`p_k = \sum_n r_{nk} x_n / N_k`, projected onto
:math:`[\epsilon, 1 - \epsilon]` (``min_prob``). The projection is the exact maximiser of the
M-step's objective over that box (it is concave in each :math:`p_{kj}`), so EM stays monotone and
pixels that are always 0 or 1 keep a finite log-likelihood. :class:`BernoulliMixture` is a
scikit-learn estimator (a density estimator, like its ``GaussianMixture``); tensors in give tensors
out, NumPy in gives NumPy out.

References:
    Pattern Recognition and Machine Learning, section 9.3.3 (Bishop, 2006).
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints

from pyro_flowkit.inference.em import Params
from pyro_flowkit.models._mixture import (
    ArrayLike,
    ProbabilisticMixture,
    RandomStateLike,
    check_binary,
    check_data,
    check_init,
    check_weights,
    enumerated_mixture,
    to_tensor,
)
from pyro_flowkit.models.kmeans import KMeans
from pyro_flowkit.validation import check_choice, check_count, check_finite, check_interval

__all__ = ["BernoulliMixture"]


class BernoulliMixture(ProbabilisticMixture):
    r"""A mixture of independent Bernoullis over binary features, fit by EM.

    Arguments:
        n_components: the number of components :math:`K`.
        tol: stop when the mean per-sample log-likelihood changes by less than this.
        max_iter: the most EM iterations per initialisation.
        n_init: initialisations; the one with the highest final lower bound is kept.
        init_params: ``"kmeans"`` (responsibilities from one K-means run) or ``"random"``
            (probabilities uniform in :math:`(0.25, 0.75)`, equal weights).
        weights_init, probs_init: initial parameters overriding ``init_params``.
        min_prob: probabilities are kept in ``[min_prob, 1 - min_prob]``.
        chunk_size: rows per chunk of the E-step.
        seed: seed of the initialisation and of ``sample``.
        name: prefix of the Pyro sites and params of :meth:`model`.
        binarize: ``None`` (the data must be 0/1) or a threshold: every input (of ``fit``,
            ``predict``, ``score``..., :meth:`model`) becomes ``x > binarize``, as in
            scikit-learn's ``BernoulliNB``.
        random_state: scikit-learn's name for ``seed``: an integer (the same fit as ``seed`` of
            that value), a NumPy ``RandomState`` (draws the seed at every ``fit`` and ``sample``)
            or ``None``. At most one of ``seed`` and ``random_state`` may be set.

    The arguments are stored as given and checked by :meth:`fit` (scikit-learn's rules). Fitted
    arrays are tensors when ``fit`` got a tensor, NumPy arrays otherwise; the outputs of the
    methods follow their own input the same way.

    Fitted attributes: ``weights_`` ``(K,)``, ``probs_`` ``(K, d)``, ``converged_``, ``n_iter_``,
    ``lower_bound_``, ``lower_bounds_``, ``monotone_violations_``, ``n_features_in_`` (and
    ``feature_names_in_`` when fit on a data frame).

    Example:
        >>> x = (torch.rand(400, 8) < torch.tensor([0.9] * 4 + [0.1] * 4)).double()
        >>> x[200:] = 1 - x[200:]
        >>> bmm = BernoulliMixture(2, seed=0).fit(x)
        >>> bmm.probs_[bmm.probs_[:, 0].argsort()].round(decimals=1)[:, [0, 7]].tolist()
        [[0.1, 0.9], [0.9, 0.1]]
    """

    _fitted_attr = "probs_"

    def __init__(
        self,
        n_components: int = 1,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: ArrayLike | None = None,
        probs_init: ArrayLike | None = None,
        min_prob: float = 1e-6,
        chunk_size: int | None = None,
        seed: int | None = None,
        name: str = "bmm",
        binarize: float | None = None,
        random_state: RandomStateLike = None,
    ) -> None:
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.probs_init = probs_init
        self.min_prob = min_prob
        self.chunk_size = chunk_size
        self.seed = seed
        self.name = name
        self.binarize = binarize
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        check_choice("init_params", self.init_params, ("kmeans", "random"))
        check_interval("min_prob", self.min_prob, 0, 0.5, open_low=True, open_high=True)
        if self.binarize is not None:
            check_finite("binarize", self.binarize)

    def _check_values(self, x: Tensor, name: str, array: np.ndarray | None) -> Tensor:
        if self.binarize is not None:
            return (x > self.binarize).to(x.dtype)
        return check_binary(x, name)

    def fit(self, x: ArrayLike, y: object = None) -> BernoulliMixture:
        """Fit by EM on binary ``x`` of shape ``(n, d)`` (or any ``x`` with ``binarize``); ``y``
        is ignored. Returns ``self``."""
        self._check_params()
        xt = self._input(x, reset=True, min_rows=self.n_components)
        g = self._generator()
        em = self._driver(xt.shape[1])
        result = self._fit_em(em, xt, lambda _: self._initial_params(xt, g))
        self.weights_ = self._export(result.params["weights"])
        self.probs_ = self._export(result.params["probs"])
        self._store(result)
        return self

    def _params(self) -> Params:
        return {"weights": to_tensor(self.weights_), "probs": to_tensor(self.probs_)}

    def n_parameters(self) -> int:
        """The number of free parameters: :math:`K d + K - 1`."""
        self._check_fitted()
        k, d = self.probs_.shape
        return k * d + k - 1

    def sample(self, n_samples: int = 1) -> tuple[ArrayLike, ArrayLike]:
        """``(x, labels)``: ``n_samples`` binary draws and their components, sorted by component
        (arrays of the kind of the fitted attributes)."""
        self._check_fitted()
        check_count("n_samples", n_samples)
        params = self._params()
        probs = params["probs"]
        g = self._generator()
        weights = params["weights"].detach().cpu()
        labels = torch.multinomial(weights, n_samples, replacement=True, generator=g).sort().values
        u = torch.rand(n_samples, probs.shape[1], generator=g, dtype=weights.dtype)
        labels = labels.to(probs.device)
        draws = (u.to(probs) < probs[labels]).to(probs)
        return self._export(draws), self._export(labels)

    # ---------------------------------------------------------------- EMModel
    def _weighted_log_prob(self, x: Tensor, params: Params) -> Tensor:
        p = params["probs"].to(x)
        log_q = torch.log1p(-p)
        log_prob = torch.addmm(log_q.sum(1, keepdim=True), p.log() - log_q, x.T)
        return log_prob + params["weights"].to(x).log()[:, None]

    def e_step(self, x: Tensor, params: Params, rows: slice) -> Params:
        log_prob = self._weighted_log_prob(x, params)
        log_norm = log_prob.logsumexp(0)
        resp = (log_prob - log_norm).exp_()
        return {
            "nk": resp.sum(1),
            "s1": resp @ x,
            "log_likelihood": log_norm.sum(),
            "n": x.new_tensor(float(len(x))),
        }

    def m_step(self, stats: Params, params: Params) -> Params:
        nk = stats["nk"] + 10 * torch.finfo(stats["nk"].dtype).eps
        probs = (stats["s1"] / nk[:, None]).clamp(self.min_prob, 1 - self.min_prob)
        return {"weights": nk / stats["n"], "probs": probs}

    def _initial_params(self, x: Tensor, g: torch.Generator) -> Params:
        k, d = self.n_components, x.shape[1]
        if self.init_params == "random":
            probs = 0.25 + 0.5 * torch.rand(k, d, generator=g, dtype=x.dtype)
            params = {"weights": x.new_full((k,), 1 / k), "probs": probs.to(x)}
        else:
            seed = int(torch.randint(0, 2**62, (), generator=g))
            km = KMeans(k, chunk_size=self.chunk_size, random_state=seed).fit(x)
            counts = km.labels_.bincount(minlength=k).to(x)
            stats = {"nk": counts, "s1": km.cluster_centers_ * counts[:, None], "n": counts.sum()}
            params = self.m_step(stats, {})
        if self.weights_init is not None:
            params["weights"] = check_weights(x, self.weights_init, k)
        if self.probs_init is not None:
            probs = check_init(x, self.probs_init, (k, d), "probs_init")
            params["probs"] = probs.clamp(self.min_prob, 1 - self.min_prob)
        return params

    # ---------------------------------------------------------------- Pyro model
    def model(self, x: Tensor, subsample_size: int | None = None) -> None:
        r"""The mixture as a Pyro model, for SVI with ``TraceEnum_ELBO`` and an empty guide.

        Params: ``f"{name}.weights"`` (simplex) and ``f"{name}.probs"`` (unit interval),
        initialised from the fit (or from the initialisation when unfitted); the assignment
        ``f"{name}.assignment"`` is enumerated in the plate ``f"{name}.data"``, so the ELBO is the
        log-likelihood EM maximises. :meth:`load_param_store` copies the params back.
        """
        self._check_params()
        x = self._check_values(check_data(x), "x", None)

        def init() -> Params:
            if not hasattr(self, "probs_"):
                self.n_features_in_ = x.shape[1]
                params = self._initial_params(x, self._generator())
                self.weights_, self.probs_ = params["weights"], params["probs"]
            return {key: value.to(x, copy=True) for key, value in self._params().items()}

        store = pyro.get_param_store()
        fresh = init() if f"{self.name}.weights" not in store else {"weights": None, "probs": None}
        weights = pyro.param(f"{self.name}.weights", fresh["weights"], constraints.simplex)
        probs = pyro.param(f"{self.name}.probs", fresh["probs"], constraints.unit_interval)
        enumerated_mixture(
            self.name, x, weights, lambda z: dist.Bernoulli(probs[z]).to_event(1), subsample_size
        )

    def load_param_store(self) -> BernoulliMixture:
        """Copy the Pyro params of :meth:`model` into ``weights_`` and ``probs_`` (NumPy arrays if
        the estimator was fit on NumPy data); returns ``self``."""
        store = pyro.get_param_store()
        self.weights_ = self._export(store[f"{self.name}.weights"].detach())
        self.probs_ = self._export(store[f"{self.name}.probs"].detach())
        return self
