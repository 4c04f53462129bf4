"""fastkm.dask.KMeans on a real dask.distributed LocalCluster with worker processes."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastkm  # noqa: E402
import fastkm.dask  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, memory_limit="1GiB")
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _blobs(n, d, k, seed=0, dtype=np.float64):
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-10, 10, (k, d))
    X = centers[rng.randint(k, size=n)] + rng.randn(n, d)
    return X.astype(dtype)


def _assert_same_fit(km, ref):
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)
    assert km.n_iter_ == ref.n_iter_
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)


def test_import_fastkm_does_not_import_dask():
    code = "import sys, fastkm; fastkm.KMeans(2); sys.exit('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("algorithm", ["lloyd", "exponion", "hamerly", "yinyang"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_result_as_in_memory_fit(client, dtype, algorithm):
    X = _blobs(12_000, 5, 7, dtype=dtype)
    init = X[:7].copy()  # a poor start: many iterations
    ref = fastkm.KMeans(7, init=init, tol=0, max_iter=100, algorithm="lloyd").fit(X)
    km = fastkm.dask.KMeans(7, init=init, tol=0, max_iter=100, algorithm=algorithm).fit(
        da.from_array(X, chunks=(2_500, 5)))
    assert km.cluster_centers_.dtype == dtype
    if dtype == np.float32:  # centres are rounded to float32 on both sides
        np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, atol=1e-5)
        np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)
        assert km.n_iter_ == ref.n_iter_
    else:
        _assert_same_fit(km, ref)


def test_tol_and_sample_weight_match_in_memory(client):
    X = _blobs(8_000, 3, 5, seed=1)
    w = np.random.RandomState(2).uniform(0, 3, len(X))
    w[::10] = 0
    init = X[[0, 1, 2, 3, 5]].copy()
    ref = fastkm.KMeans(5, init=init, tol=1e-3).fit(X, sample_weight=w)
    km = fastkm.dask.KMeans(5, init=init, tol=1e-3).fit(da.from_array(X, chunks=(1_500, 3)),
                                                        sample_weight=da.from_array(w))
    _assert_same_fit(km, ref)


@pytest.mark.parametrize("algorithm", ["lloyd", "exponion", "hamerly", "yinyang"])
def test_empty_clusters_reseeded_as_in_memory(client, algorithm):
    X = _blobs(6_000, 2, 4, seed=3)
    init = np.vstack([X[:3], [[1e3, 1e3], [2e3, 2e3]]])  # two centres attract nothing
    ref = fastkm.KMeans(5, init=init, tol=0, algorithm=algorithm).fit(X)
    # Uneven blocks, one of them empty.
    dX = da.from_array(X, chunks=((1_000, 0, 2_500, 1_700, 800), 2))
    km = fastkm.dask.KMeans(5, init=init, tol=0, algorithm=algorithm).fit(dX)
    _assert_same_fit(km, ref)


def test_kmeans_parallel_init(client):
    X = _blobs(10_000, 4, 8, seed=4)
    dX = da.from_array(X, chunks=(2_000, 4))
    km = fastkm.dask.KMeans(8, random_state=0).fit(dX)
    again = fastkm.dask.KMeans(8, random_state=0).fit(dX)
    np.testing.assert_array_equal(km.cluster_centers_, again.cluster_centers_)
    ref = fastkm.KMeans(8, random_state=0, n_init=5).fit(X)
    assert km.inertia_ <= 1.05 * ref.inertia_
    assert np.bincount(km.labels_.compute(), minlength=8).min() > 0
    # Other inits, and the inertia reported is the one of the returned centres.
    for init in ("k-means++", "random"):
        other = fastkm.dask.KMeans(8, init=init, random_state=0, init_size=3_000).fit(dX)
        assert -other.score(dX) == pytest.approx(other.inertia_, rel=1e-9)


def test_predict_and_transform_are_lazy_and_chunked_like_input(client):
    X = _blobs(5_000, 3, 4, seed=5).astype(np.float32)
    dX = da.from_array(X, chunks=(1_200, 3))
    km = fastkm.dask.KMeans(4, random_state=1).fit(dX)
    ref = fastkm.KMeans(4, init=km.cluster_centers_).fit(X)  # same centres, in memory
    labels = km.predict(dX)
    distances = km.transform(dX)
    assert isinstance(labels, da.Array) and isinstance(distances, da.Array)
    assert isinstance(km.labels_, da.Array)
    assert labels.chunks == (dX.chunks[0],) and labels.dtype == np.int32
    assert distances.chunks == (dX.chunks[0], (4,)) and distances.dtype == np.float32
    np.testing.assert_array_equal(labels.compute(), ref.predict(X))
    np.testing.assert_allclose(distances.compute(), ref.transform(X), rtol=1e-6)


def test_dask_dataframe_and_params(client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X = _blobs(3_000, 2, 3, seed=6)
    df = dd.from_pandas(pd.DataFrame(X, columns=["a", "b"]), npartitions=3)
    init = X[:3].copy()
    km = fastkm.dask.KMeans(3, init=init).fit(df)
    ref = fastkm.KMeans(3, init=init).fit(X)
    _assert_same_fit(km, ref)
    assert list(km.feature_names_in_) == ["a", "b"]
    assert km.get_params()["init"] is init
    assert fastkm.dask.KMeans().set_params(n_clusters=3).n_clusters == 3
    assert set(fastkm.KMeans().get_params()) <= set(fastkm.dask.KMeans().get_params())


@pytest.mark.parametrize("algorithm", ["lloyd", "exponion"])
def test_default_scheduler_without_client(client, algorithm):
    import dask

    X = _blobs(2_000, 2, 3, seed=7)
    init = X[:3].copy()
    with dask.config.set(scheduler="threads"):
        km = fastkm.dask.KMeans(3, init=init, tol=0, algorithm=algorithm).fit(
            da.from_array(X, chunks=(500, 2)))
        _assert_same_fit(km, fastkm.KMeans(3, init=init, tol=0).fit(X))
    # On the cluster the blocks run in one task per worker, the partials are added in the
    # same order: bit-identical.
    on_cluster = fastkm.dask.KMeans(3, init=init, tol=0, algorithm=algorithm).fit(
        da.from_array(X, chunks=(500, 2)))
    np.testing.assert_array_equal(on_cluster.cluster_centers_, km.cluster_centers_)
    assert on_cluster.inertia_ == km.inertia_ and on_cluster.n_iter_ == km.n_iter_


def test_one_task_per_worker_thread_over_its_blocks(client):
    """The passes' tasks: one per worker thread, each over blocks its worker holds, with
    about equal rows (blocks beyond a worker's share go to the other worker)."""
    X = _blobs(9_000, 2, 3, seed=12)
    chunks = (1_000, 2_000, 500, 1_500, 1_000, 0, 3_000)
    dX = da.from_array(X, chunks=(chunks, 2)).persist()
    blocks = fastkm.dask._Blocks(dX, None)
    assert blocks.client is not None
    groups = blocks.groups
    assert len(groups) == 2
    assert sorted(i for g in groups for i in g) == list(range(len(chunks)))
    assert all(g == sorted(g) for g in groups)
    rows = [sum(chunks[i] for i in g) for g in groups]
    assert abs(rows[0] - rows[1]) <= max(chunks)
    # Not persisted on the cluster: one task per block.
    assert len(fastkm.dask._Blocks(da.from_array(X, chunks=(chunks, 2)), None).groups) == \
        len(chunks)


@pytest.mark.parametrize("algorithm", ["lloyd", "exponion"])
def test_worker_killed_during_fit(client, algorithm):
    """A worker process dies between two iterations: lost blocks are recomputed (and with
    'exponion', the per-row state it held, from the previous passes' on the other one)."""
    X = _blobs(20_000, 4, 6, seed=8)
    init = X[:6].copy()
    ref = fastkm.KMeans(6, init=init, tol=0, max_iter=60).fit(X)
    assert ref.n_iter_ > 4
    dX = da.from_array(X, chunks=(2_000, 4))
    pids = client.run(os.getpid)
    address, victim = sorted(pids.items())[0]
    killed = []

    def kill_at_third_iteration(info):
        if info.iteration == 3:
            held = [str(key) for key in client.has_what()[address]]
            assert any("ascontiguousarray" in key for key in held)  # blocks of X
            # The bounded passes' outputs (per-row state) live on the workers.
            assert any("_group_bounded" in key for key in held) == (algorithm != "lloyd")
            os.kill(victim, signal.SIGKILL)
            killed.append(time.monotonic())

    km = fastkm.dask.KMeans(6, init=init, tol=0, max_iter=60, algorithm=algorithm,
                            callback=kill_at_third_iteration).fit(dX)
    assert killed
    _assert_same_fit(km, ref)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert victim not in client.run(os.getpid).values()


def test_auto_runs_exponion_with_many_clusters(client):
    """algorithm='auto' picks Exponion below 5 features with many clusters (Dask's blocks
    are not sorted for 'filter'; its iterations report a NaN inertia), with the same
    result as plain Lloyd and the in-memory fit."""
    X = _blobs(24_000, 2, 100, seed=11, dtype=np.float32)
    init = X[::120].copy()
    assert fastkm._lloyd.auto_algorithm(*X.shape, 200, 4, sorted_rows=False) == "exponion"
    dX = da.from_array(X, chunks=(5_000, 2))
    reported = {}

    def record(name):
        return lambda info: reported.setdefault(name, []).append(info.inertia)

    ref = fastkm.KMeans(200, init=init, tol=0).fit(X)
    auto = fastkm.dask.KMeans(200, init=init, tol=0, callback=record("auto")).fit(dX)
    lloyd = fastkm.dask.KMeans(200, init=init, tol=0, algorithm="lloyd",
                               callback=record("lloyd")).fit(dX)
    yinyang = fastkm.dask.KMeans(200, init=init, tol=0, algorithm="yinyang").fit(dX)  # groups
    assert ref.n_iter_ > 10
    assert np.isnan(reported["auto"]).all() and np.isfinite(reported["lloyd"]).all()
    for km in (auto, lloyd, yinyang):
        np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, atol=1e-5)
        np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)
        assert km.n_iter_ == ref.n_iter_
        assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-6)


