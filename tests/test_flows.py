"""The flow builders and flow_distribution, beyond what the transform harness checks."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.conditional import ConditionalTransformedDistribution
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch.distributions import ComposeTransform

import pyro_flowkit as fk
from pyro_flowkit.transforms import AffineCoupling, Permute, alternating_mask


def test_default_sizes_match_the_benchmark_architecture():
    flow = fk.flows.realnvp(64)
    couplings = [p for p in flow.parts if isinstance(p, AffineCoupling)]
    assert len(couplings) == 8
    assert sum(p.numel() for p in flow.parameters()) == 725_504
    assert len([p for p in fk.flows.nice(64).parts if not isinstance(p, Permute)]) == 5


def test_alternating_realnvp_equals_per_layer_alternating_masks(device):
    """The builder's permuted half masks are exactly per-layer odd/even masks."""
    flow = fk.flows.realnvp(7, num_layers=3, hidden_dims=(8,), dropout=0).to(device, torch.float64)
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.3)
    couplings = [p for p in flow.parts if isinstance(p, AffineCoupling)]
    reference = ComposeTransform(
        [
            AffineCoupling(alternating_mask(7, flip=i % 2 == 1).to(device), c.conditioner)
            for i, c in enumerate(couplings)
        ]
    )
    x = torch.randn(10, 7, device=device, dtype=torch.float64)
    torch.testing.assert_close(flow(x), reference(x))
    torch.testing.assert_close(
        flow.log_abs_det_jacobian(x, flow(x)), reference.log_abs_det_jacobian(x, reference(x))
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(event_shape=(8, 8)), r"event_shape: expected a vector event \(D,\) here"),
        (dict(event_shape=(1, 8, 8), num_layers=4), "num_layers: does not apply to image"),
        (dict(event_shape=(1, 8, 8), mask="half"), "mask: does not apply to image events"),
        (dict(event_shape=4, num_scales=2), "num_scales: does not apply to vector events"),
        (dict(event_shape=(1, 6, 6), num_scales=3), "H and W to be multiples of 4"),
        (dict(event_shape=(1, 8, 8), num_scales=0), "num_scales: expected a positive integer"),
        (dict(event_shape=(1, 8, 8), dropout=1.0), "dropout: expected a probability in"),
        (dict(event_shape=1), "at least 2 dimensions"),
        (dict(event_shape=0), "event_shape: expected positive sizes"),
        (dict(event_shape=4, num_layers=0), "num_layers: expected a positive integer, got 0"),
        (dict(event_shape=4, mask="checker"), "mask: expected one of \\('alternating', 'half'\\)"),
        (dict(event_shape=4, permutation="shuffle"), "permutation: expected one of"),
        (
            dict(event_shape=4, log_scale_bound=0),
            "log_scale_bound: expected a positive finite number",
        ),
        (
            dict(event_shape=4, log_scale_bound=float("inf")),
            "log_scale_bound: expected a positive finite number, got inf",
        ),
        (dict(event_shape=4, hidden_dims=(0,)), "hidden_dims: expected a positive integer"),
        (dict(event_shape=4, dropout=1.0), "dropout: expected a probability in"),
    ],
)
def test_builder_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fk.flows.realnvp(**kwargs)


def test_conditional_builders_check_context_dim():
    with pytest.raises(ValueError, match="context_dim: expected a positive integer, got 0"):
        fk.flows.conditional_realnvp(4, 0)
    with pytest.raises(ValueError, match="context_dim"):
        fk.flows.conditional_nice(4, -1)


def test_flow_distribution_checks_the_event_shape():
    flow = fk.flows.realnvp(4, num_layers=2, hidden_dims=(8,))
    with pytest.raises(ValueError, match=r"built for events of shape \(4,\), got \(5,\)"):
        fk.flows.flow_distribution(flow, 5)
    d = fk.flows.flow_distribution(flow, 4)
    with pytest.raises(ValueError):
        d.log_prob(torch.randn(3, 5))
    with pytest.raises(ValueError, match="temperature"):
        fk.flows.flow_distribution(flow, 4, temperature=0)


def test_flow_distribution_follows_the_flow_dtype_and_device(device):
    flow = fk.flows.nice(4, num_layers=2, hidden_dims=(8,)).to(device, torch.float64)
    d = fk.flows.flow_distribution(flow, 4)
    x = d.sample((3,))
    assert x.dtype == torch.float64 and x.device.type == device.type
    assert d.event_shape == (4,) and d.batch_shape == ()


def test_temperature_scales_the_base():
    flow = fk.flows.realnvp(3, num_layers=2, hidden_dims=(8,))  # the identity at initialisation
    x = fk.flows.flow_distribution(flow, 3, temperature=0.5).sample((20000,))
    torch.testing.assert_close(x.std(0), torch.full((3,), 0.5), atol=0.02, rtol=0)


