"""FVAE: the Gaussian VAE when F is the identity, Trace_ELBO against the hand-written f-VAE loss,
the flow's cache between guide and model, IWAE towards log p(x), Glow images under a plate,
fitting, temperature, save/load and bad input."""

import copy
import math

import pyro
import pytest
import torch
from harness import check_subsampled_elbo, guide_and_model_traces
from pyro import poutine
from pyro.distributions.torch_transform import TransformModule
from pyro.infer import Trace_ELBO
from torch.autograd.functional import jacobian
from torch.distributions import Normal, constraints

from pyro_flowkit.data import dequantize, load_digits
from pyro_flowkit.flows import realnvp
from pyro_flowkit.models import FVAE, VAE
from pyro_flowkit.nn import ConvNet
from pyro_flowkit.transforms import ActNorm
from pyro_flowkit.validation import check_finite_tensor

SMALL = dict(levels=1, depth=2, hidden_channels=16)


def digits(n=None, split="train"):
    g = torch.Generator().manual_seed(0)
    return dequantize(load_digits(split)[:n].double(), 17, g)


def glow_fvae(**kwargs):
    return FVAE((1, 8, 8), flow_kw=SMALL, **kwargs).double()


def normal_lp(x, loc, scale):
    return Normal(loc, scale).log_prob(x).flatten(1).sum(1)


def test_identity_flow_is_the_gaussian_vae_for_the_same_noise():
    d, s1, s2 = 6, 0.3, 0.5
    x = torch.randn(5, d, dtype=torch.float64)
    fvae = FVAE(d, flow="identity", sigma1=s1, sigma2=s2).double()
    s1, s2 = fvae.sigma1.item(), fvae.sigma2.item()  # as stored (the logs in float32)
    # a Gaussian VAE with linear nets set to q(z|x) = N(x, s1^2) and E[x|z] = z, sd s2
    vae = VAE(d, latent_dim=d, likelihood="gaussian", hidden_dims=()).double()
    eye = torch.eye(d, dtype=torch.float64)
    with torch.no_grad():
        enc, dec = vae.encoder_net.layers[0], vae.decoder_net.layers[0]
        enc.weight.copy_(torch.cat([eye, 0 * eye]))
        enc.bias.zero_()
        enc.bias[d:] = math.log(math.expm1(s1 - 1e-4))  # softplus(.) + 1e-4 = s1
        dec.weight.copy_(eye)
        dec.bias.zero_()
        vae.log_scale.fill_(math.log(s2))
    pyro.set_rng_seed(3)
    vae_loss = Trace_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    fvae_loss = Trace_ELBO().loss(fvae.model, fvae.guide, x)
    pyro.set_rng_seed(3)
    z = poutine.trace(fvae.guide).get_trace(x).nodes["fvae.z"]["value"]
    u = (z - x) / s1
    # the closed form: -log N(x; z, s2^2) - log N(z; 0, I) + log N(z; x, s1^2), z = x + s1 u
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    per_row = (
        d * (half_log_2pi + math.log(s2)) + (s1 * u).square().sum(1) / (2 * s2**2)
        + d * half_log_2pi + z.square().sum(1) / 2
        - d * (half_log_2pi + math.log(s1)) - u.square().sum(1) / 2
    )  # fmt: skip
    assert fvae_loss == pytest.approx(per_row.sum().item(), rel=1e-12)
    assert vae_loss == pytest.approx(fvae_loss, rel=1e-12)


