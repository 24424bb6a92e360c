"""EMA: the closed form, exact swaps, an unchanged training trajectory, checkpoints, and the
Pyro trap that ``torch.optim.swa_utils.AveragedModel`` falls into."""

import copy
import io
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.nn import PyroModule, PyroParam
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pyro_flowkit.flows import flow_distribution, realnvp
from pyro_flowkit.inference.ema import EMA

F64 = torch.float64


class Regression(PyroModule):
    """y ~ Normal(linear(x) + b, scale): a PyroModule with a plain and a constrained param."""

    def __init__(self):
        super().__init__()
        self.linear = PyroModule[nn.Linear](3, 1, dtype=F64)
        self.scale = PyroParam(torch.tensor(1.0, dtype=F64), constraint=constraints.positive)

    def forward(self, x, y=None):
        b = pyro.sample("b", dist.Normal(x.new_zeros(()), 1.0))
        mu = pyro.deterministic("mu", self.linear(x).squeeze(-1) + b)
        sigma = pyro.deterministic("sigma", self.scale)
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(mu, sigma), obs=y)


def delta_guide(x, y=None):
    """A MAP guide: the ELBO and the predictions are deterministic functions of the params."""
    pyro.sample("b", dist.Delta(pyro.param("b_map", x.new_zeros(()))))


def regression_data(device, n=32):
    x = torch.randn(n, 3, dtype=F64, device=device)
    return x, x @ torch.tensor([1.0, -2.0, 0.5], dtype=F64, device=device) + 0.3


def closed_form(trajectory, alpha):
    """alpha^n theta_0 + (1 - alpha) sum_k alpha^(n-k) theta_k, in float64."""
    n = len(trajectory) - 1
    total = alpha**n * trajectory[0].double()
    for k in range(1, n + 1):
        total = total + (1 - alpha) * alpha ** (n - k) * trajectory[k].double()
    return total


def live_store():
    return {n: p.detach().clone() for n, p in pyro.get_param_store().named_parameters()}


# ------------------------------------------------------------------------------ the average
@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.99])
def test_closed_form_after_n_updates_with_a_late_and_a_constrained_param(decay, device):
    gen = torch.Generator().manual_seed(1)

    def draw(shape):
        return torch.randn(shape, generator=gen, dtype=F64).to(device)

    store = pyro.get_param_store()
    pyro.param("a", draw(3))
    pyro.param("s", draw(2).exp(), constraint=constraints.positive)
    ema = EMA(decay)
    seen = {name: [store._params[name].detach().clone()] for name in ("a", "s")}
    for k in range(1, 8):
        if k == 3:  # created between two updates: first seen (and started) at update 3
            pyro.param("late", draw((2, 2)))
            seen["late"] = [store._params["late"].detach().clone()]
        with torch.no_grad():  # the trajectory, by hand (on the unconstrained scale)
            for name, trajectory in seen.items():
                if len(trajectory) > 1 or name != "late" or k != 3:
                    trajectory.append(store._params[name].copy_(draw(trajectory[0].shape)).clone())
        ema.update()
    averages = ema.averages()
    assert ema.num_updates == 7 and sorted(averages) == ["a", "late", "s"]
    assert len(seen["late"]) == 5  # its start and 4 updates
    for name, trajectory in seen.items():
        torch.testing.assert_close(
            averages[name], closed_form(trajectory, decay), rtol=1e-12, atol=0
        )
        if decay == 0.0:  # decay 0 tracks the last value exactly
            assert torch.equal(averages[name], trajectory[-1])
    with ema.swapped():  # the constrained value of the averaged unconstrained one
        torch.testing.assert_close(pyro.param("s"), averages["s"].exp(), rtol=1e-12, atol=0)


def test_explicit_params_names_and_deduplication(device):
    lin = nn.Linear(2, 3, dtype=F64, device=device)
    lin.bias.requires_grad_(False)  # frozen: not tracked
    extra = torch.zeros(2, dtype=F64, device=device, requires_grad=True)
    assert sorted(EMA(params=lin).averages()) == ["weight"]
    assert sorted(EMA(params=[lin, lin.weight, extra]).averages()) == ["0.weight", "2"]
    assert sorted(EMA(params={"net": lin, "w": extra}).averages()) == ["net.weight", "w"]
    assert sorted(EMA(params=extra).averages()) == ["0"]
    ema = EMA(0.5, params=lin)
    lin.register_parameter("late", nn.Parameter(torch.ones(2, dtype=F64, device=device)))
    ema.update()  # a parameter added to the module later is found at the next update
    assert torch.equal(ema.averages()["late"], lin.late.detach())
    with pytest.raises(ValueError, match=r"params\[1\]: expected a floating tensor"):
        EMA(params=[lin, torch.zeros(2, dtype=torch.long)])
    with pytest.raises(TypeError, match=r"params\['w'\]: expected a module or a tensor, got str"):
        EMA(params={"w": "weight"})
    with pytest.raises(TypeError, match="params: expected None, a module"):
        EMA(params=3)


