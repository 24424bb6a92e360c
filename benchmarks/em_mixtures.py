"""EM for mixtures: our ``GaussianMixture`` and ``KMeans`` against scikit-learn's, same inits.

Datasets (float64, fixed seeds): 100k × 10 synthetic, 5 full-covariance components; sklearn's
digits (1797 × 64) reduced to 10 dimensions by PCA, 10 components; 1M × 2 synthetic, 8
components. The synthetic sets draw means ``N(0, 2^2 I)``, covariances ``A A^T / d + 0.1 I`` with
``A`` standard normal, and weights proportional to ``1, ..., K`` (``numpy`` ``default_rng(0)``).

Gaussian mixtures (``covariance_type="full"``; the 100k × 10 set also ``"diag"``): the initial
weights, means and precisions come once per dataset from one cheap common source, sklearn's
``GaussianMixture(K, max_iter=1, init_params="k-means++", random_state=0)`` (k-means++ centres
and one EM step), and both contenders start from them with ``tol=1e-3``, ``max_iter=100``,
``reg_covar=1e-6``. Given all three inits, our ``fit`` does no data-based initialisation. sklearn
still runs its ``init_params`` initialisation and then overwrites it (the default ``"kmeans"``
would be a whole K-means fit), so it gets ``init_params="random_from_data"``, which only picks
``K`` rows, then does one M-step from those one-hot responsibilities; its ``fit`` also ends with
one E-step more. The row ``sklearn max_iter=0`` times that work outside the EM loop, and the
ratio against sklearn's EM loop subtracts it. sklearn is timed with its default threads and again
inside ``threadpool_limits(1, user_api="blas")``: it calls BLAS on small matrices once per
component, and with two OpenBLAS threads its time swings widely when anything else runs on the
machine. Ours runs in float64 and in float32 (data and inits cast); sklearn computes in float64.

K-means (Lloyd), ``--suite kmeans`` (section ``em_kmeans``), on all three sets, float64 and
float32 (scikit-learn computes in the data's dtype too), with 1 and with 2 threads for both
libraries (``torch.set_num_threads`` and ``threadpool_limits``):

* from the same start: ``KMeans(K, init=centres)`` against ``sklearn.cluster.KMeans(K,
  init=centres, n_init=1, algorithm="lloyd")`` from the same k-means++ centres
  (``sklearn.cluster.kmeans_plusplus``, ``random_state=0``), ``max_iter=300``, ``tol=1e-4``; each
  also with ``max_iter=1``, which splits a fit into its fixed cost (checks, centring, the last
  assignment pass) and its cost per further iteration;
* from scratch, ``n_init=10`` k-means++ restarts each (each library its own seeding, seed 0):
  ours runs the ten restarts side by side (one pass over the data serves them all), sklearn one
  after another; also ours as ten separate ``n_init=1`` fits, to show what batching saves.

Timing: wall time of ``fit``, the contenders alternating in one process in a rotating order
(``residual_flows.alternate``), median over rounds (7; 5 for the 1M set). Threads: the libraries'
defaults for the Gaussian mixtures (torch's and OpenBLAS's / OpenMP's, as ``threadpoolctl``
reports them); set per table for K-means.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/em_mixtures.py [--suite gmm|kmeans|all] [--quick]
        [--rounds N] [--results FILE]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from digits_flows import footer, write_results
from residual_flows import alternate
from sklearn import cluster, mixture
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_info, threadpool_limits

from pyro_flowkit.errors import ConvergenceWarning as OurConvergenceWarning
from pyro_flowkit.models import GaussianMixture, KMeans

TOL, MAX_ITER, REG_COVAR = 1e-3, 100, 1e-6
KM_TOL, KM_MAX_ITER = 1e-4, 300
SPREAD = 2.0  # sd of the synthetic means, per coordinate
ROUNDS = (7, 5)  # timed rounds: the smaller sets, the 1M set
AGREE_RTOL = 1e-6  # float64 log-likelihoods from identical inits must agree to this

Array = np.ndarray
SKLEARN_GMMS = ("sklearn", "sklearn, 1 BLAS thread")


@dataclass
class Dataset:
    name: str
    x: Array  # float64
    k: int
    rounds: int
    kmeans: bool  # also run K-means on it
    covariance_types: tuple[str, ...] = ("full",)


@dataclass
class Fit:
    seconds: float  # median
    fastest: float
    slowest: float
    model: object
    n_iter: int = 0
    converged: bool = True
    lower_bound: float = float("nan")
    score: float = float("nan")


# --------------------------------------------------------------------------------------------
# Data and initial parameters


def synthetic(n: int, d: int, k: int, seed: int = 0) -> Array:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=SPREAD, size=(k, d))
    a = rng.normal(size=(k, d, d))
    covariances = a @ a.transpose(0, 2, 1) / d + 0.1 * np.eye(d)
    weights = np.arange(1, k + 1) / (k * (k + 1) / 2)
    counts = rng.multinomial(n, weights)
    parts = [
        rng.multivariate_normal(m, c, size=s)
        for m, c, s in zip(means, covariances, counts, strict=True)
    ]
    return np.concatenate(parts)[rng.permutation(n)]


def digits_pca(dim: int = 10) -> Array:
    return PCA(dim, svd_solver="full").fit_transform(load_digits().data)


def datasets(quick: bool) -> list[Dataset]:
    n1, n3 = (20_000, 100_000) if quick else (100_000, 1_000_000)
    rounds = (2, 2) if quick else ROUNDS
    return [
        Dataset(
            f"synthetic {n1:,} × 10", synthetic(n1, 10, 5), 5, rounds[0], True, ("full", "diag")
        ),
        Dataset("digits PCA 1,797 × 10", digits_pca(), 10, rounds[0], True),
        Dataset(f"synthetic {n3:,} × 2", synthetic(n3, 2, 8), 8, rounds[1], True),
    ]


def gmm_inits(x: Array, k: int, covariance_type: str) -> dict[str, Array]:
    """Weights, means and precisions after k-means++ and one EM step of sklearn's mixture."""
    gmm = mixture.GaussianMixture(
        k, covariance_type=covariance_type, max_iter=1, init_params="k-means++", random_state=0
    ).fit(x)
    return {
        "weights_init": gmm.weights_,
        "means_init": gmm.means_,
        "precisions_init": gmm.precisions_,
    }


