"""KMeans (Lloyd = hard EM): inertia against scikit-learn from the same centres, k-means++,
empty-cluster re-seeding, chunking, bad input, duplicate points and the Pyro model."""

import math

import numpy as np
import pytest
import torch
from pyro.infer import TraceEnum_ELBO
from sklearn.cluster import KMeans as SkKMeans
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

from pyro_flowkit import ConvergenceWarning, NotFittedError
from pyro_flowkit.models import KMeans, kmeans_plusplus


def clusters(n=2000, d=4, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(k, d, generator=g, dtype=torch.float64)
    return centres[torch.arange(n) % k] + torch.randn(n, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("chunk_size", [None, 333])
def test_inertia_equals_sklearn_from_the_same_centres(chunk_size, device):
    x = clusters()
    init = x[:6].clone()
    sk = SkKMeans(6, init=init.numpy(), n_init=1, algorithm="lloyd").fit(x.numpy())
    ours = KMeans(6, init=init.to(device), chunk_size=chunk_size).fit(x.to(device))
    assert ours.inertia_ == pytest.approx(sk.inertia_, rel=1e-10)
    assert ours.n_iter_ == sk.n_iter_
    np.testing.assert_allclose(ours.cluster_centers_.cpu().numpy(), sk.cluster_centers_, atol=1e-10)
    assert (ours.labels_.cpu().numpy() == sk.labels_).all()
    assert (ours.predict(x.to(device)) == ours.labels_).all()
    assert ours.score(x.to(device)) == pytest.approx(sk.score(x.numpy()), rel=1e-10)


def test_inertia_never_increases():
    x = clusters()
    km = KMeans(8, seed=0, tol=0.0).fit(x)
    inertia = -torch.tensor(km.lower_bounds_)
    assert km.converged_ and (inertia.diff() <= 1e-9 * inertia[1:]).all()
    assert km.inertia_ / len(x) <= inertia[-1] * (1 + 1e-12)


def test_kmeans_plusplus_spreads_the_seeds():
    # five tight, far-apart clusters: D^2 sampling puts one seed in each with high probability
    x = clusters(500, k=5) * 0 + 50 * torch.eye(5, 4, dtype=torch.float64)[torch.arange(500) % 5]
    x = x + 0.01 * torch.randn_like(x)
    hits = 0
    for seed in range(20):
        centres, idx = kmeans_plusplus(x, 5, torch.Generator().manual_seed(seed))
        assert torch.equal(centres, x[idx])
        hits += len(set((idx % 5).tolist())) == 5
    assert hits >= 19


def test_kmeans_plusplus_beats_random_starts():
    x = clusters(1000, k=8, seed=1)
    pp = [KMeans(8, seed=s, max_iter=1, tol=0.0) for s in range(10)]
    rnd = [KMeans(8, init="random", seed=s, max_iter=1, tol=0.0) for s in range(10)]
    pp_inertia = np.mean([km.fit(x).inertia_ for km in pp])
    rnd_inertia = np.mean([km.fit(x).inertia_ for km in rnd])
    assert pp_inertia < rnd_inertia


def test_empty_clusters_are_reseeded_at_the_farthest_points():
    x = clusters(600, k=3)
    init = torch.cat([x[:3], torch.full((2, 4), 1e4, dtype=x.dtype)])
    km = KMeans(5, init=init).fit(x)
    sk = SkKMeans(5, init=init.numpy(), n_init=1, algorithm="lloyd").fit(x.numpy())
    assert km.empty_clusters_ >= 2
    assert km.labels_.bincount(minlength=5).min() > 0
    assert km.inertia_ == pytest.approx(sk.inertia_, rel=1e-8)


def test_bad_input_is_named():
    x = clusters(50)
    with pytest.raises(ValueError, match="x: expected at least 51 samples"):
        KMeans(51).fit(x)
    with pytest.raises(ValueError, match="x: contains NaN"):
        KMeans(2).fit(torch.cat([x, torch.full((1, 4), math.nan, dtype=x.dtype)]))
    with pytest.raises(ValueError, match="init: expected shape \\(3, 4\\), got \\(3, 2\\)"):
        KMeans(3, init=torch.zeros(3, 2)).fit(x)
    with pytest.raises(
        ValueError, match="init: expected one of \\('k-means\\+\\+', 'random'\\), got 'kmeans'"
    ):
        KMeans(3, init="kmeans").fit(x)
    with pytest.raises(ValueError, match="n_clusters: expected a positive integer"):
        KMeans(0).fit(x)
    with pytest.raises(NotFittedError):
        KMeans(2).predict(x)
    with pytest.raises(ValueError, match="x: expected 4 features"):
        KMeans(2, seed=0).fit(x).predict(x[:, :3])


def test_model_is_the_equal_weight_isotropic_mixture():
    x = clusters(100)
    km = KMeans(3, seed=0).fit(x)
    elbo = -TraceEnum_ELBO(max_plate_nesting=1).loss(km.model, lambda x, scale: None, x, 0.7)
    c = km.cluster_centers_
    log_p = torch.distributions.Normal(c[:, None], 0.7).log_prob(x).sum(-1)  # (K, n)
    expected = (log_p.logsumexp(0) - math.log(3)).sum()
    assert elbo == pytest.approx(float(expected), rel=1e-10)


def test_fewer_distinct_points_than_clusters_warns_as_scikit_learn_does():
    x = torch.tensor([[0.0, 0.0], [5.0, 5.0], [0.0, 5.0]], dtype=torch.float64).repeat(10, 1)
    message = (
        "Number of distinct clusters \\(3\\) found smaller than n_clusters \\(4\\). "
        "Possibly due to duplicate points in X."
    )
    with pytest.warns(SklearnConvergenceWarning, match=message):
        km = KMeans(4, random_state=0).fit(x)
    # two centres coincide (up to the rounding of centring the data, as in scikit-learn)
    assert len(torch.unique(km.cluster_centers_.round(decimals=9), dim=0)) == 3
    assert len(km.labels_.unique()) == 3
    with pytest.warns(ConvergenceWarning, match=message):  # the library's class catches it too
        KMeans(4, init="random", random_state=0).fit(x.numpy())
    # as many distinct points as clusters: no warning (warnings are errors in the test suite)
    assert len(np.unique(KMeans(3, random_state=0).fit(x.numpy()).labels_)) == 3


def test_exact_ties_are_broken_towards_the_first_centre_as_in_scikit_learn():
    # integer points and centres on the grid: many rows are exactly as far from two centres
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (400, 2), generator=g).double()
    init = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [4.0, 4.0]], dtype=torch.float64)
    d2 = ((x[:, None] - init) ** 2).sum(-1)
    assert ((d2 == d2.min(1, keepdim=True).values).sum(1) > 1).sum() > 20  # ties at the start
    sk = SkKMeans(4, init=init.numpy(), n_init=1, algorithm="lloyd").fit(x.numpy())
    for chunk_size in (None, 64):
        ours = KMeans(4, init=init, chunk_size=chunk_size).fit(x)
        assert ours.n_iter_ == sk.n_iter_
        assert ours.inertia_ == pytest.approx(sk.inertia_, rel=1e-12)
        np.testing.assert_allclose(ours.cluster_centers_.numpy(), sk.cluster_centers_, atol=1e-12)
        assert (ours.labels_.numpy() == sk.labels_).all()


