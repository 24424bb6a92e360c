import math

import pyro.distributions as dist
import pytest
import torch

import pyro_flowkit as fk
from pyro_flowkit.distributions import FlowDistribution, StandardNormal


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("event_shape", [(3,), (2, 2, 3)])
def test_standard_normal_matches_pyro_normal(device, event_shape, temperature):
    d = StandardNormal(event_shape, temperature, device=device, dtype=torch.float64)
    loc = torch.zeros(event_shape, device=device, dtype=torch.float64)
    ref = dist.Normal(loc, torch.full_like(loc, temperature)).to_event(len(event_shape))
    x = torch.randn((5, *event_shape), device=device, dtype=torch.float64)
    torch.testing.assert_close(d.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(d.entropy(), ref.entropy())
    draws = d.sample((40000,))
    assert draws.shape == (40000, *event_shape) and draws.dtype == torch.float64
    assert abs(draws.std().item() - temperature) < 0.01
    assert isinstance(d.base_dist, dist.Normal) and d.reinterpreted_batch_ndims == len(event_shape)
    wide = d.expand((4,))
    assert isinstance(wide, StandardNormal) and wide.temperature == temperature
    assert wide.batch_shape == (4,) and wide.sample().shape == (4, *event_shape)
    assert wide.log_prob(x[0]).shape == (4,)


def test_standard_normal_validation_and_arguments():
    with pytest.raises(ValueError, match="temperature: expected a positive finite number"):
        StandardNormal((2,), 0.0)
    d = StandardNormal((2,), validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([0.0, math.nan]))


def _reference(flow, event_shape, extra=()):
    loc = torch.zeros(event_shape, dtype=torch.float64)
    base = dist.Normal(loc, torch.ones_like(loc)).to_event(len(event_shape))
    return dist.TransformedDistribution(base, [flow, *extra])


@pytest.mark.parametrize("builder", [fk.flows.nice, fk.flows.realnvp])
def test_flow_distribution_equals_pyro_transformed_distribution(builder):
    flow = builder(6, num_layers=3, hidden_dims=(16,)).double().eval()
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.2)
    y = torch.rand(4, 6, dtype=torch.float64) * 0.9 + 0.05
    logit = [fk.transforms.Logit(0.05).inv]
    ours = FlowDistribution(fk.flows.flow_distribution(flow, 6), logit)  # Logit.inv: generic path
    torch.testing.assert_close(ours.log_prob(y), _reference(flow, (6,), logit).log_prob(y))
    z = torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(
        fk.flows.flow_distribution(flow, 6).log_prob(z), _reference(flow, (6,)).log_prob(z)
    )


def test_conditional_flow_distribution_equals_pyro():
    flow = fk.flows.conditional_realnvp(4, 3, num_layers=2, hidden_dims=(8,)).double().eval()
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.2)
    context = torch.randn(5, 3, dtype=torch.float64)
    z = torch.randn(2, 5, 4, dtype=torch.float64)
    ours = fk.flows.flow_distribution(flow, 4).condition(context)
    ref = _reference(flow.condition(context), (4,))
    torch.testing.assert_close(ours.log_prob(z), ref.log_prob(z))
    assert ours.batch_shape == (5,) and ours.rsample((2,)).shape == (2, 5, 4)


def test_logit_has_a_sign_so_cdf_and_icdf_exist():
    d = dist.TransformedDistribution(dist.Normal(0.0, 1.0), [fk.transforms.Logit(0.05).inv])
    u = torch.tensor([0.1, 0.5, 0.93])
    torch.testing.assert_close(d.cdf(d.icdf(u)), u)
    x = torch.tensor(0.7)  # P(X <= x) = P(Z <= logit(0.05 + 0.9 x))
    expected = dist.Normal(0.0, 1.0).cdf(torch.logit(0.05 + 0.9 * x))
    torch.testing.assert_close(d.cdf(x), expected)
