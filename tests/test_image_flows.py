"""Image flows beyond the shared harness: ActNorm's initialisation, the LU log-det, squeeze's
layout, the multi-scale log-density against a hand computation, temperature, and a digits fit."""

import math

import pytest
import torch
from harness import autograd_log_det, call_uncached, inverse_uncached, state_dict_round_trip

import pyro_flowkit as fk
from pyro_flowkit.app.demo import data_distribution
from pyro_flowkit.distributions import FlowDistribution, StandardNormal
from pyro_flowkit.inference import train
from pyro_flowkit.transforms import (
    ActNorm,
    InvertibleConv1x1,
    SplitPrior,
    Squeeze,
    SqueezeBlock,
    squeeze,
)


@pytest.mark.parametrize("shape", [(3, 4, 5), (6,)], ids=["image", "vector"])
def test_actnorm_initialises_to_zero_mean_unit_std_per_channel(shape, device):
    t = ActNorm(shape).to(device=device, dtype=torch.float64)
    y = 2.0 + 7.0 * torch.randn(64, *shape, device=device, dtype=torch.float64)
    y = y * torch.arange(1, shape[0] + 1, device=device).view(-1, *[1] * (len(shape) - 1))
    x = t.inv(y)
    channels = x.movedim(1, 0).reshape(shape[0], -1)
    torch.testing.assert_close(
        channels.mean(1), torch.zeros(shape[0], dtype=x.dtype, device=device)
    )
    std = channels.std(1, correction=0)
    torch.testing.assert_close(std, torch.ones_like(std))
    assert bool(t.initialized)
    before = t.log_scale.detach().clone()
    t.inv(y + 100)  # a second batch does not re-initialise
    torch.testing.assert_close(t.log_scale.detach(), before)


def test_actnorm_per_position_normalises_every_entry():
    t = ActNorm((2, 3, 3), per_position=True)
    y = torch.randn(256, 2, 3, 3) * torch.arange(1.0, 19.0).view(2, 3, 3) + 4
    x = t.inv(y)
    torch.testing.assert_close(x.mean(0), torch.zeros(2, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(0, correction=0), torch.ones(2, 3, 3), atol=1e-5, rtol=0)
    assert t.log_scale.shape == (2, 3, 3)


def test_actnorm_guards_zero_variance_and_sampling_does_not_initialise():
    t = ActNorm((2, 3, 3))
    t(torch.randn(4, 2, 3, 3))  # the forward (sampling) direction
    assert not bool(t.initialized)
    y = torch.randn(4, 2, 3, 3)
    y[:, 1] = 5.0  # a constant channel
    x = t.inv(y)
    assert torch.isfinite(x).all() and torch.isfinite(t.log_scale).all()
    assert t.log_scale[1].item() == 0.0 and torch.all(x[:, 1] == 0)
    single = ActNorm(4)
    assert torch.isfinite(single.inv(torch.randn(4))).all()  # one vector: zero variance


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_actnorm_refuses_non_finite_init_data_and_stays_uninitialised(bad):
    """One inf in the first batch used to make loc/scale NaN, and every later log_prob NaN."""
    t = ActNorm((2, 3, 3))
    y = torch.randn(8, 2, 3, 3)
    y[3, 1, 0, 2] = bad
    with pytest.raises(ValueError, match=r"first data batch.*1 NaN or infinite entries of 144"):
        t.inv(y)
    assert not bool(t.initialized)
    assert torch.equal(t.loc, torch.zeros_like(t.loc))
    d = fk.flows.flow_distribution(t, (2, 3, 3))
    clean = torch.randn(8, 2, 3, 3)
    assert torch.isfinite(d.log_prob(clean)).all() and bool(t.initialized)


def test_actnorm_initialized_buffer_is_saved_and_loaded():
    t = ActNorm((2, 3, 3))
    t.inv(3 * torch.randn(8, 2, 3, 3) + 1)
    state = state_dict_round_trip(t)
    assert "initialized" in state and bool(state["initialized"])
    fresh = ActNorm((2, 3, 3))
    fresh.load_state_dict(state)
    y = torch.randn(8, 2, 3, 3) * 10
    torch.testing.assert_close(fresh.inv(y), t.inv(y))  # no re-initialisation on load
    fresh.load_state_dict(ActNorm((2, 3, 3)).state_dict())  # an uninitialised state
    x = fresh.inv(y)  # initialises again, from this batch
    assert bool(fresh.initialized)
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)


