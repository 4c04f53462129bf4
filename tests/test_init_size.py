"""k-means++ on a sample (``KMeans(init_size=...)``) finds what k-means++ on all rows finds.

BENCHMARKS.md section 5 measures the option on the issue-4 workloads
(benchmarks/compare_init_size.py); these tests catch it breaking, on data small enough to
fit in a second.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fastkm
from fastkm._init import initial_centers

SEEDS = range(10)


def sorted_blobs(n=20_000, d=4, k=20, seed=0):
    """k well separated blobs, rows sorted by blob: a sample of the first rows sees few."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-50, 50, size=(k, d))
    return (centres[np.sort(rng.integers(k, size=n))] + rng.normal(size=(n, d))).astype(np.float32)


def mean_inertia(X, k, **options):
    return np.mean([fastkm.KMeans(k, random_state=seed, n_init=1, **options).fit(X).inertia_
                    for seed in SEEDS])


def test_sampled_kmeanspp_matches_full_kmeanspp():
    X, k = sorted_blobs(), 20
    full = mean_inertia(X, k)
    # 20 rows per cluster, the per-cluster floor of the out-of-core default, 2% of the rows.
    assert mean_inertia(X, k, init_size=20 * k) <= 1.01 * full
    # The test can fail: a sample of 2k rows misses blobs, and the runs end in local minima.
    assert mean_inertia(X, k, init_size=2 * k) > 1.5 * full


def test_sampled_kmeanspp_is_reproducible_and_thread_independent():
    X = sorted_blobs()
    fits = [fastkm.KMeans(20, random_state=3, n_init=2, init_size=500, n_threads=t).fit(X)
            for t in (1, 2, 1)]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.cluster_centers_, fits[0].cluster_centers_)
        np.testing.assert_array_equal(other.labels_, fits[0].labels_)


def test_sample_skips_rows_of_zero_weight():
    X = sorted_blobs(n=4000, k=5)
    X[::2] = 1000.0 + np.arange(len(X[::2]), dtype=np.float32)[:, None]  # far and distinct
    weights = np.ones(len(X), dtype=X.dtype)
    weights[::2] = 0
    for seed in SEEDS:
        centres = initial_centers(X, 5, "k-means++", weights, np.random.RandomState(seed), 1,
                                  init_size=200)
        assert np.all(np.abs(centres) < 100)


def test_compare_init_size_script_runs(monkeypatch, capsys):
    pytest.importorskip("sklearn")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "compare_init_size.py"
    spec = importlib.util.spec_from_file_location("compare_init_size", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    workload = ("sorted blobs", sorted_blobs(n=5000, k=5))
    monkeypatch.setattr(module, "WORKLOADS", {"tiny": (lambda quick: workload, (5,))})
    assert module.main(["--workloads", "tiny", "--seeds", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| sorted blobs, k=5")]
    assert [row.split("|")[2].split("=")[0].strip() for row in rows] == ["20k", "100k"]
