"""Exact Lloyd iterations over a memory-mapped X, one chunk of rows at a time.

:func:`fastkm.kmeans` (and so :meth:`fastkm.KMeans.fit`) takes this path when X is a
file-backed :class:`numpy.memmap` of at least :data:`MEMMAP_THRESHOLD_BYTES` (smaller ones
are used in place by the in-memory path, also without a copy), or another array-like of that
size that numpy would have to copy (an h5py dataset, a zarr array: anything with a numpy
``dtype``, a 2-D ``shape`` and row slicing), unless ``swap_trials`` is set.

* The iterations are the in-memory ones (:func:`fastkm._lloyd.lloyd`): the same kernel pass
  (``lloyd_pass``) runs on each chunk and the per-chunk partial sums, weights and inertia
  are added, so from the same initial centres the fit gives the in-memory centres (up to
  float64 rounding of the sums), labels and iteration count. Every other ``algorithm`` runs
  as 'lloyd' here (bounds would cost values of X's dtype per row; 'filter' a sorted copy).
  The exception is data with repeated rows once a cluster goes empty: the in-memory fit,
  which fits each distinct row once weighted by its count, re-seeds the cluster with the
  farthest distinct row and all its copies, while this path moves one row, so the results
  can differ from then on.
* X is never copied. Each chunk is read through a fresh, small ``numpy.memmap`` of the file
  that is dropped after use, so the pages of the file do not pile up in the resident memory
  of the process (pages of a mapping count as resident for as long as it is mapped).
* Memory: the labels (int32, 4 bytes per row, the ``labels_`` attribute) plus one chunk of
  about :data:`CHUNK_BYTES` and O(k x d); ``sample_weight``, when given, is held in memory
  too (None costs nothing). 50M x 8 float32 rows: about 200 MB of labels.
* Initialization by 'k-means++' or 'random' runs on a uniform sample of
  ``init_size`` rows (default ``max(65536, 20 * n_clusters)``, capped at n), read in one pass
  over the file; where too few of them have a positive weight, on a sample of as many rows
  drawn among those that do. A sample that cannot seed ``n_clusters`` distinct centres
  raises a ValueError (raise ``init_size`` or pass ``init`` as an array): unlike the
  in-memory fit, this path does not fall back to all rows, which would load all of X. An
  explicit array of centres is used as it is.
* ``predict`` and ``score`` of a fitted estimator read such a memmap chunk by chunk too
  (``transform`` returns an n x k array, so it takes the in-memory path).
"""

import mmap

import numpy as np

from ._init import fewer_distinct_points_error, initial_centers, poor_sample_error
from ._isa import core
from ._lloyd import _largest_first, assigned_sq_distances, centres_from_sums, end_of_iteration
from ._validation import (
    ROW_STEP,
    as_checked_dtype,
    check_finite_values,
    check_magnitude,
    is_sparse,
    largest_magnitude,
)

#: File-backed memmaps of at least this many bytes are fitted chunk by chunk.
MEMMAP_THRESHOLD_BYTES = 128 << 20

#: Target size of one chunk of rows read from the file.
CHUNK_BYTES = 16 << 20

#: Default initialization sample: max(DEFAULT_INIT_ROWS, INIT_ROWS_PER_CLUSTER * k) rows.
DEFAULT_INIT_ROWS = 65536
INIT_ROWS_PER_CLUSTER = 20


def is_out_of_core(X):
    """Whether ``kmeans`` fits X chunk by chunk.

    X is a file-backed memmap, or a 2-D array-like that is not a numpy array but has a numpy
    ``dtype``, a ``shape`` and row slicing (an h5py dataset, a zarr array; not a DataFrame,
    a dask array or a scipy sparse matrix, which have their own paths or errors), of at least
    :data:`MEMMAP_THRESHOLD_BYTES`.
    """
    if isinstance(X, np.memmap):
        if getattr(X, "filename", None) is None:
            return False
    elif isinstance(X, np.ndarray) or hasattr(X, "columns") or is_sparse(X) or \
            type(X).__module__.split(".")[0] in ("dask", "pandas"):
        # A sparse matrix has a dtype, a shape and row slicing too, but its chunks would not
        # convert to dense rows: the in-memory path gives it its clear TypeError instead.
        return False
    elif not (isinstance(getattr(X, "dtype", None), np.dtype) and hasattr(X, "__getitem__")
              and len(getattr(X, "shape", ())) == 2):
        return False
    try:
        size = int(np.prod(X.shape, dtype=np.int64)) * X.dtype.itemsize
    except (TypeError, ValueError):  # an unknown length
        return False
    return size >= MEMMAP_THRESHOLD_BYTES


