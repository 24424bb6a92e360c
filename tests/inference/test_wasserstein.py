"""Wasserstein-1 by trained critics (spectral norm, gradient penalty, clipping) and WGAN training:
estimates against analytic and exact W1, what each constraint does to the estimate."""

import math

import pytest
import torch
from torch import nn

import pyro_flowkit as fk
from pyro_flowkit.inference.wasserstein import (
    GradientPenalty,
    LipschitzConstraint,
    MaxMin,
    SpectralNormalization,
    WeightClipping,
    critic_gradient_norms,
    critic_mlp,
    train_wgan,
    wasserstein1,
)
from pyro_flowkit.ot import wasserstein_1d, wasserstein_exact

SHIFTS = {1: torch.tensor([1.0]), 2: torch.tensor([0.6, 0.8])}  # |mu1 - mu2| = 1


def _shifted(d: int, n: int, shift: torch.Tensor, device=None) -> tuple:
    """Training and held-out samples of N(0, I) and N(shift, I) (W1 = |shift|)."""
    x, y = torch.randn(n, d, device=device), torch.randn(n, d, device=device) + shift.to(device)
    ex = torch.randn(2 * n, d, device=device)
    ey = torch.randn(2 * n, d, device=device) + shift.to(device)
    return x, y, (ex, ey)


@pytest.mark.parametrize("constraint", ["spectral", "gp"])
@pytest.mark.parametrize("d", [1, 2])
def test_gaussian_shift_within_ten_percent(constraint, d, device):
    x, y, held_out = _shifted(d, 2000, SHIFTS[d], device)
    w = wasserstein1(x, y, constraint, steps=300, eval_data=held_out, progress=False)
    assert w.estimate == pytest.approx(1.0, rel=0.1)
    assert len(w.history) == 300 and len(w.history.metrics["estimate"]) == 300
    if constraint == "spectral":  # 1-Lipschitz by construction
        assert w.max_grad_norm <= 1 + 1e-4
    else:  # a soft constraint: held near 1 where it is sampled, not below it
        assert 0.9 < w.max_grad_norm < 1.5


def test_spectral_critic_is_one_lipschitz_and_its_estimate_is_below_the_exact_lp():
    """On 30 + 30 points a 1-Lipschitz critic's dual value can only be below the exact W1 of
    the two sets (the LP's optimum over all 1-Lipschitz functions), and gets close to it."""
    for seed in range(2):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(30, 2, generator=g, dtype=torch.float64)
        y = torch.randn(30, 2, generator=g, dtype=torch.float64) * 0.5 + 1
        exact = wasserstein_exact(x, y, method="lipschitz")
        w = wasserstein1(x, y, "spectral", steps=300, batch_size=30, progress=False)
        assert 0.9 * exact < w.estimate <= exact + 1e-9
        a, b = torch.randn(500, 2, dtype=torch.float64), torch.randn(500, 2, dtype=torch.float64)
        with torch.no_grad():
            slopes = (w.critic(a) - w.critic(b)).abs() / (a - b).norm(dim=1)
        assert slopes.max() <= 1 + 1e-6


def test_gradient_penalty_overestimates_a_large_distance_by_about_w1_over_two_lambda():
    """For a linear critic of slope s the loss -s W1 + lambda (s - 1)^2 is least at
    s = 1 + W1 / (2 lambda): the soft constraint lets the estimate exceed W1 (3.45 for W1 = 3,
    lambda = 10), and a larger lambda takes it back."""
    x, y, held_out = _shifted(1, 2000, torch.tensor([3.0]))
    soft = wasserstein1(x, y, GradientPenalty(10.0), steps=300, eval_data=held_out, progress=False)
    assert 1.07 * 3 < soft.estimate < 1.2 * 3 and soft.max_grad_norm > 1.1
    stiff = wasserstein1(x, y, GradientPenalty(100.0), steps=300, eval_data=held_out,
                         progress=False)  # fmt: skip
    assert stiff.estimate == pytest.approx(3.0, rel=0.04)


