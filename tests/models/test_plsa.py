"""PLSA: monotone EM, planted topics recovered up to permutation, folding-in of documents, and
the token model."""

import itertools
import math

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO

from pyro_flowkit.models import PLSA


def planted(n_docs=200, n_words=30, k=3, length=80, seed=0):
    """Topics with disjoint-ish supports and sparse document mixes."""
    g = torch.Generator().manual_seed(seed)
    topics = torch.rand(k, n_words, generator=g, dtype=torch.float64) ** 4
    topics[torch.arange(n_words) % k != torch.arange(k)[:, None]] *= 0.02
    topics /= topics.sum(1, keepdim=True)
    mixes = torch.distributions.Dirichlet(torch.full((k,), 0.3, dtype=torch.float64)).sample(
        (n_docs,)
    )
    counts = torch.distributions.Multinomial(length, mixes @ topics).sample()
    return counts, topics, mixes


def best_permutation(found, truth):
    k = len(truth)
    return min(itertools.permutations(range(k)),
               key=lambda p: float((found[list(p)] - truth).abs().sum()))  # fmt: skip


def test_log_likelihood_is_monotone_and_planted_topics_are_recovered():
    counts, topics, mixes = planted()
    plsa = PLSA(3, seed=0, tol=1e-7, max_iter=1000).fit(counts)
    bounds = torch.tensor(plsa.lower_bounds_)
    assert (bounds.diff() >= -1e-12).all() and plsa.monotone_violations_ == []
    perm = list(best_permutation(plsa.p_w_given_z_, topics))
    # total-variation distance of every topic below 0.1
    tv = 0.5 * (plsa.p_w_given_z_[perm] - topics).abs().sum(1)
    assert (tv < 0.1).all(), tv
    assert 0.5 * (plsa.p_z_given_d_[:, perm] - mixes).abs().sum(1).mean() < 0.15
    torch.testing.assert_close(plsa.p_w_given_z_.sum(1), torch.ones(3, dtype=counts.dtype))
    torch.testing.assert_close(plsa.p_z_given_d_.sum(1), torch.ones(200, dtype=counts.dtype))
    assert plsa.score(counts) == pytest.approx(plsa.lower_bound_, abs=1e-6)


def test_fits_better_than_the_truth_on_its_training_counts():
    counts, topics, mixes = planted(seed=1)
    plsa = PLSA(3, seed=1, tol=1e-8, max_iter=2000).fit(counts)
    truth = float(torch.xlogy(counts, mixes @ topics).sum() / counts.sum())
    assert plsa.lower_bound_ > truth


def test_chunked_equals_whole_and_empty_documents_are_kept(device):
    counts, _, _ = planted(60)
    counts[5] = 0
    counts = counts.to(device)
    whole = PLSA(3, seed=0, chunk_size=60, max_iter=50, tol=0.0)
    chunked = PLSA(3, seed=0, chunk_size=7, max_iter=50, tol=0.0)
    with pytest.warns(Warning, match="did not converge"):
        whole.fit(counts), chunked.fit(counts)
    torch.testing.assert_close(chunked.p_w_given_z_, whole.p_w_given_z_, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(chunked.p_z_given_d_, whole.p_z_given_d_, rtol=1e-9, atol=1e-12)
    assert torch.isfinite(whole.p_z_given_d_).all() and whole.p_z_given_d_.device == counts.device


def test_the_token_model_is_the_plsa_log_likelihood_and_svi_climbs_it():
    counts, _, _ = planted(30, 12, k=2, length=20)
    plsa = PLSA(2, seed=0, tol=1e-8, max_iter=2000).fit(counts)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    assert -elbo.loss(plsa.model, lambda c: None, counts) == pytest.approx(
        plsa.score(counts) * float(counts.sum()), rel=1e-12
    )
    pyro.clear_param_store()
    svi_plsa = PLSA(2, seed=0, name="svi")
    svi = SVI(svi_plsa.model, lambda c: None, pyro.optim.Adam({"lr": 0.05}), elbo)
    start = -svi.step(counts) / float(counts.sum())
    for _ in range(300):
        svi.step(counts)
    svi_ll = svi_plsa.load_param_store().score(counts)
    assert svi_ll > start + 0.05 and svi_ll <= plsa.lower_bound_ + 1e-6
    assert svi_ll == pytest.approx(plsa.lower_bound_, abs=0.05)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="counts: expected non-negative counts"):
        PLSA(2).fit(-torch.ones(3, 4))
    with pytest.raises(ValueError, match="counts: expected at least one positive count"):
        PLSA(2).fit(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="counts: contains NaN"):
        PLSA(2).fit(torch.tensor([[1.0, math.nan]]))
    with pytest.raises(ValueError, match="n_topics: expected a positive integer"):
        PLSA(0).fit(torch.ones(3, 4))
    counts, _, _ = planted(20)
    plsa = PLSA(2, seed=0, max_iter=500).fit(counts)
    with pytest.raises(ValueError, match="counts: expected the fitted shape \\(20, 30\\)"):
        plsa.score(counts[:5])
    with pytest.raises(ValueError, match="counts: the token model needs integer counts"):
        plsa.model(counts + 0.5)


def test_transform_folds_in_documents_one_by_one():
    counts, _, _ = planted()
    plsa = PLSA(3, random_state=0, tol=1e-10, max_iter=3000).fit(counts)
    folded = plsa.transform(counts)
    # the training documents' mixes are the fold-in optimum under the fitted topics
    torch.testing.assert_close(folded, plsa.p_z_given_d_, rtol=0, atol=1e-3)
    torch.testing.assert_close(folded.sum(1), torch.ones(200, dtype=counts.dtype))
    # each document on its own: the rows do not depend on the other rows
    torch.testing.assert_close(plsa.transform(counts[7:8]), folded[7:8], rtol=1e-12, atol=0)
    assert isinstance(plsa.transform(counts.numpy()), np.ndarray)
    np.testing.assert_array_equal(
        plsa.fit_transform(counts.numpy()), plsa.transform(counts.numpy())
    )


def test_fold_in_of_empty_documents_and_words_no_topic_emits():
    counts, _, _ = planted(60)
    counts[:, 0] = 0  # word 0 never seen: no topic emits it
    plsa = PLSA(3, random_state=0).fit(counts)
    assert bool((plsa.p_w_given_z_[:, 0] == 0).all())
    new = torch.zeros(3, 30, dtype=counts.dtype)
    new[1, 0] = 5  # only the unseen word
    new[2] = counts[0]
    new[2, 0] = 5
    mixes = plsa.transform(new)
    uniform = torch.full((2, 3), 1 / 3, dtype=counts.dtype)
    torch.testing.assert_close(mixes[:2], uniform)
    torch.testing.assert_close(mixes[2], plsa.transform(counts[:1])[0])
    with pytest.raises(ValueError, match="counts: expected non-negative counts"):
        plsa.transform(-new)


def test_the_old_attribute_names_are_aliases():
    counts, _, _ = planted(20)
    plsa = PLSA(2, random_state=0).fit(counts)
    assert plsa.p_w_given_z is plsa.p_w_given_z_ and plsa.p_z_given_d is plsa.p_z_given_d_
    assert not hasattr(PLSA(2), "p_w_given_z")
