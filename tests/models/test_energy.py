"""EnergyModel: shapes, errors, and its Pyro model sampled by the Langevin kernels."""

import math

import pytest
import torch
from pyro.infer import MCMC
from torch import nn

import pyro_flowkit as fk
from pyro_flowkit.inference import MALA, sample_langevin, train_ebm
from pyro_flowkit.models import EnergyModel, energy_mlp
from pyro_flowkit.nn.lipschitz import SpectralNormLinear


class Quadratic(nn.Module):
    """U(x) = |x - c|^2 / 2 over (N, 2, 2) events: a Gaussian with mean c and unit variances."""

    event_shape = (2, 2)

    def __init__(self):
        super().__init__()
        self.centre = nn.Parameter(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))

    def forward(self, x):
        return 0.5 * (x - self.centre).square().flatten(1).sum(1)


def test_energy_accepts_any_leading_shape():
    ebm = EnergyModel(energy_mlp(3, (8,)))
    assert ebm.event_shape == (3,)
    assert ebm.energy(torch.randn(4, 5, 3)).shape == (4, 5)
    assert ebm.energy(torch.randn(3)).shape == ()
    assert ebm(torch.randn(6, 3)).shape == (6,)


def test_bad_inputs_are_named():
    ebm = EnergyModel(energy_mlp(3, (8,)))
    with pytest.raises(ValueError, match="x: expected shape \\(..., 3\\)"):
        ebm.energy(torch.randn(4, 2))
    with pytest.raises(ValueError, match="energy_net: expected one energy per input"):
        EnergyModel(nn.Linear(3, 2)).energy(torch.randn(4, 3))
    with pytest.raises(ValueError, match="event_shape"):
        EnergyModel(nn.Tanh())
    with pytest.raises(TypeError, match="energy_net"):
        EnergyModel(lambda x: x)
    with pytest.raises(ValueError, match="spectral_norm: expected a positive finite number"):
        energy_mlp(2, (4,), spectral_norm=-1.0)


def test_spectral_norm_bounds_every_layer():
    net = energy_mlp(2, (16, 16), spectral_norm=1.5)
    layers = [m for m in net if isinstance(m, SpectralNormLinear)]
    assert len(layers) == 3
    for layer in layers:
        with torch.no_grad():
            layer.weight.mul_(10.0)
    net(torch.randn(8, 2))  # training mode: the power iteration follows the weights
    for layer in layers:
        assert layer.exact_spectral_norm() <= 1.5 * (1 + 1e-2)


def test_a_spectrally_normalised_energy_model_builds_trains_and_samples():
    # EnergyModel looked for an nn.Linear to infer the event shape; SpectralNormLinear is not one
    ebm = EnergyModel(energy_mlp(2, (16, 16), spectral_norm=2.0))
    assert ebm.event_shape == (2,)
    data = fk.data.toy_2d("8gaussians", 200)
    history = train_ebm(ebm, data, steps=3, step_size=0.02, langevin_steps=5, batch_size=32,
                        progress=False)  # fmt: skip
    assert all(len(v) == 3 and all(map(math.isfinite, v)) for v in history.values())
    samples, stats = sample_langevin(ebm.energy, 4 * torch.rand(8, 2) - 2, 10, step_size=0.02,
                                     num_warmup=20, progress=False)  # fmt: skip
    assert samples.shape == (8, 10, 2) and torch.isfinite(samples).all()
    mcmc = MCMC(MALA(ebm.model), 5, warmup_steps=5, disable_progbar=True)
    mcmc.run()
    assert mcmc.get_samples()["x"].shape == (5, 2)


def test_event_shape_is_inferred_from_a_hand_built_spectral_net():
    net = nn.Sequential(SpectralNormLinear(3, 8), nn.SiLU(), SpectralNormLinear(8, 1))
    ebm = EnergyModel(net)
    assert ebm.event_shape == (3,)
    assert ebm.energy(torch.randn(5, 3)).shape == (5,)


def test_pyro_model_sampled_by_mala_is_the_energy_density():
    ebm = EnergyModel(Quadratic()).double()
    mcmc = MCMC(MALA(ebm.model), 1500, warmup_steps=300, disable_progbar=True)
    mcmc.run()
    x = mcmc.get_samples()["x"]
    assert x.shape == (1500, 2, 2) and x.dtype == torch.float64
    torch.testing.assert_close(x.mean(0), ebm.energy_net.centre.detach(), atol=0.25, rtol=0)
    torch.testing.assert_close(x.var(0), torch.ones(2, 2, dtype=x.dtype), atol=0.3, rtol=0)


def test_energy_is_the_potential_of_sample_langevin():
    ebm = EnergyModel(Quadratic())
    samples, _ = sample_langevin(
        ebm.energy, torch.zeros(64, 2, 2), 300, step_size=0.5, num_warmup=200, progress=False
    )
    draws = samples.flatten(0, 1)
    torch.testing.assert_close(draws.mean(0), ebm.energy_net.centre.detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(draws.var(0), torch.ones(2, 2), atol=0.1, rtol=0)
