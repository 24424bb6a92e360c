r"""Expectation-maximisation from sufficient statistics, chunked and data-parallel.

EM maximises a log-likelihood :math:`\ell(\theta) = \sum_n \log \sum_z p(x_n, z \mid \theta)` by
maximising, at every step, the surrogate
:math:`Q(\theta \mid \theta_t) = \sum_n \mathbb E_{p(z \mid x_n, \theta_t)} \log p(x_n, z \mid
\theta)`, which lies below :math:`\ell` up to a constant and touches it at :math:`\theta_t`; hence
:math:`\ell(\theta_{t+1}) \ge \ell(\theta_t)` (Dempster, Laird & Rubin 1977). For exponential-family
complete-data models the E-step only needs sums of per-sample statistics, so it runs over chunks of
the data and, under ``torch.distributed``, over processes, with one all-reduce per iteration.
Lloyd's K-means (hard assignments) and pLSA are the same scheme.

References:
    Maximum Likelihood from Incomplete Data via the EM Algorithm (Dempster, Laird & Rubin, 1977).
    A View of the EM Algorithm that Justifies Incremental, Sparse, and other Variants (Neal &
    Hinton, 1998).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.distributed as tdist
from torch import Tensor
from tqdm.auto import tqdm

from pyro_flowkit.errors import ConvergenceWarning
from pyro_flowkit.validation import check_count, check_positive

__all__ = ["EM", "EMModel", "EMResult", "Params", "distributed", "chunk_slices"]

Params = dict[str, Tensor]


class EMModel(Protocol):
    """What :class:`EM` needs from a model.

    ``e_step(x, params, rows)`` returns the statistics of the rows ``rows`` of the data (given as
    ``x``): every key is summed over chunks and processes, except the keys in ``local_keys``
    (per-row results, concatenated in row order, never all-reduced) and the keys in ``merge_keys``
    (combined by ``merge(key, a, b)``). The statistics hold ``"log_likelihood"`` (the summed
    objective) and ``"n"`` (the number of units the objective is averaged over).
    ``m_step(stats, params)`` returns the new parameters; ``converged(change, old, new, tol)``
    decides convergence from the change of the mean objective. An optional
    ``monotone_slack(old, new)`` bounds how much an M-step that is not an exact maximiser (e.g. a
    regularised one) may lower the mean objective.
    """

    local_keys: tuple[str, ...]
    merge_keys: tuple[str, ...]

    def e_step(self, x: Tensor, params: Params, rows: slice) -> Params: ...

    def m_step(self, stats: Params, params: Params) -> Params: ...

    def converged(self, change: float, old: Params, new: Params, tol: float) -> bool: ...

    def merge(self, key: str, a: Tensor, b: Tensor) -> Tensor: ...


@dataclass
class EMResult:
    """The outcome of one EM run (or of the best of ``n_init`` runs).

    Attributes:
        params: the parameters after the last M-step.
        lower_bound: the mean objective of the last E-step (scikit-learn's ``lower_bound_``).
        lower_bounds: the mean objective of every E-step.
        n_iter: the number of E/M iterations run.
        converged: whether the convergence test passed before ``max_iter``.
        decreases: ``(iteration, amount)`` for every step that lowered the objective by more than
            rounding (EM never should; see :class:`EM`).
    """

    params: Params
    lower_bound: float
    lower_bounds: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    decreases: list[tuple[int, float]] = field(default_factory=list)


def distributed() -> bool:
    """Whether ``torch.distributed`` is initialised with more than one process."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def chunk_slices(n: int, chunk_size: int | None) -> Iterator[slice]:
    """Consecutive row slices of length ``chunk_size`` (one slice when ``None``) covering ``n``."""
    step = n if chunk_size is None else chunk_size
    for start in range(0, n, max(step, 1)):
        yield slice(start, min(start + step, n))


class EM:
    r"""The EM driver: E-steps as chunked sums of sufficient statistics, then an M-step.

    Arguments:
        max_iter: the most E/M iterations per run.
        tol: convergence tolerance, passed to the model's ``converged`` (for mixtures: the change of
            the mean per-sample log-likelihood, as in scikit-learn).
        chunk_size: rows per chunk of the E-step (``None``: all rows at once). Peak memory of an
            E-step is that of one chunk, so data far larger than device memory can be kept on the
            CPU and streamed: chunks are moved to the device of the parameters.
        n_init: the number of restarts; the run with the highest final lower bound is kept.
        monotone_rtol: a decrease of the mean objective larger than
            ``monotone_rtol * (1 + |objective|)`` (plus the model's ``monotone_slack``) is recorded
            in ``EMResult.decreases`` and warned about (``RuntimeWarning`` naming the iteration).
            Default: ``max(1000 eps, 1e-8)`` of the dtype (near-singular components make the
            objective's rounding error far larger than ``eps``).
        progress: show a tqdm bar with the objective.

    Under an initialised ``torch.distributed`` process group each process passes its own shard of
    the rows; the summed statistics are all-reduced every iteration and the initial parameters are
    broadcast from rank 0, so the result equals one process fitting all rows (up to rounding).
    Non-finite objectives raise ``FloatingPointError``.
    """

    def __init__(
        self,
        max_iter: int = 100,
        tol: float = 1e-3,
        chunk_size: int | None = None,
        n_init: int = 1,
        *,
        monotone_rtol: float | None = None,
        progress: bool = False,
    ) -> None:
        check_count("max_iter", max_iter)
        check_count("n_init", n_init)
        if chunk_size is not None:
            check_count("chunk_size", chunk_size)
        check_positive("tol", tol, allow_zero=True)
        self.max_iter = max_iter
        self.tol = float(tol)
        self.chunk_size = chunk_size
        self.n_init = n_init
        self.monotone_rtol = monotone_rtol
        self.progress = progress

    def accumulate(self, model: EMModel, x: Tensor, params: Params) -> Params:
        """One E-step: the statistics of all rows (and of all processes)."""
        device = next(iter(params.values())).device
        total: Params = {}
        local: dict[str, list[Tensor]] = {}
        for rows in chunk_slices(len(x), self.chunk_size):
            stats = model.e_step(x[rows].to(device, non_blocking=True), params, rows)
            for key, value in stats.items():
                if key in model.local_keys:
                    local.setdefault(key, []).append(value)
                elif key not in total:
                    total[key] = value
                elif key in model.merge_keys:
                    total[key] = model.merge(key, total[key], value)
                else:
                    total[key] = total[key] + value
        if distributed():
            total = _all_reduce(model, total)
        total.update({key: torch.cat(parts) for key, parts in local.items()})
        return total

    def run(self, model: EMModel, x: Tensor, params: Params) -> EMResult:
        """EM from the initial ``params`` until convergence or ``max_iter``."""
        if distributed():
            params = _broadcast(model, params)
        result = EMResult(params=params, lower_bound=-math.inf)
        rtol, slack = self._monotone_rtol(params), 0.0
        bar = tqdm(range(1, self.max_iter + 1), desc="EM", disable=not self.progress, leave=False)
        for it in bar:
            stats = self.accumulate(model, x, result.params)
            objective = _mean_objective(stats, it)
            previous = result.lower_bound
            new = model.m_step(stats, result.params)
            self._record(result, objective, it, rtol, slack)
            slack = _slack(model, result.params, new)
            bar.set_postfix(objective=f"{objective:.6g}")
            old, result.params, result.n_iter = result.params, new, it
            if math.isfinite(previous) and model.converged(
                objective - previous, old, new, self.tol
            ):
                result.converged = True
                break
        return result

    def fit(
        self, model: EMModel, x: Tensor, init: Callable[[int], Params], warn: bool = True
    ) -> EMResult:
        """Run from ``init(i)`` for ``i`` in ``range(n_init)`` and keep the best final lower bound.

        Warns :class:`~pyro_flowkit.errors.ConvergenceWarning` when the best run did not converge.
        """
        best: EMResult | None = None
        for i in range(self.n_init):
            result = self.run(model, x, init(i))
            if best is None or result.lower_bound > best.lower_bound:
                best = result
        assert best is not None
        if warn and not best.converged:
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} iterations (last change of the "
                f"objective above tol={self.tol}); raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        return best

    def _monotone_rtol(self, params: Params) -> float:
        if self.monotone_rtol is not None:
            return self.monotone_rtol
        dtype = next((p.dtype for p in params.values() if p.is_floating_point()), torch.float64)
        return max(1000 * torch.finfo(dtype).eps, 1e-8)

    @staticmethod
    def _record(result: EMResult, objective: float, it: int, rtol: float, slack: float) -> None:
        previous = result.lower_bound
        result.lower_bounds.append(objective)
        result.lower_bound = objective
        drop = previous - objective
        if math.isfinite(previous) and drop > rtol * (1 + abs(objective)) + slack:
            result.decreases.append((it, drop))
            warnings.warn(
                f"EM: the mean objective decreased by {drop:.3g} at iteration {it} "
                f"({previous:.10g} -> {objective:.10g}); EM should never decrease it",
                RuntimeWarning,
                stacklevel=4,
            )


def _slack(model: EMModel, old: Params, new: Params) -> float:
    slack = getattr(model, "monotone_slack", None)
    return 0.0 if slack is None else slack(old, new)


def _mean_objective(stats: Params, it: int) -> float:
    value = float(stats["log_likelihood"]) / float(stats["n"])
    if not math.isfinite(value):
        raise FloatingPointError(
            f"EM: the objective is {value} at iteration {it}; check the data for extreme values "
            "or raise the regularisation"
        )
    return value


def _all_reduce(model: EMModel, total: Params) -> Params:
    out: Params = {}
    for key in sorted(total):
        value = total[key]
        if key in model.merge_keys:
            parts = [torch.empty_like(value) for _ in range(tdist.get_world_size())]
            tdist.all_gather(parts, value.contiguous())
            merged = parts[0]
            for part in parts[1:]:
                merged = model.merge(key, merged, part)
            out[key] = merged
        else:
            value = value.clone()
            tdist.all_reduce(value)
            out[key] = value
    return out


def _broadcast(model: EMModel, params: Params) -> Params:
    out = dict(params)
    for key in sorted(params):
        if key not in model.local_keys:
            value = params[key].clone().contiguous()
            tdist.broadcast(value, src=0)
            out[key] = value
    return out
