"""The Cython kernels against plain NumPy, for the instruction-set level in use.

CI runs this file once per level (FASTKM_ISA=baseline, x86-64-v3, x86-64-v4).
"""

import ctypes.util
import math
import platform
from fractions import Fraction

import numpy as np
import pytest

from fastkm._isa import core
from fastkm._lloyd import BOUNDED_PASSES, _unknown_bounds

# lloyd_pass's own code for each d up to this many features (see _core.pyx).
MAX_UNROLLED_FEATURES = core.lloyd_layout()[0]

SHAPES = [(1, 1, 1), (5, 2, 3), (100, 3, 16), (1000, 1, 7), (2049, 4, 5), (3000, 5, 33),
          (777, 17, 9), (500, 128, 20)]


def numpy_pass(X, w, C):
    X64, C64, w64 = X.astype(np.float64), C.astype(np.float64), w.astype(np.float64)
    d2 = ((X64[:, None, :] - C64[None, :, :]) ** 2).sum(-1)
    labels = d2.argmin(1)
    sums = np.zeros(C.shape)
    np.add.at(sums, labels, w64[:, None] * X64)
    weights = np.bincount(labels, weights=w64, minlength=len(C))
    return labels, sums, weights, float((w64 * d2.min(1)).sum())


def run_pass(X, w, C, n_threads=2):
    labels = np.empty(len(X), dtype=np.int32)
    sums = np.empty((C.shape[0], X.shape[1]))
    weights = np.empty(C.shape[0])
    inertia, _ = core.lloyd_pass(X, w, C, labels, sums, weights, n_threads)
    return labels, sums, weights, inertia


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, d, k", SHAPES)
def test_lloyd_pass_matches_numpy(n, d, k, dtype):
    rng = np.random.default_rng(n + d + k)
    X = rng.normal(size=(n, d)).astype(dtype)
    w = rng.uniform(0.5, 2, size=n).astype(dtype)
    C = X[rng.choice(n, size=min(k, n), replace=False)]
    labels, sums, weights, inertia = run_pass(X, w, C)
    ref_labels, ref_sums, ref_weights, ref_inertia = numpy_pass(X, w, C)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    # float32 distances may break near-ties differently from float64; allow a handful.
    mismatch = labels != ref_labels
    assert mismatch.mean() <= (1e-3 if dtype == np.float32 else 0)
    if not mismatch.any():
        np.testing.assert_allclose(sums, ref_sums, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(weights, ref_weights, rtol=1e-12)
    np.testing.assert_allclose(inertia, ref_inertia, rtol=rtol)


@pytest.mark.parametrize("d", [3, 20])  # the unrolled and the panel kernels
@pytest.mark.parametrize("n_threads", [1, 2])
def test_lloyd_pass_counts_the_labels_it_changes(d, n_threads):
    rng = np.random.default_rng(d)
    X = rng.normal(size=(5000, d)).astype(np.float32)
    C = X[:12].copy()
    labels = np.full(len(X), -1, np.int32)
    sums, weights = np.empty((12, d)), np.empty(12)
    w = np.ones(len(X), np.float32)
    assert core.lloyd_pass(X, w, C, labels, sums, weights, n_threads)[1] == len(X)
    fresh = labels.copy()
    labels[::7] = (labels[::7] + 1) % 12  # these rows now hold a wrong label
    assert core.lloyd_pass(X, w, C, labels, sums, weights, n_threads)[1] == len(labels[::7])
    np.testing.assert_array_equal(labels, fresh)
    assert core.lloyd_pass(X, w, C, labels, sums, weights, n_threads)[1] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [3, 37])
def test_assigned_sq_distances_match_numpy(dtype, d):
    rng = np.random.default_rng(d)
    X = rng.normal(size=(3001, d)).astype(dtype)
    C = rng.normal(size=(9, d)).astype(dtype)
    labels = rng.integers(0, 9, size=len(X)).astype(np.int32)
    out = np.empty(len(X))
    core.assigned_sq_distances(X, C, labels, out, 2)
    expected = ((X.astype(np.float64) - C.astype(np.float64)[labels]) ** 2).sum(axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    labels[5] = 9
    with pytest.raises(ValueError, match="label 9 of row 5"):
        core.assigned_sq_distances(X, C, labels, out, 2)


@pytest.mark.parametrize("bad_row", [0, 4095, 99_999])
@pytest.mark.parametrize("bad", [-1, 9])
def test_labels_outside_the_centres_are_found_in_every_chunk(bad_row, bad):
    # The labels are checked in parallel chunks (of some 2048 rows): a bad one in the first,
    # a middle or the last chunk is reported, with its row.
    X = np.zeros((100_000, 5), np.float32)
    C = np.zeros((9, 5), np.float32)
    labels = np.arange(len(X), dtype=np.int32) % 9
    labels[bad_row] = bad
    for n_threads in (1, 2):
        with pytest.raises(ValueError, match=f"label {bad} of row {bad_row} is not"):
            core.assigned_sq_distances(X, C, labels, np.empty(len(X)), n_threads)
        with pytest.raises(ValueError, match=f"label {bad} of row {bad_row} is not"):
            core.labelled_inertia(X, None, C, labels, n_threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [3, 9])  # the unrolled and the panel kernels
def test_lloyd_pass_without_weights_is_the_pass_with_unit_weights(dtype, d):
    rng = np.random.default_rng(d)
    X = rng.normal(size=(7001, d)).astype(dtype)
    C = X[:13].copy()
    results = []
    for weights in (None, np.ones(len(X), dtype)):
        labels = np.full(len(X), -1, np.int32)
        sums, totals = np.empty((13, d)), np.empty(13)
        inertia, changed = core.lloyd_pass(X, weights, C, labels, sums, totals, 2)
        results.append((labels, sums, totals, inertia, changed))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)  # bit for bit
    with pytest.raises(ValueError, match="columns"):
        core.lloyd_pass(X, None, C[:, :2].copy(), labels, sums, totals, 2)


def test_lloyd_pass_ties_go_to_lowest_index():
    X = np.zeros((70, 2))
    C = np.array([[1.0, 0], [-1, 0], [0, 1]])
    labels, _, weights, inertia = run_pass(X, np.ones(70), C)
    assert (labels == 0).all() and weights.tolist() == [70, 0, 0] and inertia == 70


