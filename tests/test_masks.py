import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pyro_flowkit as fk
from pyro_flowkit.nn import MLP
from pyro_flowkit.transforms import AffineCoupling, VectorPartition, alternating_mask, half_mask

masks = st.lists(st.booleans(), min_size=2, max_size=12).filter(lambda m: 0 < sum(m) < len(m))


@settings(max_examples=60, deadline=None)
@given(masks)
def test_any_mask_splits_and_merges_back(bits):
    mask = torch.tensor(bits)
    part = VectorPartition(mask)
    x = torch.randn(3, len(bits), dtype=torch.float64)
    kept, moved = part.split(x)
    torch.testing.assert_close(kept, x[:, mask])
    torch.testing.assert_close(moved, x[:, ~mask])
    torch.testing.assert_close(part.merge(kept, moved), x, atol=0, rtol=0)


@settings(max_examples=30, deadline=None)
@given(masks)
def test_affine_coupling_with_any_mask_keeps_the_masked_entries(bits):
    mask = torch.tensor(bits)
    net = MLP(int(mask.sum()), 2 * int((~mask).sum()), (8,))
    torch.nn.init.normal_(net.layers[-1].weight)
    t = AffineCoupling(mask, net.double())
    x = torch.randn(4, len(bits), dtype=torch.float64)
    y = t(x)
    torch.testing.assert_close(y[:, mask], x[:, mask], atol=0, rtol=0)
    assert not torch.allclose(y[:, ~mask], x[:, ~mask])
    torch.testing.assert_close(t._inverse(y), x)


def test_named_masks():
    assert half_mask(5).tolist() == [True, True, True, False, False]
    assert half_mask(4, flip=True).tolist() == [False, False, True, True]
    assert alternating_mask(5).tolist() == [True, False, True, False, True]
    assert alternating_mask(4, flip=True).tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match="dim: a coupling needs at least 2 dimensions"):
        half_mask(1)
    with pytest.raises(ValueError, match="mask: expected both True and False"):
        VectorPartition(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask: expected a 1-D boolean tensor"):
        VectorPartition(torch.ones(3))


def test_non_finite_data_is_rejected_by_the_distribution():
    d = fk.flows.flow_distribution(fk.flows.realnvp(4, num_layers=2, hidden_dims=(8,)), 4)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]))


def test_permute_rejects_a_non_permutation():
    with pytest.raises(ValueError, match=r"permutation: expected a 1-D permutation of 0..n-1"):
        fk.transforms.Permute(torch.tensor([0, 0, 1]))
