r"""K-means by Lloyd's algorithm (hard EM), with k-means++ seeding, on torch tensors.

Lloyd's algorithm alternates the assignment :math:`z_n = \arg\min_k \|x_n - \mu_k\|^2` and the
update :math:`\mu_k = \operatorname{mean}\{x_n : z_n = k\}`; each step lowers the inertia
:math:`J = \sum_n \|x_n - \mu_{z_n}\|^2`, the zero-variance limit of EM for an isotropic Gaussian
mixture. Empty clusters are re-seeded at the points farthest from their centres, as scikit-learn
does. :class:`KMeans` is a scikit-learn estimator (clusterer and transformer) with the API of its
``KMeans``; tensors in give tensors out, NumPy in gives NumPy out.

References:
    Least Squares Quantization in PCM (Lloyd, 1982).
    k-means++: The Advantages of Careful Seeding (Arthur & Vassilvitskii, 2007).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils import Tags
from torch import Tensor

from pyro_flowkit.inference.em import Params, distributed
from pyro_flowkit.models._mixture import (
    ArrayLike,
    ConvergenceWarning,
    MixtureEstimator,
    RandomStateLike,
    check_data,
    check_init,
    enumerated_mixture,
    like_input,
    to_tensor,
)
from pyro_flowkit.validation import check_choice

__all__ = ["KMeans", "kmeans_plusplus", "squared_distances"]


def squared_distances(x: Tensor, centres: Tensor) -> Tensor:
    r""":math:`\|x_n - c_k\|^2` of shape ``(n, k)``, by :math:`|x|^2 - 2 x c^\top + |c|^2` (clamped
    at 0)."""
    d2 = torch.addmm(centres.square().sum(1), x, centres.T, alpha=-2.0)
    return d2.add_(x.square().sum(1, keepdim=True)).clamp_(min=0)


def kmeans_plusplus(
    x: Tensor, n_clusters: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    r"""Greedy k-means++ seeding: ``(centres, indices)`` with ``centres = x[indices]``.

    The first centre is uniform; each next one is the best (lowest potential) of
    :math:`2 + \lfloor \log k \rfloor` candidates drawn with probability proportional to
    :math:`D(x)^2`, the squared distance to the nearest chosen centre (Arthur & Vassilvitskii 2007;
    the greedy variant scikit-learn uses).

    Example:
        >>> x = torch.cat([torch.randn(50, 2), torch.randn(50, 2) + 10])
        >>> centres, idx = kmeans_plusplus(x, 2, torch.Generator().manual_seed(0))
        >>> bool((centres[0] - centres[1]).norm() > 5)
        True
    """
    n = len(x)
    trials = 2 + int(math.log(n_clusters))
    first = int(torch.randint(n, (), generator=generator))
    indices = [first]
    closest = squared_distances(x, x[first : first + 1]).squeeze(1)
    for _ in range(1, n_clusters):
        cumulative = closest.cumsum(0).cpu()
        draws = torch.rand(trials, generator=generator, dtype=cumulative.dtype) * cumulative[-1]
        candidates = torch.searchsorted(cumulative, draws).clamp_(max=n - 1)
        d2 = torch.minimum(closest[:, None], squared_distances(x, x[candidates.to(x.device)]))
        best = int(d2.sum(0).argmin())
        indices.append(int(candidates[best]))
        closest = d2[:, best]
    index = torch.tensor(indices, device=x.device)
    return x[index].clone(), index


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, MixtureEstimator):
    r"""K-means clustering by Lloyd's algorithm, chunked and data-parallel through
    :class:`~pyro_flowkit.inference.EM`.

    Arguments:
        n_clusters: the number of clusters :math:`K`.
        init: ``"k-means++"``, ``"random"`` (:math:`K` distinct data points) or an
            ``(n_clusters, d)`` tensor or array of initial centres.
        n_init: restarts; the run with the lowest final inertia is kept.
        max_iter: the most Lloyd iterations per run.
        tol: relative tolerance: stop when :math:`\sum_k \|\mu_k' - \mu_k\|^2` is at most ``tol``
            times the mean per-feature variance of the data (scikit-learn's rule), or when no label
            changes.
        chunk_size: rows per chunk (``None``: all at once).
        seed: seed of the initialisation (``None``: drawn from torch's global RNG).
        name: prefix of the Pyro sites and params of :meth:`model`.
        random_state: scikit-learn's name for ``seed``: an integer (the same fit as ``seed`` of
            that value), a NumPy ``RandomState`` (draws the seed at every ``fit``) or ``None``. At
            most one of ``seed`` and ``random_state`` may be set.

    The arguments are stored as given and checked by :meth:`fit` (scikit-learn's rules). Fitted
    arrays are tensors when ``fit`` got a tensor, NumPy arrays otherwise; ``predict`` and
    ``transform`` follow their own input the same way. Fewer distinct points than clusters give
    duplicate centres and a warning, as in scikit-learn, that both
    :class:`pyro_flowkit.ConvergenceWarning` and scikit-learn's ``ConvergenceWarning`` catch.

    Fitted attributes: ``cluster_centers_`` ``(K, d)``, ``labels_`` ``(n,)``, ``inertia_``,
    ``n_iter_``, ``converged_``, ``lower_bounds_`` (minus the mean inertia of every iteration),
    ``empty_clusters_`` (number of re-seedings), ``n_features_in_`` (and ``feature_names_in_`` when
    fit on a data frame).

    Example:
        >>> x = torch.cat([torch.randn(100, 2), torch.randn(100, 2) + 8])
        >>> km = KMeans(2, seed=0).fit(x)
        >>> sorted(km.predict(x).bincount().tolist())
        [100, 100]
    """

    local_keys = ("labels",)
    _fitted_attr = "cluster_centers_"
    _count_name = "n_clusters"

    def __init__(
        self,
        n_clusters: int = 8,
        init: str | ArrayLike = "k-means++",
        n_init: int = 1,
        max_iter: int = 300,
        tol: float = 1e-4,
        chunk_size: int | None = None,
        seed: int | None = None,
        name: str = "kmeans",
        random_state: RandomStateLike = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.chunk_size = chunk_size
        self.seed = seed
        self.name = name
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        if isinstance(self.init, str):
            check_choice("init", self.init, ("k-means++", "random"))

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @property
    def _n_features_out(self) -> int:
        """The number of outputs of ``transform`` (for ``get_feature_names_out``)."""
        return self.cluster_centers_.shape[0]

    # ---------------------------------------------------------------- fitting
    def fit(self, x: ArrayLike, y: object = None) -> KMeans:
        """Cluster ``x`` of shape ``(n, d)``; ``y`` is ignored. Returns ``self``."""
        self._check_params()
        xt = self._input(x, reset=True, min_rows=self.n_clusters)
        self._em = self._driver(xt.shape[1])
        self._tol_abs = self.tol * float(_feature_variance(xt).mean())
        self._empty, self._x = 0, xt
        try:
            g = self._generator()
            best = None
            for _ in range(self.n_init):
                result = self._em.run(self, xt, {"centres": self._initial_centres(xt, g)})
                final = self._em.accumulate(self, xt, result.params)
                inertia = -float(final["log_likelihood"])
                if best is None or inertia < best[1]:
                    best = (result, inertia, final["labels"])
        finally:
            del self._x
        result, self.inertia_, labels = best
        centres = result.params["centres"]
        self.labels_ = self._export(labels)
        self.cluster_centers_ = self._export(centres)
        self._store(result)
        self.empty_clusters_ = self._empty
        distinct = len(torch.unique(centres, dim=0))
        if distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
                f"({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def fit_predict(self, x: ArrayLike, y: object = None) -> ArrayLike:
        """``fit(x)`` and return ``labels_`` (``y`` is ignored)."""
        return self.fit(x).labels_

    def predict(self, x: ArrayLike) -> ArrayLike:
        """The index of the nearest centre for every row of ``x``."""
        return like_input(self._distances(lambda d2: d2.argmin(1), x), x)

    def transform(self, x: ArrayLike) -> ArrayLike:
        """Euclidean distances of every row of ``x`` to every centre, ``(n, K)``."""
        return like_input(self._distances(torch.sqrt, x), x)

    def score(self, x: ArrayLike, y: object = None) -> float:
        """Minus the inertia of ``x`` under the fitted centres (scikit-learn's sign; ``y`` is
        ignored)."""
        return -float(self._distances(lambda d2: d2.min(1).values, x).sum())

    def _distances(self, fn: Callable[[Tensor], Tensor], x: object) -> Tensor:
        """``fn`` of the squared distances to the centres, chunk by chunk of rows."""
        self._check_fitted()
        xt = self._input(x, reset=False)
        centres = to_tensor(self.cluster_centers_).to(xt)
        return self._map_rows(lambda c: fn(squared_distances(c, centres)), xt)

    def _initial_centres(self, x: Tensor, g: torch.Generator) -> Tensor:
        k = self.n_clusters
        if isinstance(self.init, str):
            if self.init == "random":
                return x[torch.randperm(len(x), generator=g)[:k].to(x.device)].clone()
            return kmeans_plusplus(x, k, g)[0]
        return check_init(x, self.init, (k, x.shape[1]), "init").clone()

    # ---------------------------------------------------------------- EMModel
    def e_step(self, x: Tensor, params: Params, rows: slice) -> Params:
        centres = params["centres"]
        k = len(centres)
        # argmin_k |x - c_k|^2 = argmin_k (|c_k|^2 - 2 x.c_k): |x|^2 is added to the minima only
        partial = torch.addmm(centres.square().sum(1), x, centres.T, alpha=-2.0)
        nearest, labels = partial.min(1)
        return {
            "counts": torch.bincount(labels, minlength=k).to(x.dtype),
            "sums": torch.zeros_like(centres).index_add_(0, labels, x),
            "log_likelihood": -(nearest + x.square().sum(1)).clamp_(min=0).sum(),
            "n": x.new_tensor(float(len(x))),
            "labels": labels,
        }

    def m_step(self, stats: Params, params: Params) -> Params:
        counts, sums = stats["counts"].clone(), stats["sums"].clone()
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:  # rare: re-seed at the points farthest from their (old) centres
            self._empty += len(empty)
            far = self._em.accumulate(_Farthest(len(empty)), self._x, params)
            for j, cluster in enumerate(empty):
                point, owner = far["far_x"][j], int(far["far_label"][j])
                if owner >= 0:
                    sums[owner] -= point
                    counts[owner] -= 1
                sums[cluster], counts[cluster] = point, 1
        return {"centres": sums / counts.clamp(min=1)[:, None]}

    def converged(self, change: float, old: Params, new: Params, tol: float) -> bool:
        shift = float((new["centres"] - old["centres"]).square().sum())
        return shift <= self._tol_abs

    # ---------------------------------------------------------------- Pyro model
    def model(self, x: Tensor, scale: float = 1.0) -> None:
        r"""K-means as a Pyro model: an equal-weight mixture of :math:`N(\mu_k, s^2 I)`.

        The centres are the ``pyro.param`` ``f"{name}.cluster_centers"`` (initialised from the fit,
        or from ``init`` when unfitted) and the assignment ``f"{name}.assignment"`` is enumerated in
        the plate ``f"{name}.data"``. As :math:`s \to 0` maximum likelihood approaches K-means; for
        :math:`s > 0` SVI with ``TraceEnum_ELBO`` fits this soft K-means.
        """
        x = check_data(x)
        centres = pyro.param(f"{self.name}.cluster_centers", lambda: self._svi_init(x))
        enumerated_mixture(
            self.name, x, torch.full((self.n_clusters,), 1 / self.n_clusters).to(x),
            lambda z: dist.Normal(centres[z], scale).to_event(1),
        )  # fmt: skip

    def _svi_init(self, x: Tensor) -> Tensor:
        if hasattr(self, "cluster_centers_"):
            return to_tensor(self.cluster_centers_).to(x, copy=True)
        self._check_params()
        return self._initial_centres(x, self._generator())


def _feature_variance(x: Tensor) -> Tensor:
    """Per-feature variance of all rows (of all processes under ``torch.distributed``)."""
    moments = torch.stack([x.new_ones(x.shape[1]) * len(x), x.sum(0)])
    if distributed():
        torch.distributed.all_reduce(moments)
    n, total = moments
    squares = (x - total / n).square().sum(0)
    if distributed():
        torch.distributed.all_reduce(squares)
    return squares / n


class _Farthest:
    """An E-pass that finds the ``m`` rows farthest from their nearest centre (for re-seeding
    empty clusters), merged across chunks and processes by distance."""

    local_keys: tuple[str, ...] = ()
    merge_keys = ("far_d", "far_label", "far_x")

    def __init__(self, m: int) -> None:
        self.m = m

    def e_step(self, x: Tensor, params: Params, rows: slice) -> Params:
        nearest, labels = squared_distances(x, params["centres"]).min(1)
        m = min(self.m, len(x))
        far_d, far = nearest.topk(m)
        pad = self.m - m
        return {
            "far_d": torch.nn.functional.pad(far_d, (0, pad), value=-math.inf),
            "far_label": torch.nn.functional.pad(labels[far], (0, pad), value=-1),
            "far_x": torch.nn.functional.pad(x[far], (0, 0, 0, pad)),
        }

    def merge(self, key: str, a: Tensor, b: Tensor) -> Tensor:
        # keys arrive in the e_step's (and, across processes, sorted) order, far_d first: it fixes
        # the order for the others
        if key == "far_d":
            both = torch.cat([a, b])
            self._order = both.topk(len(a)).indices
            return both[self._order]
        return torch.cat([a, b])[self._order]
