"""The Python API: ``fastkm.kmeans`` and ``fastkm.KMeans`` against NumPy and their contract."""

import numpy as np
import pytest

import fastkm
from fastkm import IterationInfo, KMeans, kmeans
from fastkm._isa import core
from fastkm._lloyd import auto_algorithm
from tests.conftest import assert_same_fit, blobs, reference_lloyd


def blobs(n, d, k, seed=0, dtype=np.float64):
    """n points around k well separated centres in d dimensions."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(k, d))
    X = centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))
    return X.astype(dtype)


def sq_distances(X, C):
    X, C = np.asarray(X, np.float64), np.asarray(C, np.float64)
    return ((X[:, None, :] - C[None, :, :]) ** 2).sum(-1)


# -- equal to the NumPy reference Lloyd -------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("n, d, k", [(500, 1, 3), (600, 2, 5), (700, 3, 8), (400, 5, 4),
                                     (300, 17, 6), (250, 64, 5)])
def test_matches_reference_lloyd(n, d, k, dtype, rtol, weighted):
    rng = np.random.default_rng(n + d + k)
    X = rng.normal(size=(n, d)).astype(dtype)
    w = rng.uniform(0.2, 3, size=n).astype(dtype) if weighted else None
    init = X[rng.choice(n, size=k, replace=False)]
    n_iter = 5
    result = kmeans(X, k, sample_weight=w, init=init, max_iter=n_iter, tol=0)
    ref_centers, _ = reference_lloyd(X, init, n_iter, sample_weight=w)
    assert result.centers.dtype == dtype
    np.testing.assert_allclose(result.centers, ref_centers, rtol=rtol, atol=rtol)
    # An early (strict) stop is a fixed point, where the reference stays too.
    assert result.n_iter <= n_iter
    ref_labels = sq_distances(X, ref_centers).argmin(1)
    # float32 distances may break near-ties differently from float64.
    assert (result.labels != ref_labels).mean() <= (1e-2 if dtype == np.float32 else 0)


def test_matches_reference_lloyd_one_iteration_at_a_time():
    """Each callback step equals the reference after the same number of updates."""
    X = blobs(400, 3, 5, seed=1)
    init = X[:5].copy()
    steps = []
    kmeans(X, 5, init=init, max_iter=6, tol=0, callback=steps.append)
    for info in steps:
        ref_centers, ref_labels = reference_lloyd(X, init, info.iteration)
        np.testing.assert_allclose(info.centers, ref_centers, rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(info.labels, ref_labels)


# -- sample_weight ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_integer_weights_equal_repeated_rows(dtype):
    X = blobs(300, 3, 4, seed=2, dtype=dtype)
    w = np.random.default_rng(2).integers(1, 4, size=len(X))
    init = X[[0, 50, 100, 150]].copy()
    weighted = kmeans(X, 4, sample_weight=w, init=init, max_iter=20, tol=0)
    repeated = kmeans(np.repeat(X, w, axis=0), 4, init=init, max_iter=20, tol=0)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(weighted.centers, repeated.centers, rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(np.repeat(weighted.labels, w), repeated.labels)
    assert weighted.inertia == pytest.approx(repeated.inertia, rel=rtol)
    assert weighted.n_iter == repeated.n_iter


def test_zero_weights_equal_removed_rows():
    X = blobs(300, 2, 3, seed=3)
    w = np.ones(len(X))
    w[::3] = 0
    init = X[[1, 2, 4]].copy()
    weighted = KMeans(3, init=init, max_iter=20, tol=0).fit(X, sample_weight=w)
    kept = KMeans(3, init=init, max_iter=20, tol=0).fit(X[w > 0])
    np.testing.assert_allclose(weighted.cluster_centers_, kept.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(weighted.labels_[w > 0], kept.labels_)
    assert weighted.inertia_ == pytest.approx(kept.inertia_, rel=1e-12)


def test_zero_weight_rows_are_never_chosen_as_initial_centres():
    from fastkm._init import kmeans_plusplus, random_rows

    X = blobs(2000, 2, 3, seed=4)
    w = np.zeros(len(X))
    w[::100] = 1
    for seed in range(5):
        _, indices = kmeans_plusplus(X, 5, w, np.random.RandomState(seed), 2)
        assert (w[indices] > 0).all()
        _, indices = random_rows(X, 5, w, np.random.RandomState(seed))
        assert (w[indices] > 0).all()


# -- fitted attributes and methods ------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_methods_agree_with_fitted_attributes(dtype):
    X = blobs(500, 4, 5, seed=5, dtype=dtype)
    km = KMeans(5, random_state=0).fit(X)
    assert km.cluster_centers_.dtype == dtype and km.cluster_centers_.shape == (5, 4)
    assert km.labels_.dtype == np.int32 and km.labels_.shape == (500,)
    assert isinstance(km.inertia_, float) and isinstance(km.n_iter_, int)
    assert km.n_features_in_ == 4
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    distances = km.transform(X)
    assert distances.dtype == dtype and distances.shape == (500, 5)
    expected = np.sqrt(sq_distances(X, km.cluster_centers_))
    np.testing.assert_allclose(distances, expected, rtol=1e-5 if dtype == np.float32 else 1e-10)
    assert km.score(X) == pytest.approx(-km.inertia_, rel=1e-6 if dtype == np.float32 else 1e-12)
    w = np.linspace(0.5, 2, len(X))
    weighted_inertia = (w * sq_distances(X, km.cluster_centers_).min(1)).sum()
    assert km.score(X, sample_weight=w) == pytest.approx(-weighted_inertia, rel=1e-5)


def test_fit_predict_and_fit_transform_equal_fit_then_method():
    X = blobs(300, 3, 4, seed=6)
    km = KMeans(4, random_state=1)
    np.testing.assert_array_equal(km.fit_predict(X), km.fit(X).labels_)
    np.testing.assert_array_equal(km.fit_transform(X), km.fit(X).transform(X))
    w = np.linspace(1, 2, len(X))
    np.testing.assert_array_equal(km.fit_predict(X, sample_weight=w),
                                  km.fit(X, sample_weight=w).labels_)


def test_predict_new_points_goes_to_nearest_centre():
    X = blobs(300, 2, 3, seed=7)
    km = KMeans(3, random_state=0).fit(X)
    Y = np.random.default_rng(7).uniform(-12, 12, size=(1000, 2))
    np.testing.assert_array_equal(km.predict(Y), sq_distances(Y, km.cluster_centers_).argmin(1))


def test_kmeans_function_matches_estimator():
    X = blobs(300, 3, 4, seed=8)
    result = kmeans(X, 4, random_state=3)
    km = KMeans(4, random_state=3).fit(X)
    assert isinstance(result, fastkm.KMeansResult)
    np.testing.assert_array_equal(result.centers, km.cluster_centers_)
    np.testing.assert_array_equal(result.labels, km.labels_)
    assert result.inertia == km.inertia_ and result.n_iter == km.n_iter_


# -- determinism --------------------------------------------------------------------------------

@pytest.mark.parametrize("init", ["k-means++", "random", "array"])
def test_bit_identical_for_thread_counts_and_runs_on_1m_rows(init):
    rng = np.random.default_rng(9)
    X = rng.normal(size=(1_000_000, 3)).astype(np.float32)
    w = rng.uniform(0.5, 2, size=len(X)).astype(np.float32)
    init = X[:8].copy() if init == "array" else init
    results = [kmeans(X, 8, sample_weight=w, init=init, n_init=1, max_iter=5, tol=0,
                      random_state=0, n_threads=n_threads) for n_threads in (1, 2, 2, 1)]
    first = results[0]
    for other in results[1:]:
        assert np.array_equal(first.centers, other.centers)
        assert np.array_equal(first.labels, other.labels)
        assert first.inertia == other.inertia and first.n_iter == other.n_iter


def test_random_state_fixes_the_result():
    X = blobs(2000, 3, 6, seed=10)
    for init in ("k-means++", "random"):
        a = KMeans(6, init=init, random_state=5).fit(X)
        b = KMeans(6, init=init, random_state=np.random.RandomState(5)).fit(X)
        assert np.array_equal(a.cluster_centers_, b.cluster_centers_)
        assert np.array_equal(a.labels_, b.labels_) and a.inertia_ == b.inertia_


# -- initialization -----------------------------------------------------------------------------

def first_step(X, k, **options):
    """The IterationInfo of a fit's first iteration, whose labels come from the init."""
    seen = []

    def record(info):
        seen.append(info)
        return True

    kmeans(X, k, max_iter=1, callback=record, **options)
    return seen[0]


