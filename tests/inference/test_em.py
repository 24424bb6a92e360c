"""The EM driver: monotonicity check, loud numerical failure, restarts, argument errors, and
data-parallel EM over two gloo processes equal to one process."""

import math
from pathlib import Path

import pytest
import torch
from harness import run_gloo_workers

from pyro_flowkit import ConvergenceWarning
from pyro_flowkit.inference import EM

HERE = Path(__file__).parent


class Toy:
    """An 'EM model' whose objective follows a script: log_likelihood = values[iteration]."""

    local_keys = ()
    merge_keys = ()

    def __init__(self, values):
        self.values = values

    def e_step(self, x, params, rows):
        return {"log_likelihood": self.values[int(params["t"])] * x.new_ones(()) * len(x),
                "n": x.new_tensor(float(len(x)))}  # fmt: skip

    def m_step(self, stats, params):
        return {"t": params["t"] + 1}

    def converged(self, change, old, new, tol):
        return abs(change) < tol


def test_a_decrease_is_warned_with_its_iteration_and_recorded():
    x = torch.zeros(10, 1, dtype=torch.float64)
    toy = Toy([-3.0, -2.0, -2.5, -1.0, -0.9999999999, -0.9999999999])
    with pytest.warns(RuntimeWarning, match="decreased by 0.5 at iteration 3"):
        result = EM(max_iter=6, tol=1e-6).run(toy, x, {"t": torch.tensor(0.0)})
    assert result.decreases == [(3, 0.5)]
    assert result.converged and result.n_iter == 5
    assert result.lower_bounds == [-3.0, -2.0, -2.5, -1.0, -0.9999999999]


def test_rounding_sized_decreases_are_not_flagged():
    x = torch.zeros(10, 1, dtype=torch.float64)
    toy = Toy([-3.0, -2.0, -2.0 - 1e-12, -2.0 - 2e-12])
    result = EM(max_iter=4, tol=0.0).run(toy, x, {"t": torch.tensor(0.0)})
    assert result.decreases == [] and not result.converged


def test_a_non_finite_objective_raises():
    x = torch.zeros(10, 1, dtype=torch.float64)
    with pytest.raises(FloatingPointError, match="objective is nan at iteration 2"):
        EM(max_iter=5).run(Toy([-1.0, math.nan]), x, {"t": torch.tensor(0.0)})


def test_fit_keeps_the_best_restart_and_warns_when_it_did_not_converge():
    x = torch.zeros(10, 1, dtype=torch.float64)
    starts = iter([-5.0, -1.0, -3.0])

    class Restarts(Toy):
        def e_step(self, x, params, rows):
            return {"log_likelihood": params["level"] * 10 / 10, "n": x.new_tensor(1.0)}

        def m_step(self, stats, params):
            return dict(params)

    levels = []

    def init(i):
        levels.append(next(starts))
        return {"level": torch.tensor(levels[-1]), "t": torch.tensor(0.0)}

    result = EM(max_iter=3, tol=1e-9, n_init=3).fit(Restarts([]), x, init)
    assert float(result.params["level"]) == -1.0 and levels == [-5.0, -1.0, -3.0]
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        EM(max_iter=3, tol=0.0).fit(Toy([-3.0, -2.0, -1.0, 0.0]), x,
                                    lambda i: {"t": torch.tensor(0.0)})  # fmt: skip


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="max_iter: expected a positive integer, got 0"):
        EM(max_iter=0)
    with pytest.raises(ValueError, match="n_init: expected a positive integer"):
        EM(n_init=-1)
    with pytest.raises(ValueError, match="chunk_size: expected a positive integer"):
        EM(chunk_size=0)
    with pytest.raises(ValueError, match="tol: expected a non-negative finite number, got -1"):
        EM(tol=-1)


def test_two_gloo_processes_equal_one_process(tmp_path):
    em_worker = run_gloo_workers(HERE / "em_worker.py", tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    one = em_worker.fit_all(*em_worker.data())
    for got in ranks:
        assert got["n_iter"] == one["n_iter"] and got["km_iter"] == one["km_iter"]
        for key in ["means", "covariances", "centres"]:
            torch.testing.assert_close(got[key], one[key], rtol=1e-9, atol=1e-9)
        assert got["lower_bound"] == pytest.approx(one["lower_bound"], rel=1e-12)
        assert got["inertia"] == pytest.approx(one["inertia"], rel=1e-12)
    # a data-based start is made once (rank 0) and broadcast: the ranks agree
    torch.testing.assert_close(ranks[0]["seeded_means"], ranks[1]["seeded_means"])
