"""GaussianMixture: EM against scikit-learn from identical initial parameters, the API, bad input,
and the Pyro model fit by SVI on the same objective."""

import math
import warnings

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from pyro_flowkit import NotFittedError
from pyro_flowkit.models import GaussianMixture

COV_TYPES = ["full", "tied", "diag", "spherical"]


def blobs(n=600, d=3, k=3, seed=0):
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(n // k, d)) @ rng.normal(size=(d, d)) + 4 * rng.normal(size=d)
             for _ in range(k)]  # fmt: skip
    return np.concatenate(parts)


def sklearn_start(x, k, covariance_type):
    """Initial parameters from one sklearn EM step (any fixed values would do)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SkGaussianMixture(k, covariance_type=covariance_type, max_iter=1, random_state=0)
        sk.fit(x)
    return {"weights_init": sk.weights_, "means_init": sk.means_,
            "precisions_init": sk.precisions_}  # fmt: skip


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_matches_sklearn_from_the_same_start(covariance_type, device):
    x = blobs()
    start = sklearn_start(x, 3, covariance_type)
    sk = SkGaussianMixture(3, covariance_type=covariance_type, tol=1e-8, max_iter=300, **start)
    sk.fit(x)
    inits = {k: torch.as_tensor(v, device=device) for k, v in start.items()}
    ours = GaussianMixture(3, covariance_type=covariance_type, tol=1e-8, max_iter=300, **inits)
    ours.fit(torch.as_tensor(x, device=device))
    assert ours.n_iter_ == sk.n_iter_ and ours.converged_ and sk.converged_
    assert math.isclose(ours.lower_bound_, sk.lower_bound_, rel_tol=1e-6)
    for name in ["weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"]:
        np.testing.assert_allclose(getattr(ours, name).cpu().numpy(), getattr(sk, name),
                                   rtol=1e-6, atol=1e-8, err_msg=name)  # fmt: skip
    xt = torch.as_tensor(x, device=device)
    np.testing.assert_allclose(ours.score_samples(xt).cpu().numpy(), sk.score_samples(x), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(xt).cpu().numpy(), sk.predict_proba(x), atol=1e-8)
    assert (ours.predict(xt).cpu().numpy() == sk.predict(x)).all()
    assert math.isclose(ours.bic(xt), sk.bic(x), rel_tol=1e-8)
    assert math.isclose(ours.aic(xt), sk.aic(x), rel_tol=1e-8)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_start_climbs_monotonically(covariance_type, init_params):
    x = torch.as_tensor(blobs(300))
    gmm = GaussianMixture(3, covariance_type=covariance_type, init_params=init_params, seed=1,
                          tol=1e-6, max_iter=500, n_init=2).fit(x)  # fmt: skip
    bounds = torch.tensor(gmm.lower_bounds_)
    assert gmm.converged_ and len(bounds) == gmm.n_iter_
    assert (bounds.diff() >= -1e-12 * bounds.abs()[1:]).all()
    assert gmm.monotone_violations_ == []
    assert gmm.weights_.sum().item() == pytest.approx(1.0, abs=1e-12)
    # the fitted model scores the data as its last E-step did, up to the last tiny change
    assert gmm.score(x) == pytest.approx(gmm.lower_bound_, abs=1e-5)


def test_n_init_keeps_the_best_start():
    x = torch.as_tensor(blobs(300, k=3))
    single = [GaussianMixture(3, init_params="random_from_data", seed=s).fit(x).lower_bound_
              for s in range(4)]  # fmt: skip
    best = GaussianMixture(3, init_params="random_from_data", n_init=4, seed=0).fit(x)
    assert best.lower_bound_ >= min(single) - 1e-9


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_chunked_em_equals_one_chunk(covariance_type):
    x = torch.as_tensor(blobs(600))
    kw = {"covariance_type": covariance_type, "seed": 0, "tol": 1e-8, "max_iter": 500}
    whole = GaussianMixture(3, chunk_size=len(x), **kw).fit(x)
    chunked = GaussianMixture(3, chunk_size=97, **kw).fit(x)
    assert chunked.n_iter_ == whole.n_iter_
    torch.testing.assert_close(chunked.means_, whole.means_, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(chunked.covariances_, whole.covariances_, rtol=1e-10, atol=1e-10)
    assert chunked.lower_bound_ == pytest.approx(whole.lower_bound_, rel=1e-12)


def test_float32_follows_the_data(device):
    x = torch.as_tensor(blobs(600), dtype=torch.float32, device=device)
    gmm32 = GaussianMixture(3, seed=0).fit(x)
    gmm64 = GaussianMixture(3, seed=0).fit(x.double())
    for name in ["weights_", "means_", "covariances_", "precisions_cholesky_"]:
        value = getattr(gmm32, name)
        assert value.dtype == torch.float32 and value.device == x.device
    assert gmm32.predict(x).device == x.device
    assert gmm32.lower_bound_ == pytest.approx(gmm64.lower_bound_, rel=1e-4)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_sample_moments_match_the_mixture(covariance_type):
    x = torch.as_tensor(blobs(600))
    gmm = GaussianMixture(3, covariance_type=covariance_type, seed=0).fit(x)
    draws, labels = gmm.sample(40000)
    assert draws.shape == (40000, 3) and (labels.diff() >= 0).all()
    mean = (gmm.weights_[:, None] * gmm.means_).sum(0)
    cov = _mixture_covariance(gmm, covariance_type)
    se = (cov.diagonal() / len(draws)).sqrt()
    assert ((draws.mean(0) - mean).abs() < 5 * se).all()
    torch.testing.assert_close(draws.T.cov(), cov, rtol=0.05, atol=0.05 * cov.diagonal().max())


def _mixture_covariance(gmm, covariance_type):
    d = gmm.means_.shape[1]
    cov = gmm.covariances_
    if covariance_type == "tied":
        cov = cov.expand(3, d, d)
    elif covariance_type == "diag":
        cov = torch.diag_embed(cov)
    elif covariance_type == "spherical":
        cov = cov[:, None, None] * torch.eye(d, dtype=cov.dtype)
    mean = (gmm.weights_[:, None] * gmm.means_).sum(0)
    centred = gmm.means_ - mean
    within = (gmm.weights_[:, None, None] * cov).sum(0)
    return within + (gmm.weights_[:, None, None] * centred[:, :, None] * centred[:, None]).sum(0)


def test_bad_input_is_named():
    x = torch.as_tensor(blobs(60))
    with pytest.raises(ValueError, match="x: contains NaN or infinite"):
        GaussianMixture(2).fit(torch.cat([x, torch.full((1, 3), math.nan, dtype=x.dtype)]))
    with pytest.raises(ValueError, match="x: contains NaN or infinite"):
        GaussianMixture(2).fit(torch.cat([x, torch.full((1, 3), math.inf, dtype=x.dtype)]))
    with pytest.raises(ValueError, match="x: expected at least 61 samples, got 60"):
        GaussianMixture(61).fit(x)
    with pytest.raises(ValueError, match="x: expected a 2-D tensor"):
        GaussianMixture(2).fit(x[0])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        GaussianMixture(2).predict(x)
    gmm = GaussianMixture(2, seed=0).fit(x)
    with pytest.raises(ValueError, match="x: expected 3 features \\(as in fit\\), got shape"):
        gmm.predict(x[:, :2])
    with pytest.raises(ValueError, match="covariance_type: expected one of"):
        GaussianMixture(2, covariance_type="banded").fit(x)
    with pytest.raises(ValueError, match="init_params"):
        GaussianMixture(2, init_params="spectral").fit(x)
    with pytest.raises(ValueError, match="n_components: expected a positive integer, got 0"):
        GaussianMixture(0).fit(x)
    with pytest.raises(ValueError, match="means_init: expected shape \\(2, 3\\), got \\(3, 3\\)"):
        GaussianMixture(2, means_init=torch.zeros(3, 3)).fit(x)
    with pytest.raises(ValueError, match="weights_init: expected non-negative weights summing"):
        GaussianMixture(2, weights_init=torch.tensor([0.7, 0.7])).fit(x)
    with pytest.raises(ValueError, match="precisions_init: expected symmetric positive-definite"):
        GaussianMixture(2, precisions_init=-torch.eye(3).expand(2, 3, 3)).fit(x)


def test_not_fitted_error_follows_sklearns_convention():
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


def test_collapsed_data_is_regularised_not_a_crash():
    # every point repeated: the covariance of a point mass is reg_covar * I
    x = torch.tensor([[0.0, 0.0], [5.0, 5.0]], dtype=torch.float64).repeat_interleave(50, 0)
    gmm = GaussianMixture(2, seed=0, reg_covar=1e-3).fit(x)
    torch.testing.assert_close(gmm.covariances_, 1e-3 * torch.eye(2, dtype=x.dtype).expand(2, 2, 2))
    with pytest.raises(ValueError, match="ill-defined empirical covariance.*reg_covar"):
        GaussianMixture(2, seed=0, reg_covar=0.0).fit(x)


def test_an_empty_component_is_reported():
    x = torch.as_tensor(blobs(300, k=3))
    far = torch.tensor([[1e3, 1e3, 1e3]], dtype=x.dtype)
    means = torch.cat([x[[0, 150, 299]], far])
    with pytest.warns(RuntimeWarning, match="components \\[3\\] have no responsibility left"):
        gmm = GaussianMixture(4, means_init=means, max_iter=20, tol=1e-6).fit(x)
    assert gmm.empty_components_ == [3]
    assert torch.isfinite(gmm.covariances_).all() and gmm.weights_[3] < 1e-10
    torch.testing.assert_close(gmm.means_[3], far[0])


def test_not_converging_warns():
    from pyro_flowkit import ConvergenceWarning

    x = torch.as_tensor(blobs(300))
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        gmm = GaussianMixture(3, max_iter=2, tol=0.0, seed=0).fit(x)
    assert not gmm.converged_ and gmm.n_iter_ == 2


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_model_log_likelihood_is_the_em_objective(covariance_type):
    x = torch.as_tensor(blobs(120))
    gmm = GaussianMixture(3, covariance_type=covariance_type, seed=0).fit(x)
    elbo = -TraceEnum_ELBO(max_plate_nesting=1).loss(gmm.model, lambda x: None, x)
    assert elbo == pytest.approx(gmm.score(x) * len(x), rel=1e-10)
    names = set(pyro.get_param_store().keys())
    scale = "gmm.scale_tril" if covariance_type in ("full", "tied") else "gmm.scales"
    assert names == {"gmm.weights", "gmm.means", scale}
    before = gmm.covariances_.clone()
    torch.testing.assert_close(gmm.load_param_store().covariances_, before)


def test_svi_reaches_the_em_log_likelihood():
    """Side by side from one K-means start: EM converges in 7 iterations; Adam (lr 0.05) on the
    same objective needs 446 steps to come within 0.01 nats per sample and 954 within 0.001
    (``benchmarks/em_svi.py``)."""
    x = torch.as_tensor(blobs(300))
    start = GaussianMixture(3, seed=0, init_params="kmeans")
    start._set_params(start._initial_params(x, start._generator()))
    em = GaussianMixture(3, seed=0, init_params="kmeans", tol=1e-8, max_iter=500).fit(x)
    svi_gmm = GaussianMixture(3, name="svi")
    svi_gmm.__dict__.update({k: v for k, v in start.__dict__.items() if k.endswith("_")})
    svi = SVI(svi_gmm.model, lambda x: None, pyro.optim.Adam({"lr": 0.05}),
              TraceEnum_ELBO(max_plate_nesting=1))  # fmt: skip
    losses = [svi.step(x) / len(x) for _ in range(STEPS)]
    svi_ll = svi_gmm.load_param_store().score(x)
    assert em.n_iter_ < 20
    assert svi_ll == pytest.approx(em.lower_bound_, abs=0.01)
    assert svi_ll <= em.score(x) + 1e-6
    # and not after a tenth of the steps
    assert -losses[STEPS // 10] < em.lower_bound_ - 0.01


STEPS = 700
