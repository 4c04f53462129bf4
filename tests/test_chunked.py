"""Out-of-core fits: a large memmap is fitted chunk by chunk (fastkm._chunked)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastkm
from fastkm import _chunked


@pytest.fixture
def small_chunks(monkeypatch):
    """Every memmap takes the chunked path, in chunks of a few thousand rows."""
    monkeypatch.setattr(_chunked, "MEMMAP_THRESHOLD_BYTES", 0)
    monkeypatch.setattr(_chunked, "CHUNK_BYTES", 1 << 16)


def blobs(n, d, k, seed=0, dtype=np.float64):
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    return (centers[rng.randint(k, size=n)] + rng.randn(n, d)).astype(dtype)


def to_memmap(path, X):
    writer = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    writer[:] = X
    writer.flush()
    del writer
    return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)


def assert_same(a, b):
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.n_iter_ == b.n_iter_
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_same_fit_as_in_memory(tmp_path, small_chunks, dtype, weighted):
    X = blobs(20000, 4, 6, dtype=dtype)
    mm = to_memmap(tmp_path / "x.dat", X)
    w = np.random.RandomState(1).uniform(0, 2, len(X)) if weighted else None
    init = X[:6].copy()
    chunked = fastkm.KMeans(6, init=init).fit(mm, sample_weight=w)
    assert _chunked.RowReader(mm).chunk_rows < len(X) // 4  # several chunks
    in_memory = fastkm.KMeans(6, init=init).fit(X, sample_weight=w)
    assert_same(chunked, in_memory)
    assert chunked.cluster_centers_.dtype == dtype
    np.testing.assert_array_equal(chunked.predict(mm), in_memory.predict(X))
    assert chunked.score(mm, sample_weight=w) == pytest.approx(
        in_memory.score(X, sample_weight=w), rel=1e-9)


def test_empty_cluster_reseeding_as_in_memory(tmp_path, small_chunks):
    X = blobs(20000, 3, 5)
    mm = to_memmap(tmp_path / "x.dat", X)
    init = np.vstack([X[:4], [[1e3, 1e3, 1e3]]])  # the far centre gets no sample
    assert_same(fastkm.KMeans(5, init=init).fit(mm), fastkm.KMeans(5, init=init).fit(X))


def test_row_slice_and_integer_memmaps(tmp_path, small_chunks):
    X = blobs(20000, 3, 4)
    mm = to_memmap(tmp_path / "x.dat", X)
    init = X[5000:5004].copy()
    assert _chunked.RowReader(mm[5000:]).filename is not None
    assert_same(fastkm.KMeans(4, init=init).fit(mm[5000:]),
                fastkm.KMeans(4, init=init).fit(X[5000:]))
    Xi = np.round(X * 10).astype(np.int32)
    mi = to_memmap(tmp_path / "i.dat", Xi)
    init = Xi[:4].astype(np.float64)
    assert_same(fastkm.KMeans(4, init=init).fit(mi), fastkm.KMeans(4, init=init).fit(Xi))


def test_kmeanspp_on_a_sample(tmp_path, small_chunks):
    X = blobs(30000, 3, 5, dtype=np.float32)
    mm = to_memmap(tmp_path / "x.dat", X)
    a = fastkm.KMeans(5, random_state=0, init_size=2000, n_init=3).fit(mm)
    b = fastkm.KMeans(5, random_state=0, init_size=2000, n_init=3).fit(mm)
    assert_same(a, b)
    reference = fastkm.KMeans(5, random_state=0, n_init=3).fit(X)
    assert a.inertia_ <= 1.05 * reference.inertia_
    np.testing.assert_array_equal(a.predict(mm), a.labels_)
    fastkm.KMeans(5, init="random", random_state=0, n_init=2).fit(mm)


def test_non_finite_memmap_raises(tmp_path, small_chunks):
    X = blobs(5000, 3, 2)
    X[4321, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fastkm.KMeans(2, random_state=0).fit(to_memmap(tmp_path / "x.dat", X))


def test_small_memmaps_stay_on_the_in_memory_path(tmp_path):
    mm = to_memmap(tmp_path / "x.dat", blobs(1000, 2, 2))
    assert not _chunked.is_out_of_core(mm)
    assert not _chunked.is_out_of_core(np.zeros((10, 2)))


def test_peak_resident_memory_stays_far_below_the_file(tmp_path):
    """A 4M x 8 float32 memmap (128 MB): peak RSS growth of fit and predict, labels aside,
    is a small fraction of it."""
    n, d = 4_000_000, 8
    path = tmp_path / "big.dat"
    writer = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, d))
    rng = np.random.RandomState(0)
    centers = rng.uniform(-10, 10, size=(8, d)).astype(np.float32)
    for start in range(0, n, 500_000):
        rows = min(500_000, n - start)
        writer[start:start + rows] = centers[rng.randint(8, size=rows)] + \
            rng.randn(rows, d).astype(np.float32)
    writer.flush()
    del writer
    script = textwrap.dedent(f"""
        import numpy as np, fastkm
        from fastkm import _chunked
        _chunked.MEMMAP_THRESHOLD_BYTES = 0
        _chunked.CHUNK_BYTES = 4 << 20
        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        X = np.memmap({str(path)!r}, dtype=np.float32, mode="r", shape=({n}, {d}))
        before = status("VmRSS")
        km = fastkm.KMeans(8, random_state=0, max_iter=4, n_threads=2).fit(X)
        labels = km.predict(X)
        print(status("VmHWM") - before, km.n_iter_)
        assert (labels == km.labels_).all()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    growth, file_bytes = int(out[0]), n * d * 4
    # Beyond the labels of fit and of predict (16 MB each): one 4 MiB chunk, the init
    # sample and small buffers; the file is 128 MB.
    assert growth - 2 * 4 * n < 0.25 * file_bytes, (growth, file_bytes)