def test_lu_log_det_equals_slogdet_of_the_weight(device):
    torch.manual_seed(0)
    t = InvertibleConv1x1(12).to(device=device, dtype=torch.float64)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.3 * torch.randn_like(p))
    w = t.weight_matrix()
    sign, logdet = torch.linalg.slogdet(w)
    torch.testing.assert_close(t.log_abs_det_matrix(), logdet)
    torch.testing.assert_close(t.inverse_matrix() @ w, torch.eye(12, dtype=w.dtype, device=device))
    x = torch.randn(2, 12, 3, 5, device=device, dtype=torch.float64)
    y = t(x)
    torch.testing.assert_close(y, torch.einsum("ij,njhw->nihw", w, x))
    torch.testing.assert_close(t.log_abs_det_jacobian(x, y), (15 * logdet).expand(2))


def test_dense_conv1x1_log_det_and_inverse_in_float64():
    t = InvertibleConv1x1(6, lu=False)  # float32 parameters
    with torch.no_grad():
        t.weight.mul_(torch.linspace(0.5, 2.0, 6))
    expected = torch.linalg.slogdet(t.weight.double())[1]
    assert abs(t.log_abs_det_matrix().item() - expected.item()) < 1e-6
    x = torch.randn(3, 6, 4, 4)
    torch.testing.assert_close(t.inv(t(x)), x, atol=1e-5, rtol=1e-5)


def test_dense_conv1x1_trains_through_pyro_module_and_feeds_an_affine_transform():
    """lu=False stored a column-major weight: pyro.module registered a copy (SVI never trained
    the layer) and the permuted output crashed a following AffineTransform's log_prob."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO

    t = InvertibleConv1x1(4, lu=False)
    before = t.weight.detach().clone()
    scale = dist.transforms.AffineTransform(0.0, 2.0, event_dim=3)
    base = dist.Normal(torch.zeros(4, 3, 3), 1.0).to_event(3)
    data = torch.randn(16, 4, 3, 3) * torch.tensor([3.0, 1.0, 1.0, 1.0]).view(4, 1, 1)

    def model():
        pyro.module("conv", t)
        with pyro.plate("data", 16):
            pyro.sample("x", dist.TransformedDistribution(base, [t, scale]), obs=data)

    svi = SVI(model, lambda: None, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(3):
        svi.step()
    assert not torch.allclose(t.weight.detach(), before)


def test_conv1x1_rejects_wrong_channels():
    with pytest.raises(
        ValueError, match=r"x: expected a tensor whose trailing shape is \(4, H, W\)"
    ):
        InvertibleConv1x1(4)(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="channels: expected a positive integer"):
        InvertibleConv1x1(0)


def test_squeeze_layout_shapes_and_errors():
    x = torch.arange(2 * 4 * 6.0).reshape(2, 4, 6)
    t = Squeeze()
    y = t(x)
    assert y.shape == (8, 2, 3)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                torch.testing.assert_close(y[4 * c + 2 * i + j], x[c, i::2, j::2])
    assert t.forward_shape(torch.Size((5, 2, 4, 6))) == (5, 8, 2, 3)
    assert t.inverse_shape(torch.Size((8, 2, 3))) == (2, 4, 6)
    assert Squeeze(3).forward_shape((1, 6, 9)) == (9, 2, 3)
    with pytest.raises(ValueError, match=r"divisible by 2, got shape \(1, 5, 4\)"):
        t(torch.randn(1, 5, 4))
    with pytest.raises(ValueError, match=r"got shape \(3, 2, 2\)"):
        t.inverse_shape((3, 2, 2))
    base = StandardNormal((2, 4, 6))
    d = FlowDistribution(base, [t])
    assert d.event_shape == (8, 2, 3)
    torch.testing.assert_close(d.log_prob(y), base.log_prob(x))


def _data_side(block: SqueezeBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a level's parts from the data side by hand; return the output and the sum of the
    parts' (base-to-data) log-dets."""
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    for part in reversed(block.parts):
        x_new = part.inv(x)
        total = total + part.log_abs_det_jacobian(x_new, x)
        x = x_new
    return x, total


