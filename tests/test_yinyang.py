"""Simplified Yinyang (``algorithm='yinyang'``) against the plain Lloyd pass.

The bounds only decide which scores are computed; the labels must be exactly lloyd_pass's
(ties included) at every iteration, and the sums bit-identical (or, updated by the rows that
move, to rounding: see test_kernels).
"""

import numpy as np
import pytest

from fastkm import KMeans
from fastkm._isa import core
from fastkm._yinyang import centre_groups
from tests.conftest import assert_runs_identical, assert_same_fit, blobs, near_ties

# lloyd_pass's unrolled direct form up to this many features, its dot-form panels above.
MAX_UNROLLED_D = core.lloyd_layout()[0]


def lloyd_pass(X, w, C, n_threads=2):
    labels = np.empty(len(X), np.int32)
    sums, weights = np.empty((len(C), X.shape[1])), np.empty(len(C))
    core.lloyd_pass(X, w, C, labels, sums, weights, n_threads)
    return labels, sums, weights


def next_centres(C, sums, weights):
    new = np.where(weights[:, None] > 0, sums / np.maximum(weights, 1e-300)[:, None], C)
    return new.astype(C.dtype)


def yinyang_iterations(X, w, C, n_iter, n_threads=2):
    """Lloyd updates driven by yinyang_pass: yields each iteration's centres (before the
    update), labels, sums, weights and bounds."""
    n, k = len(X), len(C)
    groups = centre_groups(C)
    labels = np.zeros(n, np.int32)
    upper = np.full(n, np.inf, X.dtype)
    lower = np.zeros((n, groups.max() + 1), X.dtype)
    moved = np.zeros(k, X.dtype)
    sums, weights = np.empty((k, X.shape[1])), np.empty(k)
    previous = labels.copy()
    for _ in range(n_iter):
        changed = core.yinyang_pass(X, w, C, moved, labels, upper, lower, groups, sums,
                                    weights, n_threads)
        assert changed == (labels != previous).sum()
        previous = labels.copy()
        yield C, labels.copy(), sums.copy(), weights.copy(), upper.copy(), lower.copy()
        new = next_centres(C, sums, weights)
        moved = np.nextafter(np.sqrt(((new.astype(np.float64) - C) ** 2).sum(1))
                             * (1 + 1e-12), np.inf).astype(X.dtype)
        moved = np.nextafter(moved, np.inf)
        C = new


def check_against_lloyd(X, w, C, n_iter=8):
    for centres, labels, sums, weights, upper, lower in yinyang_iterations(X, w, C, n_iter):
        ref_labels, ref_sums, ref_weights = lloyd_pass(X, w, centres)
        np.testing.assert_array_equal(labels, ref_labels)
        assert np.array_equal(sums, ref_sums) and np.array_equal(weights, ref_weights)
        assert_bounds_hold(X, centres, labels, upper, lower, centre_groups(C))


def assert_bounds_hold(X, centres, labels, upper, lower, groups):
    """The bounds are bounds (checked in float64, with room for X's rounding)."""
    dist = np.sqrt(((X.astype(np.float64)[:, None] - centres.astype(np.float64)[None])
                    ** 2).sum(-1))
    slack = 1e-3 if X.dtype == np.float32 else 1e-9
    scale = 1 + dist.max()
    own = dist[np.arange(len(X)), labels]
    assert (upper >= own - slack * scale).all()
    dist[np.arange(len(X)), labels] = np.inf
    for g in range(lower.shape[1]):
        nearest_other = dist[:, groups == g].min(axis=1)
        assert (lower[:, g] <= nearest_other + slack * scale).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [3, 20])
