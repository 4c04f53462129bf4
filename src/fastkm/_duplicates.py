"""Repeated rows: k-means of the distinct rows, weighted by how often each occurs.

Data such as the pixels of a photo repeat rows many times (4.4 million pixels of the GUIDE's
photo hold 855 thousand distinct colours). The k-means of rows repeated with multiplicities
is the k-means of the distinct rows weighted by those multiplicities: the same labels and
centres, up to the order in which the sums are added. :func:`distinct_rows` finds them when
a sample shows they are few enough to pay for the pass that finds them.

Two kernels find them. ``fastkm._core.grid_distinct_rows`` takes rows on a grid (each
column with a few hundred values at most, as pixels have) without unequal weights, and
gives them in Z-order of their values, which the filtering algorithm can use as they are;
``fastkm._core.distinct_rows`` takes any rows (a hash search), in the order of their first
occurrence.
"""

import math
from typing import NamedTuple

import numpy as np

from . import _scratch
from ._isa import core

# Looked for from this many rows on: below, a fit is short anyway.
MIN_ROWS = 1 << 16
# Used when there are at most n / MAX_DISTINCT_SHARE distinct rows: halving the rows pays
# for the search within SEARCH_COST / (PASS_OFFSET + k d) * 2 iterations, and sooner with
# fewer distinct rows.
MAX_DISTINCT_SHARE = 2
# The search is skipped when the fit cannot run long enough to pay it back: a Lloyd pass
# costs about PASS_OFFSET + k * d units a row (on the 4.4 million photo pixels, d=3, two
# threads: 7.6 to 9 ms at k=16, 17 to 20 ms at k=64, 56 to 67 ms at k=256), the hash
# search about 9 passes at k=16 (72 to 93 ms), i.e. SEARCH_COST units, the grid search
# about 5 (40 ms: benchmarks/compare_duplicates.py), and halving the rows saves half a
# pass per iteration.
PASS_OFFSET = 64
SEARCH_COST = 9 * (PASS_OFFSET + 16 * 3)
GRID_SEARCH_COST = 5 * (PASS_OFFSET + 16 * 3)
# Evenly spaced rows sampled first: SAMPLE_FACTOR * sqrt(n) of them. With m distinct rows
# among n, two sampled rows are equal with probability at least 1 / m (whatever the
# multiplicities), so the sample holds about s**2 / (2 m) repeats or more: 64 at m = n / 2.
# Below REPEATS_TO_TRY repeats the data are left alone; above, the search itself gives up
# early when the distinct rows turn out too many (skewed multiplicities give more repeats).
SAMPLE_FACTOR = 8
REPEATS_TO_TRY = 64


class DistinctRows(NamedTuple):
    """X's distinct rows (in X's dtype), their summed weights (in X's dtype), the index
    among them of each row of X, and whether they are in Z-order (from the grid search)."""

    rows: np.ndarray
    weights: np.ndarray
    inverse: np.ndarray
    zordered: bool


def pays_off(n_clusters, n_features, max_passes, on_grid=False):
    """Whether a fit of at most ``max_passes`` Lloyd passes could pay for the search.

    >>> pays_off(16, 3, 300), pays_off(16, 3, 10), pays_off(64, 3, 10)
    (True, False, True)
    """
    cost = GRID_SEARCH_COST if on_grid else SEARCH_COST
    return max_passes * (PASS_OFFSET + n_clusters * n_features) / 2 >= cost


def distinct_rows(X, sample_weight, n_threads, n_clusters=1, max_passes=None):
    """X's distinct rows and their weights, or None when they would not save enough.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
    sample_weight : ndarray of shape (n_samples,), X's dtype, or None
        None: every weight is 1.
    n_threads : int
    n_clusters, max_passes : int
        The fit's clusters and its most Lloyd passes (None: any number), for
        :func:`pays_off`.

    Returns
    -------
    DistinctRows or None
        None when X has fewer than ``MIN_ROWS`` rows, when an evenly spaced sample shows
        few repeats or a fit too short to pay for the search, or when more than about
        ``n_samples / MAX_DISTINCT_SHARE`` rows are distinct.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.repeat(np.eye(3, dtype=np.float32), 30_000, axis=0)
    >>> found = distinct_rows(X, np.ones(len(X), np.float32), n_threads=1)
    >>> found.rows  # (in Z-order: rows on a grid)
    array([[0., 0., 1.],
           [0., 1., 0.],
           [1., 0., 0.]], dtype=float32)
    >>> found.weights
    array([30000., 30000., 30000.], dtype=float32)
    >>> np.array_equal(found.rows[found.inverse], X)
    True
    """
    n, n_features = X.shape
    if not MIN_ROWS <= n < 2**31 - 1:  # (the kernel's indices are int32)
        return None
    worth = [max_passes is None or pays_off(n_clusters, n_features, max_passes, on_grid)
             for on_grid in (False, True)]
    if not any(worth):
        return None
    unit = sample_weight is None or sample_weight.min() == 1 == sample_weight.max()
    sample = np.ascontiguousarray(X[::max(1, n // (SAMPLE_FACTOR * math.isqrt(n)))])
    found = core.distinct_rows(sample, None, len(sample), np.empty(len(sample), np.int32),
                               n_threads)
    if len(sample) - len(found[0]) < REPEATS_TO_TRY * len(sample) ** 2 / (
            SAMPLE_FACTOR ** 2 * n):
        return None
    # The grid search first (it gives up early on rows off a grid), then the hash search,
    # each where the fit is long enough to pay for it.
    inverse = _scratch.empty(n, np.int32)
    found = False
    if unit and n_features <= core.grid_limits()[0] and worth[True]:
        found = core.grid_distinct_rows(X, n // MAX_DISTINCT_SHARE, inverse, n_threads)
    on_grid = found is not False
    if not on_grid:
        if not worth[False]:
            return None
        found = core.distinct_rows(X, None if unit else sample_weight,
                                   n // MAX_DISTINCT_SHARE, inverse, n_threads)
    if found is None:
        return None
    rows, weights = found
    if weights.max() > np.finfo(X.dtype).max:  # summed weights beyond X's dtype: the rows
        return None                             # are fitted as they are
    return DistinctRows(rows, weights.astype(X.dtype, copy=False), inverse, on_grid)
