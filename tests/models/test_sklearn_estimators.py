"""The four EM mixtures are scikit-learn estimators: scikit-learn's own estimator checks, parameters
stored by ``__init__`` and read by ``fit`` (``set_params``, ``clone``, ``GridSearchCV``),
``random_state`` as the seed, outputs in the kind of their input (tensor or NumPy), complex data
refused, and errors and warnings that both libraries' classes catch."""

import inspect
import os
import subprocess
import sys
from contextlib import nullcontext

import numpy as np
import pyro
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

import pyro_flowkit as fk
from pyro_flowkit.inference import EM
from pyro_flowkit.models import PLSA, BernoulliMixture, GaussianMixture, KMeans

# BernoulliMixture is checked with ``binarize`` set: by default it needs 0/1 data, which
# scikit-learn's checks (continuous data) cannot give it; test_default_bernoulli_mixture_* below
# checks that the default refuses other data clearly.
ESTIMATORS = [GaussianMixture(), KMeans(), BernoulliMixture(binarize=0.5), PLSA()]

# Checks that cannot apply to an estimator, with the reason, through scikit-learn's
# expected-failure mechanism (strict: a listed check that passes fails the run). None is needed:
# PLSA's non-negative counts come from its ``positive_only`` tag, BernoulliMixture's 0/1 data from
# ``binarize``. check_array_api_input is skipped by scikit-learn itself unless SCIPY_ARRAY_API=1
# was set before SciPy was imported; test_array_api_check_in_a_scipy_array_api_process runs it.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {}


def expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(
    ESTIMATORS, expected_failed_checks=expected_failed_checks, xfail_strict=True
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_array_api_check_in_a_scipy_array_api_process():
    code = (
        "from sklearn.utils.estimator_checks import check_array_api_input\n"
        "from pyro_flowkit.models import PLSA, BernoulliMixture, GaussianMixture, KMeans\n"
        "for est in [GaussianMixture(), KMeans(), BernoulliMixture(binarize=0.5), PLSA()]:\n"
        "    check_array_api_input(type(est).__name__, est, array_namespace='numpy',\n"
        "                          expect_only_array_outputs=False)\n"
        "print('checked')\n"
    )
    env = dict(os.environ, SCIPY_ARRAY_API="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "checked"


# ------------------------------------------------------------------------------------------------
# data and estimators of the API tests

CLASSES = [GaussianMixture, KMeans, BernoulliMixture, PLSA]
COUNT = {GaussianMixture: "n_components", KMeans: "n_clusters", BernoulliMixture: "n_components",
         PLSA: "n_topics"}  # fmt: skip
FITTED_ARRAYS = {
    GaussianMixture: ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"],
    KMeans: ["cluster_centers_", "labels_"],
    BernoulliMixture: ["weights_", "probs_"],
    PLSA: ["p_w_given_z_", "p_z_given_d_"],
}
METHODS = {
    GaussianMixture: ["predict", "predict_proba", "score_samples"],
    KMeans: ["predict", "transform"],
    BernoulliMixture: ["predict", "predict_proba", "score_samples"],
    PLSA: ["transform"],
}


def data(cls, n=90, seed=0):
    """Three blobs (GaussianMixture, KMeans), two binary patterns (BernoulliMixture) or Poisson
    counts (PLSA), as a float64 NumPy array."""
    rng = np.random.default_rng(seed)
    if cls is BernoulliMixture:
        x = (rng.random((n, 6)) < np.array([0.9, 0.9, 0.9, 0.1, 0.1, 0.1])).astype(float)
        x[n // 2 :] = 1 - x[n // 2 :]
        return x
    if cls is PLSA:
        return rng.poisson(2.0, size=(n, 8)).astype(float)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    return centres[np.arange(n) % 3] + rng.normal(size=(n, 2))


def make(cls, **params):
    params = {COUNT[cls]: 2 if cls is BernoulliMixture else 3, "random_state": 0, **params}
    return cls(**params)


def fit_without_converging(est, x):
    """EM mixtures warn when they stop at max_iter; K-means, like scikit-learn's, does not."""
    expected = nullcontext() if isinstance(est, KMeans) else pytest.warns(SklearnConvergenceWarning)
    with expected:
        return est.fit(x)


# ------------------------------------------------------------------------------------------------
# parameters: stored by __init__, read and checked by fit


@pytest.mark.parametrize("cls", CLASSES)
def test_init_only_stores_its_arguments(cls):
    names = [p for p in inspect.signature(cls).parameters]
    assert {"tol", "max_iter", "n_init", "chunk_size", "seed", "random_state"} <= set(names)
    junk = {name: -1 for name in names}
    est = cls(**junk)  # no check before fit
    assert est.get_params() == junk
    assert not [key for key in vars(est) if key not in names]
    copy = clone(est)
    assert copy.get_params() == junk and copy is not est


@pytest.mark.parametrize("cls", CLASSES)
def test_parameters_changed_after_construction_are_used(cls, monkeypatch):
    x = np.random.default_rng(1).random((300, 6 if cls is BernoulliMixture else 2))
    if cls is BernoulliMixture:
        x = (x < 0.5).astype(float)
    est = make(cls, max_iter=100)
    est.max_iter, est.tol = 2, 0.0  # as attributes
    assert fit_without_converging(est, x).n_iter_ == 2
    searched = clone(make(cls)).set_params(max_iter=3, tol=0.0)  # as GridSearchCV does
    assert fit_without_converging(searched, x).n_iter_ == 3
    # n_init: count the EM runs (a K-means start of a mixture is one more run per start)
    runs = []
    run = EM.run
    monkeypatch.setattr(EM, "run", lambda self, *args: runs.append(1) or run(self, *args))
    make(cls, tol=1e-2).fit(x)
    one = len(runs)
    runs.clear()
    make(cls, tol=1e-2).set_params(n_init=3).fit(x)
    assert len(runs) == 3 * one


INVALID = [
    (GaussianMixture, "n_components", 0, "n_components: expected a positive integer, got 0"),
    (GaussianMixture, "covariance_type", "banded", "covariance_type: expected one of"),
    (GaussianMixture, "reg_covar", -1.0, "reg_covar: expected a non-negative finite number"),
    (GaussianMixture, "init_params", "spectral", "init_params: expected one of"),
    (GaussianMixture, "max_iter", 0, "max_iter: expected a positive integer, got 0"),
    (GaussianMixture, "n_init", 1.5, "n_init: expected a positive integer, got 1.5"),
    (GaussianMixture, "tol", -np.inf, "tol: expected a non-negative finite number"),
    (GaussianMixture, "chunk_size", 0, "chunk_size: expected a positive integer, got 0"),
    (GaussianMixture, "random_state", -1, "random_state: expected a non-negative integer"),
    (KMeans, "n_clusters", 0, "n_clusters: expected a positive integer, got 0"),
    (KMeans, "init", "kmeans", "init: expected one of \\('k-means\\+\\+', 'random'\\)"),
    (KMeans, "init", np.zeros((2, 2)), "init: expected shape \\(3, 2\\), got \\(2, 2\\)"),
    (KMeans, "chunk_size", 0, "chunk_size: expected a positive integer, got 0"),
    (BernoulliMixture, "min_prob", 0.7, "min_prob: expected a number in \\(0, 0.5\\)"),
    (BernoulliMixture, "binarize", np.nan, "binarize: expected a finite number"),
    (BernoulliMixture, "init_params", "k-means++", "init_params: expected one of"),
    (PLSA, "n_topics", 0, "n_topics: expected a positive integer, got 0"),
    (PLSA, "max_iter", None, "max_iter: expected a positive integer, got None"),
]


@pytest.mark.parametrize(("cls", "name", "value", "message"), INVALID)
def test_parameters_are_checked_by_fit(cls, name, value, message):
    est = make(cls).set_params(**{name: value})  # no check before fit
    assert est.get_params()[name] is value
    with pytest.raises(ValueError, match=message):
        est.fit(data(cls))


def test_grid_search_clones_and_sets_parameters():
    x = data(GaussianMixture, 150)
    grid = {"n_components": [1, 2, 3], "covariance_type": ["spherical", "full"]}
    search = GridSearchCV(GaussianMixture(random_state=0), grid, cv=3).fit(x)
    assert search.best_params_["n_components"] == 3
    assert search.best_estimator_.means_.shape == (3, 2)


def test_pipelines_fit_transform_and_predict():
    x = data(KMeans)
    labels = make_pipeline(StandardScaler(), KMeans(3, random_state=0)).fit_predict(x)
    assert isinstance(labels, np.ndarray) and sorted(np.bincount(labels)) == [30, 30, 30]
    rng = np.random.default_rng(0)
    topics = np.array([[0.3, 0.3, 0.3, 0.05, 0.05, 0.0], [0.0, 0.05, 0.05, 0.3, 0.3, 0.3]])
    y = np.arange(120) % 2
    counts = np.stack([rng.multinomial(30, topics[label]) for label in y]).astype(float)
    pipe = make_pipeline(PLSA(2, random_state=0), LogisticRegression()).fit(counts, y)
    assert pipe.score(counts, y) > 0.95


# ------------------------------------------------------------------------------------------------
# random_state and seed


@pytest.mark.parametrize("cls", CLASSES)
def test_random_state_is_the_seed(cls):
    x = data(cls)
    by_state = make(cls, random_state=7).fit(x)
    by_seed = make(cls, random_state=None, seed=7).fit(x)
    for name in FITTED_ARRAYS[cls]:
        np.testing.assert_array_equal(getattr(by_state, name), getattr(by_seed, name))
    # a NumPy RandomState draws the seed: fresh ones of one seed agree
    a = make(cls, random_state=np.random.RandomState(3)).fit(x)
    b = make(cls, random_state=np.random.RandomState(3)).fit(x)
    np.testing.assert_array_equal(
        getattr(a, FITTED_ARRAYS[cls][0]), getattr(b, FITTED_ARRAYS[cls][0])
    )
    # neither: torch's global RNG, so pyro.set_rng_seed makes fits reproducible
    unseeded = make(cls, random_state=None)
    pyro.set_rng_seed(5)
    first = getattr(unseeded.fit(x), FITTED_ARRAYS[cls][0]).copy()
    pyro.set_rng_seed(5)
    np.testing.assert_array_equal(getattr(unseeded.fit(x), FITTED_ARRAYS[cls][0]), first)
    with pytest.raises(ValueError, match="seed, random_state: expected at most one of them"):
        make(cls, random_state=1, seed=1).fit(x)


def test_a_random_state_object_gives_new_draws_at_every_sample():
    gmm = GaussianMixture(2, random_state=np.random.RandomState(0)).fit(data(GaussianMixture))
    first, second = gmm.sample(5)[0], gmm.sample(5)[0]
    assert not np.array_equal(first, second)
    fixed = clone(gmm).set_params(random_state=0).fit(data(GaussianMixture))
    np.testing.assert_array_equal(fixed.sample(5)[0], fixed.sample(5)[0])


# ------------------------------------------------------------------------------------------------
# outputs follow the kind of their input


@pytest.mark.parametrize("cls", CLASSES)
def test_outputs_follow_the_kind_of_the_input(cls, device):
    x = data(cls)
    xt = torch.as_tensor(x, device=device)
    on_numpy, on_tensor = make(cls).fit(x), make(cls).fit(xt)
    assert on_numpy.n_features_in_ == on_tensor.n_features_in_ == x.shape[1]
    for name in FITTED_ARRAYS[cls]:
        value = getattr(on_numpy, name)
        assert isinstance(value, np.ndarray), name
        assert getattr(on_tensor, name).device == xt.device
        np.testing.assert_allclose(value, getattr(on_tensor, name).cpu().numpy(), rtol=1e-10)
    for method in METHODS[cls]:
        from_numpy = getattr(on_numpy, method)(x)
        from_tensor = getattr(on_numpy, method)(xt)
        assert isinstance(from_numpy, np.ndarray) and isinstance(from_tensor, torch.Tensor)
        assert from_tensor.device == xt.device
        np.testing.assert_allclose(from_numpy, from_tensor.cpu().numpy(), rtol=1e-10, atol=1e-12)
        assert isinstance(getattr(on_numpy, method)(x.tolist()), np.ndarray)
        assert isinstance(getattr(on_tensor, method)(x), np.ndarray)
        if from_tensor.is_floating_point():  # tensors keep their floating dtype
            assert getattr(on_tensor, method)(xt.float()).dtype == torch.float32
            assert getattr(on_numpy, method)(x.astype(np.float32)).dtype == np.float32
    fit_method = "fit_transform" if cls is PLSA else "fit_predict"
    assert isinstance(getattr(make(cls), fit_method)(x), np.ndarray)
    assert isinstance(getattr(make(cls), fit_method)(xt), torch.Tensor)
    assert isinstance(on_numpy.score(x), float) and isinstance(on_tensor.score(xt), float)
    if hasattr(on_numpy, "sample"):
        draws, labels = on_numpy.sample(4)
        assert isinstance(draws, np.ndarray) and isinstance(labels, np.ndarray)
        draws, labels = on_tensor.sample(4)
        assert isinstance(draws, torch.Tensor) and draws.device == xt.device


def test_data_frames_record_feature_names():
    pd = pytest.importorskip("pandas")
    x = data(KMeans)
    km = KMeans(3, random_state=0).fit(pd.DataFrame(x, columns=["a", "b"]))
    assert list(km.feature_names_in_) == ["a", "b"]
    assert list(km.get_feature_names_out()) == ["kmeans0", "kmeans1", "kmeans2"]
    assert not hasattr(km.fit(torch.as_tensor(x)), "feature_names_in_")


# ------------------------------------------------------------------------------------------------
# bad input, unfitted use


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_complex_data_is_refused(cls, kind):
    x = data(cls)
    z = x + 0.5j
    z = torch.as_tensor(z) if kind == "tensor" else z
    with pytest.raises(ValueError, match="Complex data not supported"):
        make(cls).fit(z)
    fitted = make(cls).fit(x)
    with pytest.raises(ValueError, match="Complex data not supported"):
        getattr(fitted, METHODS[cls][0])(z)


@pytest.mark.parametrize("cls", CLASSES)
def test_unfitted_use_raises_both_libraries_not_fitted_error(cls):
    est, x = make(cls), data(cls)
    with pytest.raises(SklearnNotFittedError, match="not fitted yet; call fit"):
        getattr(est, METHODS[cls][0])(x)
    with pytest.raises(fk.NotFittedError, match="not fitted yet; call fit"):
        est.score(x)
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(est)
    check_is_fitted(est.fit(x))


def test_not_converging_warns_both_libraries_convergence_warning():
    x = data(GaussianMixture)
    with pytest.warns(SklearnConvergenceWarning, match="max_iter=1"):
        GaussianMixture(3, max_iter=1, random_state=0).fit(x)
    with pytest.warns(fk.ConvergenceWarning, match="max_iter=1"):
        GaussianMixture(3, max_iter=1, random_state=0).fit(x)


def test_default_bernoulli_mixture_refuses_data_that_is_not_binary():
    x = data(GaussianMixture)
    with pytest.raises(ValueError, match="x: expected binary values \\(0 or 1\\)"):
        BernoulliMixture().fit(x)
    BernoulliMixture(binarize=0.0).fit(x)
