"""Input handling: every bad input is a clear ValueError or TypeError; good input is accepted
as it is, never modified and not copied when it need not be."""

import warnings

import numpy as np
import pytest

import fastkm
from fastkm import KMeans, MiniBatchKMeans, NotFittedError, _chunked, kmeans
from fastkm._validation import check_array


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(60, 3))


@pytest.fixture
def fitted(X):
    return KMeans(3, random_state=0).fit(X)


def duplicates(n_distinct, copies=20, d=2):
    """n_distinct points, each repeated ``copies`` times."""
    return np.repeat(np.arange(n_distinct * d, dtype=float).reshape(n_distinct, d), copies, 0)


# -- bad X ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_non_finite_x(X, value, dtype):
    X = X.astype(dtype)
    X[17, 1] = value
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(3).fit(X)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels(value):
    """Pixels repeat, and their distinct colours are searched on a grid, which also stands
    for X's finiteness check: a NaN or infinite value must still be refused."""
    rng = np.random.default_rng(0)
    X = (rng.integers(0, 8, size=(200_000, 3)) / 7).astype(np.float32)
    KMeans(4, n_init=1, random_state=0).fit(X)  # (the grid search takes these rows)
    X[123_456, 2] = value
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(4, n_init=1, random_state=0).fit(X)


def test_non_finite_x_in_a_later_block():
    # largest_magnitude checks X in chunks: a NaN far from the start must be found too.
    X = np.zeros((3_000_000, 1))
    X[-1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        check_array(X)


@pytest.mark.parametrize("shape, match", [((0, 3), "0 sample"), ((5, 0), "0 feature"),
                                          ((0, 0), "0 sample")])
def test_empty_x(shape, match):
    with pytest.raises(ValueError, match=match):
        KMeans(1).fit(np.zeros(shape))


@pytest.mark.parametrize("shape", [(10,), (5, 2, 2), ()])
def test_x_not_2d(shape):
    with pytest.raises(ValueError, match="2-D"):
        KMeans(1).fit(np.ones(shape))


@pytest.mark.parametrize("init", ["k-means++", "random", "array"])
def test_fewer_distinct_points_than_clusters(init):
    X = duplicates(3)
    init = X[[0, 20, 40, 0]] + [[0, 0], [0, 0], [0, 0], [0.5, 0.5]] if init == "array" else init
    with pytest.raises(ValueError, match="distinct"):
        KMeans(4, init=init, n_init=1, random_state=0).fit(X)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_fewer_distinct_points_with_positive_weight(init):
    X = duplicates(4)
    w = np.ones(len(X))
    w[X[:, 0] == 6] = 0  # the fourth point has no weight
    with pytest.raises(ValueError, match="distinct"):
        KMeans(4, init=init, n_init=1, random_state=0).fit(X, sample_weight=w)
    KMeans(3, init=init, n_init=1, random_state=0).fit(X, sample_weight=w)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_exactly_as_many_distinct_points_as_clusters(init):
    X = duplicates(4)
    km = KMeans(4, init=init, n_init=1, random_state=0).fit(X)
    assert km.inertia_ == 0
    assert sorted(km.cluster_centers_.tolist()) == sorted(np.unique(X, axis=0).tolist())


def test_more_clusters_than_samples(X):
    with pytest.raises(ValueError, match="n_samples=60 should be >= n_clusters=61"):
        KMeans(61).fit(X)


def test_complex_x(X):
    with pytest.raises(ValueError, match="[Cc]omplex"):
        KMeans(2).fit(X + 1j)


@pytest.mark.parametrize("bad", [np.array([["a", "b"], ["c", "d"]]), [["a", 1.0], [2.0, 3.0]],
                                 [[1.0, 2.0], [3.0]]])
def test_non_numeric_x(bad):
    with pytest.raises((TypeError, ValueError), match="X"):
        KMeans(1).fit(bad)


def test_sparse_x(X):
    sparse = pytest.importorskip("scipy.sparse")
    for make in (sparse.csr_matrix, sparse.csr_array, sparse.coo_matrix):
        with pytest.raises(TypeError, match="sparse"):
            KMeans(2).fit(make(X))
    km = KMeans(2, random_state=0).fit(X)
    with pytest.raises(TypeError, match="sparse"):
        km.predict(sparse.csr_matrix(X))


def test_dataframe_with_strings():
    pd = pytest.importorskip("pandas")
    with pytest.raises((TypeError, ValueError), match="X must be numeric"):
        KMeans(2).fit(pd.DataFrame({"a": ["x", "y", "z"], "b": [1.0, 2.0, 3.0]}))
    with pytest.raises(ValueError, match="NaN"):
        KMeans(2).fit(pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64"),
                                    "b": [1.0, 2.0, 3.0]}))