def test_kmeans_plus_plus_picks_distinct_rows_of_x():
    X = blobs(1000, 2, 5, seed=11)
    from fastkm._init import kmeans_plusplus

    centers, indices = kmeans_plusplus(X, 5, np.ones(len(X)), np.random.RandomState(0), 2)
    assert len(set(indices.tolist())) == 5
    np.testing.assert_array_equal(centers, X[indices])


def test_kmeans_plus_plus_spreads_over_separated_blobs():
    # Five tight, far-apart blobs: greedy k-means++ puts one centre in each.
    X = blobs(1000, 2, 5, seed=11) / 10 + np.repeat(np.arange(5)[:, None] * 100, 200, 0)
    from fastkm._init import kmeans_plusplus

    for seed in range(5):
        centers, _ = kmeans_plusplus(X, 5, np.ones(len(X)), np.random.RandomState(seed), 2)
        assert sorted(np.round(centers[:, 0] / 100).astype(int).tolist()) == [0, 1, 2, 3, 4]


def test_random_init_gives_distinct_rows_among_many_duplicates():
    X = np.vstack([np.zeros((5000, 2)), np.ones((5000, 2)), [[5.0, 5.0]], [[-0.0, 7.0]],
                   [[0.0, 7.0]], [[9.0, 1.0]]])
    from fastkm._init import random_rows

    for seed in range(10):
        centers, indices = random_rows(X, 5, np.ones(len(X)), np.random.RandomState(seed))
        assert len(np.unique(centers + 0.0, axis=0)) == 5
        np.testing.assert_array_equal(centers, X[indices])
    result = kmeans(X, 5, init="random", n_init=1, random_state=0)
    assert len(np.unique(result.centers, axis=0)) == 5