def test_invalid_input(client):
    X = _blobs(1_000, 2, 3, seed=9)
    X[500, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fastkm.dask.KMeans(3).fit(da.from_array(X, chunks=(300, 2)))
    with pytest.raises(ValueError, match="n_samples"):
        fastkm.dask.KMeans(30).fit(da.from_array(X[:10], chunks=(5, 2)))
    with pytest.raises(ValueError, match="swap_trials"):
        fastkm.dask.KMeans(3, swap_trials=5).fit(da.from_array(X[:400], chunks=(300, 2)))


@pytest.fixture
def local_scheduler():
    import dask

    with dask.config.set(scheduler="threads"):
        yield


def test_zero_features_refused_as_in_memory(local_scheduler):
    """The kernels would read beyond the rows (a crash: munmap_chunk(): invalid pointer)."""
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    frame = dd.from_pandas(pd.DataFrame(_blobs(500, 3, 2), columns=list("abc")),
                           npartitions=5)
    for empty in (frame[[]], da.zeros((10, 0), chunks=5)):
        for init in ("k-means||", "k-means++"):
            with pytest.raises(ValueError, match=r"Found array with 0 feature\(s\)"):
                fastkm.dask.KMeans(1, init=init).fit(empty)
    km = fastkm.dask.KMeans(2, random_state=0).fit(da.from_array(_blobs(100, 3, 2)))
    for method in (km.predict, km.transform, km.score):
        with pytest.raises(ValueError, match=r"Found array with 0 feature\(s\)"):
            method(da.zeros((10, 0), chunks=5))


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "array"])
def test_magnitudes_checked_as_in_memory(local_scheduler, init):
    """Squared distances beyond the dtype gave a NaN inertia and wrong labels, or 'NaN or
    infinity' (float64), or blamed init (k-means||); values too small, an inertia of 0 and
    one cluster, or 'only 1 distinct point'."""
    X = _blobs(400, 3, 3, seed=13)
    for Y, message in (((X * 1e19).astype(np.float32), "values too large"),
                       (X * 1e153, "values too large"),
                       ((X * 1e-25).astype(np.float32), "values too small"),
                       (X * 1e-160, "values too small")):
        with pytest.raises(ValueError, match=message):
            fastkm.KMeans(3, random_state=0).fit(Y)
        start = init if init != "array" else Y[:3] / np.abs(Y).max()  # a valid init
        with pytest.raises(ValueError, match=f"^X holds {message}"):
            fastkm.dask.KMeans(3, init=start, random_state=0).fit(
                da.from_array(Y, chunks=(100, 3)))


