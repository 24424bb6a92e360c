"""Exact optimal transport: the primal and dual LPs agree with each other, with POT's network
simplex and scipy's closed form on the line, and with analytic distances."""

import math

import pytest
import torch

from pyro_flowkit.ot import (
    lipschitz_dual,
    transport_assignment,
    transport_dual,
    transport_primal,
    wasserstein_1d,
    wasserstein_exact,
)

ot = pytest.importorskip("ot")
stats = pytest.importorskip("scipy.stats")


def _problem(seed: int, n: int, m: int, d: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(m, d, generator=g, dtype=torch.float64) * 1.5 + 0.7
    a = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    return x, y, a / a.sum(), b / b.sum()


def _pot(x, y, a, b, metric: str = "euclidean") -> float:
    return float(ot.emd2(a.numpy(), b.numpy(), ot.dist(x.numpy(), y.numpy(), metric=metric)))


PROBLEMS = [(0, 5, 7, 2), (1, 30, 30, 2), (2, 17, 30, 3), (3, 30, 11, 1), (4, 1, 9, 4),
            (5, 25, 25, 8)]  # fmt: skip


@pytest.mark.parametrize("seed, n, m, d", PROBLEMS)
def test_primal_equals_dual_equals_lipschitz_dual_equals_pot(seed, n, m, d):
    x, y, a, b = _problem(seed, n, m, d)
    primal = wasserstein_exact(x, y, a=a, b=b, method="primal")
    assert wasserstein_exact(x, y, a=a, b=b, method="dual") == pytest.approx(primal, rel=1e-8)
    assert wasserstein_exact(x, y, a=a, b=b, method="lipschitz") == pytest.approx(primal, rel=1e-8)
    assert _pot(x, y, a, b) == pytest.approx(primal, rel=1e-8)


@pytest.mark.parametrize("seed, n, d", [(0, 30, 2), (1, 12, 5), (2, 1, 3)])
def test_assignment_equals_the_lps_on_unweighted_sets_of_equal_size(seed, n, d):
    """Uniform weights, n = m: an optimal plan is a permutation / n (Birkhoff), which "auto"
    finds by ``linear_sum_assignment``; the LPs and POT agree, also for p = 2."""
    x, y, _, _ = _problem(seed, n, n, d)
    uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for p, metric in ((1, "euclidean"), (2, "sqeuclidean")):
        assignment = wasserstein_exact(x, y, p, method="assignment")
        assert wasserstein_exact(x, y, p) == assignment  # "auto" takes the assignment
        primal = wasserstein_exact(x, y, p, method="primal")
        assert assignment == pytest.approx(primal, rel=1e-8)
        assert assignment**p == pytest.approx(_pot(x, y, uniform, uniform, metric), rel=1e-8)
    plan = transport_assignment(torch.cdist(x, y)).plan
    assert sorted(plan.flatten().tolist())[-n:] == [1.0 / n] * n  # a permutation matrix / n
    torch.testing.assert_close(plan.sum(0), uniform)
    torch.testing.assert_close(plan.sum(1), uniform)


def test_p2_is_w2_and_pots_default_distance_is_its_square():
    """``ot.dist`` defaults to the squared distance: ``emd2`` with it is W2^2, not W1."""
    x, y, a, b = _problem(7, 20, 15, 2)
    w2 = wasserstein_exact(x, y, 2, a=a, b=b)
    assert w2**2 == pytest.approx(_pot(x, y, a, b, "sqeuclidean"), rel=1e-8)
    assert wasserstein_exact(x, y, 2, a=a, b=b, method="dual") == pytest.approx(w2, rel=1e-8)
    w1 = wasserstein_exact(x, y, a=a, b=b)
    assert w1 < w2 and abs(w1**2 - w2**2) > 0.1  # W1 <= W2, and the two really differ here


@pytest.mark.parametrize("seed", range(3))
def test_closed_form_on_the_line_matches_scipy_and_the_lp(seed):
    x, y, a, b = _problem(seed, 30, 23, 1)
    closed = wasserstein_1d(x, y, 1, a, b)
    scipy_w1 = stats.wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy(), a.numpy(), b.numpy())
    assert closed == pytest.approx(scipy_w1, rel=1e-10)
    assert closed == pytest.approx(wasserstein_exact(x, y, a=a, b=b, method="primal"), rel=1e-8)
    assert wasserstein_exact(x[:, 0], y[:, 0], a=a, b=b) == closed  # "auto": the closed form
    for p in (2, 3.5):
        lp = wasserstein_exact(x, y, p, a=a, b=b, method="primal")
        assert wasserstein_1d(x, y, p, a, b) == pytest.approx(lp, rel=1e-7)


def test_closed_form_on_large_samples_matches_scipy():
    x, y = torch.randn(20000, dtype=torch.float64), torch.rand(15000, dtype=torch.float64)
    assert wasserstein_1d(x, y) == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-10)