def test_lloyd_pass_partials_add_up_over_slices():
    """A chunked fit adds the partials of row slices: they must equal one whole pass."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_000, 3))
    w = rng.uniform(size=10_000)
    C = X[:8].copy()
    whole = run_pass(X, w, C)
    parts = [run_pass(X[s:s + 3333], w[s:s + 3333], C) for s in range(0, 10_000, 3333)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    np.testing.assert_allclose(sum(p[1] for p in parts), whole[1], rtol=1e-12)
    np.testing.assert_allclose(sum(p[2] for p in parts), whole[2], rtol=1e-12)
    np.testing.assert_allclose(sum(p[3] for p in parts), whole[3], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lloyd_pass_bit_identical_for_any_thread_count(dtype):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300_000, 3)).astype(dtype)
    w = rng.uniform(size=len(X)).astype(dtype)
    C = X[:32].copy()
    results = [run_pass(X, w, C, n_threads=t) for t in (1, 2, 3, 7)]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


MAX_UNROLLED_D, PANEL = core.lloyd_layout()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [MAX_UNROLLED_D, MAX_UNROLLED_D + 1, MAX_UNROLLED_D + 2, 24, 33,
                               128])
@pytest.mark.parametrize("k", [1, PANEL - 1, PANEL, PANEL + 1, 3 * PANEL + 5])
def test_lloyd_pass_unrolled_and_panels(d, k, dtype):
    """Every code path, any k (whole panels or not), rows not a multiple of a block."""
    rng = np.random.default_rng(d * 1000 + k)
    n = 2 * 2048 + 37
    # Clustered data far from the origin: the dot form must not lose labels to rounding.
    centres = rng.uniform(-20, 20, size=(k, d)) + 1000
    X = (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)
    w = rng.uniform(0.5, 2, size=n).astype(dtype)
    C = (centres + rng.normal(scale=0.5, size=centres.shape)).astype(dtype)
    labels, sums, weights, inertia = run_pass(X, w, C)
    ref_labels, ref_sums, ref_weights, ref_inertia = numpy_pass(X, w, C)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-10, atol=1e-6)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-12)
    # Panels (d > MAX_UNROLLED_D): inertia from float64 distances to the chosen centres.
    np.testing.assert_allclose(inertia, ref_inertia, rtol=1e-4 if dtype == np.float32 and
                               d <= MAX_UNROLLED_D else 1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [MAX_UNROLLED_D, MAX_UNROLLED_D + 1, 64])
def test_lloyd_pass_ties_in_both_forms(d, dtype):
    """Exact ties go to the lowest index, duplicated centres included, in both forms."""
    k = 2 * PANEL + 3
    rng = np.random.default_rng(d)
    C = rng.integers(-4, 5, size=(k, d)).astype(dtype)
    C[PANEL + 1] = C[2]            # duplicates in different panels and lanes
    C[PANEL + 2] = C[PANEL + 1]
    C[-1] = C[-2]
    # Rows at the duplicated centres, and rows exactly halfway between two centres.
    X = np.concatenate([C[[2, PANEL + 1, PANEL + 2, k - 1, k - 2]],
                        (C[[0, 3, 5]] + C[[1, 4, 6]]) / 2]).astype(dtype)
    labels, _, _, inertia = run_pass(X, np.ones(len(X), dtype), C)
    ref_labels, _, _, ref_inertia = numpy_pass(X, np.ones(len(X), dtype), C)
    assert labels[:5].tolist() == [2, 2, 2, k - 2, k - 2]
    if d <= MAX_UNROLLED_D:
        # Direct form, exact arithmetic here: halfway rows go to the lower index, as numpy.
        np.testing.assert_array_equal(labels, ref_labels)
    else:
        # Dot form: a row equidistant from two centres is a near-tie whose rounding may
        # favour either (identical centres, above, always tie exactly).
        d2 = ((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1)
        np.testing.assert_array_equal(d2[np.arange(len(X)), labels], d2.min(1))
    np.testing.assert_allclose(inertia, ref_inertia, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [MAX_UNROLLED_D + 3, MAX_UNROLLED_D + 8])
def test_lloyd_pass_panels_bit_identical_for_any_thread_count(d, dtype):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40_000, d)).astype(dtype)
    w = rng.uniform(size=len(X)).astype(dtype)
    C = X[:2 * PANEL + 1].copy()
    results = [run_pass(X, w, C, n_threads=t) for t in (1, 2, 3, 7)]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def _scalar_fma():
    """x * y + z with one rounding, for Python floats (math.fma from Python 3.13 on)."""
    if hasattr(math, "fma"):
        return math.fma
    name = ctypes.util.find_library("m")
    if name is None:
        return None
    fma = ctypes.CDLL(name).fma
    fma.restype, fma.argtypes = ctypes.c_double, [ctypes.c_double] * 3
    return fma


SCALAR_FMA = _scalar_fma()


def _fma(a, b, c):
    """a * b + c with one rounding, elementwise, in the dtype of the arguments."""
    a, b, c = np.broadcast_arrays(*map(np.asarray, (a, b, c)))
    if a.dtype == np.float32:  # the product is exact in float64; rounded once to float32
        return (a.astype(np.float64) * b + c).astype(np.float32)
    return np.array([SCALAR_FMA(x, y, z) for x, y, z in zip(a.flat, b.flat, c.flat)]
                    ).reshape(a.shape)


def direct_form_pass(X, w, C, fused):
    """lloyd_pass's arithmetic for d <= MAX_UNROLLED_FEATURES, in plain NumPy and Python.

    Distances sum (x_f - c_f)^2 from zero in feature order, in X's dtype, with FMAs if
    ``fused`` (the ISA has them); the nearest centre is the first one at the lowest. The
    inertia adds w * distance in float64 into one sum per lane (a row's offset in its
    chunk, modulo 32), summed in lane order per chunk, then over chunks; the sums add w * x_f,
    row after row, into copy (offset modulo 4) of each cluster's sums (FMAs if ``fused``),
    merged chunk by chunk, copy by copy.
    """
    madd = _fma if fused else (lambda a, b, c: c + a * b)
    n, d = X.shape
    dist = np.zeros((n, len(C)), X.dtype)
    for f in range(d):
        t = X[:, None, f] - C[None, :, f]
        dist = madd(t, t, dist)
    labels = dist.argmin(1)  # the first of equal distances, as in numpy
    best = dist[np.arange(n), labels].astype(np.float64)
    w = np.ones(n) if w is None else w.astype(np.float64)
    n_chunks, chunk_rows = core.row_chunks(n)
    sums, weights, inertia = np.zeros((len(C), d)), np.zeros(len(C)), 0.0
    for start in range(0, n, chunk_rows):
        rows = np.arange(start, min(n, start + chunk_rows))
        lanes = np.zeros(32)
        acc = np.zeros((4, len(C), d + 1))
        for row in rows:
            i, j = row - start, labels[row]
            lanes[i % 32] = madd(w[row], best[row], lanes[i % 32])
            x = X[row].astype(np.float64)
            if not fused:
                acc[i % 4, j, :d] += w[row] * x
            else:
                acc[i % 4, j, :d] = _fma(np.full(d, w[row]), x, acc[i % 4, j, :d])
            acc[i % 4, j, d] += w[row]
        chunk_inertia = 0.0
        for lane in lanes:
            chunk_inertia += lane  # in lane order
        inertia += chunk_inertia
        for way in range(4):
            sums += acc[way, :, :d]
            weights += acc[way, :, d]
    return labels, sums, weights, inertia


@pytest.mark.skipif(platform.machine().lower() not in {"x86_64", "amd64"} or
                    SCALAR_FMA is None and core.compiled_level() >= 3,
                    reason="FMA contraction is known on x86-64 only; needs an fma function")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", range(1, MAX_UNROLLED_D + 1))
@pytest.mark.parametrize("k, integers", [(1, False), (13, False), (40, True)])
@pytest.mark.parametrize("weighted", [False, True])
def test_lloyd_pass_unrolled_is_the_direct_form_bit_for_bit(d, dtype, k, integers, weighted):
    """Labels, sums, weights and inertia exactly as direct_form_pass computes them; with
    integer data, many rows are exactly equidistant from two centres (some duplicated)."""
    rng = np.random.default_rng(100 * d + k)
    n = 2 * 2048 + 37  # three chunks, none a whole number of blocks
    X = rng.normal(scale=3, size=(n, d))
    X = (np.round(X) if integers else X + 100).astype(dtype)
    C = X[rng.choice(n, size=k, replace=False)]
    if k > 3:
        C[k - 1] = C[1]
        C[k // 2] = C[0]
    w = rng.uniform(0.1, 3, size=n).astype(dtype) if weighted else None
    labels = np.full(n, -1, np.int32)
    sums, weights = np.empty((k, d)), np.empty(k)
    inertia, changed = core.lloyd_pass(X, w, C, labels, sums, weights, 2)
    expected = direct_form_pass(X, w, C, fused=core.compiled_level() >= 3)
    np.testing.assert_array_equal(labels, expected[0])
    assert changed == n
    np.testing.assert_array_equal(sums, expected[1])
    np.testing.assert_array_equal(weights, expected[2])
    assert inertia == expected[3]


def test_lloyd_pass_empty_input_and_bad_shapes():
    C = np.zeros((2, 3))
    labels, sums, weights, inertia = run_pass(np.zeros((0, 3)), np.zeros(0), C)
    assert inertia == 0 and not sums.any() and not weights.any()
    with pytest.raises(ValueError):
        core.lloyd_pass(np.zeros((4, 3)), np.ones(3), C, np.empty(4, np.int32),
                        np.empty((2, 3)), np.empty(2), 1)
    with pytest.raises(ValueError):
        core.lloyd_pass(np.zeros((4, 3)), np.ones(4), C, np.empty(4, np.int32),
                        np.empty((2, 3)), np.empty(2), 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 3, 8, 37, 128])  # transposed blocks; rows where they lie
def test_kmeanspp_kernels_match_numpy(d, dtype):
    rng = np.random.default_rng(d)
    n = 5000
    X = rng.normal(size=(n, d)).astype(dtype)
    w = rng.uniform(size=n).astype(dtype)
    closest = np.full(n, np.inf)
    n_chunks, chunk_rows = core.row_chunks(n)
    chunk_pot = np.empty(n_chunks)
    core.kmeanspp_update_closest(X, w, X[:1], closest, chunk_pot, 2)
    expected = ((X.astype(np.float64) - X[0].astype(np.float64)) ** 2).sum(1)
    np.testing.assert_allclose(closest, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)
    starts = np.arange(n_chunks) * chunk_rows
    np.testing.assert_allclose(chunk_pot, np.add.reduceat(w * closest, starts), rtol=1e-10)

    # (1 to 7 candidates: whole groups of four, and the leftovers.)
    for m in range(1, 8):
        rows = [5, 17, 400, 9, 33, 2, 4000][:m]
        candidates = X[rows]
        potentials = np.empty(len(rows))
        core.kmeanspp_candidate_potentials(X, w, candidates, closest, potentials, 2)
        for pot, cand in zip(potentials, candidates):
            dist = ((X.astype(np.float64) - cand.astype(np.float64)) ** 2).sum(1)
            np.testing.assert_allclose(pot, (w * np.minimum(closest, dist)).sum(),
                                       rtol=1e-5 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [3, 37, 128])
def test_kmeanspp_kernels_give_chosen_rows_zero_and_any_thread_count_the_same(d, dtype):
    # A row equal to a chosen centre must weigh nothing in the next draws (else it may be
    # drawn again), and the sums must not depend on the threads.
    rng = np.random.default_rng(d)
    # Rows enough for 3 threads' worth of work in each pass (see _threads_for).
    n = 4_000_000 // (d + 16)
    X = (rng.normal(size=(n, d)) * 100 + 1000).astype(dtype)
    X[7000:7100] = X[3]
    w = np.ones(len(X), dtype=dtype)
    n_chunks, _ = core.row_chunks(len(X))
    results = []
    for threads in (1, 2, 3):
        closest = np.full(len(X), np.inf)
        chunk_pot = np.empty(n_chunks)
        core.kmeanspp_update_closest(X, w, X[3:4], closest, chunk_pot, threads)
        assert (closest[7000:7100] == 0).all() and closest[3] == 0
        potentials = np.empty(6)
        core.kmeanspp_candidate_potentials(X, w, X[[3, 1, 2, 3, 5, 6]], closest, potentials,
                                           threads)
        assert potentials[0] == potentials[3] == pytest.approx(chunk_pot.sum(), rel=1e-12)
        results.append((closest, chunk_pot, potentials))
    for closest, chunk_pot, potentials in results[1:]:
        np.testing.assert_array_equal(closest, results[0][0])
        np.testing.assert_array_equal(chunk_pot, results[0][1])
        np.testing.assert_array_equal(potentials, results[0][2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeanspp_pruning_matches_the_full_passes(dtype):
    # Greedy k-means++'s steps with each row's nearest centre and the centres' gaps (which
    # skip the rows a candidate cannot come nearer to) against the same steps comparing
    # every row with every candidate, on blobs (where most pairs are skipped).
    d = core.row_major_min_features() + 8
    rng = np.random.default_rng(5)
    means = rng.normal(size=(12, d)) * 20
    X = (means[rng.integers(0, 12, 6000)] + rng.normal(size=(6000, d))).astype(dtype)
    w = rng.uniform(0.5, 2, len(X)).astype(dtype)
    n_chunks, _ = core.row_chunks(len(X))
    full, pruned = np.full(len(X), np.inf), np.full(len(X), np.inf)
    chunk_full, chunk_pruned = np.empty(n_chunks), np.empty(n_chunks)
    nearest = np.zeros(len(X), np.int32)
    chosen = [X[0]]
    core.kmeanspp_update_closest(X, w, X[:1], full, chunk_full, 2)
    core.kmeanspp_update_closest(X, w, X[:1], pruned, chunk_pruned, 2)
    for c in range(1, 12):
        candidates = X[rng.choice(len(X), 6, p=w * full / (w * full).sum())]
        C = np.array(chosen)
        gaps = np.empty((c, 6), dtype)
        core.sq_distances(C, candidates, gaps, 2)
        pot_full, pot_pruned = np.empty(6), np.empty(6)
        core.kmeanspp_candidate_potentials(X, w, candidates, full, pot_full, 2)
        core.kmeanspp_candidate_potentials(X, w, candidates, pruned, pot_pruned, 2, nearest,
                                           gaps)
        np.testing.assert_allclose(pot_pruned, pot_full, rtol=1e-6)
        best = int(np.argmin(pot_full))
        core.kmeanspp_update_closest(X, w, candidates[best:best + 1], full, chunk_full, 2)
        core.kmeanspp_update_closest(X, w, candidates[best:best + 1], pruned, chunk_pruned,
                                     2, nearest, np.ascontiguousarray(gaps[:, best]), c)
        chosen.append(candidates[best])
        np.testing.assert_allclose(pruned, full, rtol=1e-6)
        np.testing.assert_allclose(chunk_pruned, chunk_full, rtol=1e-6)
        exact = ((X[:, None, :].astype(np.float64) - np.array(chosen, np.float64)) ** 2).sum(-1)
        np.testing.assert_array_equal(nearest, np.argmin(exact, 1))
    with pytest.raises(ValueError, match="features"):  # too few features to prune
        core.kmeanspp_candidate_potentials(X[:, :3].copy(), w, candidates[:, :3].copy(),
                                           full, pot_full, 1, nearest, gaps[:, :6])


@pytest.mark.parametrize("d, k", [(6, 9), (37, 9), (64, 130)])  # blocks; rows; > 64 centres
def test_sq_distances_matches_numpy(d, k):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1001, d))
    C = rng.normal(size=(k, d))
    out = np.empty((1001, k))
    core.sq_distances(X, C, out, 2)
    np.testing.assert_allclose(out, ((X[:, None] - C[None]) ** 2).sum(-1), rtol=1e-12)
    out32 = np.empty((1001, k), np.float32)
    core.sq_distances(X.astype(np.float32), C.astype(np.float32), out32, 2)
    np.testing.assert_allclose(out32, out, rtol=1e-5)


def test_row_chunks_cover_rows_exactly():
    for n in [1, 2047, 2048, 2049, 5000, 10**5, 10**7 + 3]:
        n_chunks, chunk_rows = core.row_chunks(n)
        assert (n_chunks - 1) * chunk_rows < n <= n_chunks * chunk_rows
    assert core.row_chunks(0) == (0, 0)


def test_row_chunks_split_small_inputs_evenly_over_two_and_four_threads():
    assert core.row_chunks(2048) == (1, 2048)
    for n in [2049, 5000, 9000, 50_000, 10**5]:
        n_chunks, chunk_rows = core.row_chunks(n)
        assert n_chunks % 4 == 0 and chunk_rows <= 2048


def run_bounded_iterations(algorithm, X, w, C, n_iter, n_threads=2, update_sums=False):
    """Lloyd updates driven by a bounded pass; yields each iteration's labels, sums, weights
    and the pass's count of changed labels. ``update_sums``: every pass after the first
    updates the sums by the rows that change cluster."""
    n, k = len(X), len(C)
    labels = np.zeros(n, np.int32)
    bounds = _unknown_bounds(algorithm, n, X.dtype, k, X.shape[1])
    moved = np.zeros(k, X.dtype)
    sums, weights = np.empty((k, X.shape[1])), np.empty(k)
    bounded_pass = getattr(core, BOUNDED_PASSES[algorithm])
    for i in range(n_iter):
        changed = bounded_pass(X, w, C, moved, labels, *bounds, sums, weights, n_threads,
                               update_sums and i > 0)
        yield labels.copy(), sums.copy(), weights.copy(), changed
        new = np.where(weights[:, None] > 0, sums / np.maximum(weights, 1e-300)[:, None], C)
        new = new.astype(X.dtype)
        moved = np.nextafter(np.sqrt(((new.astype(np.float64) - C) ** 2).sum(1)),
                             np.inf).astype(X.dtype)
        C = new


@pytest.mark.parametrize("algorithm", list(BOUNDED_PASSES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, d, k, spread", [
    (5000, 3, 16, 1.0), (3000, 2, 5, 1.0), (4000, 7, 33, 1.0), (2000, 3, 1, 1.0),
    (100, 3, 64, 1.0), (2, 3, 2, 1.0), (3000, 1, 20, 1.0),
    # Many centres among few clusters: Exponion's neighbour lists (32 centres) do not reach
    # every centre, balls overflow them, and the second-nearest bounds matter.
    (6000, 3, 200, 0.3), (3000, 20, 70, 0.3), (3000, 3, 34, 0.3)])
def test_bounded_pass_equals_lloyd_pass_every_iteration(algorithm, n, d, k, spread, dtype):
    """Same labels, and bit-identical sums and weights, as the plain pass on the same centres,
    and the right count of changed labels."""
    rng = np.random.default_rng(n + k)
    cluster_centres = rng.normal(size=(8, d)) * 4
    X = (cluster_centres[rng.integers(0, 8, size=n)]
         + spread * rng.normal(size=(n, d))).astype(dtype)
    w = rng.uniform(0.5, 2, size=n).astype(dtype)
    w[::7] = 0  # zero weights are assigned like any row but add nothing
    C = X[rng.choice(n, size=k, replace=False)].copy()
    centres = C
    previous = np.zeros(n, np.int32)
    for labels, sums, weights, changed in run_bounded_iterations(algorithm, X, w, C, 12):
        ref_labels, ref_sums, ref_weights, _ = run_pass(X, w, centres)
        if d > MAX_UNROLLED_FEATURES:
            # The plain pass compares distances from its panel kernel there (|c|^2 - 2 x.c
            # from 16 features on), summed in another order than the bounded passes' |x - c|^2:
            # a row within rounding of a tie may go either way.
            differ = np.flatnonzero(labels != ref_labels)
            gap = np.abs(np.linalg.norm(X[differ] - centres[labels[differ]], axis=1)
                         - np.linalg.norm(X[differ] - centres[ref_labels[differ]], axis=1))
            assert (gap <= 1e-5 * np.linalg.norm(X[differ], axis=1)).all()
            assert len(differ) <= 2
            if len(differ):
                ref_sums = np.zeros_like(sums)
                np.add.at(ref_sums, labels, w[:, None] * X.astype(np.float64))
                np.testing.assert_allclose(sums, ref_sums, rtol=1e-9, atol=1e-9)
            else:  # the same labels: the same sums, bit for bit
                assert np.array_equal(sums, ref_sums) and np.array_equal(weights, ref_weights)
        else:
            np.testing.assert_array_equal(labels, ref_labels)
            assert np.array_equal(sums, ref_sums) and np.array_equal(weights, ref_weights)
        assert changed == np.count_nonzero(labels != previous)
        previous = labels
        centres = np.where(weights[:, None] > 0, sums / np.maximum(weights, 1e-300)[:, None],
                           centres).astype(dtype)


@pytest.mark.parametrize("algorithm", list(BOUNDED_PASSES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, d, k", [(5000, 3, 16), (3000, 2, 5), (4000, 7, 33), (6000, 3, 200),
                                     (3000, 20, 70), (2000, 3, 1)])
def test_bounded_pass_updating_its_sums_equals_lloyd_pass_every_iteration(algorithm, n, d, k,
                                                                        dtype):
    """With update_sums (unit weights), each pass moves only the rows that change cluster
    from one cluster's sums to another's: the same labels and weights as the plain pass on
    the same centres, the sums to float64 rounding, and zero sums for an emptied cluster."""
    rng = np.random.default_rng(n + k + d)
    X = (rng.normal(size=(8, d))[rng.integers(0, 8, size=n)] * 4
         + 0.5 * rng.normal(size=(n, d))).astype(dtype)
    w = np.ones(n, dtype)
    C = X[rng.choice(n, size=k, replace=False)].copy()
    centres, scale = C, np.abs(X).max()
    for labels, sums, weights, _ in run_bounded_iterations(algorithm, X, w, C, 10,
                                                           update_sums=True):
        ref_labels, ref_sums, ref_weights, _ = run_pass(X, w, centres)
        if d > MAX_UNROLLED_FEATURES:  # as in the test above: a near-tie may go either way
            assert np.count_nonzero(labels != ref_labels) <= 2
            ref_sums = np.zeros_like(sums)
            np.add.at(ref_sums, labels, X.astype(np.float64))
            ref_weights = np.bincount(labels, minlength=k).astype(np.float64)
        else:
            np.testing.assert_array_equal(labels, ref_labels)
        assert np.array_equal(weights, ref_weights)  # counts: exact
        np.testing.assert_allclose(sums, ref_sums, rtol=0, atol=1e-12 * scale * n)
        centres = np.where(weights[:, None] > 0, sums / np.maximum(weights, 1e-300)[:, None],
                           centres).astype(dtype)


@pytest.mark.parametrize("algorithm", list(BOUNDED_PASSES))
@pytest.mark.parametrize("d", [1, 8])
def test_bounded_pass_updating_its_sums_zeroes_an_emptied_cluster(algorithm, d):
    """A cluster whose rows all leave gets zero sums, not the rounding residue of adding
    and taking away its rows (here 0.1 + 0.2 + 0.7 - 0.7 - 0.2 - 0.1 = 5.6e-17)."""
    values = np.array([-1.0, -0.95, 0.1, 0.2, 0.7, 3.0, 3.1])
    X = np.zeros((len(values), d))
    X[:, 0] = values
    w = np.ones(len(X))
    labels = np.zeros(len(X), np.int32)
    bounds = _unknown_bounds(algorithm, len(X), X.dtype, 3, d)
    sums, weights = np.empty((3, d)), np.empty(3)
    bounded_pass = getattr(core, BOUNDED_PASSES[algorithm])
    C = np.zeros((3, d))
    previous = C.copy()
    for step, (centres, expected) in enumerate([
            ([-1.0, 0.35, 3.0], [0, 0, 1, 1, 1, 2, 2]),
            ([-1.0, 0.15, 1.0], [0, 0, 1, 1, 2, 2, 2]),  # 0.7 leaves cluster 1
            ([-1.0, 100.0, 1.0], [0, 0, 2, 2, 2, 2, 2])]):  # then 0.1 and 0.2
        C[:, 0] = centres
        moved = np.nextafter(np.linalg.norm(C - previous, axis=1), np.inf)
        bounded_pass(X, w, C, moved, labels, *bounds, sums, weights, 1, step > 0)
        np.testing.assert_array_equal(labels, expected)
        previous = C.copy()
    assert weights[1] == 0 and (sums[1] == 0).all()
    np.testing.assert_array_equal(weights, [2, 0, 5])
    np.testing.assert_allclose(sums[:, 0], [-1.95, 0, 7.1], rtol=1e-15)


@pytest.mark.parametrize("algorithm", list(BOUNDED_PASSES))
@pytest.mark.parametrize("d", [3, 8])  # direct form; lloyd_pass's panels
@pytest.mark.parametrize("update_sums", [False, True])
def test_bounded_pass_bit_identical_for_any_thread_count(algorithm, d, update_sums):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200_000, d)).astype(np.float32)
    w = np.ones(len(X), np.float32)
    C = X[:40].copy()
    runs = [list(run_bounded_iterations(algorithm, X, w, C, 4, n_threads=t,
                                        update_sums=update_sums))
            for t in (1, 2, 5)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_exponion_keeps_its_neighbour_lists_while_the_centres_drift_little():
    """The lists are rebuilt only after a large drift; stale ones still give exact labels."""
    rng = np.random.default_rng(12)
    X = rng.normal(size=(20_000, 3)).astype(np.float32) * 10
    w = np.ones(len(X), np.float32)
    C = X[:100].copy()
    labels = np.zeros(len(X), np.int32)
    bounds = _unknown_bounds("exponion", len(X), X.dtype, 100, 3)
    table_centers = bounds[4]
    sums, weights = np.empty((100, 3)), np.empty(100)
    shift = np.zeros(100, np.float32)
    core.exponion_pass(X, w, C, shift, labels, *bounds, sums, weights, 1)
    np.testing.assert_array_equal(table_centers, C)
    for step, scale in enumerate([0.01, 0.02, 0.01, 5.0]):
        move = (rng.normal(size=C.shape) * scale).astype(np.float32)
        new = C + move
        shift = np.nextafter(np.linalg.norm(move.astype(np.float64), axis=1),
                             np.inf).astype(np.float32)
        C = new
        core.exponion_pass(X, w, C, shift, labels, *bounds, sums, weights, 1)
        np.testing.assert_array_equal(labels, run_pass(X, w, C)[0])
        rebuilt = np.array_equal(table_centers, C)
        assert rebuilt == (scale == 5.0), step


def test_exponion_pass_ties_go_to_the_lower_index():
    """Duplicated centres: every row goes to the first copy, as in the plain pass."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(3000, 3)).astype(np.float32)
    C = np.repeat(X[:40], 2, axis=0)  # centres 2i and 2i + 1 are equal
    labels, *_ = next(run_bounded_iterations("exponion", X, np.ones(3000, np.float32), C, 1))
    np.testing.assert_array_equal(labels, run_pass(X, np.ones(3000, np.float32), C)[0])
    assert (labels % 2 == 0).all()