def test_dataframe_with_dates_or_durations():
    pd = pytest.importorskip("pandas")
    # As an array of them is: not clustered as nanosecond counts.
    for column in (pd.date_range("2020-01-01", periods=6),
                   pd.date_range("2020-01-01", periods=6, tz="UTC"),
                   pd.to_timedelta(np.arange(6), unit="s")):
        frame = pd.DataFrame({"when": column, "x": np.arange(6.0)})
        with pytest.raises(TypeError, match="column of dtype .*; fastkm needs real numbers"):
            KMeans(2).fit(frame)


def test_overflowing_values_never_give_nan_centres():
    X = np.random.default_rng(1).normal(size=(50, 3))
    with pytest.raises(ValueError, match="overflow"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow warnings
            KMeans(2, random_state=0).fit(X, sample_weight=np.full(50, 1e308))


def test_integer_beyond_float64_is_a_value_error():
    with pytest.raises(ValueError, match="X must be numeric"):
        KMeans(1).fit([[10**400, 1.0], [0, 1]])
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match="X must be numeric"):
        # (an object column, as pandas 3 builds from such a list; pandas 2 raises
        # OverflowError on the bare list, before fastkm is called)
        KMeans(1).fit(pd.DataFrame({"a": pd.Series([10**400, 0], dtype=object),
                                    "b": [1.0, 1.0]}))


# -- values whose squared distances overflow or underflow -------------------------------------

# Beyond these, 4 d max|x|**2 overflows the dtype (float64: also n of them summed).
HUGE = {np.float32: 2.0**64, np.float64: 2.0**520}


def exact_limit(dtype, d, n):
    terms = n if dtype == np.float64 else 1
    return np.sqrt(np.finfo(dtype).max / (8 * d * terms))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_whose_squared_distances_overflow(dtype):
    X = np.random.default_rng(0).normal(size=(50, 3))
    huge = (X * HUGE[dtype]).astype(dtype)
    with pytest.raises(ValueError, match="X holds values too large.*rescale X"):
        KMeans(3, random_state=0).fit(huge)
    with pytest.raises(ValueError, match="init holds values too large"):
        KMeans(3, init=huge[:3]).fit(X.astype(dtype))
    with pytest.raises(ValueError, match="X holds values too large"):
        MiniBatchKMeans(3, random_state=0).fit(huge)
    with pytest.raises(ValueError, match="X holds values too large"):
        MiniBatchKMeans(3, random_state=0).partial_fit(huge)
    fitted = KMeans(3, random_state=0).fit(X.astype(dtype))
    for method in ("predict", "transform", "score"):
        with pytest.raises(ValueError, match="X holds values too large"):
            getattr(fitted, method)(huge)