# --------------------------------------------------------------------------------------------
# Contenders: each fits on the dataset and keeps its fitted estimator


def sklearn_gmm(
    x: Array, k: int, cov: str, inits: dict[str, Array], max_iter: int = MAX_ITER
) -> mixture.GaussianMixture:
    return mixture.GaussianMixture(
        k, covariance_type=cov, tol=TOL, reg_covar=REG_COVAR, max_iter=max_iter,
        init_params="random_from_data", random_state=0, **inits,
    ).fit(x)  # fmt: skip


def sklearn_gmm_one_blas_thread(
    x: Array, k: int, cov: str, inits: dict[str, Array]
) -> mixture.GaussianMixture:
    with threadpool_limits(limits=1, user_api="blas"):
        return sklearn_gmm(x, k, cov, inits)


def our_gmm(x: torch.Tensor, k: int, cov: str, inits: dict[str, Array]) -> GaussianMixture:
    tensors = {key: torch.from_numpy(value).to(x.dtype) for key, value in inits.items()}
    return GaussianMixture(
        k, covariance_type=cov, tol=TOL, reg_covar=REG_COVAR, max_iter=MAX_ITER, **tensors
    ).fit(x)


def timed(fits: dict[str, Callable[[], object]], rounds: int) -> dict[str, Fit]:
    """Median seconds of each fit, alternating, with their range; each contender's last fitted
    estimator is kept in ``Fit.model``."""
    fitted: dict[str, object] = {}
    times: dict[str, list[float]] = {name: [] for name in fits}

    def step(name: str) -> Callable[[None], None]:
        def run(_batch: None) -> None:
            start = time.perf_counter()
            fitted[name] = fits[name]()
            times[name].append(time.perf_counter() - start)

        return run

    steps = {name: step(name) for name in fits}
    medians = alternate(steps, itertools.repeat(None), rounds, warmup=0)
    return {
        name: Fit(medians[name], min(times[name]), max(times[name]), fitted[name]) for name in fits
    }