def test_trace_elbo_equals_the_hand_written_loss_for_fixed_noise():
    fvae = glow_fvae(encoder="conv", hidden=8, sigma1=0.2, sigma2=0.3)
    x = digits(4)
    fvae.elbo(x)  # ActNorm initialises from the first batch
    with torch.no_grad():  # move every net away from its identity start
        for p in fvae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pyro.set_rng_seed(4)
    loss = Trace_ELBO().loss(fvae.model, fvae.guide, x)
    pyro.set_rng_seed(4)
    z = poutine.trace(fvae.guide).get_trace(x).nodes["fvae.z"]["value"].clone()
    s1, s2 = fvae.sigma1.detach(), fvae.sigma2.detach()
    with torch.no_grad():
        e = fvae.encoder_net(x)
        u = (fvae.flow(z) - e) / s1  # the guide's noise, through a fresh pass of F^{-1}
    v = s1 * u + e

    def f(flat):  # Su's F: the inverse (data -> base) of the flow module
        return fvae.flow.inv(flat.reshape(1, 1, 8, 8)).reshape(64)

    log_det = torch.stack([torch.linalg.slogdet(jacobian(f, row.reshape(64)))[1] for row in v])
    with torch.no_grad():
        hand = (
            -normal_lp(x, fvae.decoder_net(v), s2)
            - normal_lp(fvae.flow.inv(v.clone()), torch.zeros_like(v), 1.0)
            + normal_lp(v, e, s1)
            - log_det
        )
    assert loss == pytest.approx(hand.sum().item(), rel=1e-10)


@pytest.mark.parametrize("shape", [(1, 8, 8), (6,)])
def test_the_model_reads_F_inverse_from_the_cache(shape):
    image = len(shape) == 3
    if image:
        fvae, net_type = glow_fvae(), ConvNet
        x = digits(5)
    else:
        fvae = FVAE(6, flow=realnvp(6, num_layers=4, hidden_dims=(8,), dropout=0.0)).double()
        net_type, x = torch.nn.Module, torch.randn(5, 6, dtype=torch.float64)
    fvae.elbo(x)
    with torch.no_grad():
        for p in fvae.flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    nets = [m for m in fvae.flow.modules() if type(m).__name__ in ("ConvNet", "MLP")]
    assert nets and all(isinstance(n, net_type) for n in nets)
    calls = {id(n): 0 for n in nets}
    for n in nets:
        n.register_forward_hook(lambda m, args, out: calls.__setitem__(id(m), calls[id(m)] + 1))
    pyro.set_rng_seed(6)
    Trace_ELBO().loss(fvae.model, fvae.guide, x)  # guide sample, its log q, model's F^{-1}(z)
    assert set(calls.values()) == {1}  # every conditioner ran once: in the guide's pass
    pyro.set_rng_seed(6)
    guide, model = guide_and_model_traces(fvae.model, fvae.guide, x)
    assert set(calls.values()) == {2}
    z = guide.nodes["fvae.z"]["value"]
    with torch.no_grad():
        fresh = fvae.decoder_net(fvae.flow(z.clone()))  # recomputed: the hooks count it
    assert set(calls.values()) == {3}
    torch.testing.assert_close(model.nodes["fvae.x"]["fn"].base_dist.loc, fresh)