def _normal(z: torch.Tensor, loc: torch.Tensor | float = 0.0, log_scale=None) -> torch.Tensor:
    log_scale = torch.zeros_like(z) if log_scale is None else log_scale
    lp = -0.5 * ((z - loc) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).sum(1)


def test_glow_log_prob_is_the_hand_sum_of_levels_split_prior_and_base():
    torch.manual_seed(0)
    flow = fk.flows.glow((1, 8, 8), levels=2, depth=2, hidden_channels=8, dropout=0).double()
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    d = fk.flows.flow_distribution(flow, (1, 8, 8))
    d.log_prob(x)  # initialises ActNorm
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    level2, level1 = flow.parts  # Pyro's order: the deepest level first
    # level 1: squeeze, the steps from the data side, then the split prior factors out half
    h, ladj1 = _data_side(SqueezeBlock(level1.parts[1:], (4, 4, 4), 0), squeeze(x))
    prior: SplitPrior = level1.parts[0]
    kept, factored = h[:, :2], h[:, 2:]
    loc, raw = prior.conditioner(kept).chunk(2, dim=1)
    log_scale = 2.0 * torch.tanh(raw / 2.0)
    lp_factored = _normal(factored, loc, log_scale)
    # level 2 on the kept half; the final latent is standard normal
    z, ladj2 = _data_side(SqueezeBlock(level2.parts, (8, 2, 2), 0), squeeze(kept))
    expected = lp_factored + _normal(z) - ladj1 - ladj2
    torch.testing.assert_close(d.log_prob(x), expected)


def test_realnvp_multiscale_log_prob_is_the_hand_sum_of_parts():
    torch.manual_seed(1)
    flow = fk.flows.realnvp((1, 8, 8), hidden_channels=8).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    # scale 0: 3 checkerboard couplings on the image, squeeze, 3 channel couplings on (4, 4, 4)
    board0 = flow.parts[-3:]  # plain couplings (no squeeze): Pyro order, the last acts first
    h, total = x, torch.zeros(4, dtype=x.dtype)
    for part in reversed(board0):
        h_new = part.inv(h)
        total = total + part.log_abs_det_jacobian(h_new, h)
        h = h_new
    channels = flow.parts[-4]
    assert channels.squeezes == 1 and channels.active_channels == 4 and len(channels.parts) == 3
    h, ladj = _data_side(SqueezeBlock(channels.parts, (4, 4, 4), 0), squeeze(h))
    total = total + ladj
    # factor out channels 2, 3; scale 1: 4 checkerboard couplings on the kept (2, 4, 4)
    last = flow.parts[0]
    assert last.squeezes == 1 and last.active_channels == 2 and len(last.parts) == 4
    z, ladj = _data_side(SqueezeBlock(last.parts, (2, 4, 4), 0), h[:, :2])
    expected = _normal(h[:, 2:]) + _normal(z) - total - ladj
    d = fk.flows.flow_distribution(flow, (1, 8, 8))
    torch.testing.assert_close(d.log_prob(x), expected)


