"""Replay buffer, short-run Langevin and contrastive-divergence training of energy models."""

import math

import pytest
import torch

import pyro_flowkit as fk
from pyro_flowkit.inference import ReplayBuffer, langevin_dynamics, sample_langevin, train_ebm
from pyro_flowkit.models import EnergyModel, energy_mlp


def test_replay_buffer_round_trip_and_restarts():
    buffer = ReplayBuffer(50, lambda n: torch.zeros(n, 2))
    x, slots = buffer.sample(20)
    assert x.shape == (20, 2) and len(buffer) == 50
    buffer.update(slots, torch.ones(20, 2))
    assert buffer.data[slots].eq(1).all() and buffer.data.eq(0).any()
    always = ReplayBuffer(10, lambda n: torch.full((n, 1), 7.0), reinit_prob=1.0)
    always.update(torch.arange(10), torch.zeros(10, 1))
    assert always.sample(5)[0].eq(7).all()
    never = ReplayBuffer(10, lambda n: torch.full((n, 1), 7.0), reinit_prob=0.0)
    never.update(torch.arange(10), torch.zeros(10, 1))
    assert never.sample(5)[0].eq(0).all()


def test_replay_buffer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, lambda n: torch.zeros(n, 1))
    with pytest.raises(ValueError, match="reinit_prob"):
        ReplayBuffer(5, lambda n: torch.zeros(n, 1), reinit_prob=1.5)
    with pytest.raises(ValueError, match="init_fn: expected a tensor with 5 rows"):
        ReplayBuffer(5, lambda n: torch.zeros(3, 1))


def test_langevin_dynamics_is_ula_at_temperature_one():
    s2, h = 1.0, 0.2
    x = langevin_dynamics(lambda x: 0.5 * x.square().sum(1) / s2, torch.zeros(20000, 1), 60, h)
    expected = s2 / (1 - h / (2 * s2))
    assert abs(x.var().item() - expected) < 5 * expected * math.sqrt(2 / 20000)


def test_langevin_dynamics_noise_scale_and_clipping():
    x = langevin_dynamics(lambda x: 0.5 * x.square().sum(1), torch.zeros(10000, 1), 60, 0.5,
                          noise_scale=0.0)  # fmt: skip
    assert x.abs().max() == 0  # no noise, zero gradient at the minimum
    start = torch.full((4, 1), 100.0)
    moved = langevin_dynamics(lambda x: 0.5 * x.square().sum(1), start, 1, 0.5, 0.0, drift_clip=1.0)
    torch.testing.assert_close(moved, start - 0.5)
    with pytest.raises(FloatingPointError, match="step_size"):
        langevin_dynamics(lambda x: -((x.square().sum(1)) ** 2), torch.ones(3, 1), 50, 1.0)


def test_train_ebm_returns_its_history_and_separates_data_from_noise():
    data = fk.data.toy_2d("8gaussians", 1000)
    ebm = EnergyModel(energy_mlp(2, (32, 32)))
    history = train_ebm(ebm, data, steps=150, step_size=0.02, langevin_steps=10, progress=False,
                        lr=3e-3)  # fmt: skip
    assert set(history) == {"loss", "e_pos", "e_neg"}
    assert all(len(v) == 150 and all(map(math.isfinite, v)) for v in history.values())
    noise = torch.rand(500, 2) * 10 - 5
    with torch.no_grad():
        assert ebm.energy(data).mean() + 1.0 < ebm.energy(noise).mean()
    assert not ebm.training


def test_train_ebm_rejects_bad_arguments():
    ebm = EnergyModel(energy_mlp(2, (4,)))
    for kwargs, match in [
        ({"steps": -1, "step_size": 0.1}, "steps"),
        ({"steps": 1, "step_size": 0.0}, "step_size"),
        ({"steps": 1, "step_size": 0.1, "l2_coeff": -1.0}, "l2_coeff"),
        ({"steps": 1, "step_size": 0.1, "langevin_steps": 1.5}, "langevin_steps"),
        ({"steps": 1, "step_size": 0.1, "noise_scale": math.nan}, "noise_scale"),
        ({"steps": 1, "step_size": 0.1, "lr": -1e-3}, "lr"),
    ]:
        with pytest.raises(ValueError, match=match):
            train_ebm(ebm, torch.zeros(10, 2), progress=False, **kwargs)


