"""Lloyd's iteration: the loop around the one-pass kernel, convergence and empty clusters."""

import math
from typing import NamedTuple

import numpy as np

from . import _scratch
from ._init import fewer_distinct_points_error
from ._isa import core
from ._yinyang import centre_groups

# The kernels of the exact algorithms that keep distance bounds.
BOUNDED_PASSES = {"hamerly": "hamerly_pass", "exponion": "exponion_pass",
                  "yinyang": "yinyang_pass"}
# algorithm='auto' (see auto_algorithm). Below MID_FEATURES features: the filtering
# algorithm ('filter', filter_pass) from FILTER_MIN_ROWS samples, FILTER_MIN_CLUSTERS
# clusters and FILTER_MIN_ROWS_PER_CLUSTER samples per cluster, in fits allowed max_iter
# iterations with max_iter * (PASS_OFFSET + k * d) >= FILTER_MIN_WORK (a Lloyd pass costs
# about PASS_OFFSET + k * d units a row): its set-up, sorting the rows along a Z-order
# curve (about 30 ns a row on two threads), must be paid back. BENCHMARKS.md section 9: to
# convergence, on one thread (photos, blobs of 200k and 1M rows in 2 to 4 dimensions), the
# filter was the fastest in 25 of 27 fits from k=16 to 500 (1.1x to 3.7x faster than Lloyd
# on the photos), Lloyd in the other two, by 1.1x (15 and 31 iterations); on two threads,
# 1.1x to 1.2x faster at k=16 but on 4-D blobs (1.2x slower), 1.1x to 4.5x from k=32. Over
# 10 iterations Lloyd wins up to k=64 (by up to 3x at k=16), the filter from k=128 (1.1x
# to 2.5x). On 50k rows it only ties at best.
# From MID_FEATURES features on (where the full searches of the rows that fail their
# bounds run in lloyd_pass's panel kernel): Hamerly from HAMERLY_MIN_CLUSTERS clusters and
# Exponion, whose ball search pays with more clusters, from EXPONION_MIN_CLUSTERS, or below
# EXPONION_FEW_FEATURES features, where a full search costs less, from
# EXPONION_MIN_CLUSTERS_FEW_FEATURES (since its ball search compares lloyd_pass's scores,
# to convergence, blobs of 8 features: Hamerly 1.19x faster at k = 100, 1.07x at 150,
# Exponion 1.14x at 200; of 16 and 32 features: Hamerly 1.25x and 1.16x at k = 64,
# Exponion 1.03x and 1.08x at 100, 1.23x from 150); from
# YINYANG_MIN_FEATURES features, simplified Yinyang from YINYANG_MIN_CLUSTERS clusters,
# whose group bounds skip more of the now costly distances, and below
# YINYANG_SHORT_FIT_CLUSTERS only in fits allowed YINYANG_MIN_ITERATIONS iterations (over
# 10 iterations on MNIST's digits Lloyd was 1.1x faster at 32 and 40 clusters, Yinyang at
# 48, even at 64, 1.02x at 100, since Yinyang searches most-failing blocks whole and Lloyd
# passes leave out their inertia; to convergence
# Yinyang 1.09x to 1.52x faster than Lloyd from 8 clusters, since the rounding allowance
# of the bounds became about 6 times tighter). Each bounded algorithm needs enough samples per
# cluster: few iterations cannot amortize the bounds' first pass. BENCHMARKS.md, "Choosing
# the algorithm", has the measurements.
MID_FEATURES = 5
FILTER_MAX_FEATURES = MID_FEATURES - 1  # (lloyd_pass's small-d kernel: see filter_pass)
FILTER_MIN_ROWS = 100_000
FILTER_MIN_CLUSTERS = 16
FILTER_MIN_ROWS_PER_CLUSTER = 256
FILTER_MIN_WORK = 4000
# In fits of unknown length (tol > 0), 'auto' runs Lloyd passes until they have cost
# FILTER_SWITCH_WORK units a row (about what the sort costs, over what a filter pass saves
# on a Lloyd pass), then sorts and goes on with the filter: fits that converge sooner
# (well separated blobs converging in 2 to 11 iterations, which sorting first made 1.3x to
# 3.4x slower: BENCHMARKS.md section 9) never sort, and longer ones pay at most twice the
# sort.
FILTER_SWITCH_WORK = 2000
# Rows in Z-order already (the distinct colours of pixels: see fastkm._duplicates): only
# the tree to pay for (3.0 ms on the photo's 855k colours, two threads), and a filter pass
# saved 0.7 ms or more on a Lloyd pass there from k=4 (0.3 to 0.7 ms against 1.1 to 1.6
# at k = 4 to 16; BENCHMARKS.md section 9): the filter from this many iterations, at any k.
ZORDERED_MIN_ITERATIONS = 5
PASS_OFFSET = 64
HAMERLY_MIN_CLUSTERS = 12
HAMERLY_MIN_ROWS_PER_CLUSTER = 1000
EXPONION_MIN_CLUSTERS = 96
EXPONION_FEW_FEATURES = 12
EXPONION_MIN_CLUSTERS_FEW_FEATURES = 192
EXPONION_MIN_ROWS_PER_CLUSTER = 100
# Without the filter (Dask), below MID_FEATURES: Exponion from EXPONION_MIN_CLUSTERS_LOW
# clusters, in fits allowed EXPONION_MIN_ITERATIONS iterations (its first passes cost more
# than Lloyd's there: photo pixels, k=256, Lloyd 1.33x faster over 10 iterations).
EXPONION_MIN_CLUSTERS_LOW = 192
EXPONION_MIN_ITERATIONS = 100
YINYANG_MIN_FEATURES = 96
YINYANG_MIN_CLUSTERS = 8
YINYANG_SHORT_FIT_CLUSTERS = 48
YINYANG_MIN_ITERATIONS = 20
# A bounded pass updates the sums by the rows that change cluster (each read twice, and
# scattered) rather than summing every row afresh, after a pass that changed fewer than
# one row in SUMS_UPDATE_SHARE (blobs 1M x 8, k=100, two threads: a pass changing 16% of
# the rows took 19.5 ms either way, one changing 5% 19.6 ms against 20.3, the later ones
# 4.3 against 5.5); only with unit weights, whose weight sums stay exact (whole numbers),
# so that a cluster left empty weighs exactly 0.
SUMS_UPDATE_SHARE = 8
# Each only while its per-sample state (Hamerly 8, Exponion 16, Yinyang 4 * (1 + k // 10),
# the filter's sorted copy of the rows and weights, and the keys, indices and order of its
# sort 28 + 4 (d + 1) bytes in float32) fits in this many bytes or in X's own size,
# whichever is larger.
BOUNDS_MEMORY_BUDGET = 1 << 30