def test_iwae_tends_to_the_marginal_likelihood_of_the_linear_gaussian_model():
    """F = E = G = id: x ~ N(0, (1 + s2^2) I) and the exact posterior is N(x / (1 + s2^2), s^2),
    s^2 = s2^2 / (1 + s2^2); q = N(x, s1^2) with s1 = s, so the ELBO is log p(x) - KL."""
    d, s2 = 4, 0.5
    s = s2 / math.sqrt(1 + s2**2)
    fvae = FVAE(d, flow="identity", sigma1=s, sigma2=s2).double()
    x = 0.6 * torch.randn(10, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    log_p = normal_lp(x, torch.zeros_like(x), math.sqrt(1 + s2**2))
    kl = (x - x / (1 + s2**2)).square().sum(1) / (2 * s**2)
    elbo = fvae.elbo(x, num_particles=4000, batch_size=1000)
    torch.testing.assert_close(elbo, log_p - kl, atol=0.03, rtol=0)
    iwae = fvae.iwae_log_likelihood(x, num_samples=20000, batch_size=5000)
    # over 20 seeds the largest error was 0.04, the mean absolute error at most 0.01
    torch.testing.assert_close(iwae, log_p, atol=0.06, rtol=0)
    assert (iwae - log_p).abs().mean() < 0.02 < 0.1 < kl.mean()
    assert (iwae > elbo).all()


def test_glow_images_under_a_subsampled_plate():
    fvae = glow_fvae(encoder="conv", hidden=8)
    x = digits(12)
    z, obs = check_subsampled_elbo(fvae.model, fvae.guide, x, 3, "fvae", seed=7)
    assert z["value"].shape == obs["value"].shape == (3, 1, 8, 8)


def test_fit_lowers_the_loss_and_fixed_noise_keeps_sigma1():
    data = digits(256)
    fvae = glow_fvae(encoder="conv", hidden=8)
    losses = fvae.fit(data, 40, batch_size=64, lr=3e-3, progress=False, seed=0)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 20
    fixed = glow_fvae(fixed_noise=True, sigma1=0.05, name="fixed")
    assert "log_sigma1" in dict(fixed.named_buffers())
    assert "log_sigma1" not in dict(fixed.named_parameters())
    sigma1, sigma2 = fixed.sigma1.item(), fixed.sigma2.item()
    fixed.fit(data, 10, batch_size=64, lr=3e-3, progress=False, seed=0)
    assert fixed.sigma1.item() == sigma1 == pytest.approx(0.05)
    assert fixed.sigma2.item() != pytest.approx(sigma2, rel=1e-3)


@pytest.mark.filterwarnings("ignore:Encountered NaN:UserWarning")
@pytest.mark.parametrize("lr", [1e2, 1e4])
@pytest.mark.parametrize("seed", range(4))
def test_a_diverging_fit_raises_floating_point_error_whatever_the_seed(lr, seed):
    # Pyro's distribution validation raised a ValueError (a NaN sample, a zero scale) instead
    fvae = FVAE((1, 8, 8), flow_kw=dict(levels=1, depth=1, hidden_channels=8)).double()
    with pytest.raises(FloatingPointError, match=r"FVAE\.fit: .* at step \d+.*lower the learning"):
        fvae.fit(digits(64), 30, batch_size=32, lr=lr, progress=False, seed=seed)


class _Picky(TransformModule):
    """A shift that refuses non-finite inputs with a ValueError, as the library's checks do."""

    bijective = True
    domain = codomain = constraints.independent(constraints.real, 1)

    def __init__(self, refuse=False):
        super().__init__()
        self.refuse = refuse
        self.shift = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))

    def _call(self, x):
        return check_finite_tensor("x", x) + self.shift

    def _inverse(self, y):
        if self.refuse:
            raise ValueError("y: refused")
        return check_finite_tensor("y", y) - self.shift

    def log_abs_det_jacobian(self, x, y):
        return x.new_zeros(x.shape[:-1])


def test_a_diverged_parameter_is_reported_even_where_a_transform_refuses_nan():
    fvae = FVAE(4, flow=_Picky()).double()
    fvae.fit(torch.randn(8, 4, dtype=torch.float64), 1, progress=False)
    with torch.no_grad():
        fvae.log_sigma1.fill_(math.nan)  # as a diverged step leaves it
    with pytest.raises(
        FloatingPointError, match="FVAE.fit: a parameter became NaN or infinite at step 1"
    ):
        fvae.fit(torch.randn(8, 4, dtype=torch.float64), 3, progress=False)
    fine = FVAE(4, flow=_Picky(refuse=True), name="fine").double()
    with pytest.raises(ValueError, match="y: refused"):  # finite parameters: not a divergence
        fine.fit(torch.randn(8, 4, dtype=torch.float64), 1, progress=False)


def test_sample_at_a_temperature_and_reconstruct():
    fvae = glow_fvae()
    x = digits(6)
    fvae.elbo(x)
    with torch.no_grad():
        for p in fvae.flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cold = fvae.sample(3, temperature=0.0)
    with torch.no_grad():
        expected = fvae.flow(torch.zeros(1, 1, 8, 8, dtype=torch.float64))  # G(F^{-1}(0)), G = id
    torch.testing.assert_close(cold, expected.expand(3, 1, 8, 8))
    warm, hot = fvae.sample(500, temperature=0.5), fvae.sample(500, temperature=1.0)
    assert warm.shape == (500, 1, 8, 8) and warm.std(0).mean() < hot.std(0).mean()
    # E = G = id: the reconstruction G(F^{-1}(F(E(x)))) is x itself
    torch.testing.assert_close(fvae.reconstruct(x), x)