def test_array_init_is_used_as_given():
    X = blobs(300, 2, 3, seed=12)
    init = X[[5, 6, 7]].copy()
    info = first_step(X, 3, init=init)
    np.testing.assert_array_equal(info.labels, sq_distances(X, init).argmin(1))
    # A list and an integer array are accepted too.
    np.testing.assert_array_equal(
        kmeans(X, 3, init=init.tolist(), max_iter=3).centers,
        kmeans(X, 3, init=init, max_iter=3).centers)


def test_callable_init_receives_x_k_and_random_state():
    X = blobs(300, 2, 3, seed=13)
    calls = []

    def init(data, n_clusters, random_state):
        calls.append((data.shape, n_clusters, type(random_state)))
        return data[random_state.choice(len(data), n_clusters, replace=False)]

    km = KMeans(3, init=init, n_init=3, random_state=0).fit(X)
    assert calls == [((300, 2), 3, np.random.RandomState)] * 3
    again = KMeans(3, init=init, n_init=3, random_state=0).fit(X)
    np.testing.assert_array_equal(km.cluster_centers_, again.cluster_centers_)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_n_init_keeps_the_lowest_inertia(init):
    X = blobs(400, 2, 6, seed=14)
    runs = []
    rng = np.random.RandomState(7)
    state = rng.get_state()
    for _ in range(4):
        runs.append(kmeans(X, 6, init=init, n_init=1, random_state=rng))
    rng.set_state(state)
    best = kmeans(X, 6, init=init, n_init=4, random_state=rng)
    assert best.inertia == min(run.inertia for run in runs)
    assert len({run.inertia for run in runs}) > 1  # the runs really differ


def test_n_init_auto():
    X = blobs(200, 2, 3, seed=15)
    inits = []

    def counting_init(data, k, random_state):
        inits.append(k)
        return data[:k]

    kmeans(X, 3, init=counting_init, n_init="auto")
    assert len(inits) == 10  # as scikit-learn: 'auto' is 10 runs for a callable init
    from fastkm._kmeans import _check_n_init

    assert _check_n_init("auto", "random") == 10
    assert _check_n_init("auto", "k-means++") == 1
    assert _check_n_init("auto", X[:3]) == 1
    assert _check_n_init("auto", counting_init) == 10


