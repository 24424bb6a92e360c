"""STS scoring: Spearman against scipy, the synthetic cone, and BERT-flow's flow."""

import pytest
import torch
from scipy.stats import spearmanr

from pyro_flowkit.flows.distribution import flow_distribution
from pyro_flowkit.text.sts import bert_flow, cosine, spearman, sts_spearman
from pyro_flowkit.transforms.actnorm import ActNorm
from pyro_flowkit.transforms.coupling import AffineCoupling
from pyro_flowkit.transforms.whitening import Whitening


def cone(n: int = 1000, d: int = 16, seed: int = 0) -> tuple:
    """Isotropic pairs whose gold score is their correlation rho (cosines of the latent pairs
    track it), pushed through an anisotropic linear map (one direction stretched 1000 times
    more than the others, then rotated) plus a large common offset: a narrow cone."""
    g = torch.Generator().manual_seed(seed)
    rho = torch.rand(n, generator=g, dtype=torch.float64) * 1.2 - 0.2
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    noise = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = rho[:, None] * a + (1 - rho[:, None] ** 2).sqrt() * noise
    rotation = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    scales = torch.full((d,), 0.1, dtype=torch.float64)
    scales[0] = 100.0
    stretch = torch.diag(scales) @ rotation
    offset = torch.full((d,), 1000.0, dtype=torch.float64)
    return a, b, rho, a @ stretch + offset, b @ stretch + offset


@pytest.mark.parametrize("seed", [0, 1])
def test_spearman_matches_scipy_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(300, generator=g, dtype=torch.float64)
    y = torch.randint(0, 6, (300,), generator=g).double() + 0.1 * x  # ties in y only
    ties = torch.randint(0, 10, (300,), generator=g).double()  # ties on both sides
    for u, v in [(x, y), (ties, y), (x, x.exp()), (x, -x)]:
        assert spearman(u, v) == pytest.approx(spearmanr(u.numpy(), v.numpy())[0], abs=1e-12)


def test_spearman_refuses_what_it_cannot_rank():
    with pytest.raises(ValueError, match="expected values that vary, got a constant input"):
        spearman(torch.ones(5), torch.arange(5.0))
    with pytest.raises(ValueError, match="y: expected 5 values, as many as x, got 4"):
        spearman(torch.arange(5.0), torch.arange(4.0))
    with pytest.raises(ValueError, match="x: expected finite values, got 1 NaN"):
        spearman(torch.tensor([0.0, float("nan")]), torch.arange(2.0))
    with pytest.raises(ValueError, match="x: expected a 1-D tensor of 2 or more values"):
        spearman(torch.zeros(1), torch.zeros(1))


def test_cosine_of_parallel_orthogonal_and_zero_rows():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    torch.testing.assert_close(cosine(a, b), torch.tensor([1.0, 0.0, 0.0]))


def test_cone_raw_cosine_is_poor_and_whitening_restores_it():
    a, b, rho, x_a, x_b = cone()
    latent = sts_spearman(a, b, rho)  # the best any map can do, up to estimation error
    raw = sts_spearman(x_a, x_b, rho)
    w = Whitening.from_data(torch.cat([x_a, x_b]))
    whitened = sts_spearman(x_a, x_b, rho, w.inv)
    assert latent > 0.85 and raw < 0.5
    assert whitened == pytest.approx(latent, abs=0.005)
    assert sts_spearman(x_a, x_b, rho, lambda x: w.project(x, 8)) > raw + 0.2
    assert cosine(x_a, x_b).min() > 0.98  # the cone: every raw cosine is close to 1


def test_sts_spearman_applies_the_transform_to_both_sides():
    a, b, rho, _, _ = cone(200, 4)
    flip = torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64)
    assert sts_spearman(a, b, rho, lambda x: x * flip) == pytest.approx(sts_spearman(a, b, rho))
    assert sts_spearman(a, b * flip, rho) != pytest.approx(sts_spearman(a, b, rho))


def test_sts_spearman_checks_shapes():
    with pytest.raises(ValueError, match=r"embeddings_b: expected \(N, D\) like embeddings_a"):
        sts_spearman(torch.zeros(3, 2), torch.zeros(3, 3), torch.arange(3.0))
    with pytest.raises(ValueError, match=r"scores: expected shape \(3,\), got shape \(2,\)"):
        sts_spearman(torch.zeros(3, 2), torch.zeros(3, 2), torch.arange(2.0))


def test_bert_flow_is_a_vector_glow_in_pyros_order():
    flow = bert_flow(6, depth=3, hidden_dims=(8,))
    kinds = [type(p).__name__ for p in flow.parts]
    assert kinds == ["AffineCoupling", "Permute", "ActNorm"] * 3  # base ... data
    w = Whitening(6)
    after = bert_flow(6, 2, (8,), first=w)
    assert [type(p).__name__ for p in after.parts] == ["AffineCoupling", "Permute"] * 2 + [
        "Whitening"
    ]
    assert after.parts[-1] is w  # on the data side, in place of the ActNorms


def test_flow_after_whitening_starts_at_the_whitening_gaussian():
    """New couplings are the identity and permutations keep volumes, so the untrained flow's
    density is the whitening's maximum-likelihood Gaussian."""
    _, _, _, x_a, x_b = cone(300, 5)
    x = torch.cat([x_a, x_b])
    w = Whitening.from_data(x, eps=0)
    flow = bert_flow(5, depth=2, hidden_dims=(8,), first=w).double()
    log_p = flow_distribution(flow, 5).log_prob(x)
    torch.testing.assert_close(log_p, flow_distribution(w, 5).log_prob(x), atol=1e-10, rtol=0)
    assert any(isinstance(m, AffineCoupling) for m in flow.modules())


def test_bert_flow_standardises_with_actnorm_on_the_data_side():
    """Without a whitening, the first step's ActNorm (initialised from the data) standardises
    every coordinate; the density starts at the product of per-coordinate Gaussians."""
    _, _, _, x_a, x_b = cone(300, 5)
    x = torch.cat([x_a, x_b])
    flow = bert_flow(5, depth=2, hidden_dims=(8,)).double()
    log_p = flow_distribution(flow, 5).log_prob(x)  # initialises the ActNorms from x
    assert all(bool(m.initialized) for m in flow.modules() if isinstance(m, ActNorm))
    std, mean = torch.std_mean(x, 0, correction=0)
    diagonal = torch.distributions.Normal(mean, std).log_prob(x).sum(-1)
    torch.testing.assert_close(log_p, diagonal, atol=1e-8, rtol=0)


def test_bert_flow_checks_its_arguments():
    with pytest.raises(ValueError, match="dim: expected an integer of at least 2, got 1"):
        bert_flow(1)
    with pytest.raises(ValueError, match="depth: expected a positive integer, got 0"):
        bert_flow(4, depth=0)