def test_a_pyro_module_shares_its_pyro_params_with_the_store(device):
    model = Regression().to(device)
    x, y = regression_data(device)
    model(x, y)  # the first run under Pyro puts the params into the global store
    store = pyro.get_param_store()
    assert store._params["scale"] is model.scale_unconstrained
    assert store._params["linear.weight"] is model.linear.weight
    # one tensor, tracked once, under its first name
    names = sorted(EMA(params=[model, store._params["scale"]]).averages())
    assert names == ["0.linear.bias", "0.linear.weight", "0.scale_unconstrained"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_the_tensor(dtype, device):
    lin = nn.Linear(3, 2, dtype=dtype, device=device)
    ema = EMA(0.9, params=lin)
    start = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update()
    avg = ema.averages()["weight"]
    assert avg.dtype == dtype and avg.device == lin.weight.device
    torch.testing.assert_close(avg, start + 0.1)
    lin.to(F64 if dtype == torch.float32 else torch.float32)  # the same Parameter, a new dtype
    ema.update()
    assert ema.averages()["weight"].dtype == lin.weight.dtype


def test_a_param_replaced_by_another_shape_is_an_error():
    pyro.param("w", torch.zeros(3))
    ema = EMA(0.9)
    pyro.clear_param_store()
    pyro.param("w", torch.zeros(4))
    with pytest.raises(ValueError, match=r"w: expected shape \(3,\) \(that of its average\)"):
        ema.update()


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5, math.nan, math.inf, True, "0.9"])
def test_decay_is_validated(decay):
    with pytest.raises(ValueError, match=r"decay: expected a number in \[0, 1\), got"):
        EMA(decay)


# ------------------------------------------------------------------------------ the swap
def _moved_module(device):
    """A module whose average differs from its live values, with -0.0 and NaN among them."""
    lin = nn.Linear(3, 2, dtype=F64, device=device)
    ema = EMA(0.5, params=lin)
    with torch.no_grad():
        lin.weight.mul_(3.0)
    ema.update()
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([-0.0, math.nan], dtype=F64))  # bits a restore must keep
    return lin, ema


def _bits(t):
    return t.detach().view(torch.int64).cpu()


def test_swapped_evaluates_the_averages_and_restores_bit_identically(device):
    lin, ema = _moved_module(device)
    before = {n: p.detach().clone() for n, p in lin.named_parameters()}
    versions = lin.weight._version
    with ema.swapped() as swapped:
        assert swapped is ema
        assert torch.equal(lin.weight, ema.averages()["weight"])
        assert not torch.equal(lin.weight, before["weight"])
    for name, p in lin.named_parameters():
        assert torch.equal(_bits(p), _bits(before[name])), name
    assert lin.weight._version > versions  # in place: caches keyed on versions see the swaps
    assert all(p.requires_grad and p.grad is None for p in lin.parameters())


def test_swapped_restores_on_an_exception_and_refuses_misuse(device):
    lin, ema = _moved_module(device)
    before = {n: p.detach().clone() for n, p in lin.named_parameters()}
    with pytest.raises(KeyError), ema.swapped():
        raise KeyError("evaluation failed")
    with pytest.raises(RuntimeError, match="update after the block"), ema.swapped():
        ema.update()
    with pytest.raises(RuntimeError, match="already swapped in"), ema.swapped(), ema.swapped():
        pass
    for name, p in lin.named_parameters():
        assert torch.equal(_bits(p), _bits(before[name])), name
    assert ema.num_updates == 1