def test_array_init_with_n_init_warns_and_runs_once():
    X = blobs(200, 2, 3, seed=16)
    steps = []
    with pytest.warns(RuntimeWarning, match="n_init"):
        km = KMeans(3, init=X[:3], n_init=5, max_iter=1, callback=steps.append).fit(X)
    assert len(steps) == 1 and km.n_iter_ == 1


# -- convergence and the callback ----------------------------------------------------------------

def test_stops_when_labels_do_not_change_and_attributes_agree_with_centres():
    X = blobs(1000, 3, 4, seed=17)
    steps = []
    km = KMeans(4, random_state=0, tol=0, max_iter=300, callback=steps.append).fit(X)
    assert km.n_iter_ < 300 and len(steps) == km.n_iter_
    np.testing.assert_array_equal(steps[-1].labels, steps[-2].labels)
    d2 = sq_distances(X, km.cluster_centers_)
    np.testing.assert_array_equal(km.labels_, d2.argmin(1))
    assert km.inertia_ == pytest.approx(d2.min(1).sum(), rel=1e-12)


@pytest.mark.parametrize("max_iter", [1, 2, 3])
def test_max_iter_is_respected_and_attributes_agree_with_centres(max_iter):
    X = blobs(2000, 2, 10, seed=18)
    km = KMeans(10, init="random", n_init=1, random_state=0, max_iter=max_iter, tol=0).fit(X)
    assert km.n_iter_ == max_iter
    d2 = sq_distances(X, km.cluster_centers_)
    np.testing.assert_array_equal(km.labels_, d2.argmin(1))
    assert km.inertia_ == pytest.approx(d2.min(1).sum(), rel=1e-12)


def test_tol_stops_earlier_than_strict_convergence():
    X = blobs(3000, 2, 20, seed=19)
    strict = KMeans(20, init="random", n_init=1, random_state=0, tol=0).fit(X)
    loose = KMeans(20, init="random", n_init=1, random_state=0, tol=1e-1).fit(X)
    assert loose.n_iter_ < strict.n_iter_
    d2 = sq_distances(X, loose.cluster_centers_)
    np.testing.assert_array_equal(loose.labels_, d2.argmin(1))


@pytest.mark.parametrize("d", [3, 12])
def test_lloyd_fit_that_converges_reports_its_labels_inertia(d):
    """'lloyd' passes leave out their inertia (for d > 4) unless a callback or verbose
    reports it: a fit that stops when no label changes takes its last labels' inertia,
    lloyd_pass's bit for bit (for d > 4), and the reports still get every iteration's."""
    X = blobs(3000, d, 6, seed=d).astype(np.float32)
    steps = []
    fits = [KMeans(6, init=X[:6], algorithm="lloyd", tol=0, **options).fit(X)
            for options in ({}, {"callback": steps.append})]
    assert fits[0].n_iter_ < 300  # (stopped: no label changed)
    labels, sums, weights = np.empty(len(X), np.int32), np.empty((6, d)), np.empty(6)
    inertia, _ = core.lloyd_pass(X, None, fits[0].cluster_centers_, labels, sums, weights, 2)
    assert np.array_equal(labels, fits[0].labels_)
    for fit in fits:
        assert fit.inertia_ == (inertia if d > 4 else pytest.approx(inertia, rel=1e-6))
    assert len(steps) == fits[1].n_iter_
    assert all(np.isfinite(step.inertia) for step in steps)
    assert steps[-1].inertia == fits[1].inertia_


def test_callback_receives_iteration_info_and_can_stop():
    X = blobs(1000, 2, 8, seed=20)
    steps = []
    KMeans(8, init="random", n_init=1, random_state=0, tol=0, callback=steps.append).fit(X)
    assert len(steps) > 3
    assert [s.iteration for s in steps] == list(range(1, len(steps) + 1))
    for s in steps:
        assert isinstance(s, IterationInfo)
        assert s.centers.shape == (8, 2) and s.labels.shape == (1000,)
        assert isinstance(s.inertia, float) and isinstance(s.center_shift, float)
    # Inertia never increases along Lloyd's iterations; the last shift is zero.
    inertias = [s.inertia for s in steps]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(inertias, inertias[1:]))
    assert steps[-1].center_shift == 0
    shift = ((steps[1].centers - steps[0].centers) ** 2).sum()
    assert steps[1].center_shift == pytest.approx(shift, rel=1e-12)

    stopped = []
    km = KMeans(8, init="random", n_init=1, random_state=0, tol=0,
                callback=lambda info: stopped.append(info) or info.iteration == 2).fit(X)
    assert len(stopped) == 2 and km.n_iter_ == 2
    np.testing.assert_array_equal(km.cluster_centers_, stopped[-1].centers)
    np.testing.assert_array_equal(km.labels_, sq_distances(X, km.cluster_centers_).argmin(1))


