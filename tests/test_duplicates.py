"""Repeated rows: the distinct_rows kernel, and fits of data with repeats against fits that
do not look for them."""

import importlib

import numpy as np
import pytest

import fastkm
from fastkm import _duplicates, _isa
from fastkm._isa import core


@pytest.fixture(params=_isa.available_levels())
def level_core(request):
    """The kernels of each instruction-set level this CPU runs: the grid search has float32
    paths for AVX-512 beside the scalar ones of the other levels."""
    return importlib.import_module(_isa.LEVELS[request.param][1])


def repeated_rows(n, n_distinct, d, dtype, seed=0):
    """n rows drawn (unevenly) from n_distinct random ones, like the colours of a photo."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(n_distinct, d)).astype(dtype) / 255
    popularity = rng.pareto(1.5, size=n_distinct) + 1e-3
    rows = rng.choice(n_distinct, size=n, p=popularity / popularity.sum())
    return np.ascontiguousarray(palette[rows])


def reference_distinct(X, weights):
    """np.unique's answer: the sorted distinct rows, and the summed weight of each."""
    rows, inverse = np.unique(X, axis=0, return_inverse=True)
    return rows, np.bincount(inverse.ravel(), weights=weights, minlength=len(rows))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 3, 8])
def test_kernel_finds_the_distinct_rows_and_their_weights(dtype, d):
    X = repeated_rows(20_000, 700, d, dtype)
    weights = np.random.default_rng(1).uniform(0.5, 2, size=len(X)).astype(dtype)
    inverse = np.empty(len(X), dtype=np.int32)
    rows, summed = core.distinct_rows(X, weights, len(X), inverse, 2)
    assert rows.dtype == dtype and summed.dtype == np.float64
    np.testing.assert_array_equal(rows[inverse], X)
    assert len(np.unique(rows, axis=0)) == len(rows)  # each row once
    expected_rows, expected_weights = reference_distinct(X, weights.astype(np.float64))
    order = np.lexsort(rows.T[::-1])
    np.testing.assert_array_equal(rows[order], expected_rows)
    np.testing.assert_allclose(summed[order], expected_weights, rtol=1e-12)
    # In the order of their first occurrence in X.
    first_index = np.unique(X, axis=0, return_index=True)[1]
    np.testing.assert_array_equal(rows, X[np.sort(first_index)])


def test_kernel_unit_weights_count_the_rows():
    X = repeated_rows(5_000, 50, 3, np.float32)
    inverse = np.empty(len(X), dtype=np.int32)
    rows, counts = core.distinct_rows(X, None, len(X), inverse)
    np.testing.assert_array_equal(counts, np.bincount(inverse, minlength=len(rows)))
    assert counts.sum() == len(X)


@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_counts_runs_of_equal_rows(weighted):
    """Rows equal to the row before them (flat areas of an image), in runs that cross the
    kernel's row chunks and come back later: counted with their run's first row."""
    rng = np.random.default_rng(3)
    palette = rng.integers(0, 4, size=(40, 3)).astype(np.float32) / 3
    lengths = rng.integers(1, 3000, size=60)
    X = np.repeat(palette[rng.integers(0, len(palette), size=len(lengths))], lengths, axis=0)
    assert core.row_chunks(len(X))[0] > 4
    weights = rng.uniform(0.5, 2, size=len(X)).astype(np.float32) if weighted else None
    expected_rows, expected_weights = reference_distinct(
        X, None if weights is None else weights.astype(np.float64))
    results = []
    for n_threads in (1, 2, 3):
        inverse = np.empty(len(X), dtype=np.int32)
        rows, summed = core.distinct_rows(X, weights, len(X), inverse, n_threads)
        np.testing.assert_array_equal(rows[inverse], X)
        order = np.lexsort(rows.T[::-1])
        np.testing.assert_array_equal(rows[order], expected_rows)
        np.testing.assert_allclose(summed[order], expected_weights, rtol=1e-12)
        np.testing.assert_array_equal(inverse[0], 0)
        assert (np.diff(np.maximum.accumulate(inverse)) <= 1).all()  # first-occurrence order
        results.append((rows, summed, inverse))
    for rows, summed, inverse in results[1:]:
        assert np.array_equal(rows, results[0][0]) and np.array_equal(summed, results[0][1])
        assert np.array_equal(inverse, results[0][2])


