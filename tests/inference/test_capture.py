"""capture: records equal to a manual computation, removed hooks, Pyro models, VAEs and flows."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive
from pyro.nn import PyroModule
from torch import nn

from pyro_flowkit.flows import flow_distribution, realnvp
from pyro_flowkit.inference.capture import capture
from pyro_flowkit.models import VAE

F64 = torch.float64


def mlp(device):
    # the in-place ReLU rewrites the first layer's output after the hook has seen it
    layers = [nn.Linear(3, 8), nn.ReLU(inplace=True), nn.Linear(8, 2)]
    return nn.Sequential(*layers).to(device, F64)


def test_records_equal_a_manual_computation_one_per_call(device):
    net = mlp(device)
    xs = [torch.randn(5, 3, dtype=F64, device=device) for _ in range(3)]
    with capture(net, ["0", "2"]) as seen:
        outputs = [net(x) for x in xs]
    assert list(seen) == ["0", "2"] and len(seen["0"]) == len(seen["2"]) == 3
    for x, out, first, last in zip(xs, outputs, seen["0"], seen["2"], strict=True):
        torch.testing.assert_close(first, x @ net[0].weight.T + net[0].bias)  # before the ReLU
        assert (first < 0).any()  # so the snapshot was not rewritten in place
        assert torch.equal(last, out.detach())
        assert not first.requires_grad and not last.requires_grad


def test_detach_false_keeps_the_graph(device):
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh()).to(device, F64)
    x = torch.randn(5, 3, dtype=F64, device=device)
    with capture(net, "0", detach=False) as seen:
        net(x)
    (hidden,) = seen["0"]
    hidden.sum().backward()
    torch.testing.assert_close(net[0].bias.grad, torch.full_like(net[0].bias, 5.0))


def test_hooks_are_removed_after_the_block_also_on_an_exception(device):
    net = mlp(device)
    x = torch.randn(2, 3, dtype=F64, device=device)
    with capture(net, ["0", ""]) as seen:
        net(x)
    net(x)
    assert len(seen["0"]) == len(seen[""]) == 1  # the later forward records nothing
    with pytest.raises(KeyError), capture(net, "2") as failed:
        net(x)
        raise KeyError("boom")
    net(x)
    assert len(failed["2"]) == 1
    assert all(not m._forward_hooks for m in net.modules())


def enter(module, names):
    with capture(module, names):
        pass


def test_bad_names_are_refused_with_the_valid_ones():
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
    with pytest.raises(ValueError, match=r"names: no submodule 'nope' in Sequential; .*'0', '1'"):
        enter(net, ["0", "nope"])
    assert not net[0]._forward_hooks  # nothing registered before the check failed
    with pytest.raises(ValueError, match="names: expected at least one"):
        enter(net, [])
    with pytest.raises(TypeError, match="module: expected an nn.Module, got function"):
        enter(lambda x: x, "0")
    flow = realnvp(4, num_layers=2, hidden_dims=(8,))
    with pytest.raises(ValueError, match=r"'1' is a AffineCoupling, .* \('1.partition', "):
        enter(flow, "1")


def test_a_flows_coupling_conditioner_under_log_prob(device):
    flow = realnvp(4, num_layers=2, hidden_dims=(8,)).to(device, F64)
    with torch.no_grad():  # away from the identity start, whose conditioners output zeros
        for p in flow.parameters():
            p.normal_(0.0, 0.3)
    x = torch.randn(6, 4, dtype=F64, device=device)
    with capture(flow, "1.conditioner") as seen:
        flow_distribution(flow, 4).log_prob(x)
    (recorded,) = seen["1.conditioner"]
    # log_prob inverts the parts last to first; coupling 1 conditions on its kept half
    y1 = flow.parts[2].inv(flow.parts[3].inv(x))
    kept, _ = flow.parts[1].partition.split(y1)
    expected = flow.parts[1].conditioner(kept)
    assert expected.abs().max() > 0.01
    torch.testing.assert_close(recorded, expected.detach())


def test_a_vae_under_a_pyro_trace(device):
    vae = VAE(6, latent_dim=2, hidden_dims=(8,)).to(device, F64)
    x = torch.rand(4, 6, dtype=F64, device=device).round()
    with capture(vae, ["encoder_net", "decoder_net"]) as seen:
        guide_trace = poutine.trace(vae.guide).get_trace(x)
        poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["vae.z"]["value"]
    (encoded,), (decoded,) = seen["encoder_net"], seen["decoder_net"]
    torch.testing.assert_close(encoded, vae.encoder_net(x).detach())
    torch.testing.assert_close(decoded, vae.decoder_net(z).detach())


def test_a_pyro_module_under_predictive(device):
    class Model(PyroModule):
        def __init__(self):
            super().__init__()
            self.linear = PyroModule[nn.Linear](3, 1, dtype=F64)

        def forward(self, x):
            with pyro.plate("data", len(x)):
                return pyro.sample("y", dist.Normal(self.linear(x).squeeze(-1), 1.0))

    model = Model().to(device)
    x = torch.randn(5, 3, dtype=F64, device=device)
    with capture(model, "linear") as seen:
        Predictive(model, num_samples=3)(x)
    assert len(seen["linear"]) >= 3  # one per sample, and Predictive's own inspection runs
    expected = model.linear(x).detach()
    for out in seen["linear"]:
        torch.testing.assert_close(out, expected)
