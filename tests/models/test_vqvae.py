"""VQVAE: the guide's point mass on the nearest codes and the ELBO log p(x|z_q) + log p(z_q),
straight-through gradients under SVI, encode/decode, the code priors (normalised, sampled with
the right frequencies, fitted by MLE), bits/dim, bad input, PCA with quantised coefficients,
and (slow) digits reconstructed better than PCA at the same bit budget."""

import itertools
import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

from pyro_flowkit.data import dequantize, load_digits
from pyro_flowkit.models.code_prior import AutoregressiveCategorical, CodeGrid, uniform_codes
from pyro_flowkit.models.pca_codec import PCACodec
from pyro_flowkit.models.vqvae import VQVAE
from pyro_flowkit.nn.made import CategoricalMADE
from pyro_flowkit.nn.vq import VectorQuantizer


def small(**kwargs):
    options = dict(num_codes=8, code_dim=3, hidden_channels=8)
    return VQVAE((1, 8, 8), **{**options, **kwargs}).double()


def digits(n=None, split="train"):
    g = torch.Generator().manual_seed(0)
    return dequantize(load_digits(split)[:n].double(), 17, g)


def test_the_guide_is_a_point_mass_on_the_nearest_codes_and_the_elbo_is_exact():
    vq = small().eval()
    x = digits(6)
    guide = poutine.trace(vq.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vq.model, trace=guide)).get_trace(x)
    z_e = vq.encoder(x).permute(0, 2, 3, 1)
    codes = vq.quantizer.nearest(z_e)
    z_q = vq.quantizer.codebook[codes]
    assert torch.equal(guide.nodes["vqvae.z"]["value"], z_q)
    likelihood = torch.distributions.Normal(torch.sigmoid(vq.decoder(z_q.permute(0, 3, 1, 2))),
                                            vq.log_scale.exp())  # fmt: skip
    log_lik = likelihood.log_prob(x).sum((1, 2, 3))
    log_prior = -vq.num_positions * math.log(8)
    torch.testing.assert_close(vq.elbo(x), log_lik + log_prior)
    model.compute_log_prob()
    torch.testing.assert_close(
        model.nodes["vqvae.z"]["log_prob"], torch.full((6,), log_prior, dtype=torch.float64)
    )
    penalty = 0.25 * (z_e - z_q).pow(2).sum((1, 2, 3))
    loss = Trace_ELBO().loss(vq.model, vq.guide, x)
    expected = (-(log_lik + log_prior).sum() + penalty.sum()).detach()
    assert loss == pytest.approx(expected.item(), rel=1e-10)