def test_state_dict_round_trip_gives_the_same_elbo(tmp_path):
    fvae = glow_fvae(encoder="conv", hidden=8)
    fvae.fit(digits(128), 3, batch_size=64, progress=False, seed=0)
    path = tmp_path / "fvae.pt"
    torch.save(fvae.state_dict(), path)
    other = glow_fvae(encoder="conv", hidden=8, name="other")
    x = digits(5, "test")
    pyro.set_rng_seed(8)
    expected = fvae.elbo(x)
    other.load_state_dict(torch.load(path, weights_only=True))
    pyro.set_rng_seed(8)
    assert torch.equal(other.elbo(x), expected)
    assert all(bool(b) for n, b in other.named_buffers() if n.endswith("initialized"))


@pytest.mark.parametrize("flow", ["glow", "realnvp"])
def test_a_deep_copy_after_fit_scores_alike_and_trains_independently(flow):
    if flow == "glow":
        fvae, data, x = glow_fvae(encoder="conv", hidden=8), digits(64), digits(6, "test")
    else:
        kw = dict(num_layers=2, hidden_dims=(16,))
        fvae = FVAE(64, flow="realnvp", flow_kw=kw, encoder="mlp", hidden=16).double()
        data, x = digits(64).flatten(1), digits(6, "test").flatten(1)
    fvae.fit(data, 3, batch_size=32, lr=1e-3, progress=False, seed=0)
    twin = copy.deepcopy(fvae)
    pyro.set_rng_seed(4)
    expected = fvae.elbo(x, num_particles=2)
    pyro.set_rng_seed(4)
    assert torch.equal(twin.elbo(x, num_particles=2), expected)
    assert torch.equal(twin.reconstruct(x), fvae.reconstruct(x))
    pairs = list(zip(fvae.parameters(), twin.parameters(), strict=True))
    assert all(a.data_ptr() != b.data_ptr() for a, b in pairs)
    before = [p.detach().clone() for p in fvae.parameters()]
    pyro.clear_param_store()  # the copy has the original's name, hence its param names
    twin.fit(data, 3, batch_size=32, lr=1e-3, progress=False, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(before, fvae.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(before, twin.parameters(), strict=True))
    pyro.set_rng_seed(4)
    assert torch.equal(fvae.elbo(x, num_particles=2), expected)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="flow: expected one of"):
        FVAE((1, 8, 8), flow="maf")
    with pytest.raises(TypeError, match="flow: expected one of"):
        FVAE((1, 8, 8), flow=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"flow: built for events of shape \(1, 4, 4\)"):
        FVAE((1, 8, 8), flow=ActNorm((1, 4, 4)))
    with pytest.raises(ValueError, match="flow: 'glow' needs an image event_shape"):
        FVAE(8)
    with pytest.raises(ValueError, match="encoder: 'conv' needs an image"):
        FVAE(8, flow="identity", encoder="conv")
    with pytest.raises(ValueError, match="decoder: expected one of"):
        FVAE(8, flow="identity", decoder="resnet")
    with pytest.raises(ValueError, match="sigma1: expected a positive finite number"):
        FVAE(8, flow="identity", sigma1=0.0)
    with pytest.raises(ValueError, match="flow_kw"):
        FVAE(8, flow="identity", flow_kw={"levels": 1})
    fvae = FVAE(8, flow="realnvp", flow_kw=dict(num_layers=2, hidden_dims=(8,)))
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 8\)"):
        fvae.elbo(torch.zeros(3, 1, 8))
    with pytest.raises(ValueError, match="x: expected finite values"):
        fvae.iwae_log_likelihood(torch.full((3, 8), math.inf))
    with pytest.raises(ValueError, match=r"x: expected dequantised values in \[0, 1\)"):
        fvae.bits_per_dim(torch.full((3, 8), 1.5))
