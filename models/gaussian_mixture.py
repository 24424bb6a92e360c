r"""Gaussian mixtures fit by exact EM on torch tensors (CPU or GPU), and as Pyro models.

:math:`p(x) = \sum_k w_k \, N(x \mid \mu_k, \Sigma_k)`. The E-step computes responsibilities
:math:`r_{nk} \propto w_k N(x_n \mid \mu_k, \Sigma_k)` by log-sum-exp with Cholesky factors of the
precisions; the M-step sets :math:`w_k = N_k / N`, :math:`\mu_k = \sum_n r_{nk} x_n / N_k` and
:math:`\Sigma_k = \sum_n r_{nk} (x_n - \mu_k)(x_n - \mu_k)^\top / N_k + \epsilon I` (``reg_covar``),
with the full, tied, diagonal or spherical form of :math:`\Sigma`. The second moments are
accumulated around the previous means, :math:`\sum_n r_{nk} (x_n - \mu_k^{old})(\cdot)^\top`, and
corrected by :math:`-N_k \delta_k \delta_k^\top` with :math:`\delta_k = \mu_k - \mu_k^{old}`:
exact, and free of the cancellation of :math:`E[xx^\top] - \mu\mu^\top`. The estimator is a
scikit-learn estimator with the API of its ``GaussianMixture`` (``get_params``/``set_params``,
``clone``, parameters read at ``fit``); tensors in give tensors out, NumPy in gives NumPy out.

References:
    Pattern Recognition and Machine Learning, section 9.2 (Bishop, 2006).
    Maximum Likelihood from Incomplete Data via the EM Algorithm (Dempster, Laird & Rubin, 1977).
"""

from __future__ import annotations

import math
import warnings

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
    check_data,
    check_init,
    check_weights,
    enumerated_mixture,
    to_tensor,
)
from pyro_flowkit.models.kmeans import KMeans, kmeans_plusplus
from pyro_flowkit.validation import check_choice, check_count, check_positive