def test_verbose_prints_progress_and_quiet_by_default(capsys):
    X = blobs(200, 2, 3, seed=21)
    KMeans(3, random_state=0).fit(X)
    assert capsys.readouterr().out == ""
    KMeans(3, random_state=0, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "Initialization complete" in out and "Iteration 1" in out and "Converged" in out


# -- empty clusters ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_empty_clusters_are_reseeded_without_nan(dtype):
    X = blobs(500, 2, 3, seed=22, dtype=dtype)
    # Two centres far outside the data get no point in the first assignment.
    init = np.array([[0, 0], [1000, 1000], [-1000, 1000]], dtype=dtype)
    steps = []
    km = KMeans(3, init=init, tol=0, callback=steps.append).fit(X)
    assert np.bincount(steps[0].labels, minlength=3).min() > 0
    assert np.isfinite(km.cluster_centers_).all()
    assert np.bincount(km.labels_, minlength=3).min() > 0
    again = KMeans(3, init=init, tol=0).fit(X)
    assert np.array_equal(km.cluster_centers_, again.cluster_centers_)
    assert np.array_equal(km.labels_, again.labels_)
    d2 = sq_distances(X, km.cluster_centers_)
    np.testing.assert_array_equal(km.labels_, d2.argmin(1))


def test_empty_cluster_takes_the_farthest_point():
    X = np.array([[0.0], [1], [2], [10], [11], [30]])
    init = np.array([[1.0], [11], [500]])
    steps = []
    kmeans(X, 3, init=init, max_iter=1, callback=steps.append)
    # 30 is the farthest from its centre (11), so it re-seeds the empty cluster.
    np.testing.assert_allclose(steps[0].centers, [[1], [10.5], [30]])
    assert steps[0].labels.tolist() == [0, 0, 0, 1, 1, 2]


def test_cluster_emptied_by_reseeding_keeps_its_centre():
    # Both members of cluster 1 re-seed the two empty clusters; 0.1 + 0.2 - 0.1 - 0.2 is not
    # 0 in floating point, yet cluster 1 must keep its centre, not move to residue / residue.
    X = np.array([[0.0], [0.01], [0.02], [0.03], [100.1], [100.3]])
    w = np.array([1, 1, 1, 1, 0.1, 0.2])
    init = np.array([[0.0], [100.2], [1000], [2000]])
    steps = []
    kmeans(X, 4, sample_weight=w, init=init, max_iter=1, callback=steps.append)
    np.testing.assert_allclose(steps[0].centers.ravel(), [0.015, 100.2, 100.1, 100.3],
                               rtol=1e-12)
    assert steps[0].labels.tolist() == [0, 0, 0, 0, 2, 3]
    # The same with a member of weight 0 left in cluster 1: not a member that counts.
    steps = []
    kmeans(np.append(X, [[100.25]], axis=0), 4, sample_weight=np.append(w, 0.0), init=init,
           max_iter=1, callback=steps.append)
    np.testing.assert_allclose(steps[0].centers.ravel(), [0.015, 100.2, 100.1, 100.3],
                               rtol=1e-12)
    assert steps[0].labels.tolist() == [0, 0, 0, 0, 2, 3, 1]


def test_duplicate_initial_centres_are_separated():
    X = blobs(300, 2, 3, seed=23)
    init = np.repeat(X[:1], 3, axis=0)
    km = KMeans(3, init=init).fit(X)
    assert len(np.unique(km.cluster_centers_, axis=0)) == 3
    assert np.bincount(km.labels_, minlength=3).min() > 0


# -- threadpoolctl ----------------------------------------------------------------------------

def test_threadpool_limits_sets_the_default_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    X = blobs(20_000, 3, 5, seed=24)
    default = KMeans(5, random_state=0).fit(X)
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert fastkm.build_info()["threads"] == 1
        limited = KMeans(5, random_state=0).fit(X)
    assert np.array_equal(default.cluster_centers_, limited.cluster_centers_)
    assert np.array_equal(default.labels_, limited.labels_)
    assert default.inertia_ == limited.inertia_


def test_auto_algorithm_follows_the_measured_crossovers():
    assert auto_algorithm(10**6, 3, 8) == "lloyd"
    assert auto_algorithm(10**6, 3, 16) == "filter"
    assert auto_algorithm(10**6, 3, 64) == "filter"
    assert auto_algorithm(10**6, 3, 256) == "filter"
    assert auto_algorithm(10**6, 8, 30) == "hamerly"
    assert auto_algorithm(10**6, 8, 100) == "hamerly"
    assert auto_algorithm(10**6, 8, 200) == "exponion"
    assert auto_algorithm(20_000, 3, 256) == "lloyd"  # too few samples per cluster
    assert auto_algorithm(50_000, 32, 256) == "exponion"
    assert auto_algorithm(5000, 784, 100) == "yinyang"
    assert auto_algorithm(5000, 784, 10) == "yinyang"
    assert auto_algorithm(5000, 784, 4) == "lloyd"
    # Bounds larger than both the budget and X itself: plain Lloyd.
    assert auto_algorithm(10**9, 3, 256) == "lloyd"
    assert auto_algorithm(10**8, 64, 256) == "exponion"


@pytest.mark.parametrize("algorithm", ["hamerly", "exponion", "auto"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [12, 100])
@pytest.mark.parametrize("weighted", [False, True])
def test_bounded_algorithms_give_lloyds_result(algorithm, dtype, k, weighted):
    """Bounds skip work, not iterations: the same labels and n_iter, and the same centres
    and inertia (bit for bit with weights; without, the bounded passes update their sums by
    the rows that move: to rounding)."""
    X = blobs(20_000, 3, 12, seed=21).astype(dtype)
    w = np.random.default_rng(k).uniform(0.5, 2, len(X)) if weighted else None
    for seed in range(3):
        runs = [KMeans(k, algorithm=a, random_state=seed, tol=0).fit(X, sample_weight=w)
                for a in ("lloyd", algorithm)]
        assert_same_fit(*runs, exact=weighted or algorithm == "auto")


@pytest.mark.parametrize("algorithm", ["hamerly", "exponion", "yinyang"])
@pytest.mark.parametrize("d, k", [(16, 40), (33, 100)])
def test_bounded_algorithms_give_lloyds_result_far_from_the_origin(algorithm, d, k):
    """float32 blobs 100 away from the origin, where lloyd_pass's dot-form scores round
    far more than distances do: rows within that rounding of two centres must still go
    where 'lloyd' sends them. (Exponion's ball search compared distances of the direct
    form: in these two fits, and in 33 of 60 such fits, its labels then drifted from
    'lloyd''s.)"""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(k // 2, d)) * 5
    X = (centres[rng.integers(len(centres), size=20_000)] + rng.normal(size=(20_000, d))
         + 100).astype(np.float32)
    init = X[rng.choice(len(X), k, replace=False)]
    runs = [KMeans(k, init=init, n_init=1, algorithm=a, max_iter=100, n_threads=1).fit(X)
            for a in ("lloyd", algorithm)]
    assert_same_fit(*runs, exact=False)


@pytest.mark.parametrize("algorithm", ["hamerly", "exponion", "yinyang"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [8, 100])
def test_bounded_fits_label_their_last_centres(algorithm, dtype, d):
    """Above 4 features a bounded fit labels its last centres with one more bounded pass
    (none at convergence) and sums the inertia of those labels: lloyd_pass's labels and
    inertia on those centres, whether the fit converged or stopped at max_iter. (Exponion's
    and Hamerly's own-centre distances use the direct form, lloyd_pass's panels the dot
    product: a row within rounding of a tie may go either way.)"""
    from fastkm._isa import core

    X = blobs(20_000, d, 30, seed=d).astype(dtype)
    w = np.random.default_rng(d).uniform(0.5, 2, len(X)).astype(dtype)
    for max_iter in (3, 300):
        fit = KMeans(40, algorithm=algorithm, random_state=1, tol=0, max_iter=max_iter,
                     n_init=1).fit(X, sample_weight=w)
        assert (fit.n_iter_ == 3) == (max_iter == 3)
        labels = np.empty(len(X), np.int32)
        inertia = core.lloyd_pass(X, w, fit.cluster_centers_, labels, np.empty((40, d)),
                                  np.empty(40), 2)[0]
        differ = np.flatnonzero(labels != fit.labels_)
        assert len(differ) <= 2
        C = fit.cluster_centers_.astype(np.float64)
        gap = np.abs(np.linalg.norm(X[differ] - C[labels[differ]], axis=1)
                     - np.linalg.norm(X[differ] - C[fit.labels_[differ]], axis=1))
        assert (gap <= 1e-5 * np.linalg.norm(X[differ], axis=1)).all()
        if len(differ) == 0:
            assert fit.inertia_ == inertia
        assert fit.inertia_ == pytest.approx(inertia, rel=1e-9)


@pytest.mark.parametrize("algorithm, d", [("hamerly", 3), ("exponion", 2), ("exponion", 3),
                                          ("yinyang", 3), ("yinyang", 17)])
def test_reseeding_in_a_bounded_fit_gives_lloyds_result(algorithm, d):
    """Clusters emptied by the first pass take far samples from many chunks; only those
    samples' blocks are searched afresh next, the other rows keep their bounds."""
    X = blobs(60_000, d, 8, seed=d)
    init = X[np.random.default_rng(d).choice(len(X), 12, replace=False)].copy()
    init[[3, 7, 11]] = 1e3 + np.arange(3)[:, None]  # empty after the first pass
    runs = [KMeans(12, init=init, n_init=1, algorithm=a, tol=0).fit(X)
            for a in ("lloyd", algorithm)]
    assert_same_fit(*runs, exact=False)


def test_search_afresh_resets_whole_blocks_of_their_chunk():
    from fastkm._isa import core
    from fastkm._lloyd import _search_afresh

    n, block = 100_003, core.block_rows()
    chunk_rows = core.row_chunks(n)[1]
    assert chunk_rows % block  # (blocks then do not line up across chunks)
    upper = np.zeros(n, np.float32)
    rows = np.array([0, chunk_rows - 1, chunk_rows + block + 3, n - 1])
    _search_afresh(upper, rows)
    expected = np.zeros(n, np.float32)
    for row in rows:
        chunk = row // chunk_rows * chunk_rows
        start = chunk + (row - chunk) // block * block
        expected[start:min(start + block, chunk + chunk_rows, n)] = np.inf
    np.testing.assert_array_equal(upper, expected)
    assert (upper[rows] == np.inf).all() and np.isinf(upper).sum() < 4 * block
    _search_afresh(upper, np.empty(0, np.intp))


def test_swap_trials_repair_a_bad_local_minimum():
    """Two centres in one blob and none in another: Lloyd stays there, random swaps do not."""
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0], [10, 0], [0, 10], [10, 10]])
    X = np.concatenate([c + rng.normal(0, 0.5, size=(200, 2)) for c in centres])
    init = np.array([[-0.5, 0], [0.5, 0], [10, 0], [5, 10]])  # blob (0,0) twice
    stuck = KMeans(4, init=init, n_init=1).fit(X)
    fixed = KMeans(4, init=init, n_init=1, swap_trials=50, random_state=0).fit(X)
    found = lambda km: sorted(map(tuple, np.rint(km.cluster_centers_ / 10).astype(int)))
    assert found(stuck) != found(fixed) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert fixed.inertia_ < stuck.inertia_
    again = KMeans(4, init=init, n_init=1, swap_trials=50, random_state=0).fit(X)
    assert np.array_equal(again.cluster_centers_, fixed.cluster_centers_)
    np.testing.assert_array_equal(fixed.labels_, fixed.predict(X))


def test_swap_trials_count_the_iterations_behind_the_result():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0], [10, 0], [0, 10], [10, 10]])
    X = np.concatenate([c + rng.normal(0, 0.5, size=(200, 2)) for c in centres])
    run = KMeans(4, init=X[[0, 200, 400, 600]], n_init=1, tol=0).fit(X)
    # Converged, no swap to keep: the run's own result and iterations, plus the one
    # iteration of the Lloyd run swap_refine starts from.
    refined = KMeans(4, init=X[[0, 200, 400, 600]], n_init=1, tol=0, swap_trials=5,
                     random_state=0).fit(X)
    np.testing.assert_array_equal(refined.cluster_centers_, run.cluster_centers_)
    assert refined.n_iter_ == run.n_iter_ + 1
    # A swap kept (two centres in one blob): more iterations than the first run's.
    init = np.array([[-0.5, 0], [0.5, 0], [10, 0], [5, 10]])
    stuck = KMeans(4, init=init, n_init=1).fit(X)
    fixed = KMeans(4, init=init, n_init=1, swap_trials=50, random_state=0).fit(X)
    assert fixed.n_iter_ > stuck.n_iter_ + 1


