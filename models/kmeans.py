r"""K-means by Lloyd's algorithm (hard EM), with k-means++ seeding, on torch tensors.

Lloyd's algorithm alternates the assignment :math:`z_n = \arg\min_k \|x_n - \mu_k\|^2` and the
update :math:`\mu_k = \operatorname{mean}\{x_n : z_n = k\}`; each step lowers the inertia
:math:`J = \sum_n \|x_n - \mu_{z_n}\|^2`, the zero-variance limit of EM for an isotropic Gaussian
mixture. Empty clusters are re-seeded at the points farthest from their centres, as scikit-learn
does. :class:`KMeans` is a scikit-learn estimator (clusterer and transformer) with the API of its
``KMeans``; tensors in give tensors out, NumPy in gives NumPy out.

How an iteration runs (:class:`_Lloyd`): the data are centred once and stored transposed,
``(d, n)`` (scikit-learn centres a copy too). For a chunk of rows and the centres of every restart
at once (``n_init`` restarts share each pass over the data), one GEMM gives
:math:`\|c_k\|^2 - 2 c_k^\top x` as ``(restarts * K, rows)``; its minimum over :math:`k` is a
reduction across contiguous rows (10x faster than an ``argmin`` along the short axis);
comparing the block with its minimum, in place, gives the one-hot assignment, and a second GEMM
of that one-hot block with the rows gives the per-cluster sums. No label vector is formed inside
the loop. A row at exactly equal distance from two centres would count twice; the pass counts
the (row, nearest centre) pairs, an exact integer, and when they exceed the rows it recomputes
the iteration with first-index tie-breaking, scikit-learn's rule. Each iteration synchronises
with the device once, for the convergence test. On a CPU with several torch threads the chunks of
a pass are shared out among as many Python threads, each running its operations on one torch
thread (torch releases the GIL inside them), as scikit-learn shares its chunks among OpenMP
threads: a chunk is some twenty small operations, and waking torch's own threads for each of them
cost more than it saved (1.4-1.8x the one-thread time on two cores).

References:
    Least Squares Quantization in PCM (Lloyd, 1982).
    k-means++: The Advantages of Careful Seeding (Arthur & Vassilvitskii, 2007).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils import Tags
from torch import Tensor

from pyro_flowkit.inference.em import EM, EMResult, Params, distributed
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

_MIN_SHARED_ROWS = 4096  # below this many rows a chunk is not worth a thread of its own


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
    x2 = x.square().sum(1)  # |x|^2 once; distances below are (candidates, n): sums along rows
    closest = _squared_distances_t(x, x2, x[first : first + 1])[0]
    for _ in range(1, n_clusters):
        cumulative = closest.cumsum(0).cpu()
        draws = torch.rand(trials, generator=generator, dtype=cumulative.dtype) * cumulative[-1]
        candidates = torch.searchsorted(cumulative, draws).clamp_(max=n - 1)
        d2 = torch.minimum(closest, _squared_distances_t(x, x2, x[candidates.to(x.device)]))
        best = int(d2.sum(1).argmin())
        indices.append(int(candidates[best]))
        closest = d2[best]
    index = torch.tensor(indices, device=x.device)
    return x[index].clone(), index


def _squared_distances_t(x: Tensor, x2: Tensor, centres: Tensor) -> Tensor:
    """:func:`squared_distances` transposed, ``(k, n)``, with ``x2`` the rows' squared norms."""
    d2 = torch.addmm(centres.square().sum(1, keepdim=True), centres, x.T, alpha=-2.0)
    return d2.add_(x2).clamp_(min=0)


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, MixtureEstimator):
    r"""K-means clustering by Lloyd's algorithm: chunked, restarts batched, chunks shared among
    the CPU threads torch is given (``torch.set_num_threads``), data-parallel under
    ``torch.distributed`` (statistics all-reduced once per iteration).

    Arguments:
        n_clusters: the number of clusters :math:`K`.
        init: ``"k-means++"``, ``"random"`` (:math:`K` distinct data points) or an
            ``(n_clusters, d)`` tensor or array of initial centres.
        n_init: restarts, run side by side (each pass over the data serves all that have not
            converged); the run with the lowest final inertia is kept.
        max_iter: the most Lloyd iterations per run.
        tol: relative tolerance: stop when :math:`\sum_k \|\mu_k' - \mu_k\|^2` is at most ``tol``
            times the mean per-feature variance of the data (scikit-learn's rule), or when no label
            changes.
        chunk_size: rows per chunk (``None``: about :math:`2^{18} / (n_\text{init} K)` rows, so
            that a chunk's distances stay in cache).
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
        """Cluster ``x`` of shape ``(n, d)``; ``y`` is ignored. Returns ``self``.

        The ``n_init`` restarts run side by side (one pass over the data per iteration serves
        all of them; a restart leaves the batch when it converges) and the one with the lowest
        final inertia is kept.
        """
        self._check_params()
        xt = self._input(x, reset=True, min_rows=self.n_clusters)
        g = self._generator()
        starts = torch.stack([self._initial_centres(xt, g) for _ in range(self.n_init)])
        if distributed():  # every process starts from rank 0's centres
            starts = starts.contiguous()
            torch.distributed.broadcast(starts, src=0)
        k = self.n_clusters
        rows = self._rows_for(self.n_init * k)
        with _Lloyd(xt, rows) as lloyd:
            self._tol_abs = self.tol * float(lloyd.variance.mean())
            runs = lloyd.run(starts - lloyd.mean, self.max_iter, self._tol_abs)
            self._empty = lloyd.reseeded
            # the final inertia of every restart, then the labels of the best one
            if len(runs.centres) == 1:
                inertia, labels = lloyd.final(runs.centres[0])
                best, self.inertia_ = 0, float(inertia)
            else:
                inertias = lloyd.inertia(runs.centres).tolist()
                best = min(range(len(inertias)), key=inertias.__getitem__)  # first of ties
                self.inertia_, labels = float(inertias[best]), lloyd.final(runs.centres[best])[1]
        centres = runs.centres[best]
        self.labels_ = self._export(labels)
        self.cluster_centers_ = self._export(centres + lloyd.mean)
        self._store(
            EMResult(
                params={"centres": self.cluster_centers_},
                lower_bound=runs.lower_bounds[best][-1],
                lower_bounds=runs.lower_bounds[best],
                n_iter=runs.n_iter[best],
                converged=runs.converged[best],
                decreases=runs.decreases[best],
            )
        )
        self.empty_clusters_ = self._empty
        used = torch.bincount(labels, minlength=k)
        if distributed():
            torch.distributed.all_reduce(used)
        distinct = int((used > 0).sum())  # scikit-learn counts the distinct labels
        if distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
                f"({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _rows_for(self, width: int) -> int:
        """Rows per chunk of a Lloyd pass whose temporaries have ``width`` values per row: about
        :math:`2^{18}` values (2 MiB in float64), which stay in cache; larger chunks are up to 2x
        slower on a CPU."""
        if self.chunk_size is not None:
            return self.chunk_size
        return max(1024, 2**18 // width)

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


def _unpack(packed: Tensor, r: int, k: int, d: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Views of a pass's packed statistics ``[sums, counts, inertia, pairs]`` (packed so that
    one all-reduce serves them): sums ``(R, d, K)`` for more than 16 clusters (filled by
    ``index_add_``), else ``(R K, d)``; counts ``(R, K)``; inertia and pairs ``(R,)``."""
    sums, counts, inertia, pairs = packed.split([r * k * d, r * k, r, r])
    sums = sums.view(r, d, k) if k > 16 else sums.view(r * k, d)
    return sums, counts.view(r, k), inertia, pairs