def test_predict_transform_score_check_their_input(local_scheduler):
    X = _blobs(400, 3, 3, seed=14)
    dX = da.from_array(X, chunks=(100, 3))
    km = fastkm.dask.KMeans(3, random_state=0).fit(dX)
    bad = X.copy()
    bad[-1, 0] = np.nan  # in the last block: found when it is computed
    bad = da.from_array(bad, chunks=(100, 3))
    with pytest.raises(ValueError, match="NaN or infinity"):
        km.predict(bad).compute()
    with pytest.raises(ValueError, match="NaN or infinity"):
        km.transform(bad).compute()
    with pytest.raises(ValueError, match="NaN or infinity"):
        km.score(bad)
    with pytest.raises(ValueError, match="negative"):
        km.score(dX, sample_weight=-np.ones(400))
    with pytest.raises(ValueError, match="negative"):
        km.score(dX, sample_weight=da.from_array(-np.ones(400), chunks=150))
    for short in (np.ones(300), da.ones(300, chunks=100)):
        with pytest.raises(ValueError, match="300 entries but X has 400 samples"):
            km.score(dX, sample_weight=short)
    assert km.score(dX, sample_weight=2) == pytest.approx(2 * km.score(dX), rel=1e-12)
    with pytest.raises(ValueError, match="Complex data not supported"):
        km.predict(dX + 1j)
    far = fastkm.dask.KMeans(3, random_state=0).fit(dX)
    far.cluster_centers_ = far.cluster_centers_ * 1e39  # beyond float32
    for method in (far.predict, far.transform, far.score):
        with pytest.raises(ValueError, match="cluster_centers_ overflows float32"):
            method(dX.astype(np.float32))


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_sampled_inits_on_few_rows(local_scheduler, init):
    """init_size >= n takes all rows (a draw of n rows with replacement kept about 63%: 'X
    has only 7 distinct point(s)' for n = k = 10). A sample too poor to seed k centres
    because few rows weigh anything is drawn again among those that do; one too poor for
    repeated rows is an error that says so. Never all of X onto the client."""
    X = _blobs(40, 2, 3, seed=15)
    for n, k in ((10, 10), (40, 30)):
        km = fastkm.dask.KMeans(k, init=init, random_state=0, max_iter=1).fit(
            da.from_array(X[:n], chunks=(5, 2)))
        assert len(np.unique(km.cluster_centers_, axis=0)) == k
    sampled = []
    original = fastkm.dask._sampled_rows

    def recording(blocks, size, random_state, among=None):
        sampled.append((size, None if among is None else len(among)))
        return original(blocks, size, random_state, among)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastkm.dask, "_sampled_rows", recording)
        rows = _blobs(10_000, 2, 3, seed=15)
        weights = np.zeros(len(rows))
        weights[[10, 2_000, 5_000, 9_000, 9_999]] = 1  # 5 rows weigh: 20 draws miss them
        km = fastkm.dask.KMeans(5, init=init, init_size=20, random_state=0).fit(
            da.from_array(rows, chunks=(2_500, 2)), sample_weight=da.from_array(
                weights, chunks=2_500))
        assert km.inertia_ == pytest.approx(0, abs=1e-9)
        assert set(sampled) == {(20, None), (20, 5)}  # (a pair per initialization)
        repeated = np.repeat(X[:1], 10_000, axis=0)
        repeated[[10, 2_000, 5_000, 9_000]] = X[1:5]  # 5 distinct rows: 20 draws miss some
        with pytest.raises(ValueError, match="raise init_size or pass init as an array"):
            fastkm.dask.KMeans(5, init=init, init_size=20, random_state=0).fit(
                da.from_array(repeated, chunks=(2_500, 2)))