def auto_algorithm(n_samples, n_features, n_clusters, itemsize=4, max_iter=None,
                   sorted_rows=True, zordered=False):
    """The exact algorithm that algorithm='auto' runs for data of this shape.

    The crossovers were measured to convergence on photo pixels, blobs and MNIST digits
    (BENCHMARKS.md, "Choosing the algorithm"). ``max_iter``: the iterations the fit may run
    (None: as many as it needs). ``sorted_rows=False``: the fit cannot sort all rows
    (Dask's blocks), so 'filter' is out; below 5 features, 'exponion' then runs from
    EXPONION_MIN_CLUSTERS_LOW clusters in fits allowed EXPONION_MIN_ITERATIONS iterations.
    ``zordered=True``: the rows are in Z-order already (the grid search's distinct rows),
    so the filter has only its tree to pay back, and runs at any k in fits allowed
    ZORDERED_MIN_ITERATIONS iterations.

    Examples
    --------
    >>> [auto_algorithm(1_000_000, 3, k) for k in (8, 64, 256)]
    ['lloyd', 'filter', 'filter']
    >>> auto_algorithm(1_000_000, 3, 64, max_iter=10), auto_algorithm(1_000_000, 3, 256, 4, 10)
    ('lloyd', 'filter')
    >>> auto_algorithm(1_000_000, 8, 12), auto_algorithm(200_000, 128, 256)
    ('hamerly', 'yinyang')
    >>> auto_algorithm(5000, 784, 10), auto_algorithm(5000, 784, 10, max_iter=10)
    ('yinyang', 'lloyd')
    >>> auto_algorithm(1_000_000, 3, 256, sorted_rows=False)
    'exponion'
    >>> auto_algorithm(1_000_000, 3, 4, max_iter=10, zordered=True)
    'filter'
    """
    mid = n_features >= MID_FEATURES
    if not mid and not sorted_rows:  # (Dask's blocks): Exponion with many clusters
        if n_clusters < EXPONION_MIN_CLUSTERS_LOW or \
                n_samples < EXPONION_MIN_ROWS_PER_CLUSTER * n_clusters or (
                    max_iter is not None and max_iter < EXPONION_MIN_ITERATIONS):
            return "lloyd"
        algorithm, state_bytes = "exponion", 3 * itemsize + 4
    elif not mid:
        if n_samples < FILTER_MIN_ROWS or \
                n_samples < FILTER_MIN_ROWS_PER_CLUSTER * n_clusters or (
                    not zordered and n_clusters < FILTER_MIN_CLUSTERS) or (
                    max_iter is not None and not zordered and
                    max_iter * (PASS_OFFSET + n_clusters * n_features) < FILTER_MIN_WORK) or (
                    max_iter is not None and zordered and max_iter < ZORDERED_MIN_ITERATIONS):
            return "lloyd"
        # The sorted rows and weights, and while they are sorted 28 bytes of keys,
        # indices and their order (none of it for rows in Z-order already).
        algorithm, state_bytes = "filter", 0 if zordered else (n_features + 1) * itemsize + 28
    elif n_features >= YINYANG_MIN_FEATURES:
        if n_clusters < YINYANG_MIN_CLUSTERS or (
                n_clusters < YINYANG_SHORT_FIT_CLUSTERS and max_iter is not None
                and max_iter < YINYANG_MIN_ITERATIONS):
            return "lloyd"
        # An upper bound and one lower bound per group of about ten centres.
        algorithm, state_bytes = "yinyang", (1 + max(1, n_clusters // 10)) * itemsize
    elif n_clusters >= (EXPONION_MIN_CLUSTERS_FEW_FEATURES
                        if n_features < EXPONION_FEW_FEATURES else EXPONION_MIN_CLUSTERS):
        if n_samples < EXPONION_MIN_ROWS_PER_CLUSTER * n_clusters:
            return "lloyd"
        # Three bounds and the second-nearest centre (int32).
        algorithm, state_bytes = "exponion", 3 * itemsize + 4
    elif n_clusters >= HAMERLY_MIN_CLUSTERS:
        if n_samples < HAMERLY_MIN_ROWS_PER_CLUSTER * n_clusters:
            return "lloyd"
        algorithm, state_bytes = "hamerly", 2 * itemsize  # an upper and a lower bound
    else:
        return "lloyd"
    budget = max(BOUNDS_MEMORY_BUDGET, n_samples * n_features * itemsize)
    return algorithm if n_samples * state_bytes <= budget else "lloyd"


class IterationInfo(NamedTuple):
    """What a ``callback`` receives after each iteration of a fit.

    Attributes
    ----------
    iteration : int
        1 for the first iteration.
    inertia : float
        Weighted sum of squared distances of the samples to the centres they were assigned
        to in this iteration (the centres before this iteration's update).
    center_shift : float
        Sum over centres of the squared distance each one moved in this iteration.
    centers : ndarray of shape (n_clusters, n_features)
        The centres after this iteration's update (a copy).
    labels : ndarray of shape (n_samples,)
        This iteration's assignment (a copy).
    """

    iteration: int
    inertia: float
    center_shift: float
    centers: np.ndarray
    labels: np.ndarray


def lloyd(X, sample_weight, centers_init, *, max_iter, tol, n_threads, callback=None,
          verbose=0, algorithm="lloyd", centres_only=False, zordered=False):
    """Run Lloyd's algorithm from ``centers_init``.

    Stops when an iteration leaves every label unchanged, when the centres move by at most
    ``tol`` (summed squared shift, absolute), when ``callback`` returns True, or after
    ``max_iter`` iterations. The returned labels and inertia are those of the returned
    centres.

    ``algorithm='auto'`` picks one of the others by :func:`auto_algorithm`.
    ``algorithm='hamerly'`` keeps two distance bounds per sample (2 values of X's dtype),
    ``'exponion'`` three bounds and the second-nearest centre (3 values and an int32), and
    both skip the samples their bounds prove cannot change cluster: the same iterations,
    usually much faster once few samples move.
    ``algorithm='yinyang'`` keeps an upper bound per sample and a lower bound per sample
    and group of centres (at most ``1 + max(1, k // 10)`` values of X's dtype; see
    ``fastkm._yinyang``), and compares the samples whose bounds fail only with the groups
    they cannot rule out.
    The passes of these three do not compute the inertia, so with a ``callback`` or
    ``verbose`` they run as 'lloyd' (the same iterations, without the bounds' savings).
    Without sample weights, the bounded algorithms update the clusters' sums by the samples
    that change cluster once few do (see SUMS_UPDATE_SHARE), so their centres agree with
    'lloyd''s to float64 rounding; with weights, their sums are 'lloyd''s bit for bit.
    ``algorithm='filter'`` (at most 4 features; with more it runs as 'lloyd') sorts the
    samples once along a Z-order curve and groups them in a tree of boxes (see
    ``fastkm._core.filter_pass``): a box whose candidate centres narrow to one is assigned
    whole. It keeps a sorted copy of X and sample_weight and an index per sample; the
    labels are 'lloyd''s, ties included, and the sums agree to float64 rounding. When
    'auto' picks it for a fit with ``tol > 0``, the first iterations run as 'lloyd' (see
    FILTER_SWITCH_WORK).

    ``zordered=True``: X's rows are in Z-order already (the grid search's distinct rows,
    see ``fastkm._duplicates``); the filter then uses them as they are, without a sort or
    its copy.

    ``centres_only=True`` skips the pass that labels the final centres (labels and inertia
    are then None).

    Returns
    -------
    centers, labels, inertia, n_iter
    """
    n, d = X.shape
    k = centers_init.shape[0]
    # 'auto' picking the filter in a fit of unknown length (tol > 0): Lloyd passes first, and
    # the sort once they have cost what it costs (a fit that converges sooner never sorts).
    sort_after = None
    if algorithm == "auto":
        algorithm = auto_algorithm(n, d, k, X.dtype.itemsize, max_iter, zordered=zordered)
        if algorithm == "filter" and tol > 0 and not zordered:
            algorithm, sort_after = "lloyd", -(-FILTER_SWITCH_WORK // (PASS_OFFSET + k * d))
    centers = np.array(centers_init, dtype=X.dtype, order="C")
    # Every pass counts the labels it changes, so -1 (no centre) makes the first count n.
    labels = _scratch.full(n, -1, np.int32)
    # Unit weights (no sample_weight given): lloyd_pass need not read them (None).
    pass_weights = None if n and sample_weight.min() == 1 == sample_weight.max() \
        else sample_weight
    sums = np.empty((k, d))
    weight_sums = np.empty(k)
    labels_match_centers = False
    use_bounds = algorithm in BOUNDED_PASSES and callback is None and not verbose
    use_filter = False
    if algorithm == "filter" and 1 <= d <= FILTER_MAX_FEATURES and n > 0:
        sort_after = 0
    if use_bounds:
        bounded_pass = getattr(core, BOUNDED_PASSES[algorithm])
        update_sums = False  # the first pass sums every row
        labels[:] = 0
        # Yinyang's groups: formed once, from the initial centres.
        groups = centre_groups(centers) if algorithm == "yinyang" else None
        bounds = _unknown_bounds(algorithm, n, X.dtype, k, d, groups)
        moved = np.zeros(k, dtype=X.dtype)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        if n_iter > (max_iter if sort_after is None else sort_after):
            # The rows sorted along a Z-order curve, and their tree (the labels so far
            # move with their rows).
            order = None
            if not zordered:
                order, X, sample_weight = core.zorder_sort(X, sample_weight, n_threads)
                pass_weights = None if pass_weights is None else sample_weight
                labels = labels[order]
                if callback is not None:
                    callback = _with_unsorted_labels(callback, order, n_threads)
            tree = core.filter_tree(X, sample_weight, n_threads)
            block_labels = np.full(tree[0][1], -1, dtype=np.int32)
            use_filter, sort_after = True, None
        if use_bounds:
            n_changed = bounded_pass(X, sample_weight, centers, moved, labels, *bounds, sums,
                                     weight_sums, n_threads, update_sums)
            inertia = float("nan")
            update_sums = pass_weights is None and n_changed * SUMS_UPDATE_SHARE < n
        elif use_filter:
            inertia, n_changed = core.filter_pass(X, pass_weights, tree, centers, labels,
                                                  block_labels, sums, weight_sums, n_threads)
        else:
            # (The inertia only for reports: the last labels' comes at the end.)
            inertia, n_changed = core.lloyd_pass(X, pass_weights, centers, labels, sums,
                                                 weight_sums, n_threads,
                                                 with_inertia=callback is not None or verbose)
        new_centers, relocated = _updated_centers(X, sample_weight, centers, labels, sums,
                                                  weight_sums, n_threads,
                                                  order if use_filter else None)
        shifts = ((new_centers.astype(np.float64) - centers) ** 2).sum(axis=1)
        center_shift = float(shifts.sum())
        # (A bounded pass's first pass counts every row as changed.)
        unchanged = not len(relocated) and n_iter > 1 and n_changed == 0
        if use_bounds:
            moved = bound_shifts(shifts, d, X.dtype)
            # Re-seeded samples changed cluster outside the bounds' view: their blocks are
            # searched afresh (the other rows' bounds hold: the re-seeded centres' jumps
            # are among the shifts).
            _search_afresh(bounds[0], relocated)
        if use_filter and len(relocated):  # labels changed outside filter_pass's view
            block_labels[:] = -1
        centers = new_centers
        # Same labels as the previous pass: the update reproduced the same centres.
        done, labels_match_centers = end_of_iteration(
            n_iter, inertia, center_shift, centers, labels, unchanged=unchanged, tol=tol,
            callback=callback, verbose=verbose)
        if done:
            break
    if centres_only:  # the caller wants the centres: no pass to label the last ones
        return centers, None, None, n_iter
    if use_filter:
        if not labels_match_centers:
            inertia = core.filter_pass(X, pass_weights, tree, centers, labels, block_labels,
                                       sums, weight_sums, n_threads)[0]
        if order is not None:
            labels = _unsorted(labels, order, n_threads)
    elif use_bounds and d > core.lloyd_layout()[0]:
        # The bounds hold for the last centres: one more bounded pass labels the rows for
        # them (none where they already match), and the inertia of those labels is
        # lloyd_pass's, bit for bit, without its search (blobs 200k x 128, k=256: 72 ms).
        if not labels_match_centers:
            bounded_pass(X, sample_weight, centers, moved, labels, *bounds, sums,
                         weight_sums, n_threads, update_sums)
        inertia = core.labelled_inertia(X, pass_weights, centers, labels, n_threads)
    elif not labels_match_centers or use_bounds:
        inertia = core.lloyd_pass(X, pass_weights, centers, labels, sums, weight_sums,
                                  n_threads)[0]
    elif math.isnan(inertia):  # (lloyd_pass left it out: see its with_inertia)
        inertia = core.labelled_inertia(X, pass_weights, centers, labels, n_threads)
    return centers, labels, float(inertia), n_iter


def _unsorted(labels, order, n_threads):
    """Labels of rows sorted by ``order``, given back in the rows' own order."""
    out = _scratch.empty(len(labels), labels.dtype)
    core.put_labels(labels, order, out, n_threads)
    return out


def _with_unsorted_labels(callback, order, n_threads):
    """``callback`` seeing the labels in the rows' own order."""
    def with_unsorted_labels(info):
        return callback(info._replace(labels=_unsorted(info.labels, order, n_threads)))
    return with_unsorted_labels


def bound_shifts(sq_shifts, n_features, dtype):
    """How far each centre moved, from its squared move summed in float64 over the
    features, rounded up in ``dtype`` so that the bounds a bounded pass shifts by it stay
    bounds (in float64 that sum may be off by n_features + 2 units in the last place)."""
    widened = np.sqrt(sq_shifts) * (1 + (n_features + 6) * 2.0**-53)
    return np.nextafter(widened.astype(dtype), np.inf)


def _unknown_bounds(algorithm, n, dtype, k=None, d=None, groups=None):
    """A bounded pass's state arrays (after ``labels``, in its argument order), set to
    bounds that prove nothing: every sample is searched in the next pass. Exponion's also
    hold its neighbour lists of the k centres in d dimensions."""
    upper = _scratch.full(n, np.inf, dtype)
    lower = _scratch.zeros(n, dtype)
    if algorithm == "hamerly":
        return upper, lower
    if algorithm == "yinyang":  # one lower bound per group of centres (default: one group)
        if groups is None:
            groups = np.zeros(k, dtype=np.int32)
        return upper, _scratch.zeros((n, groups.max() + 1), dtype), groups
    if k is None or d is None:
        raise TypeError("_unknown_bounds needs k and d for Exponion's neighbour lists")
    neighbours = core.ball_neighbours()
    return (upper, _scratch.zeros(n, np.int32), lower, _scratch.zeros(n, dtype),
            np.full((k, d), np.nan, dtype=dtype), np.zeros((k, neighbours), dtype=np.int32),
            np.zeros((k, neighbours), dtype=dtype))


def end_of_iteration(n_iter, inertia, center_shift, centers, labels, *, unchanged, tol,
                     callback, verbose):
    """Report an iteration (verbose, callback) and decide whether the run stops.

    Returns ``(done, strict)``: ``strict`` when the labels did not change (so the labels and
    inertia already belong to ``centers``), ``done`` when that happened, the centres moved
    by at most ``tol``, or the callback asked to stop. ``labels`` may be None.
    """
    if verbose:
        print(f"Iteration {n_iter}, inertia {inertia:.6g}, center shift {center_shift:.6g}")
    stop = False
    if callback is not None:
        stop = bool(callback(IterationInfo(n_iter, inertia, center_shift, centers.copy(),
                                           None if labels is None else labels.copy())))
    if unchanged:
        if verbose:
            print(f"Converged at iteration {n_iter}: strict convergence.")
        return True, True
    if center_shift <= tol:
        if verbose:
            print(f"Converged at iteration {n_iter}: center shift {center_shift:.6g} "
                  f"within tolerance {tol:.6g}.")
        return True, False
    return stop, False


def _updated_centers(X, sample_weight, centers, labels, sums, weight_sums, n_threads,
                     order=None):
    """Centres as weighted means of their clusters; empty clusters re-seeded.

    An empty cluster (zero total weight) takes the sample farthest from its assigned centre
    (ties broken by the lower index), which leaves that sample's cluster; then the next
    farthest, and so on. Never produces a NaN centre. Returns the centres and the samples
    re-seeded (indices into X; none when no cluster was empty). ``order``: X's rows are
    those of the caller's data in this order ('filter' sorts them), whose indices then
    break the ties.
    """
    empty = np.flatnonzero(weight_sums == 0)
    far = np.empty(0, dtype=np.intp)
    if len(empty):
        positive = sample_weight.min() > 0
        far = _farthest_samples(X, sample_weight, centers, labels, len(empty), n_threads,
                                order, positive)
        labels_before = labels[far]
        for cluster, row in zip(empty, far):
            old = labels[row]
            w = float(sample_weight[row])
            moved = w * X[row].astype(np.float64)  # in float64, as the kernel summed it
            sums[old] -= moved
            weight_sums[old] -= w
            sums[cluster] = moved
            weight_sums[cluster] = w
            labels[row] = cluster
        # A cluster that lost all its members may keep a rounding residue of its weight,
        # which would place its centre at residue / residue: count members instead (only
        # those of the clusters that lost one: no other's sum changed).
        weighted = None if positive else sample_weight > 0
        for cluster in np.unique(labels_before):
            members = labels == cluster
            if not (members.any() if weighted is None else (members & weighted).any()):
                weight_sums[cluster] = 0
    return centres_from_sums(centers, sums, weight_sums, X.dtype), far


def _search_afresh(upper, rows):
    """Upper bounds that prove nothing for every row of the blocks of ``rows``: the next
    bounded pass searches those blocks whole, every bound of their rows recomputed. (Its
    blocks are core.block_rows() rows from the start of their chunk.)"""
    if not len(rows):
        return
    n, block = len(upper), core.block_rows()
    chunk_rows = core.row_chunks(n)[1]
    for row in rows:
        chunk = row // chunk_rows * chunk_rows
        start = chunk + (row - chunk) // block * block
        upper[start:min(start + block, chunk + chunk_rows, n)] = np.inf


def centres_from_sums(centers, sums, weight_sums, dtype):
    """Weighted means of the clusters, in ``dtype``; a cluster of zero weight keeps its centre.

    Raises ValueError where finite inputs summed beyond float64's range (NaN centres).
    """
    filled = weight_sums > 0
    if filled.all():  # (the usual case: no copies by a mask, 0.2 ms of MNIST's 100 x 784)
        new_centers = (sums / weight_sums[:, None]).astype(dtype)
    else:
        new_centers = np.array(centers, dtype=dtype)
        new_centers[filled] = sums[filled] / weight_sums[filled, None]
    if not np.isfinite(new_centers).all():
        raise ValueError("The weighted sums of the clusters overflow: rescale X or "
                         "sample_weight")
    return new_centers


#: Values a block, whose maxima narrow down where _largest_first looks.
LARGEST_FIRST_BLOCK = 1024


def _largest_first(values, count, ties=None):
    """Indices of the ``count`` largest values, largest first, ties by lower index (or by
    lower ``ties[i]``, a permutation of the indices: see _updated_centers).

    The same as ``np.argsort(-values, kind="stable")[:count]`` (``np.lexsort((ties,
    -values))[:count]``) without sorting all n.
    """
    if count >= len(values):
        return np.argsort(-values, kind="stable") if ties is None else \
            np.lexsort((ties, -values))
    if count == 1:  # the usual case, one empty cluster: no partition of all n values
        if ties is None:
            return np.array([np.argmax(values)])
        top = np.flatnonzero(values == values.max())
        return top[[np.argmin(ties[top])]]
    # Only the values at least the count-th largest of the blocks' maxima can be chosen:
    # that maximum is at most the count-th largest value (the count largest maxima are
    # count values of different blocks). (A partition of all n: 7 ms for the photo's 855k
    # colours, re-seeding 5 empty clusters at k=256.)
    candidates = None
    n_blocks = len(values) // LARGEST_FIRST_BLOCK
    if n_blocks > count:
        maxima = values[:n_blocks * LARGEST_FIRST_BLOCK].reshape(n_blocks, -1).max(axis=1)
        candidates = np.flatnonzero(
            values >= np.partition(maxima, n_blocks - count)[n_blocks - count])
        values = values[candidates]
        ties = None if ties is None else ties[candidates]
    threshold = np.partition(values, len(values) - count)[len(values) - count]
    above = np.flatnonzero(values > threshold)
    at = np.flatnonzero(values == threshold)
    if ties is not None:
        at = at[np.argsort(ties[at], kind="stable")]
    chosen = np.concatenate([above, at[:count - len(above)]])
    chosen = chosen[np.lexsort((chosen if ties is None else ties[chosen], -values[chosen]))]
    return chosen if candidates is None else candidates[chosen]


def assigned_sq_distances(X, centers, labels, n_threads):
    """Squared distance of each row of X to its centre ``centers[labels]``, in float64.

    One kernel for every caller (in memory, by chunks, on Dask blocks), so that they all
    find the same farthest samples.
    """
    out = _scratch.empty(X.shape[0], np.float64)
    if X.shape[0]:
        core.assigned_sq_distances(np.ascontiguousarray(X),
                                   np.ascontiguousarray(centers, dtype=X.dtype),
                                   np.ascontiguousarray(labels, dtype=np.int32), out,
                                   n_threads)
    return out


def _farthest_samples(X, sample_weight, centers, labels, count, n_threads, order=None,
                      positive=False):
    """Indices of the ``count`` positively weighted samples farthest from their centres
    (ties: the lower index, in the caller's order of the rows; see _updated_centers).
    ``positive``: every weight is above 0 (no sample to leave out)."""
    distances = assigned_sq_distances(X, centers, labels, n_threads)
    if not positive:
        distances[sample_weight == 0] = 0
    farthest = _largest_first(distances, count, order)
    if len(farthest) < count or distances[farthest[-1]] <= 0:
        n_distinct = len(centers) - count + int((distances[farthest] > 0).sum())
        raise fewer_distinct_points_error(n_distinct, len(centers))
    return farthest