def gmm_case(data: Dataset, cov: str) -> dict[str, Fit]:
    inits = gmm_inits(data.x, data.k, cov)
    # sklearn 1.9 fails with max_iter=0 and precisions_init (no covariances_); without it the
    # same work is done (the init M-step, then the final E-step)
    no_precisions = {key: value for key, value in inits.items() if key != "precisions_init"}
    x64 = torch.from_numpy(data.x)
    x32 = x64.float()
    fits = {
        "sklearn": lambda: sklearn_gmm(data.x, data.k, cov, inits),
        "sklearn max_iter=0": lambda: sklearn_gmm(data.x, data.k, cov, no_precisions, max_iter=0),
        "sklearn, 1 BLAS thread": lambda: sklearn_gmm_one_blas_thread(data.x, data.k, cov, inits),
        "ours float64": lambda: our_gmm(x64, data.k, cov, inits),
        "ours float32": lambda: our_gmm(x32, data.k, cov, inits),
    }
    out = timed(fits, data.rounds)
    data_of = {name: data.x for name in SKLEARN_GMMS} | {"ours float64": x64, "ours float32": x32}
    for name, x in data_of.items():
        f = out[name]
        f.n_iter, f.converged = int(f.model.n_iter_), bool(f.model.converged_)
        f.lower_bound, f.score = float(f.model.lower_bound_), float(f.model.score(x))
    return out


KM_THREADS = (1, 2)
KM_RESTARTS = 10


def sk_kmeans(x: Array, k: int, init: Array | str, n_init: int = 1, max_iter: int = KM_MAX_ITER,
              seed: int | None = None) -> cluster.KMeans:  # fmt: skip
    return cluster.KMeans(
        k, init=init, n_init=n_init, max_iter=max_iter, tol=KM_TOL, algorithm="lloyd",
        random_state=seed,
    ).fit(x)  # fmt: skip


def our_kmeans(x: torch.Tensor, k: int, init: torch.Tensor | str, n_init: int = 1,
               max_iter: int = KM_MAX_ITER, seed: int | None = None) -> KMeans:  # fmt: skip
    return KMeans(k, init=init, n_init=n_init, max_iter=max_iter, tol=KM_TOL, seed=seed).fit(x)


def our_separate_restarts(x: torch.Tensor, k: int) -> KMeans:
    """``KM_RESTARTS`` fits of ``n_init=1``, one after another; the best one."""
    fits = [our_kmeans(x, k, "k-means++", seed=s) for s in range(KM_RESTARTS)]
    return min(fits, key=lambda f: f.inertia_)


def kmeans_case(data: Dataset, threads: int) -> dict[str, Fit]:
    """Every K-means contender on ``data`` with ``threads`` threads for torch and sklearn."""
    centres = cluster.kmeans_plusplus(data.x, data.k, random_state=0)[0]
    fits: dict[str, Callable[[], object]] = {}
    for dtype in ("float64", "float32"):
        x, c = data.x.astype(dtype), centres.astype(dtype)
        xt, ct = torch.from_numpy(x), torch.from_numpy(c)
        fits |= {
            f"sklearn {dtype}": lambda x=x, c=c: sk_kmeans(x, data.k, c),
            f"ours {dtype}": lambda xt=xt, ct=ct: our_kmeans(xt, data.k, ct),
            f"sklearn {dtype} max_iter=1": lambda x=x, c=c: sk_kmeans(x, data.k, c, max_iter=1),
            f"ours {dtype} max_iter=1": lambda xt=xt, ct=ct: our_kmeans(xt, data.k, ct, max_iter=1),
        }  # fmt: skip
    x, xt = data.x, torch.from_numpy(data.x)
    fits |= {
        "sklearn n_init=10": lambda: sk_kmeans(x, data.k, "k-means++", KM_RESTARTS, seed=0),
        "ours n_init=10": lambda: our_kmeans(xt, data.k, "k-means++", KM_RESTARTS, seed=0),
        "ours 10 × n_init=1": lambda: our_separate_restarts(xt, data.k),
    }
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            out = timed(fits, data.rounds)
    finally:
        torch.set_num_threads(previous)
    for f in out.values():
        f.n_iter, f.score = int(f.model.n_iter_), float(f.model.inertia_)
        f.converged = bool(getattr(f.model, "converged_", f.n_iter < KM_MAX_ITER))
    return out