def test_dtypes_refused_as_in_memory(local_scheduler):
    X = _blobs(300, 2, 3, seed=16)
    with pytest.raises(ValueError, match="Complex data not supported: X is complex"):
        fastkm.dask.KMeans(3).fit(da.from_array(X + 1j, chunks=(100, 2)))
    with pytest.raises(TypeError, match="X has dtype datetime64"):
        fastkm.dask.KMeans(3).fit(da.zeros((300, 2), dtype="datetime64[s]", chunks=100))
    with pytest.raises(ValueError, match="X must be numeric"):
        fastkm.dask.KMeans(3).fit(da.from_array(np.full((300, 2), "a"), chunks=100))


def test_parameters_and_sample_weight_checked_as_in_memory(local_scheduler):
    X = _blobs(600, 2, 3, seed=17)
    dX = da.from_array(X, chunks=(200, 2))
    for params, message in (({"tol": True}, "tol"), ({"verbose": -1}, "verbose")):
        with pytest.raises(ValueError, match=message):
            fastkm.KMeans(3, **params).fit(X)
        with pytest.raises(ValueError, match=message):
            fastkm.dask.KMeans(3, **params).fit(dX)
    init = X[:3].copy()
    scalar = fastkm.dask.KMeans(3, init=init).fit(dX, sample_weight=2.0)
    array = fastkm.dask.KMeans(3, init=init).fit(dX, sample_weight=np.full(600, 2.0))
    np.testing.assert_array_equal(scalar.cluster_centers_, array.cluster_centers_)
    assert scalar.inertia_ == array.inertia_
    for weights in (np.array(["a"] * 600), da.from_array(np.array(["a"] * 600))):
        with pytest.raises(TypeError, match="sample_weight must be numeric"):
            fastkm.dask.KMeans(3).fit(dX, sample_weight=weights)
    # Weights of unknown chunk sizes, like X's; neither is modified.
    keep = dX[:, 0] > -100  # all rows
    dXu, wu = dX[keep], da.from_array(np.full(600, 2.0), chunks=150)[keep]
    assert np.isnan(dXu.chunks[0][0]) and np.isnan(wu.chunks[0][0])
    unknown = fastkm.dask.KMeans(3, init=init).fit(dXu, sample_weight=wu)
    np.testing.assert_array_equal(unknown.cluster_centers_, array.cluster_centers_)
    assert np.isnan(dXu.chunks[0][0]) and np.isnan(wu.chunks[0][0])