def test_analytic_distances():
    """A translated cloud is at W1 = |v| (f(x) = <x, v>/|v| attains it); point masses at
    |x - y|; two halves of an interval at a known integral."""
    x = torch.randn(25, 2, dtype=torch.float64)
    v = torch.tensor([0.3, -1.2], dtype=torch.float64)
    for method in ("primal", "dual", "lipschitz"):
        assert wasserstein_exact(x, x + v, method=method) == pytest.approx(v.norm().item(), 1e-9)
    assert wasserstein_exact(torch.zeros(1, 3), torch.tensor([[1.0, 2.0, 2.0]])) == 3.0
    grid = torch.linspace(0, 1, 1001, dtype=torch.float64)  # U(0, 1) vs U(0, 1/2): int |x/2 - x|
    assert wasserstein_1d(grid, grid / 2) == pytest.approx(0.25, abs=1e-3)
    assert wasserstein_1d(grid, grid / 2, p=2) == pytest.approx(math.sqrt(1 / 12), abs=1e-3)


def test_optimal_plan_and_potentials_certify_each_other():
    x, y, a, b = _problem(11, 12, 9, 2)
    cost = torch.cdist(x, y)
    primal, dual = transport_primal(cost, a, b), transport_dual(cost, a, b)
    plan = primal.plan
    assert (plan >= -1e-12).all()
    torch.testing.assert_close(plan.sum(1), a)
    torch.testing.assert_close(plan.sum(0), b)
    assert (plan * cost).sum().item() == pytest.approx(primal.cost, rel=1e-10)
    slack = cost - dual.f[:, None] - dual.g[None, :]
    assert slack.min() > -1e-9  # dual feasible
    assert (plan * slack).sum().abs() < 1e-8  # complementary slackness: both optimal
    kr = lipschitz_dual(x, y, a, b)
    z, values = torch.cat([x, y]), torch.cat([kr.f, -kr.g])
    gaps = (values[:, None] - values[None, :]) - torch.cdist(z, z)
    assert gaps.max() < 1e-9  # the critic's values are 1-Lipschitz on the points
    assert (a @ kr.f + b @ kr.g).item() == pytest.approx(primal.cost, rel=1e-8)


def test_weights_are_normalised_and_zero_weights_drop_points():
    x, y, a, b = _problem(3, 10, 8, 2)
    assert wasserstein_exact(x, y, a=3 * a, b=b) == pytest.approx(wasserstein_exact(x, y, a=a, b=b))
    zero = torch.cat([a, torch.zeros(1, dtype=a.dtype)])
    far = torch.cat([x, torch.full((1, 2), 100.0, dtype=x.dtype)])
    assert wasserstein_exact(far, y, a=zero, b=b) == pytest.approx(
        wasserstein_exact(x, y, a=a, b=b)
    )


def test_dtype_and_device_of_the_results(device):
    x, y = torch.randn(6, 2, device=device), torch.randn(5, 2, device=device)
    result = transport_primal(torch.cdist(x, y))
    assert result.plan.device.type == device.type and result.plan.dtype == torch.float64
    assert isinstance(wasserstein_exact(x, y), float)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: wasserstein_exact(torch.zeros(3, 2), torch.zeros(3, 3)), "x, y: expected"),
        (lambda: wasserstein_exact(torch.zeros(3, 2), torch.zeros(3, 2), p=0.5), "p: expected"),
        (lambda: wasserstein_exact(torch.zeros(2, 1), torch.zeros(2, 1), method="x"), "method"),
        (lambda: wasserstein_exact(torch.zeros(2, 2), torch.zeros(2, 2), 2, method="lipschitz"),
         "method: 'lipschitz'"),
        (lambda: wasserstein_exact(torch.zeros(2, 2), torch.zeros(2, 2), method="1d"),
         "points on the line"),
        (lambda: wasserstein_exact(torch.tensor([[math.nan]]), torch.zeros(2, 1)), "x: expected"),
        (lambda: wasserstein_exact(torch.zeros(0, 2), torch.zeros(2, 2)), "x: expected"),
        (lambda: wasserstein_exact(torch.zeros(2, 1), torch.zeros(2, 1), a=-torch.ones(2)),
         "a: expected 2 non-negative weights"),
        (lambda: wasserstein_exact(torch.zeros(2, 1), torch.zeros(2, 1), b=torch.ones(3)),
         "b: expected 2"),
        (lambda: transport_primal(torch.zeros(3)), "cost: expected an"),
        (lambda: transport_assignment(torch.zeros(3, 2)), "cost: expected a square"),
        (lambda: wasserstein_exact(torch.zeros(2, 2), torch.zeros(3, 2), method="assignment"),
         "method: 'assignment' needs unweighted sets of equal size"),
        (lambda: wasserstein_exact(torch.zeros(2, 2), torch.zeros(2, 2), a=torch.ones(2),
                                   method="assignment"), "with weights"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
