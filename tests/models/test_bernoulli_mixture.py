"""BernoulliMixture: binarised digits, monotone EM, the log-likelihood by hand, and SVI."""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO

from pyro_flowkit.data import load_digits
from pyro_flowkit.models import BernoulliMixture


def binary_digits(split):
    return (load_digits(split, flatten=True) > 7).double()


def test_beats_a_single_bernoulli_on_held_out_digits():
    train, test = binary_digits("train"), binary_digits("test")
    one = BernoulliMixture(1, seed=0).fit(train)
    ten = BernoulliMixture(10, seed=0, tol=1e-6, max_iter=300).fit(train)
    assert ten.converged_
    bounds = torch.tensor(ten.lower_bounds_)
    assert (bounds.diff() >= -1e-10).all() and ten.monotone_violations_ == []
    # about 5 nats per image better on held-out data
    assert ten.score(test) > one.score(test) + 3
    # one component is the product of per-pixel frequencies (clipped)
    freq = train.mean(0).clamp(1e-6, 1 - 1e-6)
    torch.testing.assert_close(one.probs_[0], freq)


def test_score_samples_is_the_mixture_log_likelihood():
    x = binary_digits("test")[:50]
    bmm = BernoulliMixture(3, seed=0).fit(x)
    p, w = bmm.probs_, bmm.weights_
    log_p = (x[None] * p[:, None].log() + (1 - x[None]) * (1 - p[:, None]).log()).sum(-1)
    expected = (log_p + w.log()[:, None]).logsumexp(0)
    torch.testing.assert_close(bmm.score_samples(x), expected)
    torch.testing.assert_close(bmm.predict_proba(x).sum(1), torch.ones(50, dtype=x.dtype))
    assert bmm.n_parameters() == 3 * 64 + 2


def test_sample_frequencies_match_the_mixture():
    x = binary_digits("train")
    bmm = BernoulliMixture(4, seed=0).fit(x)
    draws, labels = bmm.sample(20000)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    mean = bmm.weights_ @ bmm.probs_
    se = (mean * (1 - mean) / 20000).sqrt().clamp(min=1e-4)
    assert ((draws.mean(0) - mean).abs() < 5 * se).all()


def test_chunked_equals_whole_and_random_start_works(device):
    x = binary_digits("train")[:400].to(device)
    whole = BernoulliMixture(3, seed=0, chunk_size=400, tol=1e-8, max_iter=300).fit(x)
    chunked = BernoulliMixture(3, seed=0, chunk_size=77, tol=1e-8, max_iter=300).fit(x)
    torch.testing.assert_close(chunked.probs_, whole.probs_, rtol=1e-9, atol=1e-9)
    rnd = BernoulliMixture(3, init_params="random", seed=0, max_iter=300).fit(x)
    assert rnd.probs_.device == x.device and rnd.converged_


def test_bad_input_is_named():
    x = binary_digits("test")
    with pytest.raises(ValueError, match="x: expected binary values"):
        BernoulliMixture(2).fit(x * 2)
    with pytest.raises(ValueError, match="probs_init: expected shape \\(2, 64\\)"):
        BernoulliMixture(2, probs_init=torch.full((2, 3), 0.5)).fit(x)
    with pytest.raises(ValueError, match="min_prob"):
        BernoulliMixture(2, min_prob=0.7).fit(x)
    with pytest.raises(ValueError, match="init_params"):
        BernoulliMixture(2, init_params="k-means++").fit(x)


def test_svi_on_the_model_reaches_the_em_log_likelihood():
    """From one random start, EM reaches -22.28 nats in 56 iterations; Adam (lr 0.02) on the same
    log-likelihood is at -22.51 after 1000 steps and -22.44 after 1500."""
    x = binary_digits("train")[:300]
    em = BernoulliMixture(3, init_params="random", seed=0, tol=1e-8, max_iter=500).fit(x)
    svi_bmm = BernoulliMixture(3, init_params="random", seed=0, name="svi")
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    svi = SVI(svi_bmm.model, lambda x: None, pyro.optim.Adam({"lr": 0.02}), elbo)
    start = -elbo.loss(svi_bmm.model, lambda x: None, x) / len(x)
    for _ in range(1000):
        svi.step(x)
    svi_ll = svi_bmm.load_param_store().score(x)
    assert svi_ll > start + 20 and svi_ll == pytest.approx(em.lower_bound_, abs=0.5)
    assert math.isfinite(svi_ll)


def test_binarize_thresholds_every_input():
    raw = load_digits("train", flatten=True).double()
    ours = BernoulliMixture(4, binarize=7, random_state=0).fit(raw)
    binary = (raw > 7).double()
    reference = BernoulliMixture(4, random_state=0).fit(binary)
    torch.testing.assert_close(ours.probs_, reference.probs_)
    torch.testing.assert_close(ours.score_samples(raw[:20]), reference.score_samples(binary[:20]))
    # without it, data that is not 0/1 is refused, NumPy as tensors
    with pytest.raises(ValueError, match="x: expected binary values \\(0 or 1\\)"):
        BernoulliMixture(4).fit(raw.numpy())
    with pytest.raises(ValueError, match="x: expected binary values \\(0 or 1\\)"):
        reference.predict(raw)
