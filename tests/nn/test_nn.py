import pytest
import torch

from pyro_flowkit.nn import MLP, ConvNet, keep_mask, quantized_rate


def test_keep_mask_rate_and_independence(device):
    mask = keep_mask((400, 1000), 0.2, device, torch.float64)
    assert mask.dtype == torch.float64 and mask.device.type == device.type
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    dropped = 1 - mask.mean().item()
    assert abs(dropped - 51 / 256) < 0.005 and quantized_rate(0.2) == 51 / 256
    # neighbours (bytes of one random word, and of consecutive words) are independent
    both = ((mask[:, :-1] == 0) & (mask[:, 1:] == 0)).double().mean().item()
    assert abs(both - (51 / 256) ** 2) < 0.004
    assert keep_mask((3, 5, 7), 0.5).shape == (3, 5, 7)  # sizes that are not multiples of 8
    torch.manual_seed(3)
    first = keep_mask((64,), 0.5)
    torch.manual_seed(3)
    assert torch.equal(keep_mask((64,), 0.5), first)


def test_mlp_zero_init_context_broadcast_and_errors():
    net = MLP(3, 4, (8, 8), context_features=2)
    x, c = torch.randn(5, 7, 3), torch.randn(7, 2)
    assert torch.equal(net(x, c), torch.zeros(5, 7, 4))
    torch.nn.init.normal_(net.layers[-1].weight)
    out = net(x, c)
    for i in range(5):
        torch.testing.assert_close(out[i], net(x[i], c))
    with pytest.raises(ValueError, match="context: this network expects a context of 2"):
        net(x)
    with pytest.raises(ValueError, match="dropout: expected a probability"):
        MLP(3, 4, dropout=1.0)
    # without hidden layers the context map is zeroed too, so the output starts at zero
    assert torch.equal(MLP(3, 4, (), context_features=2)(x, c), torch.zeros(5, 7, 4))


def test_mlp_dropout_in_training_and_its_mean_in_evaluation():
    """Training drops hidden units; evaluation uses their expectation, (1 - p) times the units."""
    net = MLP(3, 2, (50,), dropout=0.25)
    torch.nn.init.normal_(net.layers[-1].weight)
    x = torch.randn(4, 3)
    assert not torch.equal(net(x), net(x))
    with torch.no_grad():
        draws = net(x.expand(40000, 4, 3))  # one dropout mask per draw and row
    mean_of_training = draws.mean(0)
    standard_error = draws.std(0) / 200
    net.eval()
    assert torch.equal(net(x), net(x))
    assert ((mean_of_training - net(x)).abs() < 4 * standard_error).all()


def test_mask_pool_windows_are_bernoulli_and_vary(device):
    from pyro_flowkit.nn import MaskPool

    pool = MaskPool(0.25)
    masks = torch.stack(
        [pool.take(torch.Size([64, 32]), device, torch.float32) for _ in range(400)]
    )
    assert masks.device.type == device.type and set(masks.unique().tolist()) == {0.0, 1.0}
    assert abs(1 - masks.mean().item() - 0.25) < 0.01
    # different calls give different masks: per-entry drop rates across calls are all near p
    per_entry = 1 - masks.mean(0)
    assert per_entry.min() > 0.1 and per_entry.max() < 0.42
    assert len({tuple(m.flatten()[:64].tolist()) for m in masks}) > 390
    big = pool.take(torch.Size([1000, 100]), device, torch.float32)  # larger than the pool: redrawn
    assert big.shape == (1000, 100) and pool.pool.numel() >= 8 * 100_000


def _perturbed_convnet(*args, **kwargs) -> ConvNet:
    net = ConvNet(*args, **kwargs).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("hidden", [8, 0])
def test_convnet_context_is_the_tiled_input_channels(hidden):
    """The context's share equals concatenating the tiled context onto the input."""
    net = _perturbed_convnet(2, 3, hidden, context_features=4)
    x = torch.randn(5, 2, 4, 6, dtype=torch.float64)
    c = torch.randn(5, 4, dtype=torch.float64)
    tiled = torch.cat([x, c[:, :, None, None].expand(-1, -1, 4, 6)], dim=1)
    first = net.convs[0]
    weight = torch.cat([first.weight, net.context_conv.weight], dim=1)
    h = torch.nn.functional.conv2d(tiled, weight, first.bias, padding=1)
    for conv in net.convs[1:]:
        h = conv(torch.relu(h))
    torch.testing.assert_close(net(x, c), h)


def test_convnet_zero_init_broadcasting_and_errors():
    net = ConvNet(2, 4, 8, context_features=3)
    x, c = torch.randn(5, 7, 2, 4, 4), torch.randn(7, 3)
    assert torch.equal(net(x, c), torch.zeros(5, 7, 4, 4, 4))
    net = _perturbed_convnet(2, 4, 8, context_features=3)
    x, c = x.double(), c.double()
    out = net(x, c)
    assert out.shape == (5, 7, 4, 4, 4)
    for i in range(5):
        torch.testing.assert_close(out[i], net(x[i], c))
    torch.testing.assert_close(out[2, 3], net(x[2, 3], c[3]))
    with pytest.raises(ValueError, match=r"x: expected a tensor of shape \(\.\.\., 2, H, W\)"):
        net(torch.randn(3, 4, 4, dtype=torch.float64), c)
    with pytest.raises(ValueError, match="context: expected a tensor whose last dimension is 3"):
        net(x)
    with pytest.raises(ValueError, match="hidden_channels: expected a non-negative integer"):
        ConvNet(2, 4, -1)


def test_convnet_dropout_in_training_and_scaling_in_evaluation():
    net = _perturbed_convnet(1, 2, 16, dropout=0.5)
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64).expand(8, -1, -1, -1)
    train_out = net(x)
    assert not torch.allclose(train_out[0], train_out[1])  # a fresh mask per sample
    net.eval()
    h = x[:1]
    for conv in net.convs[:-1]:
        h = torch.relu(conv(h)) * (1 - net.dropout)
    torch.testing.assert_close(net(x), net.convs[-1](h).expand(8, -1, -1, -1))
