import math

import pyro.distributions as dist
import pytest
import torch

from pyro_flowkit import data, metrics


def test_digits_split_shapes_levels_and_determinism():
    train, test = data.load_digits("train"), data.load_digits("test")
    assert train.shape == (1497, 1, 8, 8) and test.shape == (300, 1, 8, 8)
    assert data.load_digits("train", flatten=True).shape == (1497, 64)
    for x in (train, test):
        assert x.dtype == torch.get_default_dtype()
        assert torch.equal(x, x.round()) and x.min() == 0 and x.max() == 16
    torch.testing.assert_close(data.load_digits("test"), test)
    # the split is a partition of sklearn's 1797 images
    from sklearn.datasets import load_digits

    all_images = torch.as_tensor(load_digits().images, dtype=train.dtype).reshape(-1, 64)
    both = torch.cat([train.reshape(-1, 64), test.reshape(-1, 64)])
    assert len(both) == len(all_images)
    key = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert key(both) == key(all_images)


def test_digits_bad_split():
    with pytest.raises(ValueError, match="split: expected 'train' or 'test', got 'valid'"):
        data.load_digits("valid")


def test_dequantize_stays_in_its_cell():
    v = data.load_digits("test", flatten=True)
    y = data.dequantize(v, 17, torch.Generator().manual_seed(0))
    assert ((y >= v / 17) & (y < (v + 1) / 17)).all()
    assert torch.floor(y * 17).eq(v).all()
    # the noise is uniform: its mean over many cells is 1/2
    assert abs((y * 17 - v).mean().item() - 0.5) < 0.01
    with pytest.raises(TypeError, match="v: expected a floating tensor"):
        data.dequantize(v.long())


def test_dequantize_never_reaches_one_in_float32():
    # (16 + u) / 17 rounds up to 1.0 in float32 for about 7 in 10 million draws (7 with seed 0)
    top = torch.full((10_000_000,), 16.0)
    y = data.dequantize(top, 17, torch.Generator().manual_seed(0))
    assert y.max().item() < 1.0 and y.dtype == torch.float32
    raw = (top + torch.rand(top.shape, generator=torch.Generator().manual_seed(0))) / 17
    assert (raw == 1.0).any()  # the case the clamp exists for does occur with this seed


@pytest.mark.parametrize("name", sorted(data.TOY_2D))
def test_toy_2d(name):
    x = data.toy_2d(name, 2000, seed=3)
    assert x.shape == (2000, 2) and torch.isfinite(x).all()
    assert x.abs().max() < 8 and x.std(0).min() > 0.3
    torch.testing.assert_close(data.toy_2d(name, 2000, seed=3), x)
    assert not torch.equal(data.toy_2d(name, 2000, seed=4), x)


def test_toy_2d_geometry():
    """Each density has its defining shape."""
    radius = {n: data.toy_2d(n, 4000).norm(dim=1) for n in ("circles", "rings")}
    assert ((radius["circles"] - 1.5).abs().lt(0.4) | (radius["circles"] - 3).abs().lt(0.4)).all()
    assert ((radius["rings"] - radius["rings"].round()).abs() < 0.4).all()
    assert set(radius["rings"].round().unique().tolist()) == {1.0, 2.0, 3.0, 4.0}
    gauss = data.toy_2d("8gaussians", 4000)
    angle = torch.atan2(gauss[:, 1], gauss[:, 0]) / (math.pi / 4)
    assert (angle - angle.round()).abs().median() < 0.15  # uniform angles: 0.25
    board = data.toy_2d("checkerboard", 4000)
    cells = torch.floor(board / 2).sum(1) % 2  # the board's black squares only
    assert cells.eq(cells[0]).all()


def test_toy_2d_bad_name():
    with pytest.raises(ValueError, match="name: expected one of"):
        data.toy_2d("spiral", 10)


def test_bits_per_dim():
    assert metrics.bits_per_dim(0.0, 64, 17).item() == pytest.approx(math.log2(17))
    assert metrics.uniform_bits_per_dim(17) == pytest.approx(4.087, abs=1e-3)
    # a density of e^{64} on [0,1]^64 gains exactly 1/ln 2 bits per dimension
    assert metrics.bits_per_dim(torch.tensor(64.0), 64, 17).item() == pytest.approx(
        math.log2(17) - 1 / math.log(2)
    )
    # an exact discrete model: a point mass per level of width 1/L has bits/dim 0 when L=1
    assert metrics.bits_per_dim(torch.zeros(3), 10, 1).abs().max() == 0
    with pytest.raises(ValueError, match="num_dims"):
        metrics.bits_per_dim(0.0, 0, 17)


def test_uniform_density_on_digits_gives_log2_levels():
    """A model that is uniform on [0,1]^D scores log2(17) on the dequantised digits."""
    y = data.dequantize(data.load_digits("test", flatten=True))
    uniform = dist.Uniform(torch.zeros(64), torch.ones(64)).to_event(1)
    bpd = metrics.bits_per_dim(uniform.log_prob(y), 64, 17)
    torch.testing.assert_close(bpd, torch.full((300,), math.log2(17)))


def test_toy_2d_any_prefix_covers_the_density():
    """Moons are generated one moon after the other; the returned order is shuffled."""
    x = data.toy_2d("moons", 2000)
    upper = x[:, 1] > 0.0  # the two moons, roughly
    assert 0.3 < upper[:200].float().mean() < 0.7