def test_swap_trials_respect_a_callback_stop():
    X = blobs(400, 2, 4, seed=2)
    seen = []
    stop_at_once = lambda info: seen.append(info.iteration) or True
    stopped = KMeans(4, random_state=0, swap_trials=5, callback=stop_at_once).fit(X)
    alone = KMeans(4, random_state=0, callback=lambda info: True).fit(X)
    assert seen == [1] and stopped.n_iter_ == 1
    np.testing.assert_array_equal(stopped.cluster_centers_, alone.cluster_centers_)


@pytest.mark.parametrize("value", [-1, 1.5, "many"])
def test_swap_trials_must_be_a_count(value):
    with pytest.raises(ValueError, match="swap_trials"):
        KMeans(2, swap_trials=value).fit(blobs(50, 2, 2))


def test_init_size_seeds_from_a_sample():
    X = blobs(20_000, 4, 10, seed=8)
    full = KMeans(10, random_state=0).fit(X)
    sampled = KMeans(10, random_state=0, init_size=500).fit(X)
    assert sampled.labels_.shape == (20_000,)
    # Separated blobs: both find the same clusters (up to where tol stopped them).
    np.testing.assert_allclose(np.sort(sampled.cluster_centers_, axis=0),
                               np.sort(full.cluster_centers_, axis=0), atol=0.05)
    assert sampled.inertia_ == pytest.approx(full.inertia_, rel=1e-3)
    # A sample without enough distinct points falls back to every row.
    X_dup = np.repeat(np.arange(12.0)[:, None], 1000, axis=0)
    km = KMeans(12, init_size=20, random_state=0).fit(X_dup)
    assert len(np.unique(km.labels_)) == 12
    with pytest.raises(ValueError, match="init_size"):
        KMeans(10, init_size=5).fit(X)


