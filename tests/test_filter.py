"""The filtering algorithm (``algorithm='filter'``, d <= 4) against the plain Lloyd pass.

The boxes only decide which distances are computed: the labels must be exactly
lloyd_pass's (ties included) at every iteration; the sums are added in another order, so
they agree to rounding.
"""

import numpy as np
import pytest

from fastkm import KMeans
from fastkm._isa import core
from fastkm._lloyd import lloyd
from tests.conftest import assert_runs_identical, blobs, near_ties

BLOCK_ROWS = 32


def reference_keys(X):
    """Z-order keys bit by bit: each feature scaled onto 32 // d bits, interleaved from the
    highest bit down, feature 0 first."""
    n, d = X.shape
    bits = 32 // d
    low, high = X.min(0).astype(np.float64), X.max(0).astype(np.float64)
    top = 2.0**bits - 1
    scale = np.where(high > low, top / np.where(high > low, high - low, 1), 0)
    q = np.minimum((X - low) * scale, top).astype(np.uint64)
    keys = np.zeros(n, np.uint64)
    for bit in range(bits - 1, -1, -1):
        for f in range(d):
            keys = (keys << np.uint64(1)) | ((q[:, f] >> np.uint64(bit)) & np.uint64(1))
    return keys << np.uint64(32 - bits * d)


def sorted_rows(X, w, n_threads=2):
    order, rows, weights = core.zorder_sort(X, w, n_threads)
    return order, rows, weights, core.filter_tree(rows, weights, n_threads)


def lloyd_pass(X, w, C, n_threads=2):
    labels = np.full(len(X), -1, np.int32)
    sums, weights = np.empty((len(C), X.shape[1])), np.empty(len(C))
    inertia, changed = core.lloyd_pass(X, w, C, labels, sums, weights, n_threads)
    return labels, sums, weights, inertia


def next_centres(C, sums, weights):
    new = np.where(weights[:, None] > 0, sums / np.maximum(weights, 1e-300)[:, None], C)
    return new.astype(C.dtype)


def filter_iterations(X, w, C, n_iter, n_threads=2, unit=False):
    """Lloyd updates driven by filter_pass over the sorted rows: yields each iteration's
    centres (before the update), then the labels (in X's order), sums, weights, inertia."""
    order, rows, weights, tree = sorted_rows(X, w, n_threads)
    labels = np.full(len(X), -1, np.int32)
    block_labels = np.full(tree[0][1], -1, np.int32)
    sums, weight_sums = np.empty((len(C), X.shape[1])), np.empty(len(C))
    previous = labels.copy()
    for _ in range(n_iter):
        inertia, changed = core.filter_pass(rows, None if unit else weights, tree, C, labels,
                                            block_labels, sums, weight_sums, n_threads)
        assert changed == (labels != previous).sum()
        previous = labels.copy()
        # The blocks marked as all one label are.
        for b in np.flatnonzero(block_labels >= 0):
            assert (labels[b * BLOCK_ROWS:(b + 1) * BLOCK_ROWS] == block_labels[b]).all()
        unsorted = np.empty_like(labels)
        unsorted[order] = labels
        yield C, unsorted, sums.copy(), weight_sums.copy(), inertia
        C = next_centres(C, sums, weight_sums)


