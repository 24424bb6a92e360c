"""ModelPotential: a Pyro model as sample_langevin's batched potential, its transforms back to the
sites and its ArviZ output, against closed forms, Pyro's own potential and the analytic
posterior."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.mcmc.util import initialize_model

from pyro_flowkit.diagnostics import import_arviz
from pyro_flowkit.inference.potential import ModelPotential
from pyro_flowkit.inference.sampling import sample_langevin

A, B = 2.0, 1.0  # Gamma(A, B) prior on a Poisson rate
Y = torch.tensor([2.0, 4.0, 3.0, 5.0, 1.0, 3.0], dtype=torch.float64)
SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
SCHOOLS_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)


def gamma_poisson(y):
    rate = pyro.sample("rate", dist.Gamma(torch.tensor(A, dtype=y.dtype), B))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Poisson(rate), obs=y)


def eight_schools(y, sigma):
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=y.dtype), 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(torch.tensor(5.0, dtype=y.dtype)))
    with pyro.plate("schools", len(y)):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def shapes_model(counts):
    # a simplex, a vector event, a positive site in a plate, a matrix product of a latent vector
    f64 = torch.float64
    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(3, dtype=f64)))
    w = pyro.sample("w", dist.Normal(torch.zeros(4, dtype=f64), 1.0).to_event(1))
    with pyro.plate("groups", 2):
        scale = pyro.sample("scale", dist.LogNormal(torch.zeros((), dtype=f64), 1.0))
    design = torch.arange(20, dtype=f64).reshape(5, 4) / 10
    with pyro.plate("draws", len(counts)):
        pyro.sample("counts", dist.Categorical(weights), obs=counts)
    with pyro.plate("rows", 5):
        mean = design @ w  # not written for an extra batch dimension: vmap handles it
        pyro.sample("obs", dist.Normal(mean, scale.sum()), obs=torch.ones(5, dtype=f64))


def test_gamma_poisson_potential_is_the_closed_form_with_the_log_jacobian():
    pot = ModelPotential(gamma_poisson, (Y,))
    assert pot.vectorized and pot.sites == ["rate"] and pot.dim == 1
    u = torch.linspace(-2.0, 2.5, 7, dtype=torch.float64)[:, None]  # log rate, 7 chains
    rate = u.exp().squeeze(1)
    log_joint = (
        dist.Gamma(A, B).log_prob(rate)
        + dist.Poisson(rate[:, None]).log_prob(Y).sum(1)
        + u.squeeze(1)  # log |d rate / d u|
    )
    torch.testing.assert_close(pot(u), -log_joint)
    torch.testing.assert_close(pot.constrain(u)["rate"], rate[:, None].squeeze(1))


def test_gamma_poisson_posterior_from_sample_langevin():
    pot = ModelPotential(gamma_poisson, (Y,))
    x, stats = sample_langevin(pot, pot.initial_points(32), 400, num_warmup=300, progress=False)
    rate = pot.constrain(x)["rate"]
    assert rate.shape == (32, 400) and (rate > 0).all() and not stats["diverging"].any()
    posterior = dist.Gamma(A + Y.sum(), B + len(Y))
    az = import_arviz()
    idata = pot.from_chains(x, stats)
    summary = az.summary(idata, var_names=["rate"])
    assert summary["r_hat"].item() < 1.05
    assert abs(rate.mean().item() - posterior.mean.item()) < 4 * summary["mcse_mean"].item()
    assert abs(rate.std().item() / posterior.stddev.item() - 1) < 0.1


def test_eight_schools_potential_and_gradient_equal_pyros_per_point_potential():
    pot = ModelPotential(eight_schools, (SCHOOLS_Y, SCHOOLS_SIGMA))
    assert pot.vectorized and pot.dim == 10
    assert pot.shapes == {"mu": (), "tau": (), "theta": (8,)}
    _, point_potential, _, _ = initialize_model(eight_schools, (SCHOOLS_Y, SCHOOLS_SIGMA))
    x = pot.initial_points(6) + 0.3 * torch.randn(6, 10, dtype=torch.float64)
    x.requires_grad_(True)
    batched = pot(x)
    (grad,) = torch.autograd.grad(batched.sum(), x)
    for c in range(6):
        row = x[c].detach().requires_grad_(True)
        value = point_potential(pot.unflatten(row))
        (row_grad,) = torch.autograd.grad(value, row)
        torch.testing.assert_close(batched[c], value)
        torch.testing.assert_close(grad[c], row_grad)
    tau = pot.constrain(x.detach())["tau"]
    assert tau.shape == (6,) and (tau > 0).all()


def test_sites_keep_their_shapes_and_supports_through_the_vector():
    counts = torch.tensor([0, 1, 1, 2, 1, 0, 1])
    pot = ModelPotential(shapes_model, (counts,))
    assert pot.vectorized
    # the simplex is K - 1 numbers unconstrained, the others their own shape
    assert pot.shapes == {"weights": (2,), "w": (4,), "scale": (2,)} and pot.dim == 8
    x, stats = sample_langevin(pot, pot.initial_points(4), 30, num_warmup=30, progress=False)
    sites = pot.constrain(x)
    assert sites["weights"].shape == (4, 30, 3) and sites["w"].shape == (4, 30, 4)
    assert sites["scale"].shape == (4, 30, 2) and (sites["scale"] > 0).all()
    torch.testing.assert_close(sites["weights"].sum(-1), torch.ones(4, 30, dtype=torch.float64))
    idata = pot.from_chains(x, stats)
    assert set(idata.posterior.data_vars) == {"weights", "w", "scale"}
    assert dict(idata.posterior.sizes)["weights_dim_0"] == 3
    assert set(idata.sample_stats.data_vars) == set(stats)


def test_a_model_that_cannot_be_vmapped_falls_back_to_a_loop():
    def branching(y):  # Python control flow on a sampled value: vmap cannot trace it
        mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=y.dtype), 1.0))
        scale = 1.0 if mu.item() > 0 else 2.0
        pyro.sample("y", dist.Normal(mu, scale), obs=y)

    y = torch.tensor(0.5, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"cannot be vmapped over chains: vmap failed .*looping"):
        pot = ModelPotential(branching, (y,))
    assert not pot.vectorized
    x = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    expected = -(dist.Normal(0.0, 1.0).log_prob(x[:, 0]) + torch.stack(
        [dist.Normal(-1.0, 2.0).log_prob(y), dist.Normal(1.0, 1.0).log_prob(y)]
    ))  # fmt: skip
    torch.testing.assert_close(pot(x), expected)
    with pytest.raises(ValueError, match="^vectorize: ModelPotential: the model cannot be vmapped"):
        ModelPotential(branching, (y,), vectorize="vmap")


def test_enumerated_discrete_sites_use_pyros_potential():
    @pyro.infer.config_enumerate
    def mixture(y):
        shift = pyro.sample("shift", dist.Normal(torch.tensor(0.0, dtype=y.dtype), 2.0))
        with pyro.plate("data", len(y)):
            z = pyro.sample("z", dist.Categorical(torch.tensor([0.3, 0.7], dtype=y.dtype)))
            loc = torch.tensor([-1.0, 1.0], dtype=y.dtype)[z] + shift
            pyro.sample("y", dist.Normal(loc, 0.5), obs=y)

    y = torch.tensor([-1.2, 0.9, 1.1], dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"latent sites \['z'\] are not continuous"):
        pot = ModelPotential(mixture, (y,), max_plate_nesting=1)
    shift = torch.tensor([[0.3]], dtype=torch.float64)
    components = dist.Normal(torch.tensor([-1.0, 1.0]) + 0.3, 0.5).log_prob(y[:, None])
    log_joint = (
        dist.Normal(0.0, 2.0).log_prob(torch.tensor(0.3))
        + torch.logsumexp(components + torch.tensor([0.3, 0.7]).log(), -1).sum()
    )
    torch.testing.assert_close(pot(shift), -log_joint.reshape(1).double())


def test_bad_vectors_and_options_are_named():
    pot = ModelPotential(gamma_poisson, (Y,), vectorize="loop")
    assert not pot.vectorized
    with pytest.raises(
        ValueError, match=r"x: expected a tensor of shape \(chains, 1\), got \(3,\)"
    ):
        pot(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(
        ValueError, match=r"samples: expected a tensor of shape \(chains, draws, 1\)"
    ):
        pot.from_chains(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="vectorize: expected one of"):
        ModelPotential(gamma_poisson, (Y,), vectorize="fast")
    with pytest.raises(ValueError, match="num_chains: expected a positive integer"):
        pot.initial_points(0)
    assert math.isfinite(pot(torch.zeros(1, 1, dtype=torch.float64)).item())


def test_the_automatic_step_size_gives_a_sane_acceptance_without_warmup():
    # no step_size and no warm-up: each chain's step is searched once, from 1, then kept
    pot = ModelPotential(eight_schools, (SCHOOLS_Y, SCHOOLS_SIGMA))
    init = pot.initial_points(32)
    _, stats = sample_langevin(pot, init, 150, progress=False)
    h = stats["step_size"][:, 0]
    assert (h != 1.0).all() and (h == stats["step_size"][:, -1]).all()
    assert 0.4 < stats["acceptance_rate"].mean().item() < 0.85  # the search aims for 0.574
    assert not stats["diverging"].any()