class RowReader:
    """Reads consecutive rows of a 2-D memmap as C-contiguous float arrays.

    A C-contiguous memmap opened in mode 'r', 'r+' or 'w+' is read through fresh memmaps of
    its file (the byte offset of X's first row is worked out from X's own mapping, so a row
    slice of a memmap works too); anything else (copy-on-write mode, a strided view) is read
    by slicing X, which leaves the pages it touched mapped.
    """

    def __init__(self, X, chunk_bytes=None):
        if len(X.shape) != 2:
            raise ValueError(f"Expected a 2-D array for X, got a {len(X.shape)}-D array of "
                             f"shape {X.shape}")
        if X.dtype.kind == "c":
            raise ValueError("Complex data not supported: X is complex; fastkm needs real "
                             "numbers")
        if X.dtype.kind not in "fiub":
            raise TypeError(f"X has dtype {X.dtype}; fastkm needs real numbers")
        self.X = X
        self.shape = X.shape
        self.dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        n, d = X.shape
        row_bytes = max(1, d * self.dtype.itemsize)
        rows = max(1, (chunk_bytes or CHUNK_BYTES) // row_bytes)
        if rows >= ROW_STEP:
            rows -= rows % ROW_STEP
        self.chunk_rows = rows
        self.filename = None
        self.offset = None
        if isinstance(X, np.memmap) and X.flags.c_contiguous and \
                getattr(X, "mode", None) in ("r", "r+", "w+") and n > 0:
            try:
                base = np.frombuffer(X._mmap, dtype=np.uint8).ctypes.data
                start = X.offset - X.offset % mmap.ALLOCATIONGRANULARITY
                offset = start + (X.ctypes.data - base)
                first = np.memmap(X.filename, dtype=X.dtype, mode="r", offset=offset,
                                  shape=(1, d))
                same = np.array_equal(first, X[:1], equal_nan=True)
                del first
            except (AttributeError, TypeError, ValueError, OSError):
                same = False
            if same:
                self.filename = X.filename
                self.offset = offset

    def read(self, start, stop):
        """Rows ``start:stop`` as a C-contiguous float32/float64 array (maybe a memmap)."""
        if self.filename is not None:
            row_bytes = self.shape[1] * self.X.dtype.itemsize
            chunk = np.memmap(self.filename, dtype=self.X.dtype, mode="r",
                              offset=self.offset + start * row_bytes,
                              shape=(stop - start, self.shape[1]))
        else:
            chunk = self.X[start:stop]
        if not isinstance(chunk, np.ndarray) or chunk.dtype != self.dtype or \
                not chunk.flags.c_contiguous:
            chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        return chunk

    def chunks(self):
        """(start, stop, rows) for consecutive chunks; each chunk is dropped after use."""
        n = self.shape[0]
        for start in range(0, n, self.chunk_rows):
            stop = min(n, start + self.chunk_rows)
            chunk = self.read(start, stop)
            yield start, stop, chunk
            mapping = getattr(chunk, "_mmap", None) if self.filename is not None else None
            del chunk
            if mapping is not None:
                # The caller's loop variable keeps this chunk mapped while the next one is
                # read: drop its pages now (a read-only file mapping; they stay in the page
                # cache), so only one chunk is resident at a time.
                try:
                    mapping.madvise(mmap.MADV_DONTNEED)
                except (AttributeError, OSError, ValueError):
                    pass

    def rows(self, indices):
        """The rows at sorted ``indices``, gathered in one pass over the chunks."""
        indices = np.asarray(indices, dtype=np.intp)
        out = np.empty((len(indices), self.shape[1]), dtype=self.dtype)
        for start, stop, chunk in self.chunks():
            lo, hi = np.searchsorted(indices, [start, stop])
            if hi > lo:
                out[lo:hi] = chunk[indices[lo:hi] - start]
        return out

    def row(self, i):
        return np.array(self.read(i, i + 1)[0])


def scan(reader, tol):
    """Check X's values as check_finite_values does; return ``tol`` scaled by X's mean
    feature variance.

    Two passes over the file when ``tol > 0`` (as ``fastkm._core.mean_variance`` in memory),
    one otherwise.
    """
    n, d = reader.shape
    total = np.zeros(d)
    largest = 0.0
    for _, _, chunk in reader.chunks():
        for start in range(0, len(chunk), ROW_STEP):  # (each step scanned while cached)
            step = chunk[start:start + ROW_STEP]
            # Values too large are refused before they are summed (a sum of values that
            # pass stays below n times their bound, within float64's range).
            largest = max(largest, largest_magnitude(step))
            check_magnitude(largest, d, reader.dtype, n_terms=n, to_fit=False)
            total += step.sum(axis=0, dtype=np.float64)
    check_magnitude(largest, d, reader.dtype, n_terms=n)  # values too small: all of X's
    if not tol > 0:
        return 0.0
    mean = total / n
    squares = np.zeros(d)
    for _, _, chunk in reader.chunks():
        for start in range(0, len(chunk), ROW_STEP):  # bounds the float64 temporaries
            squares += ((chunk[start:start + ROW_STEP] - mean) ** 2).sum(axis=0)
    return tol * float(np.mean(squares / n))


def sample_initial_centers(reader, n_clusters, method, sample_weight, random_state,
                           n_threads, init_size=None):
    """'k-means++' or 'random' initial centres drawn from a uniform sample of the rows."""
    n = reader.shape[0]
    if init_size is None:
        init_size = max(DEFAULT_INIT_ROWS, INIT_ROWS_PER_CLUSTER * n_clusters)
    if init_size >= n:
        rows = np.arange(n)
    else:
        rows = np.unique(random_state.randint(0, n, size=init_size))
    if sample_weight is not None:
        rows = rows[sample_weight[rows] > 0]
    try:
        return _centers_from_rows(reader, rows, n_clusters, method, sample_weight,
                                  random_state, n_threads)
    except ValueError:
        positive = None if sample_weight is None else np.flatnonzero(sample_weight > 0)
        if positive is None or len(rows) == len(positive):
            raise poor_sample_error(len(rows), n_clusters) from None
    # Sparse weights (few rows of the sample, or none, weigh anything): as many rows drawn
    # among those of positive weight, which the in-memory fit draws from.
    if init_size < len(positive):
        positive = np.unique(positive[random_state.randint(0, len(positive), size=init_size)])
    try:
        return _centers_from_rows(reader, positive, n_clusters, method, sample_weight,
                                  random_state, n_threads)
    except ValueError:
        raise poor_sample_error(len(positive), n_clusters) from None


def _centers_from_rows(reader, rows, n_clusters, method, sample_weight, random_state,
                       n_threads):
    if len(rows) == 0:
        raise ValueError("no rows")
    sample = reader.rows(rows)
    weights = np.ones(len(rows), dtype=reader.dtype) if sample_weight is None \
        else np.ascontiguousarray(sample_weight[rows])
    return initial_centers(sample, n_clusters, method, weights, random_state, n_threads)


def _weights(sample_weight, start, stop, dtype, ones):
    if sample_weight is None:
        return ones[:stop - start]
    return sample_weight[start:stop]


def chunked_pass(reader, sample_weight, centers, labels, sums, weight_sums, n_threads):
    """One Lloyd pass over every chunk: fills ``labels``, ``sums`` and ``weight_sums``.

    Returns the inertia and the number of labels that differ from those ``labels`` held
    before the pass.
    """
    k, d = centers.shape
    ones = np.ones(min(reader.chunk_rows, reader.shape[0]), dtype=reader.dtype)
    part_sums = np.empty((k, d))
    part_weights = np.empty(k)
    sums[:] = 0
    weight_sums[:] = 0
    inertia = 0.0
    changed = 0
    for start, stop, chunk in reader.chunks():
        part_inertia, part_changed = core.lloyd_pass(
            chunk, _weights(sample_weight, start, stop, reader.dtype, ones), centers,
            labels[start:stop], part_sums, part_weights, n_threads)
        inertia += part_inertia
        changed += part_changed
        sums += part_sums
        weight_sums += part_weights
    return inertia, changed


def assign(X, sample_weight, centers, n_threads):
    """Labels and inertia of the rows of a large memmap X under ``centers``, chunk by chunk
    (``predict`` and ``score`` of the estimators)."""
    reader = RowReader(X)
    n, d = reader.shape
    if d != centers.shape[1]:
        raise ValueError(f"X has {d} features, but the estimator is expecting "
                         f"{centers.shape[1]} features as input")
    centers = as_checked_dtype(centers, reader.dtype, name="cluster_centers_", n_terms=n)
    k = centers.shape[0]
    labels = np.empty(n, dtype=np.int32)
    part_sums, part_weights = np.empty((k, d)), np.empty(k)
    ones = np.ones(min(reader.chunk_rows, n), dtype=reader.dtype)
    inertia = 0.0
    for start, stop, chunk in reader.chunks():
        check_finite_values(chunk, n_terms=n, to_fit=False)
        inertia += core.lloyd_pass(chunk, _weights(sample_weight, start, stop, reader.dtype,
                                                   ones),
                                   centers, labels[start:stop], part_sums, part_weights,
                                   n_threads)[0]
    return labels, float(inertia)


def chunked_lloyd(reader, sample_weight, centers_init, *, max_iter, tol, n_threads,
                  callback=None, verbose=0):
    """:func:`fastkm._lloyd.lloyd` with every pass made chunk by chunk.

    ``sample_weight`` is None (all ones) or an in-memory array. Returns
    ``centers, labels, inertia, n_iter`` as ``lloyd`` does.
    """
    n, d = reader.shape
    k = centers_init.shape[0]
    centers = np.array(centers_init, dtype=reader.dtype, order="C")
    labels = np.full(n, -1, dtype=np.int32)  # -1: no previous assignment
    sums = np.empty((k, d))
    weight_sums = np.empty(k)
    labels_match_centers = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        inertia, changed = chunked_pass(reader, sample_weight, centers, labels, sums,
                                        weight_sums, n_threads)
        new_centers, relocated = _updated_centers(reader, sample_weight, centers, labels,
                                                  sums, weight_sums, n_threads)
        shifts = ((new_centers.astype(np.float64) - centers) ** 2).sum(axis=1)
        center_shift = float(shifts.sum())
        unchanged = not relocated and changed == 0
        centers = new_centers
        done, labels_match_centers = end_of_iteration(
            n_iter, inertia, center_shift, centers, labels, unchanged=unchanged, tol=tol,
            callback=callback, verbose=verbose)
        if done:
            break
    if not labels_match_centers:
        inertia, _ = chunked_pass(reader, sample_weight, centers, labels, sums, weight_sums,
                                  n_threads)
    return centers, labels, float(inertia), n_iter


def _updated_centers(reader, sample_weight, centers, labels, sums, weight_sums, n_threads):
    """:func:`fastkm._lloyd._updated_centers`, reading X chunk by chunk."""
    empty = np.flatnonzero(weight_sums == 0)
    if len(empty):
        far = _farthest_samples(reader, sample_weight, centers, labels, len(empty), n_threads)
        for cluster, row in zip(empty, far):
            old = labels[row]
            w = 1.0 if sample_weight is None else float(sample_weight[row])
            moved = w * reader.row(row).astype(np.float64)
            sums[old] -= moved
            weight_sums[old] -= w
            sums[cluster] = moved
            weight_sums[cluster] = w
            labels[row] = cluster
        members = np.bincount(labels if sample_weight is None
                              else labels[sample_weight > 0], minlength=len(centers))
        weight_sums[members == 0] = 0
    return centres_from_sums(centers, sums, weight_sums, reader.dtype), len(empty) > 0


def _farthest_samples(reader, sample_weight, centers, labels, count, n_threads):
    """:func:`fastkm._lloyd._farthest_samples` over chunks: the best ``count`` of each chunk
    (in row order) are merged, so ties still go to the lower row index."""
    found_distances, found_rows = [], []
    for start, stop, chunk in reader.chunks():
        distances = assigned_sq_distances(chunk, centers, labels[start:stop], n_threads)
        if sample_weight is not None:
            distances[sample_weight[start:stop] == 0] = 0
        best = np.sort(_largest_first(distances, count))
        found_distances.append(distances[best])
        found_rows.append(start + best)
    distances = np.concatenate(found_distances)
    rows = np.concatenate(found_rows)
    order = _largest_first(distances, count)
    if len(order) < count or distances[order[-1]] <= 0:
        n_distinct = len(centers) - count + int((distances[order] > 0).sum())
        raise fewer_distinct_points_error(n_distinct, len(centers))
    return rows[order]