def test_float32_values_too_large_suggest_float64():
    X = np.random.default_rng(0).normal(size=(50, 3)) * 1e20
    with pytest.raises(ValueError, match="overflow float32.*or use float64"):
        MiniBatchKMeans(3, random_state=0).fit(X.astype(np.float32))
    KMeans(3, random_state=0).fit(X)  # (fine in float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_largest_accepted_values_give_finite_results(dtype):
    """Values just within the bound, spread to make the distances and their sums as large
    as they get: the fit is that of X scaled down by a power of 2, exactly (float64's bound
    counts the rows summed, as the inertia and the variance behind tol sum them)."""
    n, d = 2000, 3
    M = 0.99 * exact_limit(dtype, d, n)
    X = (np.random.default_rng(0).uniform(-1, 1, size=(n, d)) * M).astype(dtype)
    X[:2] = [[M] * d, [-M] * d]
    scale = dtype(2.0**-40)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for k, init in ((1, "k-means++"), (4, "k-means++"), (2, X[:2])):
            km = KMeans(k, init=init, random_state=0).fit(X)
            small = KMeans(k, init=init if k != 2 else X[:2] * scale,
                           random_state=0).fit(X * scale)
            np.testing.assert_array_equal(km.labels_, small.labels_)
            np.testing.assert_array_equal(km.cluster_centers_ * scale,
                                          small.cluster_centers_)
            assert km.n_iter_ == small.n_iter_
            assert km.inertia_ == small.inertia_ / float(scale) ** 2
            assert km.score(X) == -km.inertia_
            np.testing.assert_array_equal(km.transform(X) * scale,
                                          small.transform(X * scale))
        assert np.isfinite(MiniBatchKMeans(4, random_state=0).fit(X).inertia_)
    with pytest.raises(ValueError, match="values too large"):
        KMeans(1).fit(X * dtype(1.02))


def test_float64_values_whose_summed_distances_overflow():
    # Each squared distance fits float64, but not their sums (the inertia, the variance
    # that scales tol): unchecked, the fit stopped after one iteration with inertia inf.
    n, d = 1000, 3
    X = np.random.default_rng(0).uniform(-1, 1, size=(n, d)) * 0.99 * exact_limit(
        np.float64, d, 1)
    with pytest.raises(ValueError, match="values too large.*3 features and 1000 rows"):
        KMeans(3, random_state=0).fit(X)
    fitted = KMeans(3, random_state=0).fit(X / 2**40)
    with pytest.raises(ValueError, match="values too large"):
        fitted.score(X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_too_large_in_an_out_of_core_fit(tmp_path, monkeypatch, dtype):
    monkeypatch.setattr(_chunked, "MEMMAP_THRESHOLD_BYTES", 0)
    monkeypatch.setattr(_chunked, "CHUNK_BYTES", 1 << 12)
    X = np.random.default_rng(0).normal(size=(2000, 3))
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=dtype, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    fitted = KMeans(3, random_state=0).fit(mm)
    assert _chunked.is_out_of_core(mm)
    mm[-1, 0] = HUGE[dtype]  # in the last chunk
    mm.flush()
    with pytest.raises(ValueError, match="X holds values too large"):
        KMeans(3, random_state=0).fit(mm)
    for method in ("predict", "score"):
        with pytest.raises(ValueError, match="X holds values too large"):
            getattr(fitted, method)(mm)
    mm[:] = X * (1e-22 if dtype == np.float32 else 1e-170)
    mm.flush()
    with pytest.raises(ValueError, match="X holds values too small"):
        KMeans(3, random_state=0).fit(mm)
    mm[-500:] = X[-500:]  # the largest |x| is that of all chunks, not of each
    mm.flush()
    KMeans(3, random_state=0).fit(mm)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e-22), (np.float64, 1e-170)])