def test_kernel_merges_signed_zeros_and_keeps_near_values_apart():
    X = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, np.nextafter(1.0, 2.0)], [0.0, 1.0]])
    inverse = np.empty(4, dtype=np.int32)
    rows, counts = core.distinct_rows(X, None, 16, inverse)
    assert len(rows) == 2
    assert inverse[0] == inverse[1] == inverse[3] != inverse[2]
    np.testing.assert_array_equal(counts[[inverse[0], inverse[2]]], [3, 1])


def test_kernel_result_does_not_depend_on_the_thread_count():
    X = repeated_rows(50_000, 3_000, 3, np.float32)
    results = []
    for n_threads in (1, 2, 3):
        inverse = np.empty(len(X), dtype=np.int32)
        rows, weights = core.distinct_rows(X, None, len(X), inverse, n_threads)
        results.append((rows, weights, inverse))
    for rows, weights, inverse in results[1:]:
        np.testing.assert_array_equal(rows, results[0][0])
        np.testing.assert_array_equal(weights, results[0][1])
        np.testing.assert_array_equal(inverse, results[0][2])


def test_kernel_gives_up_beyond_max_distinct():
    X = repeated_rows(10_000, 400, 3, np.float64)
    n_distinct = len(np.unique(X, axis=0))
    inverse = np.empty(len(X), dtype=np.int32)
    for n_threads in (1, 2):
        for max_distinct in (0, n_distinct // 2, n_distinct - 1):
            assert core.distinct_rows(X, None, max_distinct, inverse, n_threads) is None
        for max_distinct in (n_distinct, 2 * n_distinct):
            found = core.distinct_rows(X, None, max_distinct, inverse, n_threads)
            assert len(found[0]) == n_distinct


def test_kernel_rejects_mismatched_arrays():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="inverse"):
        core.distinct_rows(X, None, 10, np.empty(9, dtype=np.int32))
    with pytest.raises(ValueError, match="sample_weight"):
        core.distinct_rows(X, np.ones(9), 10, np.empty(10, dtype=np.int32))


