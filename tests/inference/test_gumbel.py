"""Gumbel tricks: Gumbel-max draws have the softmax's frequencies, the relaxed sample's argmax
too, the relaxation's KL to a one-hot prior is the categorical's, and Su's schedule."""

import pyro.distributions as dist
import pytest
import torch
from scipy.stats import chisquare
from torch.distributions import kl_divergence

from pyro_flowkit.inference.gumbel import (
    GumbelSoftmax,
    GumbelSoftmaxStraightThrough,
    gumbel_max,
    gumbel_softmax_temperature,
)

LOGITS = torch.tensor([0.3, -1.2, 2.0, 0.0], dtype=torch.float64)


def test_gumbel_max_is_exact():
    g = torch.Generator().manual_seed(0)
    draws = gumbel_max(LOGITS, (200_000,), generator=g)
    counts = torch.bincount(draws, minlength=4).numpy()
    expected = (LOGITS.softmax(-1) * 200_000).numpy()
    assert chisquare(counts, expected).pvalue > 1e-3
    assert gumbel_max(LOGITS.expand(3, 5, 4), (2,)).shape == (2, 3, 5)


@pytest.mark.parametrize("kind", [GumbelSoftmax, GumbelSoftmaxStraightThrough])
def test_the_relaxation_is_on_the_simplex_and_its_argmax_is_the_categorical(kind):
    q = kind(torch.tensor(0.3, dtype=torch.float64), logits=LOGITS)
    z = q.rsample((100_000,))
    torch.testing.assert_close(z.sum(-1), torch.ones(100_000, dtype=torch.float64))
    counts = torch.bincount(z.argmax(-1), minlength=4).numpy()
    assert chisquare(counts, (LOGITS.softmax(-1) * 100_000).numpy()).pvalue > 1e-3
    p = dist.OneHotCategorical(logits=torch.tensor([1.0, 0.0, 0.0, -1.0], dtype=torch.float64))
    expected = (q.probs * (q.probs.log() - p.probs.log())).sum()
    torch.testing.assert_close(kl_divergence(q, p), expected)


def test_the_gradient_flows_through_the_relaxed_sample():
    logits = LOGITS.clone().requires_grad_()
    z = GumbelSoftmax(torch.tensor(1.0, dtype=torch.float64), logits=logits).rsample()
    (z * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_su_schedule_and_its_arguments():
    assert gumbel_softmax_temperature(0) == 1.0
    assert gumbel_softmax_temperature(500) == pytest.approx(0.01 + 0.99 * 0.999**500)
    assert gumbel_softmax_temperature(3, start=2.0, end=0.5, rate=0.5) == 0.5 + 1.5 / 8
    with pytest.raises(ValueError, match="step: expected a non-negative integer"):
        gumbel_softmax_temperature(-1)
    with pytest.raises(ValueError, match="end: expected a positive finite number"):
        gumbel_softmax_temperature(1, end=0.0)