def test_values_whose_squared_distances_underflow(dtype, scale):
    X = np.random.default_rng(0).normal(size=(2000, 3))
    tiny = (X * scale).astype(dtype)
    with pytest.raises(ValueError, match="X holds values too small.*rescale X"):
        KMeans(3, random_state=0).fit(tiny)
    with pytest.raises(ValueError, match="X holds values too small"):
        MiniBatchKMeans(3, random_state=0).fit(tiny)
    with pytest.raises(ValueError, match="X holds values too small"):
        MiniBatchKMeans(3, random_state=0).partial_fit(tiny)
    # Not data to fit: their distances to centres of ordinary values are fine.
    fitted = KMeans(3, random_state=0).fit(X.astype(dtype))
    np.testing.assert_array_equal(fitted.predict(tiny),
                                  fitted.predict(np.zeros_like(tiny)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smallest_accepted_values_give_the_same_labels(dtype):
    """Scaled by a power of 2 to just above the floor, the fit is the unscaled one."""
    X = np.random.default_rng(0).normal(size=(2000, 3)).astype(dtype)
    floor = 2.0**12 * np.sqrt(np.finfo(dtype).tiny)
    scale = 2.0 ** np.ceil(np.log2(floor / np.abs(X).max()))
    reference = KMeans(3, random_state=0).fit(X)
    km = KMeans(3, random_state=0).fit(X * dtype(scale))
    np.testing.assert_array_equal(km.labels_, reference.labels_)
    np.testing.assert_array_equal(km.cluster_centers_, reference.cluster_centers_ * scale)
    with pytest.raises(ValueError, match="values too small"):
        KMeans(3, random_state=0).fit(X * dtype(scale / 2))


def test_all_zero_data_is_not_too_small():
    km = KMeans(1).fit(np.zeros((10, 2)))
    assert km.inertia_ == 0
    with pytest.raises(ValueError, match="distinct"):
        KMeans(2, random_state=0).fit(np.zeros((10, 2), np.float32))


def test_grid_rows_too_large():
    """Repeated rows on a grid skip X's own scan (their search checks finiteness): their
    magnitude must still be checked."""
    rng = np.random.default_rng(0)
    X = (rng.integers(0, 8, size=(200_000, 3)) * 1e19).astype(np.float32)
    with pytest.raises(ValueError, match="X holds values too large"):
        KMeans(4, n_init=1, random_state=0).fit(X)
    KMeans(4, n_init=1, random_state=0).fit(X / np.float32(1e19))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("init", [[[0, 0, 0], [1e300, 1, 1]],
                                  np.array([[0, 0, 0], [-1e39, 1, 1]])])
def test_init_beyond_the_range_of_x_dtype(init):
    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="init overflows float32"):
        KMeans(2, init=init).fit(X)
    with pytest.raises(ValueError, match="init overflows float32"):
        MiniBatchKMeans(2, init=init).fit(X)
    with pytest.raises(ValueError, match="returned by init overflows float32"):
        KMeans(2, init=lambda X, k, random_state: np.asarray(init)).fit(X)


@pytest.mark.filterwarnings("error")
def test_float64_centres_beyond_float32_test_data():
    X = np.random.default_rng(0).normal(size=(50, 3))
    fitted = KMeans(2, random_state=0).fit(X * 1e100)
    for method in ("predict", "transform", "score"):
        with pytest.raises(ValueError, match="cluster_centers_ overflows float32"):
            getattr(fitted, method)(X.astype(np.float32))


# -- bad parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize("params, error, match", [
    ({"n_clusters": 0}, ValueError, "n_clusters"),
    ({"n_clusters": -2}, ValueError, "n_clusters"),
    ({"n_clusters": 2.0}, ValueError, "n_clusters"),
    ({"n_clusters": "2"}, ValueError, "n_clusters"),
    ({"n_clusters": True}, ValueError, "n_clusters"),
    ({"n_clusters": None}, ValueError, "n_clusters"),
    ({"tol": -1e-4}, ValueError, "tol"),
    ({"tol": np.nan}, ValueError, "tol"),
    ({"tol": "0"}, ValueError, "tol"),
    ({"tol": True}, ValueError, "tol"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"max_iter": 2.5}, ValueError, "max_iter"),
    ({"n_init": 0}, ValueError, "n_init"),
    ({"n_init": "many"}, ValueError, "n_init"),
    ({"n_init": 1.5}, ValueError, "n_init"),
    ({"init": "kmeans++"}, ValueError, "init"),
    ({"init": 3}, ValueError, "init must be 'k-means"),
    ({"init": None}, ValueError, "init must be 'k-means"),
    ({"algorithm": "elkan"}, ValueError, "algorithm"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"n_threads": -1}, ValueError, "n_threads"),
    ({"n_threads": 1.5}, ValueError, "n_threads"),
    ({"n_threads": "2"}, ValueError, "n_threads"),
    ({"random_state": "seed"}, ValueError, "random_state"),
    ({"random_state": 1.5}, ValueError, "random_state"),
    ({"random_state": -1}, ValueError, "[Ss]eed"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"callback": 3}, TypeError, "callback"),
])
def test_bad_parameters(X, params, error, match):
    options = {"n_clusters": 3, **params}
    with pytest.raises(error, match=match):
        KMeans(**options).fit(X)
    with pytest.raises(error, match=match):
        kmeans(X, **options)