def test_largest_first_matches_a_stable_sort():
    from fastkm._lloyd import _largest_first

    rng = np.random.default_rng(0)
    # (From 1024 * (count + 1) values on, the candidates narrowed by blocks' maxima.)
    for n, count, top in [(1000, 5, 20), (1000, 1, 20), (50, 50, 20), (10_000, 37, 20),
                          (7, 9, 20), (100_003, 5, 20), (100_003, 5, 10**6),
                          (300_000, 200, 10**5), (5 * 1024 + 1, 4, 3)]:
        values = rng.integers(0, top, n).astype(float)  # (with top 20: many ties)
        np.testing.assert_array_equal(_largest_first(values, count),
                                      np.argsort(-values, kind="stable")[:count])
        ties = rng.permutation(n)  # ties broken by another order of the rows
        np.testing.assert_array_equal(_largest_first(values, count, ties),
                                      np.lexsort((ties, -values))[:count])


@pytest.mark.parametrize("algorithm", ["lloyd", "exponion"])
def test_lloyd_centres_only_skips_the_labelling_pass_not_iterations(algorithm):
    from fastkm._lloyd import lloyd

    X = blobs(20_000, 3, 120, seed=5).astype(np.float32)
    w = np.ones(len(X), np.float32)
    C = X[:120].copy()
    full = lloyd(X, w, C, max_iter=50, tol=0, n_threads=2, algorithm=algorithm)
    short = lloyd(X, w, C, max_iter=50, tol=0, n_threads=2, algorithm=algorithm,
                  centres_only=True)
    assert np.array_equal(full[0], short[0]) and full[3] == short[3]
    assert short[1] is None and short[2] is None