@pytest.mark.parametrize("algorithm", list(BOUNDED_PASSES))
@pytest.mark.parametrize("d", [3, 8])
def test_bounded_pass_ties_after_a_move_go_to_the_lower_index(algorithm, d):
    """Five centres moved onto their twins: their rows fail their bounds and are searched
    again (Exponion: in its ball, which holds the twin), and every one goes to the twin of
    lower index, as in the plain pass (the ball search of d > 4 compares lloyd_pass's
    scores; for d <= 4, a row whose distance to its centre equalled its lower bound, the
    twin's distance, kept its centre)."""
    rng = np.random.default_rng(d)
    blob_centres = rng.normal(size=(50, d)) * 20  # far apart: small balls
    X = (blob_centres[rng.integers(50, size=20_000)]
         + rng.normal(size=(20_000, d)) * 0.5).astype(np.float32)
    w = np.ones(len(X), np.float32)
    C = (np.repeat(blob_centres, 2, axis=0) + rng.normal(size=(100, d)) * 0.3).astype(
        np.float32)
    labels = np.zeros(len(X), np.int32)
    bounds = _unknown_bounds(algorithm, len(X), X.dtype, 100, d)
    sums, weights = np.empty((100, d)), np.empty(100)
    bounded_pass = getattr(core, BOUNDED_PASSES[algorithm])
    bounded_pass(X, w, C, np.zeros(100, np.float32), labels, *bounds, sums, weights, 1)
    moved = C.copy()
    moved[1:10:2] = moved[0:10:2]  # few rows fail: not their whole blocks
    shift = np.nextafter(np.linalg.norm((moved - C).astype(np.float64), axis=1),
                         np.inf).astype(np.float32)
    bounded_pass(X, w, moved, shift, labels, *bounds, sums, weights, 1)
    np.testing.assert_array_equal(labels, run_pass(X, w, moved)[0])
    assert not np.isin(labels, [1, 3, 5, 7, 9]).any()