def _fit(device, ema_decay=None, steps=25):
    """Adam on the regression (a constrained param included); with an EMA updated every step
    and swapped in to evaluate the loss every 5 steps."""
    pyro.clear_param_store()
    pyro.set_rng_seed(3)
    x, y = regression_data(device)
    svi = SVI(Regression().to(device), delta_guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    ema = None if ema_decay is None else EMA(ema_decay)
    for step in range(steps):
        svi.step(x, y)
        if ema is not None:
            ema.update()
            if step % 5 == 0:
                with ema.swapped():
                    svi.evaluate_loss(x, y)
    return live_store(), ema


def test_training_with_an_ema_is_bit_identical_to_training_without(device):
    plain, _ = _fit(device)
    tracked, ema = _fit(device, ema_decay=0.9)
    assert sorted(plain) == sorted(tracked) == ["b_map", "linear.bias", "linear.weight", "scale"]
    for name in plain:
        assert torch.equal(_bits(plain[name]), _bits(tracked[name])), name
    averages = ema.averages()
    assert sorted(averages) == sorted(plain) and ema.num_updates == 25
    assert not torch.allclose(averages["linear.weight"], tracked["linear.weight"])


# ------------------------------------------------------------------------------ checkpoints
def test_state_dict_round_trip_through_torch_save(device):
    lin, ema = _moved_module(device)
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = EMA(0.1, params=lin)
    restored.load_state_dict(state)
    assert restored.decay == 0.5 and restored.num_updates == 1
    assert restored.averages().keys() == ema.averages().keys()
    for name, avg in ema.averages().items():
        assert torch.equal(restored.averages()[name], avg)
    state["averages"]["weight"].zero_()  # the loaded averages are copies
    assert not torch.equal(restored.averages()["weight"], state["averages"]["weight"])
    ema.update(), restored.update()  # and they continue alike
    assert torch.equal(ema.averages()["weight"], restored.averages()["weight"])
    with pytest.raises(ValueError, match="state: expected a mapping with keys"):
        restored.load_state_dict({"averages": {}})
    with pytest.raises(ValueError, match=r"state\['decay'\]: expected a number in \[0, 1\)"):
        restored.load_state_dict({**state, "decay": 1.0})


# ------------------------------------------------------------------------------ Pyro's holders
def test_averaged_model_trap_versus_ema_in_predictive_and_evaluate_loss(device):
    decay = 0.5
    x, y = regression_data(device)
    model = Regression().to(device)
    svi = SVI(model, delta_guide, pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
    svi.step(x, y)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    averaged.update_parameters(model)  # its first call copies, as EMA starts at the value seen
    ema = EMA(decay)
    for _ in range(10):
        svi.step(x, y)
        averaged.update_parameters(model)
        ema.update()
    avg = ema.averages()
    # the copy does hold the averages: the same as ours
    copy_scale = averaged.module.scale_unconstrained.detach().clone()
    torch.testing.assert_close(copy_scale, avg["scale"])
    torch.testing.assert_close(averaged.module.linear.weight.detach(), avg["linear.weight"])
    assert not torch.allclose(copy_scale, model.scale_unconstrained.detach())

    def predict(m):
        out = Predictive(m, guide=delta_guide, num_samples=1, return_sites=["mu", "sigma"])(x)
        return out["mu"].reshape(-1), out["sigma"].reshape(())

    live_mu, live_sigma = predict(model)
    # the trap: under Pyro the copy reads its PyroParam from the store, i.e. the live value
    _, copy_sigma = predict(averaged.module)
    assert torch.equal(copy_sigma, live_sigma)
    assert not torch.allclose(copy_sigma, copy_scale.exp())

    mu_avg = x @ avg["linear.weight"].reshape(-1) + avg["linear.bias"] + avg["b_map"]
    sigma_avg = avg["scale"].exp()
    expected_loss = -(
        dist.Normal(mu_avg, sigma_avg).log_prob(y).sum()
        + dist.Normal(0.0, 1.0).log_prob(avg["b_map"])
    )
    with ema.swapped():
        mu, sigma = predict(model)
        loss = svi.evaluate_loss(x, y)
    torch.testing.assert_close(sigma, sigma_avg)
    torch.testing.assert_close(mu, mu_avg)
    assert not torch.allclose(sigma, live_sigma) and not torch.allclose(mu, live_mu)
    assert loss == pytest.approx(expected_loss.item(), rel=1e-10)
    assert loss != pytest.approx(svi.evaluate_loss(x, y), rel=1e-6)


def test_swapped_flow_log_prob_is_not_served_from_a_stale_cache(device):
    flow = realnvp(2, num_layers=2, hidden_dims=(8,)).to(device, F64)
    data = torch.randn(64, 2, dtype=F64, device=device) * torch.tensor([2.0, 0.5], device=device)

    def model(x):
        pyro.module("flow", flow)
        with pyro.plate("data", len(x)):
            pyro.sample("x", flow_distribution(flow, 2), obs=x)

    svi = SVI(model, lambda x: None, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    ema = EMA(0.8, params=flow)  # module-relative names: loadable into a copy of the flow
    for _ in range(10):
        svi.step(data)
        ema.update()
    reference = copy.deepcopy(flow)
    reference.load_state_dict(ema.averages(), strict=False)
    expected = flow_distribution(reference, 2).log_prob(data)

    d = flow_distribution(flow, 2)
    live = d.log_prob(data)  # each transform now caches this pass of `data`
    with ema.swapped():
        averaged = d.log_prob(data)  # the same tensor again: the versions changed, so no cache
    again = d.log_prob(data)
    torch.testing.assert_close(averaged, expected)
    assert not torch.allclose(averaged, live)
    torch.testing.assert_close(again, live, rtol=0, atol=0)