class _Runs(NamedTuple):
    """The outcome of :meth:`_Lloyd.run`, one entry per restart."""

    centres: Tensor  # (restarts, K, d), centred
    lower_bounds: list[list[float]]
    n_iter: list[int]
    converged: list[bool]
    decreases: list[list[tuple[int, float]]]


class _Lloyd:
    r"""Lloyd's iterations for a batch of restarts, over the data centred and stored ``(d, n)``.

    A pass over a chunk of rows :math:`X_c` (``(d, m)``) and the stacked centres :math:`C`
    (``(R K, d)``) of all restarts computes :math:`D = \|c\|^2 - 2 C X_c` (one GEMM), its
    minimum over each restart's :math:`K` rows, the one-hot block :math:`E = [D = \min]` (in
    place of :math:`D`) and the sums :math:`E X_c^\top` (a second GEMM). Under
    ``torch.distributed`` the statistics are summed over processes (one all-reduce per
    iteration) and the moments of the data are those of all rows.
    """

    def __init__(self, x: Tensor, rows: int) -> None:
        n, d = x.shape
        wide = torch.float32 if x.device.type == "mps" else torch.float64  # exact counts
        moments = torch.cat([x.new_full((1,), float(n), dtype=wide), x.sum(0, dtype=wide)])
        if distributed():
            torch.distributed.all_reduce(moments)
        self.n = float(moments[0])
        self.mean = (moments[1:] / self.n).to(x.dtype)
        self.xt = torch.empty(d, n, dtype=x.dtype, device=x.device)
        torch.sub(x.T, self.mean[:, None], out=self.xt)  # centred, transposed: one pass
        squared = self.xt.square()
        squares = squared.sum(1)
        if d <= 16:  # a sum across few long rows: adding them is 3-4x faster than sum(0)
            self.x2 = squared[0].clone()
            for row in squared[1:]:
                self.x2 += row
        else:
            self.x2 = squared.sum(0)  # |x_n|^2 of the centred rows
        del squared
        if distributed():
            torch.distributed.all_reduce(squares)
        self.variance = squares / self.n  # per feature, as numpy.var
        # on a CPU with several torch threads, the chunks of a pass are shared out among that
        # many Python threads, each running its operations on one torch thread (torch releases
        # the GIL inside them), as scikit-learn shares chunks among OpenMP threads; torch's own
        # threads, woken for each of a chunk's twenty small operations, made a 2-thread pass
        # 1.4x slower than a 1-thread one (benchmarks/RESULTS.md, em_kmeans)
        self.workers = torch.get_num_threads() if x.device.type == "cpu" else 1
        if self.workers > 1:  # at least one chunk per worker, unless chunks would be small
            rows = min(rows, max(_MIN_SHARED_ROWS, -(-n // self.workers)))
        self.rows = rows
        self._threads: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.reseeded = 0
        self._arange: Tensor | None = None
        self._buffers: dict[str, Tensor] = {}

    def __enter__(self) -> _Lloyd:
        """Run the passes on one torch thread per worker (see ``__init__``), restored on exit."""
        if self.workers > 1:
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)
            if len(self._chunks()) > 1:
                self._pool = ThreadPoolExecutor(
                    self.workers - 1, initializer=torch.set_num_threads, initargs=(1,)
                )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._threads is not None:
            torch.set_num_threads(self._threads)
            self._threads = None

    # ------------------------------------------------------------ passes over the data
    def _chunks(self) -> range:
        return range(0, self.xt.shape[1], self.rows)

    def _shares(self) -> list[range]:
        """The chunks' starts, in one contiguous share per worker that gets any."""
        chunks = self._chunks()
        if self._pool is None:
            return [chunks]
        per = -(-len(chunks) // self.workers)
        return [chunks[i : i + per] for i in range(0, len(chunks), per)]

    def _buffer(self, name: str, size: int, like: Tensor) -> Tensor:
        """``size`` elements of a buffer kept for the whole fit: a chunk's temporaries are
        megabytes, and a fresh allocation of that size costs page faults at every chunk (up to
        3x the pass on a CPU)."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != like.dtype:
            buffer = self._buffers[name] = like.new_empty(size)
        return buffer[:size]

    def _distances(
        self, flat: Tensor, c2: Tensor, start: int, worker: int = 0
    ) -> tuple[Tensor, Tensor]:
        """The chunk of rows from ``start`` and :math:`\\|c\\|^2 - 2 c^\\top x`, ``(R K, m)``."""
        xc = self.xt[:, start : start + self.rows]
        size = len(flat) * xc.shape[1]
        out = self._buffer(f"dist{worker}", size, flat).view(len(flat), -1)
        return xc, torch.addmm(c2, flat, xc, alpha=-2.0, out=out)

    def _nearest(self, dist: Tensor, worker: int = 0) -> Tensor:
        """The minimum over dim 1 of ``dist`` ``(R, K, m)``, a reduction across contiguous rows
        (10x faster than one along the short axis)."""
        r, _, m = dist.shape
        return torch.amin(dist, 1, out=self._buffer(f"nearest{worker}", r * m, dist).view(r, m))

    def _labels(self, dist: Tensor, nearest: Tensor) -> Tensor:
        """The first index of the minimum along dim 1 of ``dist`` ``(R, K, m)``: ``(R, m)``."""
        k = dist.shape[1]
        if k > 32:
            return dist.argmin(1)
        labels = torch.full_like(nearest, k - 1, dtype=torch.long)
        for j in range(k - 2, -1, -1):  # last to first, so that the first minimum wins
            labels.masked_fill_(dist[:, j] == nearest, j)
        return labels

    def stats(self, centres: Tensor, exact: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per restart, over all rows and processes: the clusters' sums ``(R, K, d)`` and counts
        ``(R, K)``, the inertia ``(R,)`` and the number of (row, nearest centre) pairs ``(R,)``,
        which exceeds the number of rows where a row is at equal distance from two centres
        (never with ``exact``, which breaks such ties towards the first centre).

        The sums are a GEMM of the one-hot block with the rows for up to 16 clusters; for more,
        whose one-hot GEMM would cost :math:`K` times the additions it needs, the labels (the
        one-hot block times :math:`0, \\dots, K - 1`) drive an ``index_add_``.
        """
        r, k, d = centres.shape
        flat = centres.reshape(r * k, d)
        c2 = flat.square().sum(1, keepdim=True)
        if (exact or k > 16) and self._arange is None:
            self._arange = torch.arange(k, device=flat.device)
        shares = self._shares()
        pending = [  # the other workers' shares, while this thread runs the first
            self._pool.submit(self._share_stats, share, i, flat, c2, k, exact)
            for i, share in enumerate(shares[1:], 1)
        ]
        packed = self._share_stats(shares[0], 0, flat, c2, k, exact)
        for future in pending:
            packed += future.result()
        if distributed():
            torch.distributed.all_reduce(packed)
        sums, counts, inertia, pairs = _unpack(packed, r, k, d)
        sums = sums.transpose(1, 2) if k > 16 else sums.view(r, k, d)
        return sums, counts, inertia, counts.sum(1) if self._late(flat, exact) else pairs

    def _late(self, flat: Tensor, exact: bool) -> bool:
        """Whether the (row, nearest centre) pairs are the counts' sum, taken at the end: float32
        counts are exact integers below 2^24 rows."""
        return exact or self.n < 2 / torch.finfo(flat.dtype).eps

    def _share_stats(
        self, starts: range, worker: int, flat: Tensor, c2: Tensor, k: int, exact: bool
    ) -> Tensor:
        """:meth:`stats` over the chunks from ``starts``, packed as ``[sums, counts, inertia,
        pairs]`` (one all-reduce) into a tensor of this share's own."""
        r, d = len(flat) // k, flat.shape[1]
        packed = flat.new_zeros(r * k * d + r * k + 2 * r)
        sums, counts, inertia, pairs = _unpack(packed, r, k, d)
        by_labels, late = k > 16, self._late(flat, exact)
        for start in starts:
            xc, dist = self._distances(flat, c2, start, worker)
            m, first = xc.shape[1], start == starts[0]
            dist = dist.view(r, k, m)
            nearest = self._nearest(dist, worker)  # (R, m)
            if exact:
                labels = self._labels(dist, nearest)
                onehot = torch.eq(labels[:, None], self._arange[:, None], out=dist)
            else:
                onehot = dist.eq_(nearest[:, None])  # 1.0 where a centre is nearest
                if by_labels:  # exact without ties (and then recomputed with ``exact``)
                    labels = torch.matmul(self._arange.to(dist), onehot).clamp_(max=k - 1).long()
            if first:
                chunk_counts = torch.sum(onehot, 2, out=counts)
            else:
                chunk_counts = onehot.sum(2)
                counts += chunk_counts
            if not late:
                pairs += chunk_counts.sum(1)
            if by_labels:
                for i in range(r):
                    sums[i].index_add_(1, labels[i], xc)
            elif first:
                torch.mm(onehot.view(r * k, m), xc.T, out=sums)
            else:
                sums.addmm_(onehot.view(r * k, m), xc.T)
            nearest.add_(self.x2[start : start + m]).clamp_(min=0)
            if first:
                torch.sum(nearest, 1, out=inertia)
            else:
                inertia += nearest.sum(1)
        return packed

    def inertia(self, centres: Tensor) -> Tensor:
        """The inertia ``(R,)`` of each restart's centres ``(R, K, d)``, over all processes."""
        r, k, d = centres.shape
        flat = centres.reshape(r * k, d)
        c2 = flat.square().sum(1, keepdim=True)
        inertia = flat.new_zeros(r)
        for start in self._chunks():
            xc, dist = self._distances(flat, c2, start)
            nearest = self._nearest(dist.view(r, k, -1))
            inertia += nearest.add_(self.x2[start : start + xc.shape[1]]).clamp_(min=0).sum(1)
        if distributed():
            torch.distributed.all_reduce(inertia)
        return inertia

    def final(self, centres: Tensor) -> tuple[Tensor, Tensor]:
        """The inertia (over all processes) and this process's labels for ``(K, d)`` centres.

        The labels are the one-hot block times :math:`0, \\dots, K - 1` (one small GEMM, which
        also counts the nearest centres of every row); if a row has two, a second pass breaks
        the ties towards the first.
        """
        k = len(centres)
        c2 = centres.square().sum(1, keepdim=True)
        weights = torch.stack([torch.arange(k), torch.ones(k, dtype=torch.long)]).to(centres)
        inertia, hits = centres.new_zeros(()), centres.new_zeros(())
        labels = torch.empty(self.xt.shape[1], dtype=torch.long, device=centres.device)
        for start in self._chunks():
            xc, dist = self._distances(centres, c2, start)
            m = xc.shape[1]
            nearest = self._nearest(dist[None])[0]
            both = torch.mm(weights, dist.eq_(nearest))  # (2, m): sum of nearest indices, count
            labels[start : start + m] = both[0]
            hits += both[1].sum()
            inertia += nearest.add_(self.x2[start : start + m]).clamp_(min=0).sum()
        if float(hits) != self.xt.shape[1]:  # ties
            for start in self._chunks():
                xc, dist = self._distances(centres, c2, start)
                dist = dist[None]
                labels[start : start + xc.shape[1]] = self._labels(dist, self._nearest(dist))[0]
        if distributed():
            torch.distributed.all_reduce(inertia)
        return inertia, labels

    # ------------------------------------------------------------ the iterations
    def run(self, starts: Tensor, max_iter: int, tol: float) -> _Runs:
        """Lloyd's iterations from ``starts`` ``(R, K, d)`` (centred) until each restart's squared
        centre shift is at most ``tol`` (scikit-learn's rule) or ``max_iter``."""
        r = len(starts)
        centres = starts.clone()
        runs = _Runs(centres, [[] for _ in range(r)], [0] * r, [False] * r, [[] for _ in range(r)])
        rtol = max(1000 * torch.finfo(centres.dtype).eps, 1e-8)
        active = list(range(r))
        for it in range(1, max_iter + 1):
            old = centres if len(active) == r else centres[active]
            new, inertia, shift = self._iteration(old)
            if len(active) == r:
                centres.copy_(new)
            else:
                centres[active] = new
            still = []
            for i, (run, value, moved) in enumerate(zip(active, inertia, shift, strict=True)):
                self._record(runs, run, -value / self.n, it, rtol)
                runs.n_iter[run] = it
                if moved <= tol:
                    runs.converged[run] = True
                else:
                    still.append(i)
            if len(still) < len(active):
                active = [active[i] for i in still]
            if not active:
                break
        return runs

    def _iteration(self, old: Tensor) -> tuple[Tensor, list[float], list[float]]:
        """One E- and M-step for the restarts ``old`` ``(R, K, d)``: new centres, and on the
        host each restart's inertia under ``old`` and squared centre shift (one synchronisation,
        two where ties or empty clusters need another look)."""
        sums, counts, inertia, pairs = self.stats(old)
        new = sums / counts.clamp(min=1)[..., None]
        shift = (new - old).square().sum((1, 2))
        host = torch.stack([inertia, shift, pairs, counts.amin(1)], 1).tolist()
        tied = [i for i, row in enumerate(host) if row[2] > self.n]
        if tied:  # rows at equal distance from two centres: break the ties towards the first
            index = torch.tensor(tied, device=old.device)
            exact = self.stats(old[index], exact=True)
            sums, counts, inertia = sums.clone(), counts.clone(), inertia.clone()
            sums[index], counts[index], inertia[index] = exact[0], exact[1], exact[2]
            new = sums / counts.clamp(min=1)[..., None]
            host = torch.stack([inertia, counts.amin(1)], 1).tolist()
        changed = False
        for i, row in enumerate(host):
            if row[-1] == 0:  # rare: re-seed empty clusters at the points farthest from theirs
                new[i] = self._reseed(old[i], sums[i], counts[i])
                changed = True
        if tied or changed:
            shift = (new - old).square().sum((1, 2)).tolist()
        else:
            shift = [row[1] for row in host]
        return new, [row[0] for row in host], shift

    def _reseed(self, centres: Tensor, sums: Tensor, counts: Tensor) -> Tensor:
        """scikit-learn's relocation: each empty cluster takes one of the points farthest from
        their nearest (old) centre, which leaves its owner's sums."""
        sums, counts = sums.clone(), counts.clone()
        empty = (counts == 0).nonzero().flatten().tolist()
        self.reseeded += len(empty)
        driver = EM(chunk_size=self.rows)
        far = driver.accumulate(_Farthest(len(empty)), self.xt.T, {"centres": centres})
        for j, cluster in enumerate(empty):
            point, owner = far["far_x"][j], int(far["far_label"][j])
            if owner >= 0:
                sums[owner] -= point
                counts[owner] -= 1
            sums[cluster], counts[cluster] = point, 1
        return sums / counts.clamp(min=1)[:, None]

    @staticmethod
    def _record(runs: _Runs, run: int, objective: float, it: int, rtol: float) -> None:
        """Append the mean objective (minus the mean inertia); warn if it dropped, as
        :class:`~pyro_flowkit.inference.EM` does."""
        history = runs.lower_bounds[run]
        if history:
            drop = history[-1] - objective
            if drop > rtol * (1 + abs(objective)):
                runs.decreases[run].append((it, drop))
                warnings.warn(
                    f"KMeans: the mean objective decreased by {drop:.3g} at iteration {it} "
                    f"({history[-1]:.10g} -> {objective:.10g}); Lloyd's steps never increase "
                    "the inertia",
                    RuntimeWarning,
                    stacklevel=5,
                )
        history.append(objective)


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