@pytest.mark.parametrize("init, match", [
    (np.zeros((2, 3)), r"shape \(2, 3\)"),
    (np.zeros((3, 2)), r"shape \(3, 2\)"),
    (np.zeros(9), "2-D"),
    (np.array([[0, 0, 0], [1, 1, 1], [np.nan, 0, 0]]), "NaN"),
    (np.array([[0, 0, 0], [1, 1, 1], [np.inf, 0, 0]]), "NaN or infinity"),
])
def test_bad_init_array(X, init, match):
    with pytest.raises(ValueError, match=match):
        KMeans(3, init=init).fit(X)


@pytest.mark.parametrize("verbose", [np.False_, np.True_, False, 0])
def test_numpy_bool_verbose(X, verbose, capsys):
    KMeans(3, random_state=0, verbose=verbose).fit(X)
    MiniBatchKMeans(3, random_state=0, verbose=verbose).fit(X)
    assert bool(capsys.readouterr().out) == bool(verbose)


@pytest.mark.parametrize("n_threads", [2**31, 10**30])
def test_n_threads_beyond_a_c_int(X, n_threads):
    # Capped (no kernel starts more threads than it has chunks): the usual result.
    km = KMeans(3, random_state=0, n_threads=n_threads).fit(X)
    assert_same_fit(km, KMeans(3, random_state=0, n_threads=1).fit(X))
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    MiniBatchKMeans(3, random_state=0, n_threads=n_threads).fit(X)


def test_callable_init_returning_a_bad_array(X):
    with pytest.raises(ValueError, match="returned by init"):
        KMeans(3, init=lambda X, k, random_state: X[:k + 1]).fit(X)
    with pytest.raises(ValueError, match="the array returned by init must be numeric"):
        KMeans(3, init=lambda X, k, random_state: "bogus").fit(X)
    with pytest.raises(ValueError, match="NaN"):
        KMeans(3, init=lambda X, k, random_state: np.full((k, 3), np.nan)).fit(X)


# -- bad sample_weight ------------------------------------------------------------------------

@pytest.mark.parametrize("weights, error, match", [
    (-np.ones(60), ValueError, "negative"),
    (np.r_[np.ones(59), -1e-3], ValueError, "negative"),
    (np.r_[np.ones(59), np.nan], ValueError, "NaN"),
    (np.r_[np.ones(59), np.inf], ValueError, "infinity"),
    (np.ones(59), ValueError, "59"),
    (np.ones(61), ValueError, "61"),
    (np.ones((60, 1)), ValueError, "1-D"),
    (np.ones((1, 60)), ValueError, "1-D"),
    (np.zeros(60), ValueError, "zero"),
    (["a"] * 60, TypeError, "numeric"),
    (np.full(60, 1 + 5j), ValueError, "Complex data not supported: sample_weight"),
    (np.full(60, 1 + 0j), ValueError, "Complex data not supported: sample_weight"),
])
def test_bad_sample_weight(X, weights, error, match):
    with pytest.raises(error, match=match):
        KMeans(3).fit(X, sample_weight=weights)