def test_pandas_dataframe_feature_names_checked():
    """predict, transform and score of a pandas DataFrame checked no feature names, so a
    frame with its columns reordered got wrong labels silently; fit on a pandas frame
    recorded none."""
    import warnings

    import dask

    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    X = _blobs(600, 3, 3, seed=11)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    reordered = df[["c", "b", "a"]]
    with dask.config.set(scheduler="sync"):
        km = fastkm.dask.KMeans(3, init=X[:3].copy()).fit(dd.from_pandas(df, npartitions=2))
        for method in (km.predict, km.transform, km.score):
            with pytest.raises(ValueError, match="feature names of X differ"):
                method(reordered)
            with pytest.warns(UserWarning, match="X does not have valid feature names"):
                method(X)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(km.predict(df).compute(), km.labels_.compute())

        fitted = fastkm.dask.KMeans(3, init=X[:3].copy()).fit(df)
        assert list(fitted.feature_names_in_) == ["a", "b", "c"]
        with pytest.raises(ValueError, match="feature names of X differ"):
            fitted.predict(reordered)
        unnamed = fastkm.dask.KMeans(3, init=X[:3].copy()).fit(X)
        assert not hasattr(unnamed, "feature_names_in_")
        with pytest.warns(UserWarning, match="X has feature names, but KMeans was fitted "
                                             "without feature names"):
            unnamed.predict(df)


def test_blocks_converted_to_the_declared_float_dtype():
    """A nullable Int64 column is declared float64 by to_dask_array but its blocks are
    int64: the fit failed with 'No matching signature found', predict and score with
    'data type <class 'numpy.int64'> not inexact'."""
    import dask

    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    df = pd.DataFrame({"x": pd.array([1, 2, 3, 40, 41, 42], dtype="Int64")})
    ddf = dd.from_pandas(df, npartitions=2)
    ref = fastkm.KMeans(2, init=[[1.0], [40.0]]).fit(df)
    with dask.config.set(scheduler="sync"):
        km = fastkm.dask.KMeans(2, init=[[1.0], [40.0]]).fit(ddf)
        _assert_same_fit(km, ref)
        np.testing.assert_array_equal(km.predict(ddf).compute(), ref.labels_)
        np.testing.assert_allclose(km.transform(ddf).compute(), ref.transform(df))
        assert km.score(ddf) == pytest.approx(ref.score(df))
        # A dask array whose declared dtype is not its blocks': fitted too.
        ints = da.from_array(np.array([[1], [2], [3], [40], [41], [42]]), chunks=(3, 1))
        mislabelled = ints.map_blocks(lambda b: b, dtype=np.float64)
        _assert_same_fit(fastkm.dask.KMeans(2, init=[[1.0], [40.0]]).fit(mislabelled), ref)


@pytest.mark.parametrize("factor", [float("inf"), float("nan"), True, 0, -1.0, "2"])
def test_oversampling_factor_checked(factor):
    """inf was accepted (and brought every row to the client), and so was True."""
    import dask

    X = _blobs(300, 2, 3, seed=12)
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match="oversampling_factor must be a finite "
                                             "positive number"):
            fastkm.dask.KMeans(3, oversampling_factor=factor).fit(da.from_array(X, 100))
        fastkm.dask.KMeans(3, oversampling_factor=0.5, random_state=0).fit(
            da.from_array(X, 100))


def test_values_too_large_refused_without_overflow_warning():
    """The combination of the blocks' statistics warned 'overflow encountered in square'
    (once per reduction node) before fit's ValueError."""
    import warnings

    import dask

    X = _blobs(400, 2, 3, seed=13) * 1e160
    with dask.config.set(scheduler="sync"), warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="too large"):
            fastkm.dask.KMeans(2, random_state=0).fit(da.from_array(X, chunks=(50, 2)))