@pytest.mark.parametrize("algorithm", ["hamerly", "exponion"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [5, 8, 24])
def test_bounded_full_searches_are_lloyd_passes_with_valid_bounds(algorithm, dtype, d):
    """From d = 5 on, rows searched in full (all of them in the first pass) are compared in
    lloyd_pass's panels (dot-product scores): the same labels as lloyd_pass, exactly, and
    bounds that hold in exact arithmetic however the scores rounded: here far from the
    origin, where the rounding is large, and with a duplicated centre. Later passes, which
    also gather scattered rows for full searches, keep valid bounds too (up to the rounding
    of the distances they compute directly)."""
    rng = np.random.default_rng(d)
    n, k = 3001, 45
    X = 1000 + rng.normal(size=(n, d)) * rng.uniform(0.01, 3, size=(n, 1))
    X = X.astype(dtype)
    C = X[rng.choice(n, k, replace=False)].copy()
    C[1] = C[0]
    w = np.ones(n, dtype)
    labels = np.zeros(n, np.int32)
    bounds = _unknown_bounds(algorithm, n, X.dtype, k, d)
    sums, weights = np.empty((k, d)), np.empty(k)
    moved = np.zeros(k, dtype)
    bounded_pass = getattr(core, BOUNDED_PASSES[algorithm])
    for step in range(6):
        bounded_pass(X, w, C, moved, labels, *bounds, sums, weights, 2)
        if step == 0:
            np.testing.assert_array_equal(labels, run_pass(X, w, C)[0])
            assert not (labels == 1).any()  # ties go to the lower index
        # Distances in extended precision, far below the dtype's rounding.
        diff = X.astype(np.longdouble)[:, None, :] - C.astype(np.longdouble)[None]
        dist = np.sqrt((diff * diff).sum(-1))
        rows = np.arange(n)
        # The first pass's bounds are rigorous; later ones also hold distances computed
        # directly in the dtype (within a few units in the last place).
        slack = 0 if step == 0 else 8 * np.finfo(dtype).eps
        upper, lower = bounds[0], bounds[2] if algorithm == "exponion" else bounds[1]
        assert (upper >= dist[rows, labels] * (1 - slack)).all()
        others = dist.copy()
        others[rows, labels] = np.inf
        if algorithm == "hamerly":
            assert (lower <= others.min(1) * (1 + slack)).all()
        else:
            # A second centre equal to the row's own one (none listed, as after a full
            # search in panels): lower_rest bounds every other centre.
            second, lower_rest = bounds[1], bounds[3]
            listed = second != labels
            if step == 0:
                assert not listed.any()
            assert (lower[listed] <= dist[rows, second][listed] * (1 + slack)).all()
            others[rows[listed], second[listed]] = np.inf
            assert (lower_rest <= others.min(1) * (1 + slack)).all()
        if step == 0:  # and tight: the allowances grow with the rows' spread, squared
            spread = np.linalg.norm(X - C.astype(np.float64).mean(0), axis=1).max()
            excess = upper.astype(np.longdouble) ** 2 - dist[rows, labels] ** 2
            assert (excess <= 100 * d * np.finfo(dtype).eps * spread**2).all()
        new = np.where(weights[:, None] > 0, sums / np.maximum(weights, 1e-300)[:, None], C)
        new = new.astype(dtype)
        moved = np.nextafter(np.sqrt(((new.astype(np.float64) - C) ** 2).sum(1)),
                             np.inf).astype(dtype)
        C = new


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [5, 8, 24, 128, 784])
def test_dot_form_allowance_covers_the_worst_rounding(d, dtype, fused):
    """The bounded passes' allowance for the rounding of lloyd_pass's dot-form scores
    (``2 S_j + |x'|^2`` against ``|x' - c'_j|^2``) covers rows built to round badly: a row
    equal to its centre, every feature the same value, so that the additions of its dot
    product round the same way (random rows round far less). Those rows also reach a
    twentieth of it or more: an allowance several times too small fails here, where the
    tests of near-ties only fail without one. The scores are computed as the kernels do,
    summed in feature order from zero with FMAs (``fused``) or without."""
    if fused and SCALAR_FMA is None and dtype == np.float64:
        pytest.skip("no scalar fma in this C library")
    rng = np.random.default_rng(d)
    n_rows = 300 if dtype == np.float32 or not fused else 30
    values = rng.uniform(1, 2, size=(n_rows, 1)) * 2.0 ** rng.integers(-3, 4, size=(n_rows, 1))
    X = np.repeat(values, d, axis=1).astype(dtype)  # x' = c': the distance is exactly 0
    dots = np.zeros(n_rows, dtype)
    for f in range(d):
        dots = _fma(X[:, f], X[:, f], dots) if fused else dots + X[:, f] * X[:, f]
    sq_norms = np.einsum("ij,ij->i", X.astype(np.float64), X.astype(np.float64))
    base = (0.5 * sq_norms).astype(dtype)  # as _pack_panels computes it
    scores = base - dots
    errors = np.array([float(abs(2 * Fraction(float(s)) + Fraction(float(q))))
                       for s, q in zip(scores, sq_norms)])
    allowances = np.array([core.dot_score_allowance(d, float(b), math.sqrt(q),
                                                    dtype == np.float32)
                           for b, q in zip(base, sq_norms)])
    assert (errors <= allowances).all()
    assert (errors / allowances).max() >= 0.05