def kmeans_gemms(data: Dataset, dtype: str, rounds: int = 300) -> dict[str, float]:
    """Median seconds, on one thread, of the two GEMMs of a Lloyd iteration whose rows fit one
    chunk, at ``KMeans``'s shapes and layout: the distances ``|c|^2 - 2 C X^T`` ``(K, n)`` and the
    one-hot sums ``onehot X`` ``(K, d)`` (``models/kmeans.py``, ``_Lloyd.stats``)."""
    x = torch.from_numpy(data.x.astype(dtype))
    xt = (x - x.mean(0)).T.contiguous()  # centred, transposed, as the fit keeps it
    centres = xt[:, : data.k].T.contiguous()
    c2 = centres.square().sum(1, keepdim=True)
    dist = torch.addmm(c2, centres, xt, alpha=-2.0)
    onehot = dist.eq(dist.amin(0)).to(x.dtype)
    sums = x.new_empty(data.k, x.shape[1])
    steps = {
        "distances": lambda _b: torch.addmm(c2, centres, xt, alpha=-2.0, out=dist),
        "sums": lambda _b: torch.mm(onehot, xt.T, out=sums),
    }
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return alternate(steps, itertools.repeat(None), rounds)
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------------------------
# Tables


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def secs(f: Fit) -> str:
    return f"{f.seconds:.3f} ({f.fastest:.3f}–{f.slowest:.3f})"


def diff_cell(f: Fit, ref: Fit) -> str:
    return f"{rel(f.lower_bound, ref.lower_bound):.1e} / {rel(f.score, ref.score):.1e}"


GMM_HEAD = (
    "| data | covariance | contender | seconds: median (fastest–slowest) | × sklearn fit "
    "| × sklearn fit, 1 BLAS thread | × sklearn EM loop | ms per iteration | iterations "
    "| lower_bound_ | score(X) | rel. diff vs sklearn: lower_bound_ / score "
    "| rel. diff vs ours float64: lower_bound_ / score |\n" + "|---" * 13 + "|"
)


def gmm_rows(data: Dataset, cov: str, fits: dict[str, Fit]) -> list[str]:
    sk, one, zero = fits["sklearn"], fits["sklearn, 1 BLAS thread"], fits["sklearn max_iter=0"]
    loop = sk.seconds - zero.seconds
    lead = f"| {data.name}, K = {data.k} | {cov} "
    rows = [
        lead + f"| sklearn `max_iter=0` (init M-step + final E-step) | {secs(zero)} |" + " |" * 9
    ]
    for name in (*SKLEARN_GMMS, "ours float64", "ours float32"):
        f = fits[name]
        if name in SKLEARN_GMMS:
            cells = ["", "", ""] if f is sk else [f"{f.seconds / sk.seconds:.2f}", "", ""]
        else:
            cells = [f"{f.seconds / sk.seconds:.2f}", f"{f.seconds / one.seconds:.2f}"]
            cells.append(f"{f.seconds / loop:.2f}")
        cells.append(f"{(loop if f is sk else f.seconds) / f.n_iter * 1e3:.2f}")
        cells.append(f"{f.n_iter}" + ("" if f.converged else " (not converged)"))
        cells += [f"{f.lower_bound:.6f}", f"{f.score:.6f}"]
        cells.append("" if f is sk else diff_cell(f, sk))
        cells.append(diff_cell(f, fits["ours float64"]) if name == "ours float32" else "")
        rows.append(lead + f"| {name} | {secs(f)} | " + " | ".join(cells) + " |")
    return rows


KM_HEAD = (
    "| data | threads | dtype | contender | seconds: median (fastest–slowest) | × sklearn "
    "| fit at `max_iter=1`, ms (× sklearn) | ms per further iteration (× sklearn) | iterations "
    "| inertia | rel. diff of inertia vs sklearn float64 |\n" + "|---" * 11 + "|"
)
KM_INIT_HEAD = (
    "| data | threads | contender | seconds: median (fastest–slowest) | × sklearn "
    "| iterations of the best run | best inertia | rel. diff vs sklearn's |\n" + "|---" * 8 + "|"
)