def test_blocks_failing_many_bounds_searched_whole_the_others_row_by_row(d, dtype):
    """One region's centres jump: most group bounds of its rows fail, and its blocks are
    searched whole, every bound set afresh; the other region's centres move a little: a few
    of its rows fail a bound, and only their failing groups are searched. Both give
    lloyd_pass's labels and sums, and bounds that hold."""
    rng = np.random.default_rng(d)
    per, n_half = 40, 3200  # centres and rows per region; each region's rows in own blocks
    near = rng.normal(size=(per, d)) * 3
    far = rng.normal(size=(per, d)) * 3 + 1000
    C = np.vstack([near, far]).astype(dtype)
    X = np.vstack([near[rng.integers(per, size=n_half)], far[rng.integers(per, size=n_half)]])
    X = (X + rng.normal(size=X.shape)).astype(dtype)
    w = np.ones(len(X), dtype)
    n, k = X.shape[0], len(C)
    groups = centre_groups(C)
    assert not set(groups[:per]) & set(groups[per:])  # (each region has groups of its own)
    labels = np.zeros(n, np.int32)
    upper = np.full(n, np.inf, dtype)
    lower = np.zeros((n, groups.max() + 1), dtype)
    sums, weights = np.empty((k, d)), np.empty(k)
    core.yinyang_pass(X, w, C, np.zeros(k, dtype), labels, upper, lower, groups, sums,
                      weights, 2)
    new = C.astype(np.float64)
    new[:per] += rng.normal(size=(per, d)) * 2
    new[per:] += rng.normal(size=(per, d)) * (0.1 if d == 3 else 0.6)
    new = new.astype(dtype)
    moved = np.nextafter(np.sqrt(((new.astype(np.float64) - C) ** 2).sum(1)) * (1 + 1e-12),
                         np.inf).astype(dtype)
    moved = np.nextafter(moved, np.inf)
    # The setting: in every block of near rows most group bounds fail, in every block of
    # far rows few (a quarter or more: searched whole), but some do.
    group_moved = np.array([moved[groups == g].max() for g in range(groups.max() + 1)])
    failing = (lower - group_moved <= (upper + moved[labels])[:, None]).sum(1)
    share = failing.reshape(-1, core.block_rows()).mean(1) / lower.shape[1]
    half = len(share) // 2
    assert (share[:half] > 1 / 2).all() and (share[half:] < 1 / 8).all()
    assert failing[n_half:].any()
    before, loose = labels.copy(), upper + moved[labels]
    changed = core.yinyang_pass(X, w, new, moved, labels, upper, lower, groups, sums,
                                weights, 2)
    ref_labels, ref_sums, ref_weights = lloyd_pass(X, w, new)
    np.testing.assert_array_equal(labels, ref_labels)
    assert changed == (labels != before).sum() > 0
    assert np.array_equal(sums, ref_sums) and np.array_equal(weights, ref_weights)
    assert_bounds_hold(X, new, labels, upper, lower, groups)
    # The far rows that failed a bound were compared with their centre at least: their upper
    # bounds tightened, most of the way from the shifted bound to the distance.
    tried = np.flatnonzero(failing[n_half:] > 0) + n_half
    own = np.sqrt(((X[tried].astype(np.float64) - new[labels[tried]]) ** 2).sum(1))
    assert (upper[tried] - own).mean() < (loose[tried] - own).mean() / 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 7, 64, 300])