def test_many_clusters_take_the_labelled_path_and_equal_scikit_learn():
    # more than 16 clusters: the sums come from index_add_ on the labels, not a one-hot GEMM
    x = clusters(3000, d=3, k=24, seed=2)
    init = x[:24].clone()
    sk = SkKMeans(24, init=init.numpy(), n_init=1, algorithm="lloyd").fit(x.numpy())
    ours = KMeans(24, init=init, chunk_size=1000).fit(x)
    assert ours.n_iter_ == sk.n_iter_
    assert ours.inertia_ == pytest.approx(sk.inertia_, rel=1e-10)
    assert (ours.labels_.numpy() == sk.labels_).all()


@pytest.mark.parametrize("init", ["random", "k-means++"])
def test_batched_restarts_equal_separate_runs_from_the_same_starts(init):
    # four restarts run side by side (they converge at different iterations); each must end
    # where its own run ends, and the fit keeps the lowest inertia
    x = clusters(1500, k=7, seed=3)
    km = KMeans(7, init=init, n_init=4, seed=5, chunk_size=400).fit(x)
    g = torch.Generator().manual_seed(5)
    starts = [KMeans(7, init=init)._initial_centres(x, g) for _ in range(4)]
    single = [KMeans(7, init=s, chunk_size=400).fit(x) for s in starts]
    assert len({s.n_iter_ for s in single}) > 1
    best = min(single, key=lambda s: s.inertia_)
    assert km.inertia_ == pytest.approx(best.inertia_, rel=1e-12)
    assert km.n_iter_ == best.n_iter_ and km.lower_bounds_ == pytest.approx(best.lower_bounds_)
    torch.testing.assert_close(km.cluster_centers_, best.cluster_centers_)
    assert torch.equal(km.labels_, best.labels_)


def test_float32_fit_agrees_with_float64():
    x = clusters(4000, d=6, k=5, seed=4)
    init = x[:5].clone()
    km64 = KMeans(5, init=init).fit(x)
    km32 = KMeans(5, init=init.float()).fit(x.float())
    assert km32.cluster_centers_.dtype == torch.float32
    assert km32.n_iter_ == km64.n_iter_
    assert km32.inertia_ == pytest.approx(km64.inertia_, rel=1e-5)
    assert (km32.labels_ == km64.labels_).float().mean() > 0.999


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("case", ["one-hot sums", "labelled sums", "exact ties", "restarts"])
def test_chunks_shared_among_threads_give_scikit_learns_fit(two_threads, case):
    # with two torch threads a pass shares its chunks between two Python threads, each on one
    # torch thread: the fit must still be scikit-learn's, and torch's threads come back after
    from pyro_flowkit.models.kmeans import _Lloyd

    if case == "exact ties":
        x = torch.randint(0, 6, (3000, 2), generator=torch.Generator().manual_seed(0)).double()
        init = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [4.0, 4.0]], dtype=x.dtype)
    else:
        k = 24 if case == "labelled sums" else 6
        x = clusters(3000, d=3, k=k, seed=2)
        init = x[:k].clone()
    with _Lloyd(x, 250) as lloyd:
        assert torch.get_num_threads() == 1 and len(lloyd._shares()) == 2
    assert torch.get_num_threads() == 2
    k = len(init)
    if case == "restarts":
        ours = KMeans(k, n_init=3, seed=1, chunk_size=250).fit(x)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        serial = KMeans(k, n_init=3, seed=1, chunk_size=250).fit(x)
        assert ours.n_iter_ == serial.n_iter_
        assert ours.inertia_ == pytest.approx(serial.inertia_, rel=1e-12)
        assert torch.equal(ours.labels_, serial.labels_)
        return
    sk = SkKMeans(k, init=init.numpy(), n_init=1, algorithm="lloyd").fit(x.numpy())
    ours = KMeans(k, init=init, chunk_size=250).fit(x)
    assert torch.get_num_threads() == 2
    assert ours.n_iter_ == sk.n_iter_
    assert ours.inertia_ == pytest.approx(sk.inertia_, rel=1e-10)
    assert (ours.labels_.numpy() == sk.labels_).all()
