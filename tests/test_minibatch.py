"""fastkm.MiniBatchKMeans: Sculley's mini-batch k-means with scikit-learn's semantics."""

import numpy as np
import pytest

import fastkm
from fastkm import MiniBatchKMeans


def blobs(n, d, k, seed=0, dtype=np.float32, std=1.0):
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    return (centers[rng.randint(k, size=n)] + std * rng.randn(n, d)).astype(dtype)


@pytest.fixture(scope="module")
def X200k():
    return blobs(200_000, 8, 20)


def test_inertia_within_two_percent_of_kmeans(X200k):
    ratios = []
    for seed in range(3):
        mbk = MiniBatchKMeans(20, n_init=3, random_state=seed).fit(X200k)
        km = fastkm.KMeans(20, n_init=3, random_state=seed).fit(X200k)
        ratios.append(mbk.inertia_ / km.inertia_)
        assert mbk.n_steps_ < 100 * len(X200k) // 1024  # stopped early
    assert np.mean(ratios) < 1.02, ratios


def test_attributes_and_predict_is_nearest_centre():
    X = blobs(5000, 3, 4, dtype=np.float64)
    mbk = MiniBatchKMeans(4, batch_size=256, random_state=0).fit(X)
    assert mbk.cluster_centers_.shape == (4, 3)
    assert mbk.n_features_in_ == 3 and mbk.n_steps_ >= 1 and mbk.n_iter_ >= 1
    distances = ((X[:, None, :] - mbk.cluster_centers_[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(mbk.predict(X), distances.argmin(axis=1))
    np.testing.assert_array_equal(mbk.labels_, distances.argmin(axis=1))
    assert mbk.inertia_ == pytest.approx(distances.min(axis=1).sum(), rel=1e-9)
    assert mbk.score(X) == pytest.approx(-mbk.inertia_, rel=1e-9)
    np.testing.assert_allclose(mbk.transform(X), np.sqrt(distances), rtol=1e-9)
    np.testing.assert_array_equal(MiniBatchKMeans(4, batch_size=256, random_state=0)
                                  .fit_predict(X), mbk.labels_)
    assert MiniBatchKMeans(4, compute_labels=False, random_state=0).fit(X).inertia_ > 0
    assert blobs(100, 2, 2).dtype == MiniBatchKMeans(2, random_state=0).fit(
        blobs(100, 2, 2)).cluster_centers_.dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_deterministic_for_a_seed_and_any_thread_count(dtype):
    X = blobs(20000, 5, 8, dtype=dtype)
    fits = [MiniBatchKMeans(8, batch_size=500, random_state=3, n_threads=t).fit(X)
            for t in (1, 2, 2)]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.cluster_centers_, fits[0].cluster_centers_)
        np.testing.assert_array_equal(other.labels_, fits[0].labels_)
        assert other.n_steps_ == fits[0].n_steps_


def test_partial_fit_over_chunks_improves():
    X = blobs(40000, 4, 6, seed=1)
    stream = MiniBatchKMeans(6, random_state=0)
    scores = []
    for start in range(0, len(X), 2000):
        stream.partial_fit(X[start:start + 2000])
        scores.append(stream.score(X))
        assert stream.labels_.shape == (2000,)
    assert stream.n_steps_ == 20
    assert scores[-1] > scores[0]
    km = fastkm.KMeans(6, n_init=3, random_state=0).fit(X)
    assert -scores[-1] < 1.05 * km.inertia_
    # The same stream again gives the same centres.
    again = MiniBatchKMeans(6, random_state=0)
    for start in range(0, len(X), 2000):
        again.partial_fit(X[start:start + 2000])
    np.testing.assert_array_equal(again.cluster_centers_, stream.cluster_centers_)
    with pytest.raises(ValueError, match="features"):
        stream.partial_fit(X[:10, :3])


def test_reassigns_clusters_left_without_samples():
    X = blobs(5000, 2, 3, dtype=np.float64)
    init = np.vstack([X[:3], [[1e4, 1e4]], [[-1e4, 1e4]]])  # two centres far from all data
    mbk = MiniBatchKMeans(5, init=init, batch_size=200, random_state=0).fit(X)
    assert np.abs(mbk.cluster_centers_).max() < 100
    assert len(np.unique(mbk.labels_)) == 5
    kept = MiniBatchKMeans(5, init=init, batch_size=200, reassignment_ratio=0,
                           random_state=0).fit(X)
    assert np.abs(kept.cluster_centers_).max() >= 1e4


@pytest.mark.parametrize("params", [
    {"n_clusters": 0}, {"batch_size": 0}, {"max_iter": 0}, {"tol": -1.0},
    {"max_no_improvement": -1}, {"init_size": 0}, {"n_init": 0}, {"n_init": "x"},
    {"reassignment_ratio": -0.1}, {"init": "kmeans"}, {"n_threads": 0}, {"verbose": -1},
    {"init": np.zeros((2, 2))}, {"n_clusters": 1000}, {"tol": True},
])
def test_bad_parameters_raise(params):
    X = blobs(500, 3, 3, dtype=np.float64)
    with pytest.raises(ValueError):
        MiniBatchKMeans(**{"n_clusters": 3, **params}).fit(X)
    with pytest.raises(ValueError):
        MiniBatchKMeans(**{"n_clusters": 3, **params}).partial_fit(X)


def test_partial_fit_checks_later_chunks_as_predict_does():
    pd = pytest.importorskip("pandas")
    X = blobs(600, 3, 3, dtype=np.float64)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    mbk = MiniBatchKMeans(3, random_state=0).partial_fit(frame[:300])
    with pytest.raises(ValueError, match="feature names"):
        mbk.partial_fit(pd.DataFrame(X[300:], columns=["x", "y", "z"]))
    with pytest.raises(ValueError, match="feature names"):
        mbk.partial_fit(frame[["b", "a", "c"]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        mbk.partial_fit(X[300:])
    assert mbk.n_steps_ == 2 and mbk.feature_names_in_.tolist() == ["a", "b", "c"]
    unnamed = MiniBatchKMeans(3, random_state=0).partial_fit(X[:300])
    with pytest.warns(UserWarning, match="fitted without feature names"):
        unnamed.partial_fit(frame[300:])
    with pytest.raises(ValueError, match="2 features, but MiniBatchKMeans is expecting 3"):
        unnamed.partial_fit(X[:, :2])


@pytest.mark.filterwarnings("error")
def test_partial_fit_chunk_beyond_the_centres_dtype():
    X = blobs(600, 3, 3, dtype=np.float32)
    mbk = MiniBatchKMeans(3, random_state=0).partial_fit(X)
    with pytest.raises(ValueError, match="X overflows float32, the fitted centres' dtype"):
        mbk.partial_fit(np.r_[X[:10].astype(np.float64), [[1e100, 0, 0]]])
    with pytest.raises(ValueError, match="X holds values too large"):
        mbk.partial_fit(np.r_[X[:10].astype(np.float64), [[1e30, 0, 0]]])
    mbk.partial_fit(X.astype(np.float64))
    assert mbk.cluster_centers_.dtype == np.float32
    # A later chunk is data to fit: values too small are refused as in the first call.
    with pytest.raises(ValueError, match="X holds values too small"):
        mbk.partial_fit(X * np.float32(1e-20))
    # ... and in the centres' dtype: 1e-20 is usable in float64, not once cast to float32.
    with pytest.raises(ValueError, match="X holds values too small"):
        mbk.partial_fit(X.astype(np.float64) * 1e-20)


def test_partial_fit_reads_a_later_chunk_once_for_its_checks(monkeypatch):
    from fastkm import _validation

    X = blobs(600, 3, 3, dtype=np.float32)
    mbk = MiniBatchKMeans(3, random_state=0).partial_fit(X)
    reads = []
    read = _validation.largest_magnitude
    monkeypatch.setattr(_validation, "largest_magnitude",
                        lambda A, **kw: reads.append(A.shape) or read(A, **kw))
    mbk.partial_fit(X[:100])
    assert reads == [(100, 3)]


def test_params_protocol_and_not_fitted():
    mbk = MiniBatchKMeans(5, batch_size=64)
    assert mbk.get_params()["batch_size"] == 64
    assert mbk.set_params(max_no_improvement=None) is mbk
    assert repr(mbk) == "MiniBatchKMeans(n_clusters=5, batch_size=64, max_no_improvement=None)"
    with pytest.raises(ValueError, match="Invalid parameter"):
        mbk.set_params(algorithm="lloyd")
    with pytest.raises(fastkm.NotFittedError):
        mbk.predict(np.zeros((2, 2)))


def test_verbose_and_tol(capsys):
    X = blobs(5000, 2, 3, dtype=np.float64)
    mbk = MiniBatchKMeans(3, tol=1e-3, max_no_improvement=None, verbose=1,
                          random_state=0).fit(X)
    assert mbk.n_steps_ < 100 * 5000 // 1024
    assert "Converged (small centers change)" in capsys.readouterr().out


def pixels_like(n, seed=0):
    """A skewed continuous density without clusters, as photo pixels are."""
    return (np.random.RandomState(seed).rand(n, 3) ** 2).astype(np.float32)


@pytest.mark.parametrize("X, k, bound", [
    # scikit-learn's cumulative counts stalled at 3.2% (mean 1.0317) and 1.7% (1.0167) above.
    (pixels_like(100_000), 32, 1.02),
    (blobs(50_000, 16, 100, seed=1, std=4), 100, 1.01),  # heavily overlapping
])
def test_inertia_close_to_kmeans_without_clusters_or_with_overlap(X, k, bound):
    ratios = [MiniBatchKMeans(k, random_state=seed).fit(X).inertia_
              / fastkm.KMeans(k, random_state=seed).fit(X).inertia_ for seed in range(3)]
    assert np.mean(ratios) < bound, ratios


def test_fit_ends_at_the_exact_means():
    X = blobs(30_000, 4, 5, seed=2, dtype=np.float64, std=0.1)  # no sample near a border
    w = np.random.RandomState(0).uniform(0.5, 2, len(X))
    mbk = MiniBatchKMeans(5, random_state=0).fit(X, sample_weight=w)
    for j, centre in enumerate(mbk.cluster_centers_):
        members = mbk.labels_ == j
        np.testing.assert_allclose(centre, np.average(X[members], axis=0, weights=w[members]),
                                   rtol=1e-10, atol=1e-10)
    inertia_before = MiniBatchKMeans(5, random_state=0, compute_labels=False).fit(
        X, sample_weight=w).inertia_
    assert mbk.inertia_ <= inertia_before


def test_no_stop_for_lack_of_improvement_before_half_a_pass(capsys):
    X = pixels_like(100_000, seed=1)
    for seed in range(4):
        mbk = MiniBatchKMeans(16, batch_size=256, verbose=1, random_state=seed).fit(X)
        assert "lack of improvement" in capsys.readouterr().out
        assert mbk.n_steps_ * 256 >= len(X) / 2, mbk.n_steps_


def test_init_array_with_n_init_warns_as_kmeans():
    X = blobs(500, 3, 3, dtype=np.float64)
    # Each warning names this file, the caller's, however deep in fastkm it is raised.
    for fit in (fastkm.KMeans(3, init=X[:3], n_init=3).fit,
                MiniBatchKMeans(3, init=X[:3], n_init=3).fit,
                MiniBatchKMeans(3, init=X[:3], n_init=3).partial_fit,
                lambda X: fastkm.kmeans(X, 3, init=X[:3], n_init=3)):
        with pytest.warns(RuntimeWarning, match="n_init=3 is ignored") as record:
            fit(X)
        assert [w.filename for w in record] == [__file__]


@pytest.mark.parametrize("params", [
    {"n_threads": 0}, {"reassignment_ratio": -1}, {"tol": True}, {"verbose": -1},
    {"batch_size": 0}, {"n_init": "x"},
])
def test_partial_fit_checks_parameters_at_every_call(params):
    """As scikit-learn: set_params between calls is checked by the next call."""
    X = blobs(600, 3, 3, dtype=np.float64)
    mbk = MiniBatchKMeans(3, random_state=0).partial_fit(X[:300])
    mbk.set_params(**params)
    with pytest.raises(ValueError):
        mbk.partial_fit(X[300:])
    assert mbk.n_steps_ == 1