def per_iteration(fits: dict[str, Fit], who: str, dtype: str) -> float:
    """Seconds per iteration after the first: (fit - fit at ``max_iter=1``) / (iterations - 1)."""
    f, f1 = fits[f"{who} {dtype}"], fits[f"{who} {dtype} max_iter=1"]
    return (f.seconds - f1.seconds) / max(f.n_iter - 1, 1)


KM_GEMM_HEAD = (
    "| data | dtype | distances GEMM µs | sums GEMM µs | both µs | sklearn's iteration µs "
    "| both / sklearn's iteration | our iteration µs |\n" + "|---" * 8 + "|"
)


def kmeans_gemm_row(data: Dataset, fits: dict[str, Fit], dtype: str) -> str:
    """The two GEMMs of an iteration against the one-thread fits' seconds per iteration."""
    t = kmeans_gemms(data, dtype)
    both, sk = t["distances"] + t["sums"], per_iteration(fits, "sklearn", dtype)
    cells = [t["distances"], t["sums"], both, sk]
    return (
        f"| {data.name}, K = {data.k} | {dtype} | "
        + " | ".join(f"{c * 1e6:.0f}" for c in cells)
        + f" | {both / sk:.2f} | {per_iteration(fits, 'ours', dtype) * 1e6:.0f} |"
    )


def kmeans_rows(data: Dataset, threads: int, fits: dict[str, Fit]) -> tuple[list[str], list[str]]:
    """Rows of the same-start table and of the n_init table."""
    ref = fits["sklearn float64"]
    same = []
    for dtype in ("float64", "float32"):
        sk, sk1 = fits[f"sklearn {dtype}"], fits[f"sklearn {dtype} max_iter=1"]
        sk_iter = per_iteration(fits, "sklearn", dtype)
        for who in ("sklearn", "ours"):
            f, f1 = fits[f"{who} {dtype}"], fits[f"{who} {dtype} max_iter=1"]
            per_iter = per_iteration(fits, who, dtype)
            ours = who == "ours"
            cells = [
                f"{f.seconds / sk.seconds:.2f}" if ours else "",
                f"{f1.seconds * 1e3:.2f}" + (f" ({f1.seconds / sk1.seconds:.2f})" if ours else ""),
                f"{per_iter * 1e3:.3f}" + (f" ({per_iter / sk_iter:.2f})" if ours else ""),
                f"{f.n_iter}" + ("" if f.converged else " (not converged)"),
                f"{f.score:.9g}",
                "" if f is ref else f"{rel(f.score, ref.score):.1e}",
            ]
            same.append(
                f"| {data.name}, K = {data.k} | {threads} | {dtype} | {who} | {secs(f)} | "
                + " | ".join(cells) + " |"
            )  # fmt: skip
    sk = fits["sklearn n_init=10"]
    restarts = []
    for name in ("sklearn n_init=10", "ours n_init=10", "ours 10 × n_init=1"):
        f = fits[name]
        cells = [
            "" if f is sk else f"{f.seconds / sk.seconds:.2f}",
            f"{f.n_iter}",
            f"{f.score:.9g}",
            "" if f is sk else f"{(f.score - sk.score) / sk.score:+.1e}",
        ]
        restarts.append(
            f"| {data.name}, K = {data.k} | {threads} | {name} | {secs(f)} | "
            + " | ".join(cells) + " |"
        )  # fmt: skip
    return same, restarts


def disagreements(label: str, fits: dict[str, Fit]) -> list[str]:
    """Float64 lower bounds and scores that differ from sklearn's by more than AGREE_RTOL."""
    sk, ours = fits["sklearn"], fits["ours float64"]
    worst = max(rel(ours.lower_bound, sk.lower_bound), rel(ours.score, sk.score))
    if worst <= AGREE_RTOL and ours.n_iter == sk.n_iter:
        return []
    return [f"{label}: float64 log-likelihoods differ by {worst:.1e} (relative), iterations "
            f"{ours.n_iter} (ours) against {sk.n_iter} (sklearn)"]  # fmt: skip