def zorder_of_ranks(rows):
    """Each row's cell as grid_distinct_rows numbers it: the ranks of its values among
    their column's, bits interleaved from the highest, column 0's first."""
    ranks = [np.unique(column, return_inverse=True) for column in rows.T]
    widths = [int(len(values) - 1).bit_length() for values, _ in ranks]
    cells = np.zeros(len(rows), dtype=np.int64)
    for level in range(max(widths) - 1, -1, -1):
        for (_, rank), width in zip(ranks, widths):
            if width > level:
                cells = (cells << 1) | ((rank.ravel() >> level) & 1)
    return cells


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_grid_kernel_finds_the_distinct_rows_in_zorder(dtype, d, level_core):
    # Values of both signs (and -0.0 for 0.0), as many as 24 bits for a row allow.
    half = 2 ** (min(12, 24 // d) - 1)
    rng = np.random.default_rng(d)
    palette = rng.integers(-half + 1, half, size=(900, d)).astype(dtype) / 255
    palette[palette == 0] = -0.0
    X = palette[rng.integers(0, len(palette), size=30_000)]
    X[::5] = 0.0
    inverse = np.empty(len(X), dtype=np.int32)
    rows, counts = level_core.grid_distinct_rows(X, len(X), inverse, 2)
    assert rows.dtype == dtype and counts.dtype == dtype
    np.testing.assert_array_equal(rows[inverse], X)
    expected_rows, expected_counts = reference_distinct(X, None)
    order = np.lexsort(rows.T[::-1])
    np.testing.assert_array_equal(rows[order], expected_rows)
    np.testing.assert_array_equal(counts[order], expected_counts)
    assert (np.diff(zorder_of_ranks(rows)) > 0).all()


def test_grid_kernel_result_does_not_depend_on_the_thread_count(level_core):
    rng = np.random.default_rng(4)
    palette = rng.integers(-127, 128, size=(20_000, 3)).astype(np.float32) / 255
    X = palette[rng.integers(0, len(palette), size=400_000)]  # (work for 3 threads)
    results = []
    for n_threads in (1, 2, 3):
        inverse = np.empty(len(X), dtype=np.int32)
        rows, counts = level_core.grid_distinct_rows(X, len(X), inverse, n_threads)
        results.append((rows, counts, inverse))
    np.testing.assert_array_equal(results[0][0][results[0][2]], X)
    assert results[0][1].sum() == len(X)
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            np.testing.assert_array_equal(a, b)


def test_grid_kernel_counts_runs_across_chunks(level_core):
    rng = np.random.default_rng(3)
    palette = rng.integers(0, 4, size=(40, 3)).astype(np.float32) / 3
    lengths = rng.integers(1, 3000, size=300)  # (work for 3 threads)
    X = np.repeat(palette[rng.integers(0, len(palette), size=len(lengths))], lengths, axis=0)
    assert core.row_chunks(len(X))[0] > 4
    expected_rows, expected_counts = reference_distinct(X, None)
    for n_threads in (1, 2, 3):
        inverse = np.empty(len(X), dtype=np.int32)
        rows, counts = level_core.grid_distinct_rows(X, len(X), inverse, n_threads)
        np.testing.assert_array_equal(rows[inverse], X)
        order = np.lexsort(rows.T[::-1])
        np.testing.assert_array_equal(rows[order], expected_rows)
        np.testing.assert_array_equal(counts[order], expected_counts)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_grid_kernel_gives_every_level_the_same_result(d, level_core):
    # Row counts around the vector width (16 values) and a block's 64 rows, runs, zeros.
    rng = np.random.default_rng(d)
    for n in (1, 5, 15, 16, 17, 63, 64, 65, 129, 1003, 70_001):
        X = (rng.integers(0, 9, size=(n, d)) / 8).astype(np.float32)
        X[rng.random(n) < 0.3] = X[0]
        results = []
        for kernels in (_isa._baseline, level_core):
            inverse = np.empty(n, dtype=np.int32)
            rows, counts = kernels.grid_distinct_rows(X, n, inverse, 2)
            results.append((rows, counts, inverse))
        for expected, found in zip(*results):
            np.testing.assert_array_equal(found, expected)
        np.testing.assert_array_equal(results[0][0][results[0][2]], X)


def _values_of_bits(bits, dtype):
    return np.array(bits, dtype=np.uint32 if dtype == np.float32 else np.uint64).view(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grid_kernel_declines_rows_off_the_grid(dtype, level_core):
    rng = np.random.default_rng(5)
    one_bit = 12 if dtype == np.float32 else 41  # the lowest bit of a value's bucket
    one = np.ones(1, dtype).view(np.uint32 if dtype == np.float32 else np.uint64)[0]
    # (in one's unsigned type: numpy 1.x turns np.uint64 + a Python int into float64)
    last = one + type(one)((1 << one_bit) - 1)  # the same bucket as one
    off_grid = {
        "too many columns": np.zeros((100, 5), dtype),
        "too many values in a column": np.arange(4097, dtype=dtype)[:, None],
        "too many bits for a row": rng.permutation(
            np.repeat(np.arange(300, dtype=dtype), 2))[:, None].repeat(3, axis=1)
        + np.arange(3, dtype=dtype),
        "two values in a bucket": _values_of_bits(
            [one, last, one], dtype)[:, None],
        "values 2**16 times apart": np.array([[1.0], [2.0**16], [1.0]], dtype),
        # (NaN equals nothing, not even itself: the hash search keeps such rows apart)
        "NaN": np.array([[np.nan, 3.0], [np.nan, 3.0]], dtype),
        # (KMeans.fit leaves X's finiteness to the grid search where it takes the rows)
        "infinity": np.array([[np.inf, 3.0], [np.inf, 3.0], [0.0, 3.0]], dtype),
        # (each thread's rows holding one of them: the clash shows when they are merged)
        "two values in a bucket, far apart": np.repeat(_values_of_bits(
            [one, last], dtype), 300_000)[:, None],
    }
    for name, X in off_grid.items():
        X = np.ascontiguousarray(X)
        inverse = np.full(len(X), -7, dtype=np.int32)
        assert level_core.grid_distinct_rows(X, len(X), inverse, 2) is False, name
        assert (inverse == -7).all(), name
    # At the limits, on the grid: 4096 values in a column, and 24 bits for a row.
    for X in [np.arange(4096, dtype=dtype)[::-1, None],
              rng.integers(0, 256, size=(20_000, 3)).astype(dtype)]:
        X = np.ascontiguousarray(X)
        inverse = np.empty(len(X), dtype=np.int32)
        rows, counts = level_core.grid_distinct_rows(X, len(X), inverse, 2)
        np.testing.assert_array_equal(rows[inverse], X)
        assert len(rows) == len(np.unique(X, axis=0)) and counts.sum() == len(X)


def test_grid_kernel_merges_signed_zeros_gives_up_and_checks_arrays(level_core):
    X = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 0.5], [0.0, 1.0]], dtype=np.float32)
    inverse = np.empty(4, dtype=np.int32)
    rows, counts = level_core.grid_distinct_rows(X, 16, inverse)
    assert len(rows) == 2 and inverse[0] == inverse[1] == inverse[3] != inverse[2]
    np.testing.assert_array_equal(counts[[inverse[0], inverse[2]]], [3, 1])
    assert level_core.grid_distinct_rows(X, 1, inverse) is None
    # 0.0 beside the values whose bits are 0 where a bucket looks (2.0, -2.0).
    X = np.array([[0.0], [2.0], [-2.0], [-0.0], [2.0]])
    inverse = np.empty(5, dtype=np.int32)
    rows, counts = level_core.grid_distinct_rows(X, 16, inverse)
    np.testing.assert_array_equal(rows.ravel(), [-2.0, 0.0, 2.0])
    np.testing.assert_array_equal(counts, [1, 2, 2])
    np.testing.assert_array_equal(inverse, [1, 2, 0, 1, 2])
    rows, counts = level_core.grid_distinct_rows(np.empty((0, 2)), 1, np.empty(0, np.int32))
    assert rows.shape == (0, 2) and counts.shape == (0,)
    with pytest.raises(ValueError, match="inverse"):
        level_core.grid_distinct_rows(X, 16, np.empty(3, dtype=np.int32))
    with pytest.raises(ValueError, match="column"):
        level_core.grid_distinct_rows(np.empty((3, 0)), 16, np.empty(3, dtype=np.int32))