def test_squeeze_block_runs_pyro_transforms_too():
    """A part that is not one of ours is run through its own call and log-det."""
    from pyro.distributions.transforms import GeneralizedChannelPermute

    torch.manual_seed(4)
    block = SqueezeBlock([GeneralizedChannelPermute(channels=2)], (1, 4, 4), 1, 2).double()
    x = torch.randn(1, 4, 4, dtype=torch.float64)
    expected = autograd_log_det(block, x, torch.Size((1, 4, 4)))
    y = call_uncached(block, x)
    torch.testing.assert_close(block.log_abs_det_jacobian(x, y), expected)
    torch.testing.assert_close(inverse_uncached(block, y), x)
    assert not torch.allclose(y, x)


def test_factored_channels_pass_deeper_levels_unchanged():
    torch.manual_seed(2)
    flow = fk.flows.glow((1, 8, 8), levels=2, depth=2, hidden_channels=8)
    level2 = flow.parts[0]
    with torch.no_grad():
        for p in level2.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(3, 1, 8, 8)
    y = level2(x)
    inactive = slice(level2.active_channels, None)
    twice = squeeze(squeeze(x))
    torch.testing.assert_close(squeeze(squeeze(y))[:, inactive], twice[:, inactive])
    assert not torch.allclose(squeeze(squeeze(y))[:, :8], twice[:, :8])


def test_temperature_scales_samples_of_a_new_glow():
    torch.manual_seed(3)
    flow = fk.flows.glow((1, 8, 8), levels=2, depth=2, hidden_channels=8)
    # a new Glow is orthogonal (rotations, identity couplings, uninitialised ActNorm)
    for temperature in (0.7, 1.0):
        d = fk.flows.flow_distribution(flow, (1, 8, 8), temperature=temperature)
        with torch.no_grad():
            std = d.sample((4000,)).std().item()
        assert abs(std - temperature) < 0.02


def test_image_builders_check_their_arguments():
    with pytest.raises(ValueError, match="H and W to be multiples of 4"):
        fk.flows.glow((1, 6, 6), levels=2)
    with pytest.raises(ValueError, match="permutation: expected one of"):
        fk.flows.glow((1, 8, 8), permutation="random")
    with pytest.raises(ValueError, match=r"coupling: expected one of \('affine', 'additive'\)"):
        fk.flows.glow((1, 8, 8), coupling="spline")
    with pytest.raises(ValueError, match="depth: expected a positive integer"):
        fk.flows.glow((1, 8, 8), depth=0)
    with pytest.raises(ValueError, match=r"event_shape: expected \(C, H, W\)"):
        fk.flows.glow(64)
    with pytest.raises(ValueError, match="context_dim: expected a positive integer"):
        fk.flows.conditional_glow((1, 8, 8), 0)
    with pytest.raises(ValueError, match="single pixel at the last scale"):
        fk.flows.realnvp((1, 4, 4), num_scales=3)


def _digits_bpd(model: FlowDistribution, x: torch.Tensor) -> float:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bpd = fk.metrics.dequantized_bits_per_dim(model.log_prob, x, 17, 2, g)
    return bpd.mean().item()


def test_glow_on_digits_lowers_test_bits_per_dim():
    torch.manual_seed(0)
    flow = fk.flows.glow((1, 8, 8), levels=2, depth=2, hidden_channels=32)
    train_x, test_x = fk.data.load_digits("train"), fk.data.load_digits("test")
    model = data_distribution(flow, "digits")  # the flow, then the inverse logit into [0, 1]
    g = torch.Generator().manual_seed(0)

    def loss_fn(v: torch.Tensor) -> torch.Tensor:
        lp = model.log_prob(fk.data.dequantize(v, 17, g))
        return fk.metrics.bits_per_dim(lp, 64, 17).mean()

    model.log_prob(fk.data.dequantize(train_x[:512], 17, g))  # ActNorm's data initialisation
    before = _digits_bpd(model, test_x)
    train(loss_fn, train_x, params=flow, steps=150, batch_size=128, lr=1e-3, progress=False)
    flow.eval()
    after = _digits_bpd(model, test_x)
    assert before > 3.5 and after < min(2.8, before - 0.8)
