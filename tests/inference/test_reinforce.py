"""ReinforceLOO_ELBO: unbiased (against the exact gradient), the leave-one-out baseline and the
per-row costs lower the variance, the ELBO estimate, SVI, and its arguments."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate

from pyro_flowkit.inference.estimators import gradient_error
from pyro_flowkit.inference.reinforce import ReinforceLOO_ELBO

X = torch.tensor([0.5, 2.5, -1.0, 3.0, 1.0, 0.0, 2.0, 1.5], dtype=torch.float64)


def model(x):
    locs = torch.tensor([-1.0, 1.0, 3.0], dtype=torch.float64)
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Categorical(logits=torch.zeros(3, dtype=torch.float64)))
        pyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def guide(x):
    w = pyro.param("w", torch.tensor([[0.2, -0.3, 0.1]], dtype=torch.float64))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Categorical(logits=x[:, None] * w))


def test_unbiased_and_the_baseline_and_rows_lower_the_variance():
    """Against Pyro's Trace_ELBO (score function with per-row costs, no baseline) with the
    same four draws, and against one cost per draw (no per-row costs)."""
    loo_rows = gradient_error(model, guide, ReinforceLOO_ELBO(4, plate="data"), 200, X)
    loo_whole = gradient_error(model, guide, ReinforceLOO_ELBO(4), 200, X)
    plain = gradient_error(model, guide, Trace_ELBO(num_particles=4), 200, X)
    for err in (loo_rows, loo_whole, plain):
        assert abs(err.bias_squared) < 4 * err.bias_squared_se
    assert loo_rows.variance < plain.variance / 1.5
    assert loo_rows.variance < loo_whole.variance / 2


def test_the_elbo_estimate_is_unbiased():
    exact = -TraceEnum_ELBO().loss(model, config_enumerate(guide), X)
    elbo = ReinforceLOO_ELBO(500, plate="data")
    estimates = torch.tensor([-elbo.loss(model, guide, X) for _ in range(20)])
    assert abs(estimates.mean().item() - exact) < 4 * estimates.std().item() / 20**0.5 + 1e-9


def test_svi_steps_with_it():
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.2}), ReinforceLOO_ELBO(4, plate="data"))
    exact = TraceEnum_ELBO()
    before = exact.loss(model, config_enumerate(guide), X)
    for _ in range(25):
        svi.step(X)
    assert exact.loss(model, config_enumerate(guide), X) < before


def test_arguments():
    with pytest.raises(ValueError, match="num_particles: expected at least 2"):
        ReinforceLOO_ELBO(1)
    with pytest.raises(ValueError, match="num_particles: expected a positive integer"):
        ReinforceLOO_ELBO(0)
