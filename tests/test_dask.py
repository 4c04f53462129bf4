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
