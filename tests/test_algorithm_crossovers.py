"""benchmarks/algorithm_crossovers.py runs end to end (on tiny workloads), and
auto_algorithm picks each algorithm in the region BENCHMARKS.md section 9 measured."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fastkm._lloyd import auto_algorithm

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "algorithm_crossovers.py"


def test_crossover_table_times_every_algorithm_and_shows_autos_pick(monkeypatch, capsys):
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("algorithm_crossovers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    X3 = rng.normal(size=(30_000, 3)).astype(np.float32)
    X8 = rng.normal(size=(30_000, 8)).astype(np.float32)
    monkeypatch.setattr(module, "workloads", lambda quick: [
        ("tiny", X3, 8), ("tiny", X3, 200), ("tiny", X8, 24), ("tiny", X8, 10)])
    module.main(["--algorithms", "lloyd,hamerly,exponion", "--max-features", "8"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert len(lines) == 4
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert [row[-1] for row in cells] == ["lloyd", "lloyd", "hamerly", "lloyd"]  # (30k rows)
    for row in cells:
        assert all(float(t) > 0 for t in row[2:5])
        assert "/" not in row[5]  # every algorithm ran the same iterations
    # --min-features and --max-features select the workloads by their number of features.
    module.main(["--algorithms", "lloyd", "--min-features", "4", "--max-features", "8"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert [line.split("|")[2].strip() for line in lines] == ["24", "10"]
    # --max-iter: fits of exactly that many iterations.
    module.main(["--algorithms", "lloyd,hamerly", "--max-features", "8", "--max-iter", "3"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert [line.split("|")[5].strip() for line in lines] == ["3"] * 4


@pytest.mark.parametrize("shape, expected", [
    ((10**6, 3, 15), "lloyd"),          # below FILTER_MIN_CLUSTERS: the vectorized pass
    ((10**6, 3, 16), "filter"),         # the filtering algorithm below 5 features
    ((10**6, 4, 64), "filter"),
    ((10**6, 2, 500), "filter"),
    ((20_000, 3, 256), "lloyd"),        # 78 samples per cluster: too few for the filter
    ((256 * 400, 3, 400), "filter"),    # FILTER_MIN_ROWS_PER_CLUSTER
    ((256 * 400 - 1, 3, 400), "lloyd"),
    ((100_000, 3, 64), "filter"),       # FILTER_MIN_ROWS
    ((99_999, 3, 64), "lloyd"),
    ((10**6, 8, 11), "lloyd"),          # below HAMERLY_MIN_CLUSTERS
    ((10**6, 5, 12), "hamerly"),
    ((10**6, 64, 95), "hamerly"),
    ((10**6, 8, 191), "hamerly"),       # below EXPONION_FEW_FEATURES features:
    ((10**6, 8, 192), "exponion"),      # EXPONION_MIN_CLUSTERS_FEW_FEATURES
    ((10**6, 11, 191), "hamerly"),
    ((10**6, 12, 95), "hamerly"),
    ((10**6, 12, 96), "exponion"),      # EXPONION_MIN_CLUSTERS from 12 features
    ((11_000, 8, 12), "lloyd"),         # 917 samples per cluster: too few for Hamerly
    ((10**6, 95, 95), "hamerly"),
    ((10**6, 95, 96), "exponion"),
    ((20_000, 8, 30), "lloyd"),         # 667 samples per cluster: too few for Hamerly
    ((30_000, 8, 30), "hamerly"),
    ((10**6, 128, 7), "lloyd"),         # many features, too few clusters for Yinyang
    ((10**6, 128, 8), "yinyang"),
    ((10**6, 128, 30), "yinyang"),
    ((5000, 784, 100), "yinyang"),      # 50 samples per cluster: still Yinyang
])
def test_auto_algorithm_regions(shape, expected):
    assert auto_algorithm(*shape) == expected


def test_auto_algorithm_bounds_must_fit_in_the_budget_or_in_x():
    # Hamerly's 8 bytes per sample exceed 1 GiB here but not X's 32 bytes per sample.
    assert auto_algorithm(10**9, 8, 30) == "hamerly"
    # The filter's sorted copy of the rows and weights and its sort's keys and indices
    # (44 bytes per sample) exceed both 1 GiB and X's 12; as float64 (60 against 24) too.
    assert auto_algorithm(10**9, 3, 256) == "lloyd"
    assert auto_algorithm(10**9, 3, 256, itemsize=8) == "lloyd"
    assert auto_algorithm(10**7, 3, 256, itemsize=8) == "filter"  # 600 MB: fits 1 GiB
    # Yinyang's 1 + k // 10 values per sample against X's 96.
    assert auto_algorithm(10**8, 96, 1000) == "lloyd"
    assert auto_algorithm(10**8, 96, 900) == "yinyang"


def test_auto_algorithm_short_fits_below_five_features_run_lloyd():
    """The filter's set-up (sorting the rows) costs about FILTER_MIN_WORK units a row: a
    fit allowed max_iter Lloyd passes of PASS_OFFSET + k * d units must be able to save
    that."""
    assert auto_algorithm(10**6, 3, 16, max_iter=35) == "lloyd"  # 35 * 112 = 3920
    assert auto_algorithm(10**6, 3, 16, max_iter=36) == "filter"  # 36 * 112 = 4032
    assert auto_algorithm(10**6, 3, 256, max_iter=4) == "lloyd"
    assert auto_algorithm(10**6, 3, 256, max_iter=5) == "filter"


def test_auto_algorithm_short_fits_with_many_features_keep_yinyang_from_48_clusters():
    """From 96 features, below YINYANG_SHORT_FIT_CLUSTERS clusters Yinyang's first pass
    is only paid back in fits allowed YINYANG_MIN_ITERATIONS iterations."""
    assert auto_algorithm(5000, 784, 16, max_iter=19) == "lloyd"
    assert auto_algorithm(5000, 784, 16, max_iter=20) == "yinyang"
    assert auto_algorithm(5000, 784, 47, max_iter=10) == "lloyd"
    assert auto_algorithm(5000, 784, 48, max_iter=10) == "yinyang"


def test_auto_algorithm_without_sorting_the_rows():
    """Dask's blocks cannot be sorted as one: below 5 features, Exponion with many
    clusters in long fits, else Lloyd."""
    assert auto_algorithm(10**6, 3, 191, sorted_rows=False) == "lloyd"
    assert auto_algorithm(10**6, 3, 192, sorted_rows=False) == "exponion"
    assert auto_algorithm(10**6, 3, 256, max_iter=99, sorted_rows=False) == "lloyd"
    assert auto_algorithm(10**6, 3, 256, max_iter=100, sorted_rows=False) == "exponion"
    assert auto_algorithm(10**6, 8, 192, sorted_rows=False) == "exponion"