def test_kmeanspp_draw_rows_matches_cumulative_sums():
    """Each draw lands on the first row whose running mass exceeds it (never a row of zero
    mass), as np.cumsum and np.searchsorted would pick over all rows."""
    rng = np.random.default_rng(11)
    n = 50_000
    w = rng.uniform(0, 2, size=n).astype(np.float32)
    w[rng.random(n) < 0.3] = 0
    closest = rng.uniform(0, 5, size=n)
    n_chunks, chunk_rows = core.row_chunks(n)
    mass = w.astype(np.float64) * closest
    chunk_mass = np.add.reduceat(mass, np.arange(n_chunks) * chunk_rows)
    draws = rng.uniform(size=500) * chunk_mass.sum()
    rows = np.empty(500, np.intp)
    core.kmeanspp_draw_rows(w, closest, chunk_mass, draws, rows)
    expected = np.searchsorted(np.cumsum(mass), draws, side="right")
    # Chunk-wise running sums round differently from one over all rows: allow a neighbour.
    assert (np.abs(rows - expected) <= 1).mean() > 0.99
    assert (mass[rows] > 0).all()
    core.kmeanspp_draw_rows(w, None, np.add.reduceat(w.astype(np.float64),
                                                     np.arange(n_chunks) * chunk_rows),
                            np.zeros(3), rows[:3])
    assert (rows[:3] == np.flatnonzero(w > 0)[0]).all()


