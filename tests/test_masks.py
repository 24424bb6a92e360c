import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pyro_flowkit as fk
from pyro_flowkit.nn import MLP, ConvNet
from pyro_flowkit.transforms import (
    AffineCoupling,
    ChannelPartition,
    MaskedPartition,
    VectorPartition,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
    make_partition,
)

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


image_masks = st.lists(st.booleans(), min_size=18, max_size=18).filter(lambda m: 0 < sum(m) < 18)


@settings(max_examples=30, deadline=None)
@given(image_masks)
def test_any_image_mask_keeps_its_entries_and_inverts(bits):
    mask = torch.tensor(bits).reshape(2, 3, 3)
    net = ConvNet(2, 4, 4).double()
    torch.nn.init.normal_(net.convs[-1].weight)
    torch.nn.init.normal_(net.convs[-1].bias)  # moves x_B even when every ReLU of 4 is dead
    t = AffineCoupling(mask, net)
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    y = t(x)
    torch.testing.assert_close(y[:, mask], x[:, mask], atol=0, rtol=0)
    assert not torch.allclose(y[:, ~mask], x[:, ~mask])
    torch.testing.assert_close(t._inverse(y), x)


def test_image_masks_and_the_partition_each_gets():
    board = checkerboard_mask((2, 3, 4))
    assert board.shape == (2, 3, 4) and torch.equal(board[0], board[1])
    assert board[0].tolist()[:2] == [[True, False, True, False], [False, True, False, True]]
    assert torch.equal(checkerboard_mask((2, 3, 4), flip=True), ~board)
    channels = channel_mask((3, 2, 2))
    assert channels[:, 0, 0].tolist() == [True, True, False]
    assert channel_mask((4, 2, 2), flip=True)[:, 1, 1].tolist() == [False, False, True, True]
    assert isinstance(make_partition(channels), ChannelPartition)
    assert isinstance(make_partition(board), MaskedPartition)
    assert isinstance(make_partition(half_mask(4)), VectorPartition)
    x = torch.randn(5, 3, 2, 2)
    kept, moved = make_partition(channels).split(x)
    assert kept.shape == (5, 2, 2, 2) and moved.shape == (5, 1, 2, 2)
    with pytest.raises(ValueError, match="a channel mask needs 2\\+ channels"):
        channel_mask((1, 4, 4))
    with pytest.raises(ValueError, match=r"event_shape: expected \(C, H, W\)"):
        checkerboard_mask((4, 4))
    with pytest.raises(ValueError, match="mask: expected both True and False"):
        MaskedPartition(torch.ones(1, 1, 1, dtype=torch.bool))
