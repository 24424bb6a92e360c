"""CategoricalVAE: exact ELBO, log-likelihood and gradient by enumeration against a brute-force
sum, what each estimator hands the decoder, the temperature schedule, IWAE when the model is
too large to enumerate, training with every estimator, and bad arguments."""

import itertools
import math

import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from pyro_flowkit.data import load_digits
from pyro_flowkit.inference.gumbel import gumbel_softmax_temperature
from pyro_flowkit.models.categorical_vae import ESTIMATORS, CategoricalVAE


def tiny(estimator="enumerate", **kwargs):
    options = dict(num_latents=2, num_classes=3, hidden_dims=(5,), estimator=estimator)
    return CategoricalVAE(6, **{**options, **kwargs}).double()


def brute_force(vae, x):
    """ELBO and log p(x) of every row by explicit loops over the 9 configurations."""
    logits = vae.encoder(x).reshape(len(x), 2, 3).log_softmax(-1)
    elbo, joints = 0, []
    for a, b in itertools.product(range(3), repeat=2):
        z = torch.cat([F.one_hot(torch.tensor(a), 3), F.one_hot(torch.tensor(b), 3)]).double()
        p = torch.sigmoid(vae.decoder(z))
        log_lik = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
        log_joint = log_lik + 2 * math.log(1 / 3)
        log_q = logits[:, 0, a] + logits[:, 1, b]
        elbo = elbo + log_q.exp() * (log_joint - log_q)
        joints.append(log_joint)
    return elbo, torch.stack(joints).logsumexp(0)


def test_exact_elbo_and_log_likelihood_match_a_brute_force_sum():
    vae = tiny()
    x = torch.rand(7, 6, dtype=torch.float64).round()
    elbo, log_p = brute_force(vae, x)
    assert vae.exact
    torch.testing.assert_close(vae.elbo(x), elbo.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vae.log_likelihood(x), log_p.detach(), rtol=1e-12, atol=1e-12)
    assert (vae.log_likelihood(x) >= vae.elbo(x)).all()


def test_enumeration_gives_the_exact_loss_and_gradient():
    vae = tiny()
    x = torch.rand(7, 6, dtype=torch.float64).round()
    model, guide, elbo = vae.objective("enumerate")
    loss = elbo.differentiable_loss(model, guide, x)
    params = list(vae.parameters())
    got = torch.autograd.grad(loss, params)
    exact, _ = brute_force(vae, x)
    expected = torch.autograd.grad(-exact.sum(), params)
    torch.testing.assert_close(loss, -exact.sum(), rtol=1e-12, atol=1e-12)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_what_each_estimator_hands_the_decoder():
    vae = tiny(num_classes=4)
    x = torch.rand(5, 6, dtype=torch.float64).round()
    for estimator in ("reinforce", "straight_through", "gumbel_softmax"):
        _, guide, _ = vae.objective(estimator, temperature=0.5)
        z = poutine.trace(guide).get_trace(x).nodes["catvae.z0"]["value"]
        assert z.shape == (5, 4)
        torch.testing.assert_close(z.sum(-1), torch.ones(5, dtype=torch.float64))
        one_hot = bool(((z == 0) | (z == 1)).all())
        assert one_hot == (estimator != "gumbel_softmax"), estimator


def test_fit_advances_su_temperature_schedule():
    vae = tiny("gumbel_softmax")
    x = torch.rand(20, 6, dtype=torch.float64).round()
    assert vae.current_temperature() == 1.0
    vae.fit(x, 5, batch_size=10, progress=False)
    assert vae.step == 5
    assert vae.current_temperature() == pytest.approx(0.01 + 0.99 * 0.999**5)
    constant = tiny("gumbel_softmax", temperature=0.3, name="constant")
    constant.fit(x, 2, batch_size=10, progress=False)
    assert constant.current_temperature() == 0.3
    assert gumbel_softmax_temperature(10**6) == pytest.approx(0.01)


def test_a_model_too_large_to_enumerate_gets_iwae_and_refuses_enumeration():
    vae = CategoricalVAE(64, num_latents=20, num_classes=10, hidden_dims=(16,)).double()
    assert not vae.exact
    x = (load_digits("test", flatten=True)[:5] > 7).double()
    pyro.set_rng_seed(1)
    elbo = vae.elbo(x, num_samples=2000)
    iwae = vae.log_likelihood(x, num_samples=2000)
    assert (iwae >= elbo).all()
    assert vae.log_likelihood(x, num_samples=1).shape == (5,)
    with pytest.raises(ValueError, match=r"'enumerate' sums over num_classes \*\* num_latents"):
        CategoricalVAE(64, num_latents=20, num_classes=10, estimator="enumerate")
    with pytest.raises(ValueError, match="estimator: expected one of"):
        CategoricalVAE(64, estimator="rebar")


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_raises_the_exact_elbo_on_binarised_digits(estimator):
    x = (load_digits("train", flatten=True)[:400] > 7).double()
    vae = CategoricalVAE(64, num_latents=2, num_classes=4, hidden_dims=(32,),
                         estimator=estimator, name=estimator).double()  # fmt: skip
    before = vae.elbo(x).mean()
    losses = vae.fit(x, 40, batch_size=100, lr=1e-2, progress=False, seed=0)
    assert len(losses) == 40
    assert vae.elbo(x).mean() > before + 5  # nats per image


def test_bad_input_is_refused():
    vae = tiny()
    with pytest.raises(ValueError, match=r"x: expected values in \[0, 1\]"):
        vae.elbo(torch.full((2, 6), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 6\)"):
        vae.elbo(torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="temperature: expected a positive finite number"):
        tiny("gumbel_softmax", temperature=0.0)


@pytest.mark.parametrize("estimator", ["gumbel_softmax", "straight_through"])
def test_float32_at_a_low_temperature_gives_finite_losses_and_no_warnings(estimator):
    """float32 draws at tau = 0.05 underflow to exact zeros, off the simplex by more than its
    tolerance: the guide neither refuses them nor scores them as NaN."""
    vae = CategoricalVAE(64, 2, 4, hidden_dims=(32,), estimator=estimator, temperature=0.05)
    x = (load_digits("train", flatten=True)[:200] > 7).float()
    losses = vae.fit(x, 10, batch_size=100, lr=1e-2, progress=False, seed=0)
    assert all(math.isfinite(v) for v in losses)
