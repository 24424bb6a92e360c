"""MALA, ULA and SGLD driven by pyro.infer.MCMC, against analytic posteriors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from pyro_flowkit.diagnostics import import_arviz
from pyro_flowkit.inference import MALA, SGLD, ULA, polynomial_decay

# On a machine with fewer free cores than chains Pyro draws chains one after another and says so.
sequential_chains = pytest.mark.filterwarnings("ignore:num_chains=.*:UserWarning")

A, B = 2.0, 1.0  # Gamma(A, B) prior on a Poisson rate


def poisson_model(y):
    rate = pyro.sample("rate", dist.Gamma(A, B))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Poisson(rate), obs=y)


def normal_mean_model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(y)) as idx:
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y[idx])


def run(kernel, *args, chains=1, samples=600, warmup=300, **kwargs):
    mcmc = MCMC(kernel, samples, warmup_steps=warmup, num_chains=chains, disable_progbar=True,
                **kwargs)  # fmt: skip
    mcmc.run(*args)
    return mcmc


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "neither"),
        ({"model": poisson_model, "potential_fn": lambda p: p}, "both"),
        ({"model": poisson_model, "step_size": 0.0}, "step_size"),
        ({"model": poisson_model, "step_size": -0.1}, "step_size"),
        ({"model": poisson_model, "target_accept_prob": 1.0}, "target_accept_prob"),
        ({"model": poisson_model, "target_accept_prob": 0.0}, "target_accept_prob"),
    ],
)
@pytest.mark.parametrize("kernel", [MALA, ULA])
def test_bad_arguments_raise(kernel, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kernel(**kwargs)


def test_sgld_bad_arguments_raise():
    with pytest.raises(ValueError, match="neither"):
        SGLD()
    with pytest.raises(ValueError, match="subsample_size: needs model"):
        SGLD(potential_fn=lambda p: p["x"].sum(), subsample_size=2)
    with pytest.raises(ValueError, match="subsample_size"):
        SGLD(normal_mean_model, subsample_size=0)
    with pytest.raises(ValueError, match="plate: the model has no pyro.plate named 'rows'"):
        run(SGLD(normal_mean_model, subsample_size=2, plate="rows"), torch.zeros(5), warmup=0,
            samples=1)  # fmt: skip
    with pytest.raises(ValueError, match="gamma"):
        polynomial_decay(0.1, gamma=0.4)


@sequential_chains
def test_mala_matches_the_conjugate_posterior_and_arviz_reads_it():
    y = dist.Poisson(3.0).sample((40,))
    mcmc = run(MALA(poisson_model), y, chains=2, samples=1000, warmup=500)
    rate = mcmc.get_samples()["rate"]
    posterior = dist.Gamma(A + y.sum(), B + len(y))
    az = import_arviz()
    idata = az.from_pyro(mcmc)
    summary = az.summary(idata, var_names=["rate"])
    assert summary["r_hat"].item() < 1.05
    mcse = summary["mcse_mean"].item()
    assert abs(rate.mean().item() - posterior.mean.item()) < 4 * mcse + 1e-3
    assert abs(rate.std().item() / posterior.stddev.item() - 1) < 0.1
    assert (rate > 0).all()  # sampled in the unconstrained space
    assert int(idata.sample_stats.diverging.sum()) == 0
    diagnostics = mcmc.diagnostics()
    assert set(diagnostics["divergences"]) == {"chain 0", "chain 1"}
    assert 0.45 < diagnostics["acceptance rate"]["chain 0"] < 0.75


def test_ula_has_the_known_step_size_bias():
    y = torch.randn(30) + 1.0
    steps = []
    kernel = ULA(normal_mean_model, adapt_mass_matrix=False)
    hook = lambda kernel, params, stage, i: steps.append(kernel._current_step_size().item())  # noqa: E731
    mcmc = run(kernel, y, samples=4000, warmup=300, hook_fn=hook)
    mu, h = mcmc.get_samples()["mu"], steps[-1]
    precision = 1 / 100 + len(y)
    assert abs(mu.mean().item() - y.sum().item() / precision) < 0.05
    biased = 1 / (precision * (1 - h * precision / 2))  # s^2 / (1 - h / (2 s^2))
    assert abs(mu.var().item() / biased - 1) < 0.1
    assert mu.var().item() > 1.1 / precision


def test_warmup_end_is_detected_by_the_kernel():
    seen = []

    def hook(kernel, params, stage, i):
        seen.append((stage, kernel.logging()["step size"]))

    run(MALA(normal_mean_model), torch.randn(10), samples=30, warmup=60, hook_fn=hook)
    warmup = {s for stage, s in seen if stage == "Warmup"}
    sampling = {s for stage, s in seen if stage == "Sample"}
    assert len(warmup) > 10 and len(sampling) == 1


def test_divergences_are_reported_with_post_warmup_indices():
    def walled(params):  # NaN outside |x| < 1
        x = params["x"]
        return 0.5 * x.square().sum() + torch.where(x.detach().abs().max() < 1, 0.0, math.nan)

    kernel = MALA(potential_fn=walled, step_size=2.0, adapt_step_size=False)
    mcmc = run(kernel, samples=50, warmup=10, initial_params={"x": torch.zeros(2)})
    divergences = mcmc.diagnostics()["divergences"]["chain 0"]
    assert len(divergences) > 5 and all(0 <= i < 50 for i in divergences)
    assert mcmc.get_samples()["x"].abs().max() < 1
    az = import_arviz()
    assert int(az.from_pyro(mcmc).sample_stats.diverging.sum()) == len(divergences)


def test_potential_fn_needs_initial_params():
    kernel = MALA(potential_fn=lambda p: 0.5 * p["x"].square().sum())
    with pytest.raises(ValueError, match="initial_params"):
        run(kernel, samples=5, warmup=0)
    mcmc = run(kernel, samples=200, warmup=100, initial_params={"x": torch.zeros(3)})
    assert mcmc.get_samples()["x"].shape == (200, 3)


def test_cleanup_resets_the_chain():
    kernel = MALA(normal_mean_model)
    y = torch.randn(5)
    kernel.setup(5, y)
    params = kernel.initial_params
    for _ in range(8):
        params = kernel.sample(params)
    assert kernel.diagnostics()["divergences"] == []
    kernel.cleanup()
    assert kernel.initial_params is None and kernel._t == 0 and kernel._state is None
    kernel.setup(0, y)
    assert kernel._t == 0 and kernel.initial_params is not None


def test_enumerated_discrete_sites_are_summed_out():
    weights, scale = torch.tensor([0.3, 0.7]), 0.5
    y = torch.tensor([-1.2, 0.9, 1.1, -0.8, 1.0])

    @pyro.infer.config_enumerate
    def mixture(y):
        shift = pyro.sample("shift", dist.Normal(0.0, 2.0))
        with pyro.plate("data", len(y)):
            z = pyro.sample("z", dist.Categorical(weights))
            pyro.sample("y", dist.Normal(torch.tensor([-1.0, 1.0])[z] + shift, scale), obs=y)

    kernel = MALA(mixture, max_plate_nesting=1)
    kernel.setup(0, y)
    shift = torch.tensor(0.3)
    components = dist.Normal(torch.tensor([-1.0, 1.0]) + shift, scale).log_prob(y[:, None])
    log_joint = (
        dist.Normal(0.0, 2.0).log_prob(shift)
        + torch.logsumexp(components + weights.log(), -1).sum()
    )
    torch.testing.assert_close(kernel.potential_fn({"shift": shift}), -log_joint)
    mcmc = run(kernel, y, samples=100, warmup=50)
    assert set(mcmc.get_samples()) == {"shift"}


def test_sgld_subsamples_without_bias():
    y = torch.randn(100) + 2.0
    kernel = SGLD(normal_mean_model, subsample_size=10)
    kernel.setup(0, y)
    point = kernel._flat.flatten({"mu": torch.tensor(1.5)})
    minibatch = torch.stack([kernel._flat_potential(point) for _ in range(4000)]).squeeze(1)
    full = -(
        dist.Normal(0.0, 10.0).log_prob(torch.tensor(1.5)) + dist.Normal(1.5, 1.0).log_prob(y).sum()
    )
    assert abs(minibatch.mean() - full) < 4 * minibatch.std() / math.sqrt(4000)
    assert minibatch.std() > 1.0  # it really is a minibatch estimate


def test_sgld_finds_the_posterior_with_a_decaying_step():
    y = torch.randn(200) + 2.0
    sizes = []

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(y)) as idx:
            sizes.append(len(idx))
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y[idx])

    kernel = SGLD(model, step_size=2e-3, subsample_size=20)
    mcmc = run(kernel, y, samples=1500, warmup=300)
    mu = mcmc.get_samples()["mu"]
    precision = 1 / 100 + len(y)
    assert abs(mu.mean().item() - y.sum().item() / precision) < 0.1
    assert set(sizes[5:]) == {20}
    assert kernel.schedule(0) == 2e-3 and kernel.schedule(1000) < 2e-3 / 2