def test_conditional_flow_distribution(device):
    flow = fk.flows.conditional_realnvp(4, 2, num_layers=2, hidden_dims=(8,)).to(device)
    d = fk.flows.flow_distribution(flow, 4)
    assert isinstance(d, ConditionalTransformedDistribution)
    context = torch.randn(6, 2, device=device)
    assert d.condition(context).log_prob(torch.randn(5, 6, 4, device=device)).shape == (5, 6)
    assert d.condition(context).sample().shape == (6, 4)


def test_fits_a_2d_density_through_pyro_svi():
    """A Pyro model scoring data under the flow, fitted by SVI, beats the best Gaussian."""
    x = fk.data.toy_2d("moons", 2000, seed=0)
    flow = fk.flows.realnvp(2, num_layers=6, hidden_dims=(64, 64), dropout=0)

    def model(data):
        pyro.module("flow", flow)
        with pyro.plate("data", len(data), subsample_size=256) as idx:
            pyro.sample("x", fk.flows.flow_distribution(flow, 2), obs=data[idx])

    svi = SVI(model, lambda data: None, Adam({"lr": 3e-3}), Trace_ELBO())
    for _ in range(400):
        svi.step(x)
    test = fk.data.toy_2d("moons", 2000, seed=1)
    with torch.no_grad():
        nll = -fk.flows.flow_distribution(flow, 2).log_prob(test).mean()
    gaussian = dist.MultivariateNormal(x.mean(0), torch.cov(x.T))
    assert nll < -gaussian.log_prob(test).mean() - 0.3


def test_dropout_flows_are_exact_in_eval_and_self_consistent_in_training(device):
    """Training mode: each pass is a bijection whose cached log-det is that pass's own."""
    from harness import call_uncached, inverse_uncached, perturb

    flow = fk.flows.realnvp(5, num_layers=3, hidden_dims=(16,), dropout=0.3)
    perturb(flow)
    flow = flow.to(device, torch.float64)
    x = torch.randn(5, device=device, dtype=torch.float64)

    def one_pass(v):
        torch.manual_seed(7)
        return call_uncached(flow, v)

    call_uncached(flow, x)  # draws the dropout mask pools; later passes only pick offsets

    jacobian = torch.autograd.functional.jacobian(one_pass, x)
    torch.manual_seed(7)
    y = flow(x)
    torch.testing.assert_close(flow.log_abs_det_jacobian(x, y), torch.linalg.slogdet(jacobian)[1])
    torch.testing.assert_close(y, one_pass(x))
    assert not torch.allclose(call_uncached(flow, x), call_uncached(flow, x))  # masks differ

    flow.eval()
    y = call_uncached(flow, x)
    torch.testing.assert_close(inverse_uncached(flow, y), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(call_uncached(flow, x), y, atol=0, rtol=0)


def _digits_fit(steps, **kwargs):
    """Test bits/dim of a RealNVP fitted to the digits with the library's training loop."""
    flow = fk.flows.realnvp(64, **kwargs)
    d = dist.TransformedDistribution(
        fk.flows.flow_distribution(flow, 64), [fk.transforms.Logit(0.05).inv]
    )
    train_x = fk.data.load_digits("train", flatten=True)

    def loss_fn(v):
        return fk.metrics.bits_per_dim(d.log_prob(fk.data.dequantize(v)), 64, 17).mean()

    fk.inference.train(loss_fn, train_x, params=flow, steps=steps, progress=False)
    flow.eval()
    test_x = fk.data.load_digits("test", flatten=True)
    g = torch.Generator().manual_seed(1)
    return fk.metrics.dequantized_bits_per_dim(d.log_prob, test_x, 17, 2, g).mean().item()


def test_realnvp_learns_the_digits():
    """800 steps with dropout 0.3: far below the uniform 4.09 bits/dim (2.2 in the benchmark)."""
    assert _digits_fit(800, dropout=0.3) < 2.35


@pytest.mark.slow
def test_dropout_is_what_prevents_overfitting():
    """After 2000 steps dropout 0.3 stays near its best while the default (none) has overfitted."""
    with_dropout, without = _digits_fit(2000, dropout=0.3), _digits_fit(2000)
    assert with_dropout < 2.25 and without > with_dropout + 0.5


def test_flow_distribution_checks_conditional_flows_without_permutations():
    flow = fk.flows.conditional_realnvp(4, 2, num_layers=2, hidden_dims=(8,), mask="half")
    with pytest.raises(ValueError, match=r"built for events of shape \(4,\), got \(5,\)"):
        fk.flows.flow_distribution(flow, 5)