class RowStore:
    """An array-like as h5py or zarr offer: dtype, shape and row slicing, no __array__."""

    def __init__(self, X):
        self._X = X
        self.dtype = X.dtype
        self.shape = X.shape
        self.largest_read = 0

    def __getitem__(self, rows):
        part = self._X[rows]
        self.largest_read = max(self.largest_read, len(part))
        return part.copy()


def test_array_like_read_in_chunks(small_chunks):
    X = blobs(20000, 4, 5, dtype=np.float32)
    store = RowStore(X)
    assert _chunked.is_out_of_core(store)
    init = X[:5].copy()
    chunked = fastkm.KMeans(5, init=init).fit(store)
    assert_same(chunked, fastkm.KMeans(5, init=init).fit(X))
    np.testing.assert_array_equal(chunked.predict(store), chunked.labels_)
    assert store.largest_read <= _chunked.RowReader(store).chunk_rows < len(X)
    fastkm.KMeans(5, random_state=0).fit(store)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_sparse_weights_seed_from_positive_rows(tmp_path, small_chunks, init):
    """Two weighted rows of 20000: a uniform sample of 1000 rows held none of them ('The
    initialization sample of 0 rows ...') while the in-memory fit succeeds."""
    X = blobs(20000, 3, 2)
    w = np.zeros(len(X))
    w[[4321, 17000]] = [1.0, 3.0]
    mm = to_memmap(tmp_path / "x.dat", X)
    chunked = fastkm.KMeans(2, init=init, init_size=1000, random_state=0).fit(
        mm, sample_weight=w)
    in_memory = fastkm.KMeans(2, init=init, init_size=1000, random_state=0).fit(
        X, sample_weight=w)
    for km in (chunked, in_memory):
        np.testing.assert_array_equal(np.sort(km.cluster_centers_, axis=0),
                                      np.sort(X[[4321, 17000]], axis=0))
        assert km.inertia_ == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("container", ["csr_matrix", "csr_array"])
def test_large_sparse_matrix_gets_the_sparse_error(small_chunks, container):
    """A sparse matrix has a dtype, a 2-D shape and row slicing, and its dense size was
    above the threshold: it went to the chunked path and failed there with 'setting an
    array element with a sequence'."""
    sparse = pytest.importorskip("scipy.sparse")
    S = getattr(sparse, container)(sparse.random(300, 4, density=0.5, random_state=0))
    assert not _chunked.is_out_of_core(S)
    dense = S.toarray()
    km = fastkm.KMeans(2, random_state=0).fit(dense)
    mbk = fastkm.MiniBatchKMeans(2, random_state=0, n_init=1).fit(dense)
    calls = [lambda: fastkm.KMeans(2, random_state=0).fit(S), lambda: km.predict(S),
             lambda: km.score(S), lambda: mbk.fit(S), lambda: mbk.partial_fit(S),
             lambda: mbk.predict(S), lambda: mbk.score(S)]
    for call in calls:
        with pytest.raises(TypeError, match="X is a sparse matrix"):
            call()