def test_rgb_histogram_and_remap_match_numpy():
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(50_000, 3), dtype=np.uint8)
    rgb[::3] = rgb[0]  # a frequent colour
    counts = np.zeros(1 << 24, np.uint32)
    core.rgb_histogram(rgb, counts, 2)
    keys = (rgb[:, 0].astype(np.int64) << 16) | (rgb[:, 1].astype(np.int64) << 8) | rgb[:, 2]
    np.testing.assert_array_equal(counts, np.bincount(keys, minlength=1 << 24))
    lookup = (np.arange(1 << 24) % 251).astype(np.uint8)
    indices = np.empty(len(rgb), np.uint8)
    core.remap_rgb(rgb, lookup, indices, 2)
    np.testing.assert_array_equal(indices, lookup[keys])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_histogram_colours_lists_the_non_zero_counters_in_order(n_threads):
    counts = np.zeros(1 << 24, np.uint32)
    rng = np.random.default_rng(3)
    keys = np.unique(rng.integers(0, 1 << 24, size=40_000))
    # The first and last counters, and a whole block of 2**16 in use.
    keys = np.union1d(keys, [0, (1 << 24) - 1, *range(5 << 16, 6 << 16)])
    counts[keys] = rng.integers(1, 1 << 32, size=len(keys), dtype=np.uint32)
    found, pixel_counts, colours = core.histogram_colours(counts, n_threads)
    np.testing.assert_array_equal(found, keys)
    assert found.dtype == np.uint32 and pixel_counts.dtype == np.int64
    np.testing.assert_array_equal(pixel_counts, counts[keys])
    np.testing.assert_array_equal(colours, np.stack([keys >> 16, (keys >> 8) & 255, keys & 255],
                                                    axis=1))
    empty = core.histogram_colours(np.zeros(1 << 24, np.uint32), n_threads)
    assert [len(a) for a in empty] == [0, 0, 0]