def thread_summary() -> str:
    pools = sorted(
        {f"{p['internal_api']} ({p['prefix']}) {p['num_threads']}" for p in threadpool_info()}
    )
    return f"torch {torch.get_num_threads()} threads; threadpoolctl: " + ", ".join(pools)


# --------------------------------------------------------------------------------------------


def warm_up() -> None:
    """First calls of torch's and sklearn's kernels, outside the timings."""
    x = synthetic(2000, 3, 2, seed=1)
    for dtype in (torch.float64, torch.float32):
        xt = torch.from_numpy(x).to(dtype)
        GaussianMixture(2, max_iter=3, seed=0).fit(xt)
        KMeans(2, max_iter=3, seed=0).fit(xt)
    mixture.GaussianMixture(2, max_iter=3, random_state=0).fit(x)
    cluster.KMeans(2, n_init=1, max_iter=3, random_state=0).fit(x)


def reading_guidance(rounds: str, problems: list[str]) -> str:
    parts = [
        "Both contenders start from the same weights, means and precisions (sklearn's k-means++",
        "centres and one EM step of its mixture), with `tol=1e-3`, `max_iter=100`,",
        f"`reg_covar=1e-6`. Seconds: wall time of `fit`, median of {rounds} rounds in which the",
        "contenders take turns in a rotating order, in one process. The times cover EM from the",
        "given inits only: our `fit` does no data-based initialisation when all three inits are",
        'given; sklearn is passed `init_params="random_from_data"` (its default `"kmeans"` would',
        "run a whole K-means fit before the given inits overwrite it), which still costs one",
        "M-step from one-hot responsibilities, and its `fit` ends with one more E-step. The row",
        "sklearn `max_iter=0` times that work outside its EM loop (run without",
        "`precisions_init`, with which sklearn 1.9's `max_iter=0` fails; the work is the same).",
        "× sklearn fit: our seconds over sklearn's whole `fit`; × sklearn EM loop: over",
        "sklearn's `fit` less its `max_iter=0` time. Below 1 we are faster. ms per iteration:",
        "seconds over iterations (for sklearn with its default threads, of its EM loop; for the",
        "others, of the whole `fit`). sklearn, 1 BLAS thread: the same fit inside",
        '`threadpool_limits(1, user_api="blas")`; its × sklearn fit is its own time over',
        "sklearn's with the default threads; it is the steadier reference, as sklearn's calls of",
        "OpenBLAS on small matrices, with its default two threads, slow down several-fold when",
        "anything else runs on the machine (compare the load averages). lower_bound_: the mean",
        "log-likelihood of the last E-step; score(X): the mean log-likelihood under the fitted",
        "parameters. Float32: our fit on data and inits cast to float32 (sklearn computes in",
        "float64); its last column is its relative difference from our float64 fit. K-means:",
        "the section after this one (`--suite kmeans`).",
    ]
    text = " ".join(parts)
    if problems:
        text += "\n\n**Disagreements in float64:** " + "; ".join(problems) + "."
    return text


def rounds_text(args: argparse.Namespace) -> str:
    if args.quick or args.rounds:
        return str(args.rounds or 2)
    return f"{ROUNDS[0]} ({ROUNDS[1]} for the 1M set)"


def gmm_suite(args: argparse.Namespace) -> str:
    start, load = time.time(), os.getloadavg()[0]
    warm_up()
    gmm_lines, problems = [GMM_HEAD], []
    for data in datasets(args.quick):
        if args.rounds:
            data.rounds = args.rounds
        for cov in data.covariance_types:
            fits = gmm_case(data, cov)
            gmm_lines += gmm_rows(data, cov, fits)
            problems += disagreements(f"{data.name}, {cov}", fits)
            print("\n".join(gmm_lines[-4:]), flush=True)
    text = (
        "## EM for mixtures against scikit-learn (`benchmarks/em_mixtures.py`)\n\n"
        + reading_guidance(rounds_text(args), problems)
        + f"\n\nThreads: {thread_summary()}. Load average (1 min) at the start and end: "
        + f"{load:.2f}, {os.getloadavg()[0]:.2f}.\n\n### Gaussian mixtures\n\n"
        + "\n".join(gmm_lines)
    )
    return text + footer(command(args, "gmm"), start)