def test_sample_weight_checked_in_x_dtype(X):
    # Finite in float64 but infinite, or all zero, once cast to float32 like X.
    X32 = X.astype(np.float32)
    with pytest.raises(ValueError, match="infinity"):
        KMeans(3).fit(X32, sample_weight=np.full(60, 1e39))
    with pytest.raises(ValueError, match="zero"):
        KMeans(3).fit(X32, sample_weight=np.full(60, 1e-50))
    KMeans(3, random_state=0).fit(X, sample_weight=np.full(60, 1e39))


def test_scalar_sample_weight_is_uniform(X):
    a = KMeans(3, random_state=0).fit(X, sample_weight=2.0)
    b = KMeans(3, random_state=0).fit(X)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12)
    assert a.inertia_ == pytest.approx(2 * b.inertia_, rel=1e-12)


# -- using an estimator before fit or with the wrong features ---------------------------------

@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_not_fitted(X, method):
    with pytest.raises(NotFittedError, match="not fitted"):
        getattr(KMeans(3), method)(X)
    assert issubclass(NotFittedError, ValueError)
    assert issubclass(NotFittedError, AttributeError)
    with pytest.raises(ValueError):
        getattr(KMeans(3), method)(X)
    with pytest.raises(AttributeError):
        getattr(KMeans(3), method)(X)


@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_wrong_number_of_features(fitted, X, method):
    with pytest.raises(ValueError, match="2 features, but KMeans is expecting 3"):
        getattr(fitted, method)(X[:, :2])
    with pytest.raises(ValueError, match="2-D"):
        getattr(fitted, method)(X[0])


@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_bad_test_data(fitted, X, method):
    X = X.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        getattr(fitted, method)(X)
    with pytest.raises(ValueError, match="0 sample"):
        getattr(fitted, method)(X[:0])


def test_score_with_bad_sample_weight(fitted, X):
    with pytest.raises(ValueError, match="negative"):
        fitted.score(X, sample_weight=-np.ones(len(X)))
    with pytest.raises(ValueError):
        fitted.score(X, sample_weight=np.ones(3))


# -- accepted input ---------------------------------------------------------------------------

def reference_fit(X, **options):
    return KMeans(3, random_state=0, **options).fit(np.asarray(X, dtype=np.float64))


def assert_same_fit(a, b):
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.inertia_ == b.inertia_


def test_lists(X):
    km = KMeans(3, random_state=0).fit(X.tolist())
    assert km.cluster_centers_.dtype == np.float64
    assert_same_fit(km, reference_fit(X))
    np.testing.assert_array_equal(km.predict(X[:5].tolist()), km.labels_[:5])


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64,
                                   np.float16, bool])
def test_integer_bool_and_small_float_dtypes_become_float64(X, dtype):
    Xt = (X > 0) if dtype is bool else (np.abs(X) * 10).astype(dtype)
    km = KMeans(3, random_state=0).fit(Xt)
    assert km.cluster_centers_.dtype == np.float64
    assert km.transform(Xt).dtype == np.float64
    assert_same_fit(km, reference_fit(Xt))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_dtypes_are_kept(X, dtype):
    km = KMeans(3, random_state=0).fit(X.astype(dtype))
    assert km.cluster_centers_.dtype == dtype
    assert km.transform(X.astype(dtype)).dtype == dtype


def test_fortran_order_and_strided_views(X):
    reference = reference_fit(X)
    assert_same_fit(KMeans(3, random_state=0).fit(np.asfortranarray(X)), reference)
    wide = np.zeros((60, 6))
    wide[:, ::2] = X
    assert_same_fit(KMeans(3, random_state=0).fit(wide[:, ::2]), reference)


