"""ArviZ conversion of guides: vectorised draws split into chains, with a fallback for models
that cannot be vectorised."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal

from pyro_flowkit.diagnostics import from_guide, import_arviz


def gamma_poisson(y):
    rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Poisson(rate), obs=y)


def scalar_branching(y):
    """float() of a latent: fine one draw at a time, impossible to vectorise."""
    s = pyro.sample("s", dist.Normal(0.0, 1.0))
    loc = 1.0 if float(s) > 0 else -1.0
    pyro.sample("y", dist.Normal(loc, 1.0), obs=y)


def test_guide_draws_become_chains_with_the_guide_distribution():
    y = torch.tensor([3.0, 5.0, 4.0, 6.0])
    guide = AutoNormal(gamma_poisson)
    guide(y)
    idata = from_guide(guide, gamma_poisson, y, num_samples=4000, num_chains=4)
    assert idata.posterior["rate"].shape == (4, 1000)
    assert idata.posterior_predictive["y"].shape == (4, 1000, 4)
    rate = torch.as_tensor(idata.posterior["rate"].values)
    loc, scale = guide.locs.rate, guide.scales.rate
    log_rate = rate.log().flatten()  # LogNormal(loc, scale) draws
    assert abs(log_rate.mean().item() - loc.item()) < 4 * scale.item() / math.sqrt(4000)
    assert abs(log_rate.std().item() / scale.item() - 1) < 0.1
    summary = import_arviz().summary(idata, var_names=["rate"])
    assert abs(summary["r_hat"].iloc[0] - 1) < 0.02  # independent draws: 1 up to noise


def test_a_model_that_cannot_vectorise_falls_back_to_one_trace_per_draw():
    guide = AutoNormal(scalar_branching)
    y = torch.tensor(0.5)
    guide(y)
    idata = from_guide(guide, scalar_branching, y, num_samples=20, num_chains=2)
    assert idata.posterior["s"].shape == (2, 10)
    with pytest.raises((RuntimeError, ValueError)):
        from_guide(guide, scalar_branching, y, num_samples=20, num_chains=2, parallel=True)


def test_draws_must_split_evenly_into_chains():
    guide = AutoNormal(gamma_poisson)
    with pytest.raises(ValueError, match="num_samples: expected a multiple of num_chains=4"):
        from_guide(guide, gamma_poisson, torch.ones(3), num_samples=10)