def test_svi_trains_the_encoder_through_the_straight_through_value_and_moves_the_codebook():
    vq = small()
    x = digits(32)
    loss = Trace_ELBO().differentiable_loss(vq.model, vq.guide, x)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vq.encoder.parameters())
    assert not vq.quantizer.codebook.requires_grad  # the EMA codebook learns no gradient
    svi = SVI(vq.model, vq.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    before = vq.quantizer.codebook.clone()
    svi.step(x)
    assert not torch.equal(before, vq.quantizer.codebook)


def test_a_gradient_trained_codebook_gets_the_codebook_term():
    vq = small(decay=None)
    x = digits(16)
    Trace_ELBO().differentiable_loss(vq.model, vq.guide, x).backward()
    assert vq.quantizer.codebook.grad.abs().sum() > 0


def test_encode_decode_and_reconstruct_do_not_move_the_codebook():
    vq = small(downsamples=2)
    x = digits(10)
    state = {k: v.clone() for k, v in vq.quantizer.state_dict().items()}
    codes = vq.encode(x)
    assert codes.shape == (10, 2, 2) and vq.grid == (2, 2)
    torch.testing.assert_close(vq.reconstruct(x), vq.decode(codes))
    assert ((vq.reconstruct(x) > 0) & (vq.reconstruct(x) < 1)).all()
    vq.elbo(x)
    assert all(torch.equal(state[k], v) for k, v in vq.quantizer.state_dict().items())
    assert vq.sample(4).shape == (4, 1, 8, 8)


def test_the_autoregressive_prior_is_normalised_and_samples_its_probabilities():
    made = CategoricalMADE(3, 3, (8,)).double()
    with torch.no_grad():
        for p in made.parameters():
            p.copy_(torch.randn_like(p))
    prior = AutoregressiveCategorical(made)
    every = torch.tensor(list(itertools.product(range(3), repeat=3)))
    probs = prior.log_prob(every).exp().detach()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    draws = prior.sample((20000,))
    index = (draws * torch.tensor([9, 3, 1])).sum(-1)
    freq = torch.bincount(index, minlength=27).double() / 20000
    se = (probs * (1 - probs) / 20000).sqrt()
    assert ((freq - probs).abs() <= 4.5 * se + 1e-9).all()
    assert prior.expand((5,)).sample().shape == (5, 3)


def test_code_grid_scores_the_nearest_codes():
    vq = VectorQuantizer(4, 2, data_init=False).double()
    grid = CodeGrid(uniform_codes(6, 4, vq.codebook), vq, (2, 3))
    z = grid.sample((7,))
    assert z.shape == (7, 2, 3, 2)
    torch.testing.assert_close(
        grid.log_prob(z + 1e-6), torch.full((7,), -6 * math.log(4), dtype=torch.float64)
    )
    with pytest.raises(ValueError, match=r"indices: expected event shape \(6,\)"):
        CodeGrid(uniform_codes(5, 4), vq, (2, 3))


def test_fit_prior_raises_the_codes_likelihood_and_lowers_bits_per_dim():
    vq = small(num_codes=16, downsamples=2)
    x = digits(300)
    vq.fit(x, 30, batch_size=100, lr=3e-3, progress=False, seed=0)
    uniform_bits = vq.bits_per_dim(x).mean()
    history = vq.fit_prior(x, 150, batch_size=100, lr=1e-2, hidden_dims=(32,), progress=False)
    codes = vq.encode(x).flatten(1)
    log_prior = vq.index_prior().log_prob(codes).mean()
    assert history[-1] < history[0]
    assert log_prior > -vq.num_positions * math.log(16) + 1.0  # at least 1 nat per image
    fitted_bits = vq.bits_per_dim(x).mean()
    # the likelihood term is the same: the difference is the prior's, in bits per dimension
    gain = (log_prior + vq.num_positions * math.log(16)) / (64 * math.log(2))
    torch.testing.assert_close(uniform_bits - fitted_bits, gain)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"event_shape: expected \(C, H, W\)"):
        VQVAE(64)
    with pytest.raises(ValueError, match="likelihood: expected one of"):
        VQVAE((1, 8, 8), likelihood="bernoulli")
    vq = small()
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 1, 8, 8\)"):
        vq.encode(torch.rand(3, 64))
    with pytest.raises(ValueError, match=r"values in \[0, 1\)"):
        vq.elbo(torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="indices: expected values in 0..7"):
        vq.decode(torch.full((1, 4, 4), 8))
    with pytest.raises(ValueError, match="encoder: expected an output"):
        VQVAE((1, 8, 8), code_dim=3, encoder=torch.nn.Conv2d(1, 5, 1))


def test_pca_codec_spends_its_budget_and_beats_fewer_bits():
    x = load_digits("train", flatten=True).double() / 16
    errors = []
    for bits in (8, 24):
        codec = PCACodec(bits).fit(x)
        assert codec.components * codec.bits_per_component <= bits
        codes = codec.encode(x)
        assert int(codes.max()) < 2**codec.bits_per_component
        errors.append(float((codec.reconstruct(x) - x).pow(2).mean()))
    assert errors[1] < errors[0]


@pytest.mark.slow
@pytest.mark.parametrize("num_codes, downsamples", [(16, 1), (64, 2)])
def test_digits_reconstruct_better_than_pca_at_the_same_bit_budget(num_codes, downsamples):
    """8x8 digits -> a 4x4 grid of 16 codes (64 bits) or a 2x2 grid of 64 codes (24 bits):
    test MSE below PCA with scalar-quantised coefficients at the same budget, and more than a
    quarter of the codes in use (perplexity). About a minute each on one thread."""
    vq = VQVAE((1, 8, 8), num_codes=num_codes, code_dim=8, downsamples=downsamples,
               name=f"vq{num_codes}").double()  # fmt: skip
    vq.fit(digits(), 1000, lr=3e-3, progress=False, seed=0)
    test = (load_digits("test").double() + 0.5) / 17
    train = (load_digits("train", flatten=True).double() + 0.5) / 17
    bits = vq.num_positions * int(math.log2(num_codes))
    pca = PCACodec(bits).fit(train)
    mse_pca = float((pca.reconstruct(test.flatten(1)) - test.flatten(1)).pow(2).mean())
    mse = float((vq.reconstruct(test) - test).pow(2).mean())
    assert mse < mse_pca, (mse, mse_pca)
    assert vq.perplexity(test) > num_codes / 4