def test_read_only_arrays(X):
    X = X.copy()
    X.flags.writeable = False
    w = np.linspace(1, 2, len(X))
    w.flags.writeable = False
    init = X[:3].copy()
    init.flags.writeable = False
    km = KMeans(3, random_state=0).fit(X, sample_weight=w)
    km.predict(X), km.transform(X), km.score(X, sample_weight=w)
    KMeans(3, init=init).fit(X)
    KMeans(3, init="random", random_state=0).fit(X, sample_weight=w)
    assert_same_fit(KMeans(3, random_state=0).fit(np.asfortranarray(X)), reference_fit(X))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_read_only_memmap(tmp_path, X, dtype):
    path = tmp_path / "x.dat"
    writer = np.memmap(path, dtype=dtype, mode="w+", shape=X.shape)
    writer[:] = X
    writer.flush()
    del writer
    mm = np.memmap(path, dtype=dtype, mode="r", shape=X.shape)
    # C-contiguous floating input is used in place, not copied.
    assert np.shares_memory(check_array(mm), mm)
    km = KMeans(3, random_state=0).fit(mm)
    assert_same_fit(km, KMeans(3, random_state=0).fit(np.array(mm)))
    np.testing.assert_array_equal(km.predict(mm), km.labels_)
    KMeans(3, init="random", random_state=0).fit(mm, sample_weight=np.ones(len(X)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_c_contiguous_float_input_is_not_copied(X, dtype):
    X = X.astype(dtype)
    assert check_array(X) is X
    assert check_array(np.asfortranarray(X)).flags.c_contiguous


@pytest.mark.parametrize("init", ["k-means++", "random", "array"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_are_never_modified(X, init, dtype):
    X = X.astype(dtype)
    w = np.linspace(0, 2, len(X))
    init = X[:3] * 1.5 if init == "array" else init
    saved = [np.copy(a) for a in (X, w)] + ([np.copy(init)] if isinstance(init, np.ndarray)
                                          else [])
    km = KMeans(3, init=init, n_init=1, random_state=0).fit(X, sample_weight=w)
    km.predict(X), km.transform(X), km.score(X, sample_weight=w)
    np.testing.assert_array_equal(X, saved[0])
    np.testing.assert_array_equal(w, saved[1])
    if isinstance(init, np.ndarray):
        np.testing.assert_array_equal(init, saved[2])


def test_fitted_centres_do_not_alias_the_init_array(X):
    init = X[:3].copy()
    km = KMeans(3, init=init).fit(X)
    assert not np.shares_memory(km.cluster_centers_, init)


def test_pandas_dataframe(X):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    km = KMeans(3, random_state=0).fit(df)
    assert km.feature_names_in_.tolist() == ["a", "b", "c"]
    assert_same_fit(km, reference_fit(X))
    np.testing.assert_array_equal(km.predict(df), km.labels_)
    with pytest.raises(ValueError, match="feature names"):
        km.predict(pd.DataFrame(X, columns=["x", "y", "z"]))
    with pytest.raises(ValueError, match="feature names"):
        km.predict(df[["b", "a", "c"]])
    with pytest.warns(UserWarning, match="feature names"):
        km.predict(X)
    # Refitting on an array forgets the names.
    km.fit(X)
    assert not hasattr(km, "feature_names_in_")
    float32_frame = pd.DataFrame(X.astype(np.float32), columns=["a", "b", "c"])
    assert KMeans(3, random_state=0).fit(float32_frame).cluster_centers_.dtype == np.float32
    mixed = pd.DataFrame({"a": X[:, 0].astype(np.float32), "b": (X[:, 1] * 10).astype(int)})
    assert KMeans(3, random_state=0).fit(mixed).cluster_centers_.dtype == np.float64


def test_public_exports():
    for name in fastkm.__all__:
        assert hasattr(fastkm, name)