def check_against_lloyd(X, w, C, n_iter=6, unit=False):
    rtol = 1e-12
    for centres, labels, sums, weights, inertia in filter_iterations(X, w, C, n_iter,
                                                                      unit=unit):
        ref_labels, ref_sums, ref_weights, ref_inertia = lloyd_pass(
            X, None if unit else w, centres)
        np.testing.assert_array_equal(labels, ref_labels)
        scale = float(np.abs(X).max()) * max(float(w.sum()), 1)
        np.testing.assert_allclose(sums, ref_sums, rtol=rtol, atol=rtol * scale)
        np.testing.assert_allclose(weights, ref_weights, rtol=rtol, atol=rtol * w.sum())
        # The inertia: the kernels' squared distances in X's dtype, the boxes' in float64
        # (where the kernels' overflow, lloyd_pass's inertia is not a number).
        rel = 1e-5 if X.dtype == np.float32 else 1e-10
        assert not np.isfinite(ref_inertia) or inertia == pytest.approx(ref_inertia, rel=rel,
                                                                         abs=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zorder_keys_and_sort(d, dtype):
    X = blobs(5000, d, 7, seed=d, dtype=dtype)
    X[:50] = X[50:100]  # repeated rows: equal keys keep their order
    keys = core.zorder_keys(X)
    np.testing.assert_array_equal(keys, reference_keys(X))
    w = np.arange(len(X), dtype=dtype)
    order, rows, weights = core.zorder_sort(X, w, 2)
    sorted_bits = (keys >> np.uint32(8)).astype(np.int64)  # the highest 24 bits
    np.testing.assert_array_equal(order, np.argsort(sorted_bits, kind="stable"))
    np.testing.assert_array_equal(rows, X[order])
    np.testing.assert_array_equal(weights, w[order])
    for n_threads in (1, 3):
        assert all(np.array_equal(a, b) for a, b in zip(core.zorder_sort(X, w, n_threads),
                                                        (order, rows, weights)))


def test_zorder_of_constant_and_tiny_inputs():
    X = np.ones((100, 3))
    np.testing.assert_array_equal(core.zorder_keys(X), 0)
    np.testing.assert_array_equal(core.zorder_sort(X, np.ones(100))[0], np.arange(100))
    order, rows, weights = core.zorder_sort(np.zeros((0, 2)), np.zeros(0))
    assert order.shape == (0,) and rows.shape == (0, 2)
    with pytest.raises(ValueError, match="1 to 4 columns"):
        core.zorder_keys(np.zeros((10, 5)))


@pytest.mark.parametrize("n", [1, 31, 33, 5000, 300_001])
def test_filter_tree_against_numpy(n):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 3))
    w = rng.uniform(0, 2, size=n)
    w[:BLOCK_ROWS] = 0  # a block of zero weight: its mean is its low corner
    offsets, boxes, sums, means, spreads = core.filter_tree(X, w, 2)
    assert offsets[0] == 0 and offsets[1] == -(-n // BLOCK_ROWS)
    rows_per_node = BLOCK_ROWS
    for level in range(len(offsets) - 1):
        assert offsets[level + 1] - offsets[level] == -(-n // rows_per_node)
        for node in range(offsets[level], offsets[level + 1], 97):
            i = node - offsets[level]
            x, v = X[i * rows_per_node:(i + 1) * rows_per_node], w[i * rows_per_node:
                                                                 (i + 1) * rows_per_node]
            np.testing.assert_array_equal(boxes[node], [x.min(0), x.max(0)])
            # (rtol 1e-11, not 1e-12: where terms of either sign cancel, a different
            # summation order moves a sum by ~1e-12 of itself; numpy 1.25's v @ x missed
            # 1e-12 by 1.14e-12 at n=300001, and the worst node, checked or not, is 1.9e-12)
            np.testing.assert_allclose(sums[node], [*(v @ x), v.sum()], rtol=1e-11)
            mean = v @ x / v.sum() if v.sum() > 0 else x.min(0)
            np.testing.assert_allclose(means[node], mean - x.min(0), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(spreads[node], v @ ((x - mean) ** 2).sum(1),
                                       rtol=1e-9, atol=1e-12)
        rows_per_node *= 8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 7, 64, 300])
@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_same_labels_as_lloyd_pass_every_iteration(d, k, dtype):
    n = 20_003  # (a last block of 3 rows)
    X = blobs(n, d, max(1, k // 3), seed=d * 1000 + k, dtype=dtype)
    rng = np.random.default_rng(k)
    w = rng.uniform(0.5, 2, size=n).astype(dtype)
    w[rng.random(n) < 0.1] = 0  # zero weights
    C = X[rng.choice(n, size=k, replace=False)].copy()
    check_against_lloyd(X, w, C)


def test_unit_weights_and_colour_like_data():
    """Pixels: few distinct values, long runs of equal rows, unit weights (None)."""
    rng = np.random.default_rng(3)
    X = (rng.integers(0, 256, size=(40_000, 3)) // 8 * 8 / 255).astype(np.float32)
    X = np.repeat(X, rng.integers(1, 4, size=len(X)), axis=0)
    C = X[rng.choice(len(X), size=16, replace=False)].copy()
    check_against_lloyd(X, np.ones(len(X), np.float32), C, unit=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [2, 3, 4])
def test_ties_broken_as_lloyd_pass(d, dtype):
    """Rows on the bisectors of pairs of centres, and on an integer grid where many
    distances tie exactly: rounding decides, so the surviving candidates must be compared
    as lloyd_pass compares them. Duplicate centres tie exactly: the lower index."""
    X, C = near_ties(d, 20_000, dtype, seed=d)
    check_against_lloyd(X, np.ones(len(X), dtype), C, n_iter=1)
    rng = np.random.default_rng(d)
    grid = np.stack(np.meshgrid(*[np.arange(12)] * d), -1).reshape(-1, d).astype(dtype)
    centres = grid[rng.choice(len(grid), size=9, replace=False)] + 0.5
    check_against_lloyd(grid, np.ones(len(grid), dtype), centres.astype(dtype), n_iter=2)


@pytest.mark.parametrize("scale", [1e-30, 1e30, 1e36])
def test_tiny_and_huge_values(scale):
    """Underflowing and overflowing squared distances in float32: the same labels."""
    X = blobs(3000, 3, 5, seed=1, dtype=np.float64) * scale
    X = X.astype(np.float32)
    C = X[:12].copy()
    check_against_lloyd(X, np.ones(len(X), np.float32), C, n_iter=1)


def test_bit_identical_for_any_thread_count():
    X = blobs(100_000, 3, 30, seed=5, dtype=np.float32)
    w = np.ones(len(X), np.float32)
    C = X[:60].copy()
    assert_runs_identical([list(filter_iterations(X, w, C, 4, n_threads=t)) for t in (1, 2, 5)])


def test_filter_pass_rejects_bad_input():
    X = blobs(1000, 3, 3, seed=0)
    order, rows, weights, tree = sorted_rows(X, np.ones(len(X)))
    labels, block_labels = np.full(1000, -1, np.int32), np.full(tree[0][1], -1, np.int32)
    sums, weight_sums = np.empty((4, 3)), np.empty(4)
    with pytest.raises(ValueError, match="tree does not match"):
        core.filter_pass(rows[:900], None, tree, X[:4], labels[:900], block_labels, sums,
                         weight_sums)
    with pytest.raises(ValueError, match="output arrays"):
        core.filter_pass(rows, None, tree, X[:4], labels, block_labels[:-1], sums,
                         weight_sums)
    with pytest.raises(ValueError, match="columns"):
        core.filter_pass(np.zeros((10, 5)), None, tree, np.zeros((2, 5)), labels,
                         block_labels, sums, weight_sums)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d, k", [(1, 5), (3, 30), (4, 12)])
def test_lloyd_gives_lloyds_result_every_iteration(d, k, dtype):
    """Same labels at every iteration (seen by the callback, in X's order), same iteration
    count, centres and inertia to rounding; zero weights."""
    X = blobs(30_000, d, k, seed=d + k, dtype=dtype)
    w = np.random.default_rng(0).uniform(0, 2, size=len(X)).astype(dtype)
    w[::7] = 0
    C = X[:k].copy()
    seen = {"lloyd": [], "filter": []}
    results = {}
    for algorithm in seen:
        results[algorithm] = lloyd(
            X, w, C, max_iter=50, tol=0, n_threads=2, algorithm=algorithm,
            callback=lambda info, a=algorithm: seen[a].append(info.labels))
    assert len(seen["filter"]) == len(seen["lloyd"])
    for a, b in zip(seen["lloyd"], seen["filter"]):
        np.testing.assert_array_equal(a, b)
    (c0, l0, i0, n0), (c1, l1, i1, n1) = results["lloyd"], results["filter"]
    np.testing.assert_array_equal(l0, l1)
    assert n0 == n1
    np.testing.assert_allclose(c0, c1, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert i0 == pytest.approx(i1, rel=1e-5 if dtype == np.float32 else 1e-10)


def test_kmeans_filter_with_empty_clusters_and_many_features():
    """Re-seeded empty clusters (labels changed outside the pass) and d > 4 (runs as
    'lloyd')."""
    X = np.concatenate([np.zeros((5000, 2)), np.ones((5000, 2))]).astype(np.float32)
    X += np.random.default_rng(0).normal(size=X.shape).astype(np.float32) * 0.01
    init = np.array([[0, 0], [1, 1], [50, 50], [60, 60]], np.float32)  # two stay empty
    fits = [KMeans(4, init=init, n_init=1, algorithm=a).fit(X) for a in ("lloyd", "filter")]
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)
    np.testing.assert_allclose(fits[0].cluster_centers_, fits[1].cluster_centers_,
                               rtol=1e-5)
    assert fits[0].n_iter_ == fits[1].n_iter_
    X8 = blobs(2000, 8, 5, seed=2, dtype=np.float32)
    fits = [KMeans(5, n_init=1, random_state=0, algorithm=a).fit(X8)
            for a in ("lloyd", "filter")]
    assert np.array_equal(fits[0].cluster_centers_, fits[1].cluster_centers_)


@pytest.mark.parametrize("d", [2, 3, 4])
def test_float64_far_from_the_origin(d):
    """Coordinates thousands of times the distances between centres, straddling a power
    of two: the test's rounding must follow the distances, not the coordinates (a review
    found a row near 2**14 whose nearest centre was dropped)."""
    X = np.array([[16383.889466844761, 16383.770662760588],
                  [16384.065191741476, 16384.067065969073]])
    C = np.array([[16383.770325066393, 16383.78075538961],
                  [16383.888351826894, 16383.89022605449]])
    np.testing.assert_array_equal(
        next(filter_iterations(X, np.ones(2), C, 1))[1], lloyd_pass(X, None, C)[0])
    rng = np.random.default_rng(d)
    for offset in (2.0**14, 2.0**30):
        X = blobs(20_000, d, 30, seed=d) * 0.01 + offset
        X[rng.random(len(X)) < 0.5] -= 0.05  # half of them below the power of two
        C = X[rng.choice(len(X), size=60, replace=False)].copy()
        check_against_lloyd(X, np.ones(len(X)), C, n_iter=3)


def test_reseeding_breaks_ties_in_the_rows_own_order():
    """An empty cluster takes the farthest sample, the lowest index of X among equally far
    ones, as 'lloyd' does (not the lowest position in the sorted rows)."""
    X = np.array([[1.0], [-1.0], [0.0], [0.1], [-0.1], [10.0], [10.2]])
    init = np.array([[0.0], [10.1], [100.0]])  # cluster 2 empty; rows 0 and 1 tie
    fits = [KMeans(3, init=init, n_init=1, algorithm=a).fit(X) for a in ("lloyd", "filter")]
    np.testing.assert_array_equal(fits[0].labels_, [2, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(fits[1].labels_, fits[0].labels_)
    np.testing.assert_allclose(fits[1].cluster_centers_, fits[0].cluster_centers_)


@pytest.mark.parametrize("n, k", [(1, 1), (5, 8), (31, 3), (33, 40), (100, 1)])
def test_few_rows_and_more_centres_than_rows(n, k):
    X = blobs(n, 3, 2, seed=n)
    C = blobs(k, 3, 2, seed=k + 1)
    w = np.random.default_rng(n).uniform(0, 2, size=n)
    check_against_lloyd(X, w, C, n_iter=2)


def test_kmeans_auto_runs_the_filter_with_lloyds_result():
    """'auto' picks the filter for colours with many clusters; with n_init > 1 too, the
    labels are 'lloyd''s and the centres agree to rounding."""
    from fastkm._lloyd import auto_algorithm
    X = blobs(100_000, 3, 40, seed=9, dtype=np.float32)
    assert auto_algorithm(*X.shape, 40, 4, 300) == "filter"
    fits = [KMeans(40, n_init=2, random_state=1, algorithm=a).fit(X)
            for a in ("lloyd", "auto")]
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)
    np.testing.assert_allclose(fits[0].cluster_centers_, fits[1].cluster_centers_, rtol=1e-5)
    assert fits[0].n_iter_ == fits[1].n_iter_
    assert fits[0].inertia_ == pytest.approx(fits[1].inertia_, rel=1e-5)


def test_put_labels():
    rng = np.random.default_rng(0)
    order = rng.permutation(100_003)
    labels = rng.integers(0, 50, size=len(order)).astype(np.int32)
    expected = np.empty_like(labels)
    expected[order] = labels
    for n_threads in (1, 2):
        out = np.full_like(labels, -1)
        core.put_labels(labels, order, out, n_threads)
        np.testing.assert_array_equal(out, expected)
    order[5] = len(order)
    with pytest.raises(ValueError, match="out of range"):
        core.put_labels(labels, order, out)


def test_auto_sorts_only_once_lloyd_passes_have_cost_the_sort(monkeypatch):
    """'auto' with tol > 0: Lloyd passes until FILTER_SWITCH_WORK, then the sort and the
    filter; the labels of every iteration are still 'lloyd''s. A fit that converges first
    never sorts."""
    import fastkm._lloyd as lloyd_module
    from fastkm._lloyd import FILTER_SWITCH_WORK, PASS_OFFSET

    sorts = []
    real_sort = core.zorder_sort

    def counting_sort(*args):
        sorts.append(len(seen["auto"]))
        return real_sort(*args)

    monkeypatch.setattr(lloyd_module.core, "zorder_sort", counting_sort, raising=False)
    X = blobs(120_000, 3, 60, seed=4, dtype=np.float32)
    k = 40
    C = X[:k].copy()
    w = np.ones(len(X), np.float32)
    seen = {"lloyd": [], "auto": []}
    for algorithm in seen:
        lloyd(X, w, C, max_iter=60, tol=1e-9, n_threads=2, algorithm=algorithm,
              callback=lambda info, a=algorithm: seen[a].append(info.labels))
    switch = -(-FILTER_SWITCH_WORK // (PASS_OFFSET + k * 3))
    assert len(seen["auto"]) > switch and sorts == [switch]  # once, after `switch` passes
    assert len(seen["auto"]) == len(seen["lloyd"])
    for a, b in zip(seen["lloyd"], seen["auto"]):
        np.testing.assert_array_equal(a, b)
    sorts.clear()
    seen["auto"] = []
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(16, 3)) * 100  # far apart, and started near: a short fit
    separated = (centres[rng.integers(16, size=len(X))] + rng.normal(size=(len(X), 3)))
    start = (centres + rng.normal(size=centres.shape)).astype(np.float32)
    lloyd(separated.astype(np.float32), w, start, max_iter=300, tol=1e-4, n_threads=2,
          algorithm="auto", callback=lambda info: seen["auto"].append(info.labels))
    assert len(seen["auto"]) <= switch and sorts == []