def _pooled_by_numpy(colours, shift, points, weights):
    """Reference of pool_cells: cell keys, bincounts, used cells in increasing order."""
    bits = 8 - shift
    keys = np.zeros(len(colours), np.int64)
    for channel in range(colours.shape[1]):
        keys = (keys << bits) | (colours[:, channel].astype(np.int64) >> shift)
    kept = weights > 0
    keys, points, weights = keys[kept], points[kept].astype(np.float64), weights[kept]
    used, inverse = np.unique(keys, return_inverse=True)
    totals = np.bincount(inverse, weights=weights.astype(np.float64))
    means = np.stack([np.bincount(inverse, weights=weights.astype(np.float64) * points[:, f])
                      for f in range(points.shape[1])], axis=1) / totals[:, None]
    corners = np.stack([((used >> ((colours.shape[1] - 1 - c) * bits)) & ((1 << bits) - 1))
                        << shift for c in range(colours.shape[1])], axis=1)
    return means, totals, corners.astype(np.uint8)


@pytest.mark.parametrize("channels, shift, dtype", [(3, 1, np.float32), (3, 2, np.float64),
                                                    (4, 2, np.float32), (3, 0, np.float64)])
def test_pool_cells_matches_numpy(channels, shift, dtype):
    rng = np.random.default_rng(channels + shift)
    colours = rng.integers(0, 256, size=(20_000, channels), dtype=np.uint8)
    colours[::4] = colours[1]  # a crowded cell
    points = rng.normal(size=(len(colours), 5)).astype(dtype)
    weights = rng.integers(0, 50, size=len(colours)).astype(dtype)  # zeros are left out
    means, totals, corners = core.pool_cells(colours, shift, points, weights)
    expected = _pooled_by_numpy(colours, shift, points, weights)
    np.testing.assert_allclose(means, expected[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(totals, expected[1])
    np.testing.assert_array_equal(corners, expected[2])
    # Pooling the pooled cells again is pooling the originals by the coarser cell.
    coarser = core.pool_cells(corners, shift + 1, means, totals)
    direct = _pooled_by_numpy(colours, shift + 1, points, weights)
    np.testing.assert_allclose(coarser[0], direct[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(coarser[2], direct[2])


def test_pool_cells_refuses_cell_indices_over_24_bits():
    colours = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="more than 24"):
        core.pool_cells(colours, 1, np.zeros((4, 4)), np.ones(4))


@pytest.mark.parametrize("n_colours", [1, 12, 40, 256])
def test_dither_rgb_without_error_is_nearest_colour_mapping(n_colours):
    """With no error passed on, dithering reduces to each pixel's nearest palette colour
    (ties to the lowest index: the palette repeats colours)."""
    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, size=(n_colours, 3)).astype(np.float32)
    palette[n_colours // 2:] = palette[:n_colours - n_colours // 2]
    nearest = np.zeros(1 << 24, np.int16)
    indices = np.empty((40, 30), np.uint8)
    core.dither_rgb(image, np.zeros((40, 30), np.uint8), palette, 16.0, nearest, 0.0, 16.0,
                    indices)
    d2 = ((image[:, :, None, :].astype(float) - palette) ** 2).sum(-1)
    np.testing.assert_array_equal(indices, d2.argmin(-1))


def test_dither_rgb_keeps_local_averages():
    """Full-strength diffusion on a smooth ramp: 2-colour output whose local mean follows it."""
    ramp = np.repeat(np.linspace(0, 255, 64)[None, :, None], 32, axis=0)
    image = np.repeat(ramp, 3, axis=2).astype(np.uint8)
    palette = np.array([[0, 0, 0], [255, 255, 255]], np.float32)
    indices = np.empty((32, 64), np.uint8)
    # (Every pixel of the ramp but its two ends is far from both colours: full acceptance.)
    core.dither_rgb(image, np.zeros((32, 64), np.uint8), palette, 1e-3,
                    np.zeros(1 << 24, np.int16), 1.0, 1e9, indices)
    column_means = palette[indices][:, :, 0].mean(axis=0)
    undithered = np.where(ramp[0, :, 0] < 127.5, 0, 255)
    error = np.abs(column_means - ramp[0, :, 0]).mean()
    assert error < 0.25 * np.abs(undithered - ramp[0, :, 0]).mean()


def test_dither_rgb_pixels_the_palette_matches_take_no_error():
    """A pixel at a palette colour takes no incoming error (its own error is 0); one off it
    takes the error in proportion to its distance from its own nearest colour."""
    palette = np.array([[0] * 3, [100] * 3, [120] * 3], np.float32)
    row = np.array([200, 100, 100, 100], np.uint8)  # 200 -> 120 passes +80 on
    image = np.repeat(row[None, :, None], 3, axis=2)
    indices = np.empty((1, 4), np.uint8)
    core.dither_rgb(image, np.zeros((1, 4), np.uint8), palette, 16.0,
                    np.zeros(1 << 24, np.int16), 1.0, 1e9, indices)
    assert indices.tolist() == [[2, 1, 1, 1]]
    # 2 off 100 in each channel (3.46 away): takes 3.46/16 of the 35 carried -> 105.6: 100.
    image[0, 1] = 98
    core.dither_rgb(image, np.zeros((1, 4), np.uint8), palette, 16.0,
                    np.zeros(1 << 24, np.int16), 1.0, 1e9, indices)
    assert indices[0, 1] == 1
    # 8 off (13.9 away): takes 13.9/16 of it -> 92 + 30.3 = 122.3: 120.
    image[0, 1] = 92
    core.dither_rgb(image, np.zeros((1, 4), np.uint8), palette, 16.0,
                    np.zeros(1 << 24, np.int16), 1.0, 1e9, indices)
    assert indices[0, 1] == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, d", [(1, 1), (5000, 3), (200_001, 7)])
def test_mean_variance_is_numpys_and_thread_independent(dtype, n, d):
    rng = np.random.default_rng(n + d)
    X = (rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d) + 100).astype(dtype)
    expected = X.astype(np.float64).var(axis=0).mean()
    results = [core.mean_variance(X, n_threads) for n_threads in (1, 2, 3)]
    assert results[0] == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert results[1] == results[0] and results[2] == results[0]
    with pytest.raises(ValueError, match="rows and columns"):
        core.mean_variance(np.empty((0, 3), dtype=dtype))
    # Weighted by counts: the variance of the rows repeated that many times.
    counts = rng.integers(0, 5, size=n).astype(dtype)
    counts[0] = 1
    repeated = np.repeat(X, counts.astype(np.int64), axis=0)
    weighted = [core.mean_variance(X, n_threads, counts) for n_threads in (1, 2, 3)]
    assert weighted[0] == pytest.approx(core.mean_variance(repeated), rel=1e-12, abs=1e-300)
    assert weighted[1] == weighted[0] and weighted[2] == weighted[0]
    with pytest.raises(ValueError, match="positive sum"):
        core.mean_variance(X, 1, np.zeros(n, dtype))
    with pytest.raises(ValueError, match="one entry per row"):
        core.mean_variance(X, 1, np.ones(n + 1, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_largest_magnitude_and_any_nan_or_infinity(dtype):
    info = np.finfo(dtype)
    X = np.full((300_000, 3), info.max / 2, dtype=dtype)  # (work for 2 threads)
    X[::2] = -info.tiny / 2  # (subnormal)
    X[1] = 0.0
    for n_threads in (1, 2):
        assert core.largest_magnitude(X, n_threads) == info.max / 2
        for top in (-info.max, info.max, -info.tiny / 4):
            Y = X.copy() if abs(top) > 1 else np.full((300_000, 3), info.tiny / 8, dtype)
            Y[150_000, 1] = top
            assert core.largest_magnitude(Y, n_threads) == abs(top), top
        for bad in (np.nan, np.inf, -np.inf):
            for where in [(0, 0), (150_000, 1), (-1, 2)]:
                Y = X.copy()
                Y[where] = bad
                assert core.largest_magnitude(Y, n_threads) == np.inf, (bad, where)
    assert core.largest_magnitude(np.empty((0, 3), dtype)) == 0
    assert core.largest_magnitude(np.zeros((5, 3), dtype)) == 0


def test_take_labels_is_numpys_gather():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 50, size=1000).astype(np.int32)
    index = rng.integers(0, 1000, size=3_000_000).astype(np.int32)  # work for 2 threads
    for n_threads in (1, 2):
        out = np.empty(len(index), dtype=np.int32)
        core.take_labels(labels, index, out, n_threads)
        np.testing.assert_array_equal(out, labels[index])
    for bad in (0, len(index) - 1):  # in the first chunk and in the last
        wrong = index.copy()
        wrong[bad] = 1000
        with pytest.raises(ValueError, match="out of range"):
            core.take_labels(labels, wrong, np.empty(len(index), np.int32), 2)


@pytest.mark.parametrize("d", [3, MAX_UNROLLED_FEATURES, MAX_UNROLLED_FEATURES + 1, 40])
def test_lloyd_pass_can_leave_the_inertia_out(d):
    """with_inertia=False: the same labels, sums and weights, and NaN for the inertia where
    it costs a distance more (d > 4; labelled_inertia gives it then, bit for bit); below,
    the inertia anyway."""
    rng = np.random.default_rng(d)
    X = (rng.normal(size=(20_000, d)) * 3).astype(np.float32)
    C = X[rng.choice(len(X), 21, replace=False)].copy()
    w = rng.uniform(0, 2, len(X)).astype(np.float32)
    for weights in (None, w):
        labels, sums, weight_sums, inertia = run_pass(X, weights, C)
        out = np.full(len(X), -1, np.int32), np.empty_like(sums), np.empty_like(weight_sums)
        left_out, changed = core.lloyd_pass(X, weights, C, *out, 2, with_inertia=False)
        assert changed == len(X)
        for got, expected in zip(out, (labels, sums, weight_sums)):
            assert np.array_equal(got, expected)
        if d > MAX_UNROLLED_FEATURES:
            assert np.isnan(left_out)
            assert core.labelled_inertia(X, weights, C, labels, 2) == inertia
        else:
            assert left_out == inertia


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 3, 5, 8, 40])
def test_labelled_inertia_is_lloyd_pass_inertia(d, dtype):
    """Bit for bit where lloyd_pass sums float64 distances (d > 4), to rounding below; any
    thread count; unit weights as None."""
    rng = np.random.default_rng(d)
    X = (rng.normal(size=(30_001, d)) * 3 + 100).astype(dtype)
    C = X[rng.choice(len(X), 37, replace=False)].copy()
    w = rng.uniform(0, 2, len(X)).astype(dtype)
    for weights in (None, w):
        labels, _, _, inertia = run_pass(X, weights, C)
        for n_threads in (1, 2, 3):
            got = core.labelled_inertia(X, weights, C, labels, n_threads)
            if d > MAX_UNROLLED_FEATURES:
                assert got == inertia
            else:
                assert got == pytest.approx(inertia, rel=1e-5 if dtype == np.float32 else 1e-12)
    other = np.roll(labels, 1)  # any labels, not only the nearest centres
    expected = (w * ((X.astype(np.float64) - C[other]) ** 2).sum(1)).sum()
    assert core.labelled_inertia(X, w, C, other, 2) == pytest.approx(expected, rel=1e-12)
    assert core.labelled_inertia(X[:0], None, C, labels[:0]) == 0
    for bad in (-1, 37):
        wrong = labels.copy()
        wrong[5] = bad
        with pytest.raises(ValueError, match="not a centre"):
            core.labelled_inertia(X, None, C, wrong)
    with pytest.raises(ValueError, match="shapes"):
        core.labelled_inertia(X, None, C, labels[:-1])
