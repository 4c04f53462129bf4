"""pytest-benchmark suites for the GUIDE's k-means workloads (smaller sizes, a minute or two).

Not part of the default test run (pyproject's ``testpaths`` is ``tests``). Run them with

    python -m pytest benchmarks/ --benchmark-only

Each workload is benchmarked two ways: ``fastkm.KMeans.fit`` from fixed initial centres with
``max_iter=10, tol=0`` (the same start every round), and one Lloyd pass of the kernel
(nearest centres, per-cluster sums and inertia). Sizes are a quarter of the GUIDE's photo
(1280x854 pixels) and a tenth of its blobs, so that the suite stays short; use
``benchmarks/compare_kmeans.py`` for the full sizes and the comparison with other libraries.
"""

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

import fastkm  # noqa: E402
from fastkm._isa import core  # noqa: E402

SEED = 0
N_ITER = 10


def _photo_pixels():
    from PIL import Image

    try:
        from sklearn.datasets import load_sample_image
    except ImportError:
        pytest.skip("scikit-learn provides the sample photo")
    img = Image.fromarray(load_sample_image("china.jpg"))
    img = img.resize((1280, 854), Image.Resampling.BICUBIC)
    return (np.asarray(img, dtype=np.float32) / 255).reshape(-1, 3)


def _blobs(n, d, n_centers):
    rng = np.random.default_rng(SEED)
    centers = rng.uniform(-10, 10, size=(n_centers, d))
    which = rng.integers(0, n_centers, size=n)
    X = centers[which] + rng.standard_normal((n, d))
    return np.ascontiguousarray(X, dtype=np.float32)


_CACHE = {}


def _data(name):
    if name not in _CACHE:
        if name == "photo":
            _CACHE[name] = _photo_pixels()
        elif name == "blobs8":
            _CACHE[name] = _blobs(100_000, 8, 100)
        else:
            _CACHE[name] = _blobs(20_000, 128, 256)
    return _CACHE[name]


WORKLOADS = [
    pytest.param("photo", 16, id="photo-d3-k16"),
    pytest.param("photo", 64, id="photo-d3-k64"),
    pytest.param("photo", 256, id="photo-d3-k256"),
    pytest.param("blobs8", 100, id="blobs100k-d8-k100"),
    pytest.param("blobs128", 256, id="blobs20k-d128-k256"),
]


def _init(X, k):
    rng = np.random.default_rng(SEED)
    return np.ascontiguousarray(X[rng.choice(len(X), size=k, replace=False)])


@pytest.mark.parametrize("algorithm", ["lloyd", "hamerly"])
@pytest.mark.parametrize("name, k", WORKLOADS)
def test_fit_10_iterations(benchmark, name, k, algorithm):
    X = _data(name)
    init = _init(X, k)
    benchmark.group = f"fit-{name}-k{k}"
    benchmark.extra_info["n_samples"], benchmark.extra_info["n_features"] = X.shape

    def fit():
        return fastkm.KMeans(n_clusters=k, init=init, n_init=1, max_iter=N_ITER, tol=0,
                             algorithm=algorithm).fit(X)

    km = benchmark.pedantic(fit, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["n_iter"] = int(km.n_iter_)
    assert 1 <= km.n_iter_ <= N_ITER
    assert np.isfinite(km.inertia_)


@pytest.mark.parametrize("name, k", WORKLOADS)
def test_lloyd_pass(benchmark, name, k):
    X = _data(name)
    n, d = X.shape
    centers = _init(X, k)
    weights = np.ones(n, dtype=X.dtype)
    labels = np.empty(n, dtype=np.int32)
    sums = np.empty((k, d))
    weight_sums = np.empty(k)
    threads = fastkm.build_info()["threads"]
    benchmark.group = f"lloyd-pass-{name}-k{k}"

    inertia = benchmark.pedantic(
        core.lloyd_pass, args=(X, weights, centers, labels, sums, weight_sums, threads),
        rounds=5, iterations=1, warmup_rounds=1)
    assert np.isfinite(inertia)
    assert weight_sums.sum() == pytest.approx(n)
