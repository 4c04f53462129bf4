"""The seed exercise (ex7data2, initial centroids [[3,3],[6,2],[8,5]]) reproduced to 1e-9."""

import json

import numpy as np
import pytest

import fastkm


@pytest.fixture
def seed(data_dir):
    X = np.loadtxt(data_dir / "ex7data2.csv", delimiter=",")
    expected = json.loads((data_dir / "ex7_expected.json").read_text())
    return X, expected


def test_first_assignment_and_first_step(seed):
    X, expected = seed
    init = np.array(expected["initial_centroids"])
    km = fastkm.KMeans(3, init=init, max_iter=1, tol=0, n_threads=1)
    history = []
    km.set_params(callback=history.append).fit(X)
    first = history[0]
    assert (first.labels[:3] + 1).tolist() == expected["closest_first3_1based"]
    np.testing.assert_allclose(first.centers, expected["centroids_after_step1"], atol=1e-9)
    assert np.bincount(first.labels).tolist() == expected["counts_step1"]


def test_ten_iterations(seed):
    X, expected = seed
    init = np.array(expected["initial_centroids"])
    result = fastkm.kmeans(X, 3, init=init, max_iter=10, tol=0)
    np.testing.assert_allclose(result.centers, expected["runkMeans_10iters_centroids"],
                               atol=1e-9)
    assert np.bincount(result.labels).tolist() == expected["runkMeans_10iters_counts"]
    assert result.inertia == pytest.approx(expected["final_SSE"], abs=1e-9)


def test_sse_after_each_update_and_convergence(seed):
    X, expected = seed
    init = np.array(expected["initial_centroids"])
    history = []
    result = fastkm.kmeans(X, 3, init=init, max_iter=10, tol=0, callback=history.append)
    sse = [float(((X - info.centers[info.labels]) ** 2).sum()) for info in history]
    expected_sse = expected["sse_after_each_update_with_that_iterations_assignment"]
    np.testing.assert_allclose(sse, expected_sse[:len(sse)], atol=1e-9)
    # The labels stop changing after iteration 6; iteration 7 sees that and stops.
    assert result.n_iter == expected["converged_by_iteration"] + 1