def kmeans_suite(args: argparse.Namespace) -> str:
    start, load = time.time(), os.getloadavg()[0]
    warm_up()
    same, restarts, gemms = [KM_HEAD], [KM_INIT_HEAD], [KM_GEMM_HEAD]
    for data in datasets(args.quick):
        if args.rounds:
            data.rounds = args.rounds
        for threads in KM_THREADS:
            fits = kmeans_case(data, threads)
            rows = kmeans_rows(data, threads, fits)
            same += rows[0]
            restarts += rows[1]
            if threads == 1 and len(data.x) <= KMeans(data.k)._rows_for(data.k):
                gemms += [kmeans_gemm_row(data, fits, dtype) for dtype in ("float64", "float32")]
                print("\n".join(gemms[-2:]), flush=True)
            print("\n".join(rows[0] + rows[1]), flush=True)
    text = (
        "### K-means (Lloyd) against scikit-learn (`benchmarks/em_mixtures.py --suite kmeans`)"
        f"\n\nSeconds: wall time of `fit`, median of {rounds_text(args)} rounds in which the "
        "contenders take turns in a rotating order, in one process, with the threads given "
        "for both libraries (torch's intra-op threads, sklearn's OpenMP and BLAS through "
        "`threadpool_limits`). Both compute in the data's dtype. From the same start: "
        "sklearn's k-means++ centres (`random_state=0`), `n_init=1`, `max_iter=300`, "
        "`tol=1e-4`; fit at `max_iter=1`: the fixed cost of a fit (input checks, centring a "
        "copy, the final assignment and inertia passes) plus one iteration; ms per further "
        "iteration: (seconds - seconds at `max_iter=1`) / (iterations - 1). Below 1 we are "
        f"faster. From scratch: {KM_RESTARTS} k-means++ restarts, each library seeding its "
        "own (seed 0), best inertia kept; ours runs the restarts side by side, sklearn one "
        f"after another; ours {KM_RESTARTS} × `n_init=1`: the same work one restart at a "
        f"time.\n\nLoad average (1 min) at the start and end: {load:.2f}, "
        f"{os.getloadavg()[0]:.2f}.\n\n"
        + "\n".join(same)
        + "\n\n"
        + "\n".join(restarts)
        + "\n\nWhere a one-chunk iteration goes (sets whose rows fit one chunk; one thread): "
        "median µs of the iteration's two GEMMs at `KMeans`'s shapes and layout, alternating, "
        "300 rounds (distances `|c|^2 - 2 C X^T` by `addmm`, `(K, d) x (d, n)`; one-hot sums "
        "`(K, n) x (n, d)` by `mm`), against the iterations of the one-thread fits above "
        "(µs per further iteration).\n\n" + "\n".join(gemms)
    )
    return text + footer(command(args, "kmeans"), start)


def command(args: argparse.Namespace, suite: str) -> str:
    cmd = "OMP_WAIT_POLICY=PASSIVE python benchmarks/em_mixtures.py"
    if args.suite != "all":
        cmd += f" --suite {suite}"
    if args.quick:
        cmd += " --quick"
    if args.rounds:
        cmd += f" --rounds {args.rounds}"
    return cmd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["gmm", "kmeans", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="smaller data, 2 rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds for every dataset (7; 5 at 1M)")
    parser.add_argument("--results", type=Path, help="update this markdown file's sections")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)  # reported in the tables instead
    warnings.simplefilter("ignore", OurConvergenceWarning)
    # sections em_mixtures (Gaussian mixtures) and em_kmeans
    runners = {"gmm": gmm_suite, "kmeans": kmeans_suite}
    for suite in runners if args.suite == "all" else [args.suite]:
        text = runners[suite](args)
        print(text, flush=True)
        if args.results:
            write_results(args.results, text, "em_mixtures" if suite == "gmm" else "em_kmeans")


if __name__ == "__main__":
    main()