@pytest.mark.parametrize("clip", [-1.0, 0.0, math.nan])
def test_a_drift_clip_that_is_not_positive_is_refused(clip):
    # a negative clip turned every drift around: clamp(g, c, -c) is -c, so chains climbed uphill
    quadratic = lambda x: 0.5 * x.square().sum(1)  # noqa: E731
    with pytest.raises(ValueError, match="^drift_clip: expected a positive number"):
        langevin_dynamics(quadratic, torch.zeros(4, 2), 5, 0.1, drift_clip=clip)
    ebm = EnergyModel(energy_mlp(2, (4,)))
    before = [p.detach().clone() for p in ebm.parameters()]
    with pytest.raises(ValueError, match="^drift_clip: expected a positive number"):
        train_ebm(ebm, torch.randn(10, 2), steps=2, step_size=0.1, drift_clip=clip, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, ebm.parameters(), strict=True))


def test_langevin_dynamics_checks_its_arguments():
    quadratic = lambda x: 0.5 * x.square().sum(1)  # noqa: E731
    for kwargs, match in [
        ({"steps": -1}, "steps"),
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": math.nan}, "step_size"),
        ({"noise_scale": -0.1}, "noise_scale"),
        ({"noise_scale": math.nan}, "noise_scale"),
    ]:
        args = {"steps": 5, "step_size": 0.1, **kwargs}
        with pytest.raises(ValueError, match=f"^{match}: expected"):
            langevin_dynamics(quadratic, torch.zeros(4, 2), **args)
    # an infinite clip is no clip
    start = torch.full((3, 1), 10.0)
    torch.testing.assert_close(
        langevin_dynamics(quadratic, start, 1, 0.5, 0.0, drift_clip=math.inf), start / 2
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_train_ebm_names_non_finite_data(bad):
    # NaN data made the default replay buffer NaN, and the error then blamed the step size
    data = torch.randn(50, 2)
    data[7, 1] = bad
    ebm = EnergyModel(energy_mlp(2, (4,)))
    with pytest.raises(ValueError, match="^data: expected finite values, got 1 NaN or infinite"):
        train_ebm(ebm, data, steps=2, step_size=0.1, progress=False)


def test_train_ebm_names_empty_or_shapeless_data():
    ebm = EnergyModel(energy_mlp(2, (4,)))
    for data in (torch.zeros(0, 2), torch.tensor(1.0)):
        with pytest.raises(ValueError, match="^data: expected"):
            train_ebm(ebm, data, steps=2, step_size=0.1, progress=False)
    with pytest.raises(TypeError, match="^data: expected a tensor"):
        train_ebm(ebm, [[0.0, 1.0]], steps=2, step_size=0.1, progress=False)


@pytest.mark.slow
def test_ebm_on_eight_gaussians_samples_close_to_the_data():
    data = fk.data.toy_2d("8gaussians", 4000)
    ebm = EnergyModel(energy_mlp(2, (128, 128)))
    train_ebm(ebm, data, steps=2000, step_size=0.02, langevin_steps=30, lr=2e-3, progress=False)
    low, high = data.amin(0), data.amax(0)
    noise = low + (high - low) * torch.rand(500, 2)
    samples, stats = sample_langevin(ebm.energy, noise.clone(), 1, step_size=0.02, num_warmup=500,
                                     adapt_mass_matrix=False, progress=False)  # fmt: skip
    reference = fk.data.toy_2d("8gaussians", 500, seed=1)
    baseline = fk.metrics.mmd(fk.data.toy_2d("8gaussians", 500, seed=2), reference)  # ~0.003
    closed = (fk.metrics.mmd(samples[:, -1], reference) - baseline) / (
        fk.metrics.mmd(noise, reference) - baseline
    )
    assert closed < 0.45  # more than half the way from the noise to the data (0.18-0.33 by seed)
    with torch.no_grad():
        assert ebm.energy(reference).mean() + 1.0 < ebm.energy(noise).mean()