__all__ = ["GaussianMixture"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
_LOG_2PI = math.log(2 * math.pi)


class GaussianMixture(ProbabilisticMixture):
    r"""A Gaussian mixture fit by EM (:class:`~pyro_flowkit.inference.EM`), scikit-learn's API.

    Arguments:
        n_components: the number of components :math:`K`.
        covariance_type: ``"full"`` (one :math:`d \times d` matrix per component), ``"tied"`` (one
            shared), ``"diag"`` (diagonal per component) or ``"spherical"`` (:math:`\sigma_k^2 I`).
        tol: stop when the mean per-sample log-likelihood changes by less than this.
        reg_covar: added to the covariance diagonals, keeping them positive definite.
        max_iter: the most EM iterations per initialisation.
        n_init: initialisations; the one with the highest final lower bound is kept.
        init_params: ``"kmeans"`` (responsibilities from one K-means run), ``"k-means++"`` and
            ``"random_from_data"`` (means at chosen data points), or ``"random"`` (random
            responsibilities).
        weights_init, means_init, precisions_init: initial parameters overriding ``init_params``
            (precisions in the shape of ``covariances_``; tensors or arrays).
        chunk_size: rows per chunk of the E-step; peak memory is that of one chunk.
        seed: seed of the initialisation and of ``sample`` (``None``: torch's global RNG).
        name: prefix of the Pyro sites and params of :meth:`model`.
        random_state: scikit-learn's name for ``seed`` (what ``set_random_state`` and
            ``GridSearchCV`` users set): an integer (the same fit as ``seed`` of that value), a
            NumPy ``RandomState`` (draws the seed at every ``fit`` and ``sample``) or ``None``.
            At most one of ``seed`` and ``random_state`` may be set.

    The arguments are stored as given and checked by :meth:`fit`, so ``set_params``, ``clone``
    and ``GridSearchCV`` work as with scikit-learn's estimators. Fitted arrays are tensors (on the
    data's device, in its dtype) when ``fit`` got a tensor, NumPy arrays otherwise; the outputs of
    the methods follow their own input the same way.

    Fitted attributes: ``weights_`` ``(K,)``, ``means_`` ``(K, d)``, ``covariances_`` and
    ``precisions_cholesky_`` (full ``(K, d, d)``, tied ``(d, d)``, diag ``(K, d)``, spherical
    ``(K,)``; :math:`P_k = U_k U_k^\top` with :math:`U_k` upper triangular, as in scikit-learn),
    ``precisions_``, ``converged_``, ``n_iter_``, ``lower_bound_``, ``lower_bounds_`` (every
    iteration), ``monotone_violations_``, ``n_features_in_`` (and ``feature_names_in_`` when fit on
    a data frame) and ``empty_components_`` (components whose responsibility mass vanished: they
    keep their previous mean and covariance, and a ``RuntimeWarning`` says so).

    Example:
        >>> x = torch.cat([torch.randn(200, 2) - 4, torch.randn(200, 2) + 4]).double()
        >>> gmm = GaussianMixture(2, seed=0).fit(x)
        >>> gmm.means_[gmm.means_[:, 0].argsort()].round().tolist()
        [[-4.0, -4.0], [4.0, 4.0]]
    """

    _fitted_attr = "means_"

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: ArrayLike | None = None,
        means_init: ArrayLike | None = None,
        precisions_init: ArrayLike | None = None,
        chunk_size: int | None = None,
        seed: int | None = None,
        name: str = "gmm",
        random_state: RandomStateLike = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.chunk_size = chunk_size
        self.seed = seed
        self.name = name
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        check_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        check_choice("init_params", self.init_params, INIT_PARAMS)
        check_positive("reg_covar", self.reg_covar, allow_zero=True)

    def _width(self, n_features: int) -> int:
        full = self.covariance_type in ("full", "tied")
        return self.n_components * (n_features if full else 1) + n_features

    # ---------------------------------------------------------------- fitting
    def fit(self, x: ArrayLike, y: object = None) -> GaussianMixture:
        """Fit by EM (``n_init`` runs, the best kept) on ``x`` of shape ``(n, d)``; ``y`` is
        ignored. Returns ``self``."""
        self._check_params()
        xt = self._input(x, reset=True, min_rows=max(self.n_components, 2))
        self._empty: set[int] = set()
        g = self._generator()
        em = self._driver(xt.shape[1])
        result = self._fit_em(em, xt, lambda _: self._initial_params(xt, g))
        self._set_params(result.params)
        self._store(result)
        self.empty_components_ = sorted(self._empty)
        return self

    def _set_params(self, params: Params) -> None:
        u = params["precisions_cholesky"]
        precisions = u @ u.mT if self.covariance_type in ("full", "tied") else u.square()
        self.weights_ = self._export(params["weights"])
        self.means_ = self._export(params["means"])
        self.covariances_ = self._export(params["covariances"])
        self.precisions_cholesky_ = self._export(u)
        self.precisions_ = self._export(precisions)
        self.n_features_in_ = params["means"].shape[1]

    def _params(self) -> Params:
        return {
            "weights": to_tensor(self.weights_),
            "means": to_tensor(self.means_),
            "covariances": to_tensor(self.covariances_),
            "precisions_cholesky": to_tensor(self.precisions_cholesky_),
        }

    def sample(self, n_samples: int = 1) -> tuple[ArrayLike, ArrayLike]:
        """``(x, labels)``: ``n_samples`` draws and their components, sorted by component (arrays
        of the kind of the fitted attributes)."""
        self._check_fitted()
        check_count("n_samples", n_samples)
        params = self._params()
        means = params["means"]
        g = self._generator()
        weights = params["weights"].detach().cpu()
        labels = torch.multinomial(weights, n_samples, replacement=True, generator=g).sort().values
        noise = torch.randn(n_samples, means.shape[1], generator=g, dtype=weights.dtype)
        labels, noise = labels.to(means.device), noise.to(means)
        scale = self._scale_tril(params["covariances"])
        if self.covariance_type == "full":
            draws = means[labels] + (scale[labels] @ noise.unsqueeze(-1)).squeeze(-1)
        elif self.covariance_type == "tied":
            draws = means[labels] + (scale @ noise.unsqueeze(-1)).squeeze(-1)
        else:
            scale = scale[labels] if self.covariance_type == "diag" else scale[labels, None]
            draws = means[labels] + scale * noise
        return self._export(draws), self._export(labels)

    def _scale_tril(self, covariances: Tensor) -> Tensor:
        if self.covariance_type in ("full", "tied"):
            return torch.linalg.cholesky(covariances)
        return covariances.sqrt()

    def n_parameters(self) -> int:
        """The number of free parameters (for BIC/AIC)."""
        self._check_fitted()
        k, d = self.means_.shape
        cov = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d}
        return cov.get(self.covariance_type, k) + k * d + k - 1

    # ---------------------------------------------------------------- EMModel
    def e_step(self, x: Tensor, params: Params, rows: slice) -> Params:
        log_prob, diff = self._log_prob(x, params)
        log_prob = log_prob + params["weights"].log()[:, None]
        log_norm = log_prob.logsumexp(0)
        resp = (log_prob - log_norm).exp_()
        stats = self._moments(x, resp, diff)
        stats.update(log_likelihood=log_norm.sum(), n=x.new_tensor(float(len(x))))
        return stats

    def m_step(self, stats: Params, params: Params) -> Params:
        nk = stats["nk"] + 10 * torch.finfo(stats["nk"].dtype).eps
        empty = stats["nk"] <= 1e-10 * stats["n"]
        if empty.any():
            self._report_empty(empty)
        if self.covariance_type in ("full", "tied"):
            delta = stats["s1"] / nk[:, None]
            means = params["means"] + delta
            outer = delta[:, :, None] * delta[:, None, :]
            if self.covariance_type == "full":
                cov = stats["s2"] / nk[:, None, None] - outer
            else:
                cov = (stats["s2"] - (nk[:, None, None] * outer).sum(0)) / nk.sum()
            cov = cov + self.reg_covar * torch.eye(cov.shape[-1]).to(cov)
        else:
            means = stats["s1"] / nk[:, None]
            cov = stats["s2"] / nk[:, None] - 2 * means * means + means.square() + self.reg_covar
            if self.covariance_type == "spherical":
                cov = cov.mean(1)
        if empty.any() and "covariances" in params:
            means, cov = self._keep_empty(empty, means, cov, params)
        return self._complete(nk / stats["n"], means, cov)

    def monotone_slack(self, old: Params, new: Params) -> float:
        r"""How far ``reg_covar`` lets one EM step lower the mean log-likelihood.

        With :math:`\Sigma_k = S_k + \epsilon I` the M-step maximises
        :math:`Q(\theta) - \frac\epsilon2 \sum_k N_k \operatorname{tr} \Sigma_k^{-1}` rather
        than :math:`Q`, so :math:`\ell_{t+1} - \ell_t \ge \frac\epsilon2 \sum_k w_k^{t+1}
        (\operatorname{tr} P_k^{t+1} - \operatorname{tr} P_k^t)` per sample.
        """
        trace_new, trace_old = (self._precision_trace(p) for p in (new, old))
        change = (new["weights"] * (trace_new - trace_old)).sum()
        return max(0.0, 0.5 * self.reg_covar * float(change))

    def _precision_trace(self, params: Params) -> Tensor:
        u = params["precisions_cholesky"]
        if self.covariance_type in ("full", "tied"):
            return u.square().sum((-2, -1))
        if self.covariance_type == "diag":
            return u.square().sum(-1)
        return params["means"].shape[1] * u.square()

    def _complete(self, weights: Tensor, means: Tensor, covariances: Tensor) -> Params:
        return {
            "weights": weights,
            "means": means,
            "covariances": covariances,
            "precisions_cholesky": self._precision_cholesky(covariances),
        }

    def _precision_cholesky(self, cov: Tensor) -> Tensor:
        if self.covariance_type in ("full", "tied"):
            chol, info = torch.linalg.cholesky_ex(cov)
            if bool((info > 0).any()) or not bool(torch.isfinite(chol).all()):
                raise ValueError(_ILL_DEFINED)
            eye = torch.eye(cov.shape[-1]).to(cov).expand_as(cov)
            return torch.linalg.solve_triangular(chol, eye, upper=False).mT
        if bool((cov <= 0).any()):
            raise ValueError(_ILL_DEFINED)
        return cov.rsqrt()

    def _keep_empty(
        self, empty: Tensor, means: Tensor, cov: Tensor, params: Params
    ) -> tuple[Tensor, Tensor]:
        means = torch.where(empty[:, None], params["means"], means)
        if self.covariance_type != "tied":
            shape = (-1,) + (1,) * (cov.dim() - 1)
            cov = torch.where(empty.view(shape), params["covariances"], cov)
        return means, cov

    def _report_empty(self, empty: Tensor) -> None:
        new = set(empty.nonzero().flatten().tolist()) - self._empty
        if new:
            self._empty |= new
            warnings.warn(
                f"GaussianMixture: components {sorted(new)} have no responsibility left; they keep "
                "their previous means and covariances (see empty_components_); consider fewer "
                "n_components",
                RuntimeWarning,
                stacklevel=5,
            )

    def _log_prob(self, x: Tensor, params: Params) -> tuple[Tensor, Tensor | None]:
        """``log N(x_n | mu_k, Sigma_k)`` of shape ``(K, n)``, and ``x - mu_k`` ``(K, n, d)`` for
        full and tied covariances."""
        means, u = params["means"], params["precisions_cholesky"]
        d = x.shape[1]
        if self.covariance_type in ("full", "tied"):
            diff = x[None] - means[:, None]
            maha = (diff @ u).square_().sum(-1)
            log_det = u.diagonal(dim1=-2, dim2=-1).log().sum(-1)
            log_det = log_det[:, None] if self.covariance_type == "full" else log_det
        else:
            diff = None
            prec = u.square()
            if self.covariance_type == "spherical":
                prec = prec[:, None].expand_as(means)
            maha = torch.addmm(
                (means.square() * prec).sum(1, keepdim=True), means * prec, x.T, alpha=-2.0
            )
            maha = maha.add_(prec @ x.square().T)
            if self.covariance_type == "spherical":
                log_det = d * u.log()[:, None]
            else:
                log_det = u.log().sum(1, keepdim=True)
        return log_det - 0.5 * (d * _LOG_2PI + maha), diff

    def _weighted_log_prob(self, x: Tensor, params: Params) -> Tensor:
        params = {key: value.to(x) for key, value in params.items()}
        return self._log_prob(x, params)[0] + params["weights"].log()[:, None]

    def _moments(self, x: Tensor, resp: Tensor, diff: Tensor | None) -> Params:
        """Zeroth, first and second moments of the rows weighted by ``resp`` ``(K, n)``; for
        full/tied around the current means (``diff``)."""
        nk = resp.sum(1)
        if diff is None:
            return {"nk": nk, "s1": resp @ x, "s2": resp @ x.square()}
        weighted = diff * resp[:, :, None]
        s1 = weighted.sum(1)
        if self.covariance_type == "full":
            s2 = weighted.mT @ diff
        else:
            s2 = weighted.reshape(-1, x.shape[1]).T @ diff.reshape(-1, x.shape[1])
        return {"nk": nk, "s1": s1, "s2": s2}

    # ---------------------------------------------------------------- initialisation
    def _initial_params(self, x: Tensor, g: torch.Generator) -> Params:
        given = self._given_inits(x)
        if len(given) < 3:
            params = self._data_init(x, g)
            params.update(given)
        else:
            params = given
        return self._complete(params["weights"], params["means"], params["covariances"])

    def _data_init(self, x: Tensor, g: torch.Generator) -> Params:
        k, d = self.n_components, x.shape[1]
        if self.init_params in ("k-means++", "random_from_data"):
            if self.init_params == "k-means++":
                means = kmeans_plusplus(x, k, g)[0]
            else:
                means = x[torch.randperm(len(x), generator=g)[:k].to(x.device)].clone()
            eye = torch.eye(d).to(x)
            cov = {
                "full": self.reg_covar * eye.expand(k, d, d),
                "tied": self.reg_covar * eye,
                "diag": x.new_full((k, d), self.reg_covar),
                "spherical": x.new_full((k,), self.reg_covar),
            }[self.covariance_type]
            return {"weights": x.new_full((k,), 1 / k), "means": means, "covariances": cov}
        if self.init_params == "kmeans":
            seed = int(torch.randint(0, 2**62, (), generator=g))
            km = KMeans(k, n_init=1, chunk_size=self.chunk_size, random_state=seed).fit(x)
            labels = km.labels_

            def resp(rows: slice) -> Tensor:
                return torch.nn.functional.one_hot(labels[rows], k).T.to(x)

        else:
            random = torch.rand(len(x), k, generator=g, dtype=x.dtype).to(x.device)
            random /= random.sum(1, keepdim=True)

            def resp(rows: slice) -> Tensor:
                return random[rows].T

        return self._params_from_resp(x, resp)

    def _params_from_resp(self, x: Tensor, resp: object) -> Params:
        """The M-step from given responsibilities: means in a first pass, then the moments around
        them in a second (exact, as in the E-step)."""
        k, d = self.n_components, x.shape[1]
        zero = {"means": x.new_zeros(k, d), "covariances": x.new_zeros(())}
        em = self._driver(d)
        first = em.accumulate(_FromResp(self, resp), x, zero)
        means = first["s1"] / (first["nk"] + 10 * torch.finfo(x.dtype).eps)[:, None]
        if self.covariance_type in ("diag", "spherical"):
            return self.m_step(first, {"means": x.new_zeros(k, d)})
        second = em.accumulate(_FromResp(self, resp), x, {"means": means})
        return self.m_step(second, {"means": means})

    def _given_inits(self, x: Tensor) -> Params:
        k, d = self.n_components, x.shape[1]
        given: Params = {}
        if self.weights_init is not None:
            given["weights"] = check_weights(x, self.weights_init, k)
        if self.means_init is not None:
            given["means"] = check_init(x, self.means_init, (k, d), "means_init")
        if self.precisions_init is not None:
            shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
            p = check_init(x, self.precisions_init, shape[self.covariance_type], "precisions_init")
            given["covariances"] = _inverse_precisions(p, self.covariance_type)
        return given

    # ---------------------------------------------------------------- Pyro model
    def model(self, x: Tensor, subsample_size: int | None = None) -> None:
        r"""The mixture as a Pyro model, for SVI with ``TraceEnum_ELBO`` and an empty guide.

        Params (``pyro.param``, initialised from the fit, or from the initialisation when
        unfitted): ``f"{name}.weights"`` (simplex), ``f"{name}.means"``, and
        ``f"{name}.scale_tril"`` (full: ``(K, d, d)``, tied: ``(d, d)``; lower Cholesky) or
        ``f"{name}.scales"`` (diag: ``(K, d)``, spherical: ``(K,)``; positive). The assignment
        ``f"{name}.assignment"`` is enumerated in the plate ``f"{name}.data"``, so the ELBO is
        exactly :math:`\sum_n \log p(x_n)`, the objective of EM. :meth:`load_param_store` copies the
        params back into the fitted attributes.

        Example:
            >>> from pyro.infer import SVI, TraceEnum_ELBO
            >>> x = torch.randn(100, 2)
            >>> gmm = GaussianMixture(2, seed=0)
            >>> svi = SVI(gmm.model, lambda x: None, pyro.optim.Adam({"lr": 0.05}),
            ...           TraceEnum_ELBO(max_plate_nesting=1))
            >>> losses = [svi.step(x) for _ in range(20)]
            >>> gmm.load_param_store().means_.shape
            torch.Size([2, 2])
        """
        x = check_data(x)
        init = self._svi_init(x)
        weights = pyro.param(f"{self.name}.weights", init["weights"], constraints.simplex)
        means = pyro.param(f"{self.name}.means", init["means"])
        if self.covariance_type in ("full", "tied"):
            scale = pyro.param(f"{self.name}.scale_tril", init["scale"], constraints.lower_cholesky)
        else:
            scale = pyro.param(f"{self.name}.scales", init["scale"], constraints.positive)

        def component(z: Tensor) -> dist.Distribution:
            if self.covariance_type == "full":
                return dist.MultivariateNormal(means[z], scale_tril=scale[z])
            if self.covariance_type == "tied":
                return dist.MultivariateNormal(means[z], scale_tril=scale)
            s = scale[z] if self.covariance_type == "diag" else scale[z][..., None]
            return dist.Normal(means[z], s).to_event(1)

        enumerated_mixture(self.name, x, weights, component, subsample_size)

    def _svi_init(self, x: Tensor) -> dict[str, object]:
        """Initial values of the Pyro params, computed lazily (only when a param is new)."""
        store = pyro.get_param_store()
        if f"{self.name}.weights" in store:
            return {"weights": None, "means": None, "scale": None}
        if not hasattr(self, "means_"):
            self._check_params()
            self._empty = set()
            self._set_params(self._initial_params(x, self._generator()))
        params = self._params()
        # clones: Pyro's param store makes its initial tensors require grad in place
        return {
            "weights": params["weights"].to(x, copy=True),
            "means": params["means"].to(x, copy=True),
            "scale": self._scale_tril(params["covariances"]).to(x, copy=True),
        }

    def load_param_store(self) -> GaussianMixture:
        """Copy the Pyro params of :meth:`model` (e.g. after SVI) into ``weights_``, ``means_``,
        ``covariances_`` and ``precisions_cholesky_`` (NumPy arrays if the estimator was fit on
        NumPy data); returns ``self``."""
        store = pyro.get_param_store()
        weights = store[f"{self.name}.weights"].detach()
        means = store[f"{self.name}.means"].detach()
        if self.covariance_type in ("full", "tied"):
            scale = store[f"{self.name}.scale_tril"].detach()
            cov = scale @ scale.mT
        else:
            cov = store[f"{self.name}.scales"].detach().square()
        self._set_params(self._complete(weights, means, cov))
        return self


class _FromResp:
    """An E-step whose responsibilities are given (for the initial M-step)."""

    local_keys: tuple[str, ...] = ()
    merge_keys: tuple[str, ...] = ()

    def __init__(self, gmm: GaussianMixture, resp: object) -> None:
        self.gmm, self.resp = gmm, resp

    def e_step(self, x: Tensor, params: Params, rows: slice) -> Params:
        r = self.resp(rows)
        diff = None
        if self.gmm.covariance_type in ("full", "tied"):
            diff = x[None] - params["means"][:, None]
        stats = self.gmm._moments(x, r, diff)
        stats["n"] = x.new_tensor(float(len(x)))
        return stats


_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
    "number of components, or increase reg_covar."
)


def _inverse_precisions(p: Tensor, covariance_type: str) -> Tensor:
    if covariance_type in ("full", "tied"):
        chol, info = torch.linalg.cholesky_ex(p)
        if bool((info > 0).any()):
            raise ValueError("precisions_init: expected symmetric positive-definite matrices")
        return torch.cholesky_inverse(chol)
    if bool((p <= 0).any()):
        raise ValueError("precisions_init: expected positive precisions")
    return p.reciprocal()
