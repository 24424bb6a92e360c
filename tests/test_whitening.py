"""Whitening as a linear flow: the closed-form fit, streaming, PCA, singular data, likelihood.

The transform's generic properties (round trips, log-det against autograd, caching, state dicts,
dtypes) are rows of the shared harness in ``tests/test_transforms.py``.
"""

import io

import pytest
import torch
from sklearn.decomposition import PCA

from pyro_flowkit.flows.distribution import flow_distribution
from pyro_flowkit.transforms.whitening import Whitening


def _anisotropic(n: int, d: int, offset: float = 3.0, seed: int = 0) -> torch.Tensor:
    """Rows with a full, badly conditioned covariance and a mean away from 0 (float64)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)
    scales = torch.logspace(-2, 1, d, dtype=torch.float64)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) * scales) @ mix + offset


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


@pytest.mark.parametrize("correction", [0, 1])
def test_whitened_covariance_is_the_identity(correction):
    x = _anisotropic(400, 6)
    w = Whitening.from_data(x, eps=0, correction=correction)
    z = w.inv(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)
    eye = torch.eye(6, dtype=torch.float64)  # variances 1e-4..1e2: condition 1e6 costs digits
    torch.testing.assert_close(torch.cov(z.T, correction=correction), eye, atol=1e-9, rtol=0)
    assert w.rotation.dtype == torch.float64 and w.count == 400


def test_streamed_mean_and_covariance_equal_the_batch_ones():
    x = _anisotropic(301, 5).float()  # float32 rows: the accumulators stay float64
    w = Whitening(5)
    for chunk in torch.split(x, [2, 0, 7, 100, 192]):
        w.partial_fit(chunk)
    x64 = x.double()
    assert w.mean.dtype == torch.float64 and w.count == 301
    torch.testing.assert_close(w.mean, x64.mean(0), atol=1e-13, rtol=0)
    torch.testing.assert_close(w.covariance, torch.cov(x64.T, correction=0), atol=1e-12, rtol=0)
    batch = Whitening.from_data(x)
    assert batch.log_scale.dtype == torch.float32
    torch.testing.assert_close(w.inv(x), batch.inv(x), atol=1e-5, rtol=1e-5)


def test_refit_false_defers_the_fit_and_a_single_row_is_accumulated():
    x = _anisotropic(50, 3)
    w = Whitening(3).double()
    for row in x:
        w.partial_fit(row, refit=False)  # one row at a time: no fit possible yet
    torch.testing.assert_close(w.rotation, torch.eye(3, dtype=torch.float64))
    w.refit()
    torch.testing.assert_close(w.inv(x), Whitening.from_data(x).inv(x), atol=1e-8, rtol=0)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_project_is_sklearn_pca_whitening_up_to_signs(k):
    x = _anisotropic(200, 6)
    ours = Whitening.from_data(x, eps=0, correction=1).project(x, k)
    theirs = torch.from_numpy(PCA(k, whiten=True, svd_solver="full").fit_transform(x.numpy()))
    signs = torch.sign((ours * theirs).sum(0))
    torch.testing.assert_close(ours, theirs * signs, atol=1e-8, rtol=1e-8)
    ml = Whitening.from_data(x, eps=0, correction=0).project(x, k)  # N instead of N - 1
    torch.testing.assert_close(ml, ours * (200 / 199) ** 0.5, atol=1e-10, rtol=1e-10)


def test_project_with_all_coordinates_is_the_inverse():
    x = _anisotropic(100, 4)
    w = Whitening.from_data(x)
    torch.testing.assert_close(w.project(x), w.inv(x), atol=1e-12, rtol=0)


def test_singular_covariance_gives_a_finite_map():
    x = _anisotropic(5, 10)  # rank 4 after centring
    w = Whitening.from_data(x)
    z = w.inv(x)
    assert torch.isfinite(z).all() and torch.isfinite(w.log_scale).all()
    torch.testing.assert_close(w(z), x, atol=1e-8, rtol=1e-8)
    assert torch.isfinite(flow_distribution(w, 10).log_prob(x)).all()
    # the floor is relative to the data's scale: rescaled data give the same whitened rows
    torch.testing.assert_close(Whitening.from_data(1e3 * x).inv(1e3 * x), z, atol=1e-6, rtol=0)
    with pytest.raises(
        ValueError, match=r"eps: expected a positive variance floor .*\(rank 4 of 10, from 5 rows\)"
    ):
        Whitening.from_data(x, eps=0)


def test_data_without_variance_or_rows_are_refused():
    with pytest.raises(ValueError, match="x: expected rows that vary, got 4 rows"):
        Whitening.from_data(torch.ones(4, 3))
    with pytest.raises(ValueError, match="x: expected at least 2 rows for correction=1, got 1"):
        Whitening.from_data(torch.randn(1, 3), correction=1)
    with pytest.raises(ValueError, match="x: expected finite values, got 1 NaN"):
        Whitening(2).partial_fit(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(RuntimeError, match="no data yet"):
        Whitening(2).refit()


def test_with_a_standard_normal_base_it_is_the_maximum_likelihood_gaussian():
    x = _anisotropic(300, 4)
    w = Whitening.from_data(x, eps=0)
    mle = torch.distributions.MultivariateNormal(x.mean(0), torch.cov(x.T, correction=0))
    log_p = flow_distribution(w, 4).log_prob(x)
    torch.testing.assert_close(log_p, mle.log_prob(x), atol=1e-10, rtol=1e-10)
    log_p.mean().backward()  # a maximum: the likelihood's gradient vanishes at the fit
    assert w.shift.grad.abs().max() < 1e-9 and w.log_scale.grad.abs().max() < 1e-9


def test_whitened_cosines_are_invariant_to_invertible_linear_maps():
    x = _anisotropic(400, 5)
    g = torch.Generator().manual_seed(1)
    a_map = torch.randn(5, 5, generator=g, dtype=torch.float64)
    shift = 10 * torch.randn(5, generator=g, dtype=torch.float64)
    y = x @ a_map + shift
    a, b = slice(0, 200), slice(200, 400)
    z, z_y = Whitening.from_data(x, eps=0).inv(x), Whitening.from_data(y, eps=0).inv(y)
    torch.testing.assert_close(_cosines(z_y[a], z_y[b]), _cosines(z[a], z[b]), atol=1e-6, rtol=0)
    assert (_cosines(y[a], y[b]) - _cosines(x[a], x[b])).abs().max() > 0.1  # raw ones change


def test_state_dict_keeps_the_accumulators_for_more_streaming():
    x = _anisotropic(120, 3)
    w = Whitening.from_data(x[:70])
    buffer = io.BytesIO()
    torch.save(w.state_dict(), buffer)
    buffer.seek(0)
    loaded = Whitening(3).double()
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    loaded.partial_fit(x[70:])
    torch.testing.assert_close(loaded.covariance, torch.cov(x.T, correction=0), atol=1e-12, rtol=0)
    torch.testing.assert_close(loaded.inv(x), Whitening.from_data(x).inv(x), atol=1e-8, rtol=0)
    assert loaded.float().mean.dtype == torch.float64  # .float() moves the map, not the sums


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 0}, "dim: expected a positive integer, got 0"),
        ({"dim": 3, "eps": -1.0}, "eps: expected a non-negative finite number, got -1.0"),
        ({"dim": 3, "correction": 2}, r"correction: expected one of \(0, 1\), got 2"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Whitening(**kwargs)


def test_bad_projection_sizes_are_named():
    w = Whitening.from_data(_anisotropic(20, 3))
    for k in (0, 4):
        with pytest.raises(ValueError, match=f"k: expected .*, got {k}"):
            w.project(torch.zeros(2, 3, dtype=torch.float64), k)


def test_adam_on_minibatches_stays_near_the_maximum_with_tiny_variances():
    """Adam moves each parameter by about its learning rate per step. The shift is in whitened
    units, so that is harmless; a mean in data units (what ``loc`` of an affine layer is) jumps
    by about 100 standard deviations along an axis of standard deviation 1e-4 (tested: the mean
    negative log-likelihood then rises from -19.1 to 159 on these data)."""
    g = torch.Generator().manual_seed(0)
    rotation = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))[0]
    scales = torch.logspace(-4, 0, 6, dtype=torch.float64)
    x = (torch.randn(400, 6, generator=g, dtype=torch.float64) * scales) @ rotation + 1
    w = Whitening.from_data(x, eps=0)
    density = flow_distribution(w, 6)
    start = -density.log_prob(x).mean().item()
    optimizer = torch.optim.Adam(w.parameters(), lr=1e-2)
    for _ in range(20):
        optimizer.zero_grad()
        batch = x[torch.randint(0, 400, (16,), generator=g)]
        (-density.log_prob(batch).mean()).backward()
        optimizer.step()
    assert -density.log_prob(x).mean().item() < start + 0.05