def test_clipping_estimates_only_a_scaled_w1():
    """With weights in [-0.01, 0.01] the critic is K-Lipschitz with K << 1: its estimate is
    about K W1 (it grows with W1 but is hundreds of times smaller), and its largest gradient
    norm, reported with it, shows the scale."""
    x = torch.randn(2000, 1)
    estimates = []
    for shift in (1.0, 4.0):
        y, ex, ey = torch.randn(2000, 1) + shift, torch.randn(4000, 1), torch.randn(4000, 1) + shift
        w = wasserstein1(x, y, "clip", steps=300, eval_data=(ex, ey), progress=False)
        assert 0 < w.estimate < 0.05 * shift and w.max_grad_norm < 0.05
        assert w.estimate <= w.max_grad_norm * wasserstein_1d(ex, ey)  # |f'| <= K on the line
        assert all(p.abs().max() <= 0.01 for p in w.critic.parameters())
        estimates.append(w.estimate)
    assert estimates[1] > 2 * estimates[0]


def test_default_critics_and_constraints():
    spectral = critic_mlp(3, (16, 16))
    assert spectral(torch.randn(5, 3)).shape == (5,) and spectral(torch.randn(5, 3)).eq(0).all()
    assert critic_gradient_norms(spectral, torch.randn(4, 3)).shape == (4,)
    with pytest.raises(ValueError, match="hidden_dims: expected even widths"):
        critic_mlp(2, (15,))
    with pytest.raises(ValueError, match="critic: expected spectral-norm layers"):
        SpectralNormalization().check_critic(nn.Sequential(nn.Linear(2, 1)))
    net = nn.Linear(3, 1)
    WeightClipping(0.05).project(net)
    assert net.weight.abs().max() <= 0.05
    x = torch.tensor([[1.0, -2.0, 3.0, 0.0]], requires_grad=True)
    (grad,) = torch.autograd.grad((MaxMin()(x) * torch.arange(4.0)).sum(), x)
    assert sorted(grad[0].tolist()) == [0.0, 1.0, 2.0, 3.0]  # a permutation: norm kept


def test_a_custom_constraint_and_critic_are_used():
    calls = []

    class Counting(LipschitzConstraint):
        name = "counting"

        def project(self, critic):
            calls.append(1)

    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    x, y = torch.randn(100, 2), torch.randn(100, 2) + 1
    w = wasserstein1(x, y, Counting(), critic, steps=10, batch_size=50, progress=False)
    assert w.critic is critic and len(calls) == 12  # before, after every step, after averaging
    calls.clear()
    wasserstein1(x, y, Counting(), critic, steps=10, average=False, progress=False)
    assert len(calls) == 11


def test_wasserstein1_checks_its_arguments():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="constraint: expected one of"):
        wasserstein1(x, x, "lipschitz", progress=False)
    with pytest.raises(ValueError, match="x, y: expected one event shape"):
        wasserstein1(x, torch.randn(10, 3), progress=False)
    with pytest.raises(ValueError, match="y: expected finite values"):
        wasserstein1(x, torch.full((10, 2), math.nan), progress=False)
    with pytest.raises(ValueError, match="steps: expected a non-negative integer"):
        wasserstein1(x, x, steps=-1, progress=False)
    with pytest.raises(ValueError, match="critic: expected one value per row"):
        wasserstein1(x, x, "gp", nn.Linear(2, 2), steps=1, progress=False)
    with pytest.raises(ValueError, match="weight: expected a positive"):
        GradientPenalty(0.0)
    with pytest.raises(ValueError, match=r"eval_data: expected samples of event shape \(2,\)"):
        wasserstein1(x, x, steps=1, eval_data=(x, torch.randn(10, 3)), progress=False)
    with pytest.raises(ValueError, match="eval_data: expected a pair"):
        wasserstein1(x, x, steps=1, eval_data=x, progress=False)