@pytest.mark.parametrize("d", [2, 5, 17, 64, 130])
def test_same_labels_and_sums_as_lloyd_pass_every_iteration(d, k, dtype):
    n = 1500
    X = blobs(n, d, max(1, k // 3), seed=d * 1000 + k, dtype=dtype)
    rng = np.random.default_rng(k)
    w = rng.uniform(0.5, 2, size=n).astype(dtype)
    w[rng.random(n) < 0.1] = 0  # zero weights
    C = X[rng.choice(n, size=k, replace=False)].copy()
    check_against_lloyd(X, w, C)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [3, MAX_UNROLLED_D, MAX_UNROLLED_D + 1, 16, 64, 130])
def test_near_ties_broken_as_lloyd_pass(d, dtype):
    """Rows on the bisectors of pairs of centres: rounding decides, so every score must be
    computed as lloyd_pass computes it. Duplicate centres tie exactly: the lower index."""
    X, C = near_ties(d, 3_000, dtype, seed=d)
    check_against_lloyd(X, np.ones(len(X), dtype), C, n_iter=1)
    labels = lloyd_pass(X, np.ones(len(X), dtype), C)[0]
    assert labels[-1] == labels[-2] == 7


def test_bit_identical_for_any_thread_count():
    X = blobs(30_000, 20, 30, seed=5, dtype=np.float32)
    w = np.ones(len(X), np.float32)
    C = X[:60].copy()
    assert_runs_identical([list(yinyang_iterations(X, w, C, 5, n_threads=t)) for t in (1, 2, 5)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d, k", [(2, 9), (17, 40), (64, 25)])
def test_kmeans_gives_lloyds_result(d, k, dtype):
    """Same centres, labels, inertia and iteration count as 'lloyd', with zero weights."""
    X = blobs(6000, d, k, seed=d + k, dtype=dtype)
    w = np.random.default_rng(0).uniform(0, 2, size=len(X)).astype(dtype)
    w[::7] = 0
    for seed in range(3):
        runs = [KMeans(k, algorithm=a, random_state=seed, tol=0).fit(X, sample_weight=w)
                for a in ("lloyd", "yinyang")]
        assert np.array_equal(runs[0].cluster_centers_, runs[1].cluster_centers_)
        assert np.array_equal(runs[0].labels_, runs[1].labels_)
        assert runs[0].inertia_ == runs[1].inertia_ and runs[0].n_iter_ == runs[1].n_iter_


def test_empty_cluster_reseeding_and_one_cluster():
    X = blobs(4000, 17, 5, seed=9)
    init = X[:6].copy()
    init[5] = 1e3  # far from every row: empty after the first pass, re-seeded
    runs = [KMeans(6, init=init, algorithm=a, tol=0).fit(X) for a in ("lloyd", "yinyang")]
    assert_same_fit(*runs, exact=False)
    one = KMeans(1, init=X[:1], algorithm="yinyang").fit(X)
    assert (one.labels_ == 0).all()
    np.testing.assert_allclose(one.cluster_centers_[0], X.mean(0), rtol=1e-12)


def test_centre_groups():
    C = blobs(300, 8, 12, seed=1)
    groups = centre_groups(C)
    assert groups.dtype == np.int32 and groups.shape == (300,)
    assert 1 <= groups.max() + 1 <= 30
    assert set(np.unique(groups)) == set(range(groups.max() + 1))  # no empty group
    assert np.array_equal(groups, centre_groups(C))
    assert (centre_groups(C[:5]) == 0).all()


def test_yinyang_pass_rejects_bad_groups():
    X = blobs(100, 3, 2, seed=0)
    w, C = np.ones(100), X[:4].copy()
    args = lambda groups, G: (X, w, C, np.zeros(4), np.zeros(100, np.int32),
                              np.full(100, np.inf), np.zeros((100, G)),
                              np.asarray(groups, np.int32), np.empty((4, 3)), np.empty(4))
    core.yinyang_pass(*args([0, 1, 1, 0], 2))
    for groups, G in [([0, 1, 1, 0], 3), ([0, 2, 1, 0], 2), ([0, -1, 1, 0], 2),
                      ([0, 1, 1], 2)]:
        with pytest.raises(ValueError):
            core.yinyang_pass(*args(groups, G))


@pytest.mark.parametrize("d", [2, 17, 64])
def test_same_labels_far_from_the_origin_and_on_a_grid(d):
    """Large offsets (the dot form's cancellation) and small integers (exact ties)."""
    rng = np.random.default_rng(d)
    X = blobs(2000, d, 12, seed=d, dtype=np.float32) + np.float32(3e3)
    check_against_lloyd(X, np.ones(len(X), np.float32), X[rng.choice(2000, 24)].copy())
    grid = rng.integers(0, 3, size=(2000, d)).astype(np.float32)
    check_against_lloyd(grid, np.ones(len(grid), np.float32),
                        np.unique(grid, axis=0)[:20].copy())