def test_few_repeats_are_left_alone():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(_duplicates.MIN_ROWS, 3))  # all rows distinct
    assert _duplicates.distinct_rows(X, np.ones(len(X)), 2) is None
    # Three rows in four distinct: too many to pay for the pass.
    X[3::4] = X[::4]
    assert _duplicates.distinct_rows(X, np.ones(len(X)), 2) is None
    small = repeated_rows(_duplicates.MIN_ROWS - 1, 10, 3, np.float64)
    assert _duplicates.distinct_rows(small, np.ones(len(small)), 2) is None


def test_many_repeats_are_found():
    X = repeated_rows(_duplicates.MIN_ROWS, 2_000, 3, np.float32)
    found = _duplicates.distinct_rows(X, np.ones(len(X), np.float32), 2)
    assert found is not None and found.weights.dtype == np.float32
    np.testing.assert_array_equal(found.rows[found.inverse], X)


@pytest.fixture
def never_collapse(monkeypatch):
    """Fits that do not look for repeated rows: the reference."""
    def fit_without(*args, **kwargs):
        with monkeypatch.context() as patch:
            patch.setattr(_duplicates, "MIN_ROWS", np.iinfo(np.int64).max)
            return fastkm.kmeans(*args, **kwargs)
    return fit_without


@pytest.mark.parametrize("algorithm", ["lloyd", "exponion", "yinyang", "filter"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_of_repeated_rows_is_the_fit_of_all_rows(never_collapse, algorithm, dtype):
    X = repeated_rows(100_000, 3_000, 3, dtype)
    init = X[np.random.default_rng(2).choice(len(X), 24, replace=False)]
    init = np.unique(init, axis=0)[:16]
    found = _duplicates.distinct_rows(X, np.ones(len(X), dtype), 2)
    assert found.zordered  # (the grid search's rows: the filter takes them as they are)
    # (With a callback, the bounded passes run as Lloyd's: the filter's alone gets one.)
    iterations = []
    collapsed = fastkm.kmeans(
        X, 16, init=init, algorithm=algorithm, tol=0, max_iter=40,
        callback=(lambda info: iterations.append(info.labels)) if algorithm == "filter"
        else None)
    reference_iterations = []
    reference = never_collapse(X, 16, init=init, algorithm="lloyd", tol=0, max_iter=40,
                               callback=lambda info: reference_iterations.append(info.labels))
    np.testing.assert_array_equal(collapsed.labels, reference.labels)
    assert collapsed.n_iter == reference.n_iter
    for labels, reference_labels in zip(iterations, reference_iterations[:len(iterations)]):
        np.testing.assert_array_equal(labels, reference_labels)
    assert len(iterations) == (len(reference_iterations) if algorithm == "filter" else 0)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(collapsed.centers, reference.centers, rtol=rtol)
    assert collapsed.inertia == pytest.approx(reference.inertia, rel=rtol)


def test_weighted_fit_of_repeated_rows(never_collapse):
    X = repeated_rows(80_000, 2_000, 3, np.float64, seed=3)
    weights = np.random.default_rng(4).integers(0, 4, size=len(X)).astype(np.float64)
    init = np.unique(X[:200], axis=0)[:10]
    collapsed = fastkm.kmeans(X, 10, sample_weight=weights, init=init, tol=0, max_iter=30)
    reference = never_collapse(X, 10, sample_weight=weights, init=init, tol=0, max_iter=30)
    np.testing.assert_array_equal(collapsed.labels, reference.labels)
    np.testing.assert_allclose(collapsed.centers, reference.centers, rtol=1e-12)
    assert collapsed.inertia == pytest.approx(reference.inertia, rel=1e-12)


@pytest.mark.filterwarnings("error")
def test_repeated_rows_whose_summed_weights_overflow_x_dtype(never_collapse):
    # Weights finite in float32 whose sums over repeated rows are not: all rows are fitted.
    X = repeated_rows(_duplicates.MIN_ROWS, 20, 3, np.float32, seed=5)
    weights = np.full(len(X), 1e36, np.float32)
    assert _duplicates.distinct_rows(X, weights, 2) is None
    init = np.unique(X, axis=0)[:4]
    fitted = fastkm.kmeans(X, 4, sample_weight=weights, init=init, max_iter=5)
    reference = never_collapse(X, 4, sample_weight=weights, init=init, max_iter=5)
    np.testing.assert_array_equal(fitted.labels, reference.labels)
    np.testing.assert_array_equal(fitted.centers, reference.centers)


def test_estimator_on_repeated_rows_labels_every_row_and_is_thread_independent():
    X = repeated_rows(70_000, 1_500, 3, np.float32, seed=5)
    seen = []
    fits = [fastkm.KMeans(12, random_state=0, n_threads=n_threads,
                          callback=lambda info: seen.append(info.labels.shape)).fit(X)
            for n_threads in (1, 2)]
    assert fits[0].labels_.shape == (len(X),)
    assert set(seen) == {(len(X),)}
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)
    np.testing.assert_array_equal(fits[0].cluster_centers_, fits[1].cluster_centers_)
    assert fits[0].inertia_ == fits[1].inertia_
    np.testing.assert_array_equal(fits[0].labels_, fits[0].predict(X))


def test_swap_refinement_and_restarts_on_repeated_rows():
    X = repeated_rows(70_000, 1_500, 3, np.float64, seed=6)
    km = fastkm.KMeans(8, random_state=1, n_init=2, swap_trials=5).fit(X)
    assert km.labels_.shape == (len(X),)
    # The labels are each row's nearest centre and the inertia is theirs.
    np.testing.assert_array_equal(km.labels_, km.predict(X))
    inertia = ((X - km.cluster_centers_[km.labels_]) ** 2).sum()
    assert km.inertia_ == pytest.approx(inertia, rel=1e-9)


@pytest.mark.parametrize("on_grid, short, long", [(True, 5, 10), (False, 10, 40)])
def test_short_fits_skip_the_search(monkeypatch, on_grid, short, long):
    """The search runs only in fits long enough to pay for it: the grid search, cheaper,
    in shorter fits than the hash search."""
    X = repeated_rows(_duplicates.MIN_ROWS, 500, 3, np.float32, seed=7)
    if not on_grid:  # 500 values a column: 27 bits for a row's ranks
        rng = np.random.default_rng(7)
        X = rng.normal(size=(500, 3)).astype(np.float32)[rng.integers(0, 500, size=len(X))]
    searches = []
    for name in ("distinct_rows", "grid_distinct_rows"):
        def counted(rows, *args, kernel=getattr(core, name), name=name):
            found = kernel(rows, *args)
            if len(rows) == len(X) and found is not False:  # (not the sample's, nor the
                searches.append(name)                       # grid's giving up)
            return found
        monkeypatch.setattr(core, name, counted)
    init = np.unique(X[:100], axis=0)[:16]
    fastkm.kmeans(X, 16, init=init, max_iter=short)  # at k=16, d=3: not worth it
    assert searches == []
    fastkm.kmeans(X, 16, init=init, max_iter=long)
    assert searches == ["grid_distinct_rows" if on_grid else "distinct_rows"]


def test_auto_runs_the_filter_on_the_grid_search_rows_without_sorting(monkeypatch,
                                                                      never_collapse):
    from fastkm import _lloyd

    X = repeated_rows(100_000, 10_000, 3, np.float32, seed=8)
    init = np.unique(X[:300], axis=0)[:16]
    reference = never_collapse(X, 16, init=init, algorithm="lloyd", max_iter=10)
    monkeypatch.setattr(_lloyd, "FILTER_MIN_ROWS", 1000)
    n_distinct = len(np.unique(X, axis=0))
    assert _lloyd.auto_algorithm(n_distinct, 3, 16, max_iter=10, zordered=True) == "filter"
    filtered = []
    real_filter_pass = core.filter_pass
    monkeypatch.setattr(core, "filter_pass",
                        lambda *args: filtered.append(1) or real_filter_pass(*args))
    monkeypatch.setattr(core, "zorder_sort", None)  # (rows in Z-order need no sort)
    fit = fastkm.kmeans(X, 16, init=init, max_iter=10)
    assert len(filtered) >= fit.n_iter
    np.testing.assert_array_equal(fit.labels, reference.labels)
    np.testing.assert_allclose(fit.centers, reference.centers, rtol=1e-5)
    assert fit.n_iter == reference.n_iter


def test_tolerance_scales_with_the_variance_of_all_rows(monkeypatch, never_collapse):
    """With repeated rows, tol scales by the variance of X's rows, from the distinct rows
    weighted by their counts: the fits stop at the same iteration."""
    X = repeated_rows(100_000, 3_000, 3, np.float64, seed=9)
    init = np.unique(X[:300], axis=0)[:12]
    scales = []
    real_mean_variance = core.mean_variance
    monkeypatch.setattr(core, "mean_variance",
                        lambda *args: scales.append(real_mean_variance(*args)) or scales[-1])
    collapsed = fastkm.kmeans(X, 12, init=init, tol=1e-3, algorithm="lloyd")
    reference = never_collapse(X, 12, init=init, tol=1e-3, algorithm="lloyd")
    assert len(scales) == 2
    assert scales[0] == pytest.approx(X.var(axis=0).mean(), rel=1e-12)
    assert scales[0] == pytest.approx(scales[1], rel=1e-12)
    assert collapsed.n_iter == reference.n_iter < 300
    np.testing.assert_array_equal(collapsed.labels, reference.labels)