def test_wgan_moves_a_generator_onto_the_data():
    """An affine generator from N(0, I): the exact W1 between its samples and the data falls
    from 3.7 to below 0.4 (two samples of one law are about 0.1 apart), and the critic's
    estimate, recorded per step, falls with it."""
    target = torch.tensor([2.0, -3.0])
    data = torch.randn(2000, 2) * 0.5 + target
    generator = nn.Linear(2, 2)
    probe = torch.randn(300, 2)

    def exact_w1() -> float:
        with torch.no_grad():
            return wasserstein_exact(generator(probe), data[:300])

    before = exact_w1()
    critic = critic_mlp(2, (32, 32), "spectral")
    fit = train_wgan(generator, data, critic, "spectral", steps=100, batch_size=64, lr=5e-2,
                     critic_lr=1e-2, progress=False)  # fmt: skip
    assert before > 3 and exact_w1() < 0.4
    h = fit.history.metrics["wasserstein"]
    assert len(fit.history) == 100 and len(fit.critic_history) == 5 * 100
    assert sum(h[:10]) / 10 > 2 and abs(sum(h[-20:]) / 20) < 0.2
    assert not fit.critic.training


def test_wgan_flow_keeps_an_exact_likelihood_and_takes_a_regularizer():
    """A RealNVP as the generator (Flow-GAN), with the hybrid term lambda * NLL."""
    data = fk.data.toy_2d("8gaussians", 1000)
    flow = fk.flows.realnvp(2, num_layers=2, hidden_dims=(16,))
    density = fk.flows.flow_distribution(flow, 2)
    seen = []

    def nll(x):
        seen.append(x.shape)
        return 0.1 * -density.log_prob(x).mean()

    fit = train_wgan(flow, data, constraint="spectral", steps=5, batch_size=32,
                     regularizer=nll, progress=False)  # fmt: skip
    assert seen == [torch.Size([32, 2])] * 5
    assert set(fit.history.metrics) == {"wasserstein", "penalty"}
    assert torch.isfinite(density.log_prob(data[:10])).all()


def test_wgan_raises_on_numerical_trouble_and_bad_generators():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, z):
            return z * self.w * math.nan

    data = torch.randn(100, 2)
    with pytest.raises(FloatingPointError, match="train_wgan: critic: the loss became nan"):
        train_wgan(Broken(), data, steps=2, batch_size=10, progress=False)
    with pytest.raises(ValueError, match=r"generator: expected samples of shape \(10, 2\)"):
        train_wgan(nn.Linear(2, 3), data, steps=1, batch_size=10, progress=False)
    with pytest.raises(ValueError, match="critic_steps: expected a positive integer"):
        train_wgan(nn.Linear(2, 2), data, steps=1, critic_steps=0, progress=False)
    with pytest.raises(ValueError, match="data: expected finite values"):
        train_wgan(nn.Linear(2, 2), data * math.inf, steps=1, progress=False)


def test_the_demo_step_reports_both_flows_and_draws_them(tmp_path, capsys):
    """The demo's WGAN step with a few steps of each kind (the full one takes minutes)."""
    from pyro_flowkit.app.wgan_demo import demo_step

    report = demo_step(tmp_path, quick=True, progress=False,
                       steps={"ml": 3, "wgan": 2, "critic": 3})  # fmt: skip
    assert report["steps"] == {"ml": 3, "wgan": 2, "critic": 3}
    for how in ("ml", "wgan"):
        assert set(report[how]) == {"test_nll", "mmd", "critic_w1", "seconds"}
        assert all(math.isfinite(v) for v in report[how].values())
    assert report["data"]["mmd"] < report["ml"]["mmd"]  # a barely trained flow is far off
    assert "RealNVP on 8gaussians, trained two ways" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"steps: expected keys among .*'gan'"):
        demo_step(tmp_path, quick=True, steps={"gan": 1})
    pytest.importorskip("matplotlib")
    assert (tmp_path / "wgan_8gaussians.png").read_bytes()[:4] == b"\x89PNG"
