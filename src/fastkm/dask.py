"""Exact k-means on Dask arrays: :class:`fastkm.dask.KMeans` (``pip install fastkm[dask]``).

Import it explicitly (``import fastkm.dask``): ``import fastkm`` does not import Dask.

How a fit runs
--------------
The input (a ``dask.array`` or a dask DataFrame) is persisted on the workers of the active
``dask.distributed.Client`` (or in memory under the default scheduler when there is none) and
never travels to the client. Each Lloyd iteration runs the Cython pass over the row blocks
on the workers, in one task per worker thread that covers blocks its worker holds (grouped
once per fit, about equal rows a task): Dask's own cost, a few milliseconds a task, then
counts a few times an iteration instead of once per block. A block's pass yields only its
per-cluster weighted sums, weights and inertia (or count of changed labels): k x d + k + 1
numbers. These partials come to the client (8 bytes a number, so with many blocks and a
large k x d, prefer fewer, larger blocks), which adds them as a tree (:data:`SPLIT_EVERY` at
a time) in the blocks' order, so that the sums do not depend on which worker ran which
block, and computes the new centres. (Under a local scheduler, or for an X that is not
persisted on the client's cluster, each block is a task of its own.)

With ``algorithm='lloyd'`` the pass (``lloyd_pass``) is stateless: a block's labels are
dropped after each pass. With 'exponion', 'yinyang' (what 'auto' picks for many clusters,
by the same rule as :class:`fastkm.KMeans`) or 'hamerly', each block's per-row state (its
labels and distance bounds) stays on the workers from one iteration to the next: each
iteration's task copies its blocks' previous state (its output of the previous
iteration), runs the bounded pass (``exponion_pass``, ``hamerly_pass`` or ``yinyang_pass``)
on it with the centres and how far each moved, and keeps the new state in its worker's
memory; a second small task picks the partials out of that output where it lies, so the
state never travels to the client. A row's state is its int32 label plus, for 'exponion',
three values of X's dtype and an int32 (20 bytes a row in all in float32, 32 in float64);
'hamerly': two values (12 or 20 bytes); 'yinyang': one value plus one per group of about
ten centres; Exponion also keeps its neighbour tables, k x (d + 64) values a block. The
workers hold it twice while an iteration runs (the previous state and its updated copy).
A lost state (a worker that died) is recomputed from the earlier passes by Dask, as any
lost result: Dask keeps the graph of every future the fit holds.

When a cluster is empty, a second round asks every block for its farthest samples and the
client re-seeds the cluster as :class:`fastkm.KMeans` does (farthest samples first, ties
by the lower row index; one row each, see below); the workers' bounds stay valid (see
``_lloyd``). From the same initial centres the fit gives the in-memory fit's centres, up
to float64 rounding of the summation order, and the same labels. The exception is data
with repeated rows once a cluster goes empty: the in-memory fit, which fits each distinct
row once weighted by its count, re-seeds the cluster with the farthest distinct row and
all its copies, while this fit moves one row, so the results can differ from then on.

Threads on the workers
----------------------
Dask's nanny starts worker processes with ``OMP_NUM_THREADS=1`` (the
``distributed.nanny.pre-spawn-environ`` setting), so with ``n_threads=None`` the kernel
runs on one OpenMP thread per task, and a worker runs ``threads_per_worker`` tasks at once.
To give each task more threads, either pass ``n_threads`` explicitly (it is handed to the
kernel on the worker as is), or start the workers with another environment, for example
``dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": 4})`` before
creating the ``LocalCluster``, or ``OMP_NUM_THREADS=4 dask worker ... --nthreads 1``.
Keep ``threads_per_worker x n_threads`` at most the worker's cores.

The nanny also sets ``MALLOC_TRIM_THRESHOLD_=65536``, under which glibc maps every array
over 128 KiB afresh, so each pass's new arrays (the bounded state's copies above all) are
page-faulted in at first touch. Where the workers' memory allows, starting them with
``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` at 1 GiB (the same
``pre-spawn-environ`` setting) avoids that: BENCHMARKS.md (section 7) measures both with
benchmarks/compare_dask.py (``--malloc-arena``).

With an init array, fits of the same data in other chunkings give the same centres and
inertia up to float64 rounding of the summation order (the partial sums are added block by
block: about 1e-16 relative), and so, unless that rounding decides a near tie, the same
labels and iterations. The random initializations depend on the chunking too ('k-means||'
draws one random stream per block).
"""

import functools
import math
import numbers
import operator

import dask
import dask.array as da
import numpy as np
from dask import delayed

from ._init import (
    fewer_distinct_points_error,
    initial_centers,
    kmeans_plusplus,
    poor_sample_error,
)
from ._isa import core
from ._kmeans import KMeans as _InMemoryKMeans
from ._kmeans import ALGORITHMS, _check_init, _check_n_init, _feature_names
from ._lloyd import (
    BOUNDED_PASSES,
    _largest_first,
    _unknown_bounds,
    assigned_sq_distances,
    auto_algorithm,
    bound_shifts,
    centres_from_sums,
    end_of_iteration,
)
from ._validation import (
    _numeric_error,
    check_array,
    check_finite_values,
    check_magnitude,
    check_positive_int,
    check_random_state,
    check_sample_weight,
    check_tol,
    check_verbose,
    effective_n_threads,
)
from ._yinyang import centre_groups

__all__ = ["KMeans", "SPLIT_EVERY"]

#: Partials added per node of the reduction tree.
SPLIT_EVERY = 8

_INITS = ("k-means||", "k-means++", "random")


# -- functions run on the workers, one call per row block ----------------------------------

def _block_weights(xb, wb):
    if wb is None:
        return np.ones(xb.shape[0], dtype=xb.dtype)
    return np.ascontiguousarray(wb, dtype=xb.dtype)


def _block_labels(xb, wb, centers, n_threads, labels=None):
    """Nearest centres of a block, and the kernel's partial sums, weights and inertia.

    ``labels``: an int32 array of the block's length to write them to, or None.
    """
    xb = np.ascontiguousarray(xb)
    k, d = centers.shape
    if labels is None:
        labels = np.empty(xb.shape[0], dtype=np.int32)
    sums = np.zeros((k, d))
    weight_sums = np.zeros(k)
    inertia = 0.0
    if xb.shape[0]:
        weights = None if wb is None else _block_weights(xb, wb)  # None: unit weights
        inertia, _ = core.lloyd_pass(xb, weights, centers, labels, sums, weight_sums,
                                     effective_n_threads(n_threads))
    return labels, sums, weight_sums, float(inertia)


def _block_bounded(xb, wb, state, centers, shift, algorithm, groups, n_threads):
    """One bounded pass (``BOUNDED_PASSES[algorithm]``) over a block.

    ``state``: the block's state after the previous pass, or None for the first one.
    ``groups``: Yinyang's groups of centres (for its first pass), else None.
    Returns (state, (sums, weight_sums, n_changed)); state = (labels, *bounds), kept on the
    worker for the next pass.
    """
    xb = np.ascontiguousarray(xb)
    n = xb.shape[0]
    k, d = centers.shape
    if state is None:
        state = (np.zeros(n, np.int32), *_unknown_bounds(algorithm, n, xb.dtype, k, d,
                                                         groups))
    else:
        # Copies: the kernel updates them in place, and Dask may hand this task the
        # persisted arrays themselves (again, when it recomputes a lost block).
        state = tuple(a.copy() for a in state)
    sums = np.zeros((k, d))
    weight_sums = np.zeros(k)
    n_changed = 0
    if n:
        n_changed = getattr(core, BOUNDED_PASSES[algorithm])(
            xb, _block_weights(xb, wb), centers, shift, *state, sums, weight_sums,
            effective_n_threads(n_threads))
    return state, (sums, weight_sums, int(n_changed))


def _group_partials(xbs, wbs, centers, n_threads, n_terms=None):
    """One Lloyd pass over several blocks (one task): their (sums, weight_sums, inertia),
    in order; the labels stay here.

    ``n_terms``: the rows of all of X, to check each block's values first as
    check_finite_values checks data not to fit (score); None: X was checked by fit.
    """
    if n_terms is not None:
        for xb in xbs:
            check_finite_values(xb, n_terms=n_terms, to_fit=False)
    # One labels array for all: each fresh array costs page faults (Dask's nanny makes
    # glibc map every array over 128 KiB afresh), 2 ms of a 17 ms pass over 500k rows.
    labels = np.empty(max(len(xb) for xb in xbs), dtype=np.int32)
    return [_block_labels(xb, wb, centers, n_threads, labels[:len(xb)])[1:]
            for xb, wb in zip(xbs, wbs)]


def _group_bounded(xbs, wbs, previous, centers, shift, algorithm, groups, n_threads):
    """``_block_bounded`` of several blocks (one task).

    ``previous``: this task's output for the same blocks in the previous pass, or None.
    Returns (the blocks' states, their partials), each a list in the blocks' order.
    """
    states = [None] * len(xbs) if previous is None else previous[0]
    # Unit weights: one array for all (as the labels in _group_partials).
    ones = np.ones(max(len(xb) for xb in xbs), dtype=centers.dtype)
    outputs = [_block_bounded(xb, ones[:len(xb)] if wb is None else wb, state, centers,
                              shift, algorithm, groups, n_threads)
               for xb, wb, state in zip(xbs, wbs, states)]
    return [out[0] for out in outputs], [out[1] for out in outputs]


def _add_partials(*parts):
    sums = parts[0][0].copy()
    weight_sums = parts[0][1].copy()
    inertia = parts[0][2]
    for s, w, i in parts[1:]:
        sums += s
        weight_sums += w
        inertia += i
    return sums, weight_sums, inertia


def _block_farthest(xb, wb, centers, offset, count, n_threads):
    """A block's ``count`` samples farthest from their centres, and its member counts.

    Returns (distances, global row indices, rows, weights, labels, members per cluster).
    """
    xb = np.ascontiguousarray(xb)
    labels = _block_labels(xb, wb, centers, n_threads)[0]
    weights = _block_weights(xb, wb)
    distances = assigned_sq_distances(xb, centers, labels, effective_n_threads(n_threads))
    distances[weights == 0] = 0
    order = _largest_first(distances, count) if len(distances) else np.empty(0, np.intp)
    members = np.bincount(labels[weights > 0], minlength=centers.shape[0])
    return (distances[order], order + offset, xb[order].copy(), weights[order],
            labels[order], members)


def _block_predict(xb, centers, n_threads, n_terms=None):
    """The block's labels; ``n_terms`` as in _group_partials."""
    if n_terms is not None:
        check_finite_values(xb, n_terms=n_terms, to_fit=False)
    return _block_labels(xb, None, centers, n_threads)[0]


def _block_transform(xb, centers, n_threads, n_terms):
    xb = np.ascontiguousarray(xb)
    check_finite_values(xb, n_terms=n_terms, to_fit=False)
    out = np.empty((xb.shape[0], centers.shape[0]), dtype=xb.dtype)
    if xb.shape[0]:
        core.sq_distances(xb, centers, out, effective_n_threads(n_threads))
    return np.sqrt(out, out=out)


def _block_closest(xb, previous, candidates, n_threads):
    """min(previous, squared distance to the nearest candidate), float64, per row."""
    xb = np.ascontiguousarray(xb)
    labels = _block_labels(xb, None, candidates, n_threads)[0]
    distances = assigned_sq_distances(xb, candidates, labels, effective_n_threads(n_threads))
    return distances if previous is None else np.minimum(previous, distances)


def _block_potential(closest, wb, dtype):
    if wb is None:
        return float(closest.sum())
    return float((closest * np.asarray(wb, dtype=dtype)).sum())


def _block_sample(xb, wb, closest, scale, seed):
    """Rows kept independently with probability min(1, scale * w * closest) (k-means||)."""
    p = closest * scale
    if wb is not None:
        p *= np.asarray(wb, dtype=np.float64)
    keep = np.random.default_rng(seed).random(len(p)) < p
    return np.ascontiguousarray(xb[keep])


def _block_stats(xb):
    """(rows, per-feature mean, per-feature sum of squared deviations, largest |x|) in
    float64; the largest is infinite where the block holds NaN or infinity."""
    largest = float(core.largest_magnitude(np.ascontiguousarray(xb), 1))
    x = np.asarray(xb, dtype=np.float64)
    n = x.shape[0]
    if n == 0:
        return 0, np.zeros(x.shape[1]), np.zeros(x.shape[1]), largest
    # Values too large for these sums are refused by fit from ``largest``: no warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x.sum(axis=0) / n
        m2 = ((x - mean) ** 2).sum(axis=0)
    return n, mean, m2, largest


def _add_stats(*parts):
    """Chan et al.'s pairwise combination of (n, mean, M2, largest |x|)."""
    n, mean, m2, largest = parts[0]
    # Values too large overflow M2 here as in _block_stats; fit then refuses them by
    # ``largest`` (check_magnitude's ValueError), so numpy's warning would only be noise.
    with np.errstate(over="ignore", invalid="ignore"):
        for nb, meanb, m2b, largestb in parts[1:]:
            total = n + nb
            if nb:
                delta = meanb - mean
                mean = mean + delta * (nb / total)
                m2 = m2 + m2b + delta ** 2 * (n * nb / total)
            n, largest = total, max(largest, largestb)
    return n, mean, m2, largest


def _block_weight_sum(wb, n):
    return float(np.sum(wb, dtype=np.float64)) if wb is not None else float(n)


def _block_row_at(xb, wb, target):
    """The row where the block's cumulative weight first exceeds ``target``."""
    mass = np.cumsum(_block_weights(xb, wb).astype(np.float64))
    row = min(int(np.searchsorted(mass, target, side="right")), len(mass) - 1)
    positive = np.flatnonzero(_block_weights(xb, wb)[:row + 1] > 0)
    row = positive[-1] if len(positive) else np.flatnonzero(_block_weights(xb, wb) > 0)[0]
    return np.array(xb[row:row + 1])


# -- the client side ---------------------------------------------------------------------

def _distributed_client():
    """The ``distributed.Client`` that dask.compute would use now, or None."""
    client = getattr(dask.base.get_scheduler(), "__self__", None)
    try:
        from distributed import Client
    except ImportError:
        return None
    return client if isinstance(client, Client) else None


def _worker_groups(client, futures, sizes):
    """The blocks split into one group per thread of the cluster's workers: lists of block
    indices, in order, of about equal rows. A group takes blocks its worker holds up to its
    share of the rows; the blocks left over go, largest first, to the group with the fewest
    rows (its worker fetches them)."""
    nthreads = client.nthreads()
    who_has = client.who_has(futures)
    slots = [address for address in sorted(nthreads) for _ in range(nthreads[address])]
    share = sizes.sum() / max(len(slots), 1)
    rows = np.zeros(len(slots))
    members = [[] for _ in slots]
    left = []
    for i, future in enumerate(futures):
        held = [s for s, address in enumerate(slots) if address in who_has.get(future.key, ())]
        slot = min(held, key=rows.__getitem__, default=None)
        if slot is None or rows[slot] + sizes[i] > share:
            left.append(i)
            continue
        rows[slot] += sizes[i]
        members[slot].append(i)
    for i in sorted(left, key=lambda i: -sizes[i]):
        slot = int(np.argmin(rows))
        rows[slot] += sizes[i]
        members[slot].append(i)
    return [sorted(m) for m in members if m]


class _Blocks:
    """A 2-D dask array as a list of row blocks (and sample weights, if any).

    When X is persisted on the active ``distributed.Client``, the Lloyd and bounded passes
    run as one task per thread of the workers, over the blocks its worker holds
    (:func:`_worker_groups`, formed once): Dask's cost per task (about 3 ms on two cores)
    then counts a few times per iteration, not once per block. Their inputs are the
    blocks' futures, whose graph Dask keeps: a block lost with a worker is recomputed.
    Otherwise (a local scheduler, or X not persisted) each block is a task of its own.
    """

    def __init__(self, X, sample_weight):
        self.X = X
        self.xs = list(X.to_delayed().ravel())
        self.ws = ([None] * len(self.xs) if sample_weight is None
                   else list(sample_weight.to_delayed().ravel()))
        self.sizes = np.asarray(X.chunks[0], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.dtype = X.dtype
        self.client = _distributed_client()
        futures = weights = None
        if self.client is not None:
            futures = _block_futures(self.client, X)
            weights = [None] * len(self.xs) if sample_weight is None else \
                _block_futures(self.client, sample_weight)
        if futures is None or weights is None:
            self.client = None
            self.task_xs, self.task_ws = self.xs, self.ws
            self.groups = [[i] for i in range(len(self.xs))]
        else:
            from distributed import wait

            wait(futures)
            self.task_xs, self.task_ws = futures, weights
            self.groups = _worker_groups(self.client, futures, self.sizes)

    def map(self, func, *args, with_weights=True):
        if with_weights:
            return [delayed(func, pure=True)(xb, wb, *args) for xb, wb in zip(self.xs, self.ws)]
        return [delayed(func, pure=True)(xb, *args) for xb in self.xs]

    def _map_groups(self, func, *args, previous=None):
        """One task per group: ``func(xbs, wbs[, previous[g]], *args)``; futures or delayed."""
        tasks = []
        for g, members in enumerate(self.groups):
            task_args = ([self.task_xs[i] for i in members],
                         [self.task_ws[i] for i in members],
                         *(() if previous is None else (previous[g],)), *args)
            if self.client is not None:
                tasks.append(self.client.submit(func, *task_args, pure=False))
            else:
                tasks.append(delayed(func, pure=True)(*task_args))
        return tasks

    def _in_block_order(self, results):
        """The groups' lists of per-block results as one list in the blocks' order."""
        parts = [None] * len(self.xs)
        for members, result in zip(self.groups, results):
            for i, part in zip(members, result):
                parts[i] = part
        return parts

    def partials(self, centers, n_threads, n_terms=None):
        """Summed (sums, weight_sums, inertia) of one Lloyd pass (``n_terms``: see
        _group_partials)."""
        tasks = self._map_groups(_group_partials, centers, n_threads, n_terms)
        results = (self.client.gather(tasks) if self.client is not None
                   else dask.compute(tasks)[0])
        return _reduce(self._in_block_order(results), _add_partials)

    def bounded_partials(self, states, centers, shift, algorithm, groups, n_threads):
        """One bounded pass over every block: (new states, summed (sums, weight_sums,
        n_changed)).

        ``states``: the groups' outputs of the previous pass (None for the first). The new
        outputs stay on the workers; only their partials are fetched (picked from each
        output where it was computed), so that no state moves.
        """
        previous = [None] * len(self.groups) if states is None else states
        outputs = self._map_groups(_group_bounded, centers, shift, algorithm, groups,
                                   n_threads, previous=previous)
        if self.client is not None:
            parts = self.client.gather([self.client.submit(operator.getitem, out, 1,
                                                           pure=False) for out in outputs])
        else:
            outputs = list(dask.persist(*outputs))
            parts = dask.compute([out[1] for out in outputs])[0]
        return outputs, _reduce(self._in_block_order(parts), _add_partials)

    def stats(self):
        """(n, mean, M2, largest |x|) of the features over all rows, in float64."""
        return _reduce(dask.compute(self.map(_block_stats, with_weights=False))[0],
                       _add_stats)


def _block_futures(client, X):
    """X's blocks' futures on ``client``, in order, or None where X is not persisted there."""
    futures = {future.key: future for future in client.futures_of(X)}
    keys = list(dask.core.flatten(X.__dask_keys__()))
    if not all(key in futures for key in keys):
        return None
    return [futures[key] for key in keys]


def _reduce(parts, combine):
    """Partials combined ``SPLIT_EVERY`` at a time, in order, as a tree: the root.

    On the client, in the blocks' order, so that the sums do not depend on which worker
    computed which block.
    """
    while len(parts) > 1:
        parts = [combine(*parts[i:i + SPLIT_EVERY]) for i in range(0, len(parts), SPLIT_EVERY)]
    return parts[0]


def _updated_centers(blocks, centers, sums, weight_sums, n_threads):
    """New centres from reduced partials; empty clusters re-seeded as fastkm.KMeans does
    (with one row each, where fastkm.KMeans moves all copies of a repeated row).

    Returns the centres and whether any cluster was re-seeded.
    """
    k = centers.shape[0]
    empty = np.flatnonzero(weight_sums == 0)
    if len(empty):
        count = len(empty)
        c = delayed(centers)
        parts = dask.compute([delayed(_block_farthest, pure=True)(xb, wb, c, int(off), count,
                                                                  n_threads)
                              for xb, wb, off in zip(blocks.xs, blocks.ws, blocks.offsets)])[0]
        dist, index, rows, weights, labels, members = (
            [p[i] for p in parts] for i in range(6))
        dist, index, weights, labels = (np.concatenate(a) for a in (dist, index, weights,
                                                                       labels))
        rows = np.concatenate(rows)
        members = np.sum(members, axis=0)
        order = np.lexsort((index, -dist))[:count]
        if len(order) < count or dist[order[-1]] <= 0:
            n_distinct = k - count + int((dist[order] > 0).sum())
            raise fewer_distinct_points_error(n_distinct, k)
        for cluster, j in zip(empty, order):
            old = labels[j]
            w = float(weights[j])
            moved = w * rows[j].astype(np.float64)
            sums[old] -= moved
            weight_sums[old] -= w
            members[old] -= 1
            sums[cluster] = moved
            weight_sums[cluster] = w
            members[cluster] += 1
        weight_sums[members == 0] = 0
    return centres_from_sums(centers, sums, weight_sums, blocks.dtype), len(empty) > 0


def _lloyd(blocks, centers, *, max_iter, tol, n_threads, callback, verbose, algorithm):
    """Lloyd's iterations on the workers; returns (centers, inertia, n_iter).

    ``algorithm``: 'lloyd' (stateless passes) or a key of BOUNDED_PASSES, whose per-row
    state stays on the workers from one pass to the next (see the module's docstring).
    """
    centers = np.ascontiguousarray(centers, dtype=blocks.dtype)
    bounded = algorithm in BOUNDED_PASSES
    if bounded:
        states = None
        shift = np.zeros(centers.shape[0], dtype=blocks.dtype)
        # Yinyang's groups: formed once, from the initial centres (as in memory).
        groups = centre_groups(centers) if algorithm == "yinyang" else None
    final_inertia = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        if bounded:
            states, (sums, weight_sums, n_changed) = blocks.bounded_partials(
                states, centers, shift, algorithm, groups, n_threads)
            inertia = float("nan")  # the bounded passes do not compute it
        else:
            sums, weight_sums, inertia = blocks.partials(centers, n_threads)
        new_centers, relocated = _updated_centers(blocks, centers, sums, weight_sums,
                                                  n_threads)
        shifts = ((new_centers.astype(np.float64) - centers) ** 2).sum(axis=1)
        center_shift = float(shifts.sum())
        if bounded:
            # As fastkm's in-memory loop: the pass counted the label changes (the first
            # pass: all of them), and the moves are rounded up so that the bounds stay
            # bounds in X's precision. Unlike that loop, re-seeding an empty cluster does
            # not reset the bounds: it moved rows on the client only, the workers' labels
            # are still those the bounds refer to, and the shifts cover the re-seeded
            # centres' jumps; the next pass finds the moved rows' nearest centres.
            unchanged = not relocated and n_iter > 1 and n_changed == 0
            shift = bound_shifts(shifts, centers.shape[1], blocks.dtype)
        else:
            # Labels are not kept: centres that did not move stand in for unchanged
            # labels, and then the pass's inertia is theirs.
            unchanged = center_shift == 0 and not relocated
        centers = new_centers
        done, strict = end_of_iteration(
            n_iter, inertia, center_shift, centers, None, unchanged=unchanged, tol=tol,
            callback=callback, verbose=verbose)
        if strict and not bounded:
            final_inertia = inertia
        if done:
            break
    states = None  # lets the workers free the bounded passes' state
    if final_inertia is None:
        final_inertia = blocks.partials(centers, n_threads)[2]
    return centers, float(final_inertia), n_iter


def _kmeans_parallel(blocks, n_clusters, random_state, n_threads, local_threads,
                     oversampling_factor, n_rounds):
    """k-means|| (Bahmani et al. 2012), then weighted greedy k-means++ on the candidates.

    The first centre is a row drawn in proportion to its weight. Each round keeps every row
    independently with probability ``min(1, l * w * d**2 / phi)``, ``l = oversampling_factor
    * n_clusters`` (so about l rows a round), where d is the distance to the nearest
    candidate so far and phi their weighted sum. After ``n_rounds`` rounds (more while the
    candidates hold fewer than n_clusters distinct points), each candidate is weighted by
    the sample weight it attracts, and the weighted candidates are reclustered on the
    client: greedy k-means++ among them, then Lloyd's iterations on them (fastkm.kmeans).
    The squared distances stay on the workers (one float64 per row, persisted per round).
    """
    dtype = blocks.dtype
    # First centre.
    block_mass = np.asarray(dask.compute([delayed(_block_weight_sum)(wb, int(n))
                                          for wb, n in zip(blocks.ws, blocks.sizes)])[0])
    draw = random_state.uniform() * block_mass.sum()
    cumulative = np.cumsum(block_mass)
    b = min(int(np.searchsorted(cumulative, draw, side="right")), len(block_mass) - 1)
    while block_mass[b] <= 0:
        b -= 1
    target = draw - (cumulative[b - 1] if b > 0 else 0.0)
    first = delayed(_block_row_at)(blocks.xs[b], blocks.ws[b], target).compute()
    candidates = [np.ascontiguousarray(first, dtype=dtype)]

    scale = float(oversampling_factor) * n_clusters
    closest = dask.persist(*blocks.map(_block_closest, None, delayed(candidates[0]), n_threads,
                                       with_weights=False))
    rounds = 0
    while True:
        phi = sum(dask.compute([delayed(_block_potential)(cb, wb, dtype)
                                for cb, wb in zip(closest, blocks.ws)])[0])
        n_distinct = len(np.unique(np.concatenate(candidates), axis=0))
        if not phi > 0 or (rounds >= n_rounds and n_distinct >= n_clusters) \
                or rounds >= 10 * n_rounds:
            break
        rounds += 1
        seeds = random_state.randint(0, 2 ** 31 - 1, size=len(blocks.xs))
        sampled = dask.compute([delayed(_block_sample)(xb, wb, cb, scale / phi, int(seed))
                                for xb, wb, cb, seed in zip(blocks.xs, blocks.ws, closest,
                                                            seeds)])[0]
        new = np.ascontiguousarray(np.concatenate(sampled), dtype=dtype)
        if len(new) == 0:
            continue
        candidates.append(new)
        new_d = delayed(new)
        closest = dask.persist(*[delayed(_block_closest, pure=True)(xb, cb, new_d, n_threads)
                                 for xb, cb in zip(blocks.xs, closest)])
    del closest
    candidates = np.ascontiguousarray(np.concatenate(candidates), dtype=dtype)
    _, weights, _ = blocks.partials(candidates, n_threads)
    keep = weights > 0  # duplicated candidates: the copies attract nothing
    candidates = np.ascontiguousarray(candidates[keep])
    weights = np.ascontiguousarray(weights[keep], dtype=dtype)
    if len(candidates) < n_clusters:
        raise fewer_distinct_points_error(len(candidates), n_clusters)
    centers = kmeans_plusplus(candidates, n_clusters, weights, random_state, local_threads)[0]
    # Bahmani et al.'s step 8 reclusters the weighted candidates: k-means++, then Lloyd.
    from ._kmeans import kmeans

    return kmeans(candidates, n_clusters, sample_weight=weights, init=centers,
                  n_threads=local_threads).centers


def _sampled_rows(blocks, size, random_state, among=None):
    """The rows of positive weight, and their weights, among about ``size`` distinct rows
    drawn uniformly (with replacement, duplicates dropped) from ``among`` (row indices) or
    from all rows, or all of those when ``size`` is at least their number (draws of n rows
    would keep only about 63% of them)."""
    n = int(blocks.sizes.sum()) if among is None else len(among)
    if size >= n:
        rows = slice(None) if among is None else among
    else:
        rows = np.unique(random_state.randint(0, n, size=size))
        rows = rows if among is None else among[rows]
    X = blocks.X[rows].compute()
    if blocks.ws[0] is None:
        w = np.ones(len(X), dtype=blocks.dtype)
    else:
        w = _weights_array(blocks)[rows].compute()
    keep = w > 0
    return np.ascontiguousarray(X[keep]), np.ascontiguousarray(w[keep], dtype=blocks.dtype)


def _weights_array(blocks):
    return da.concatenate([da.from_delayed(wb, (int(s),), dtype=blocks.dtype)
                           for wb, s in zip(blocks.ws, blocks.sizes)])


def _sampled_centers(blocks, n_clusters, method, size, random_state, n_threads):
    """'k-means++' or 'random' centres drawn from ``_sampled_rows``; where those cannot seed
    n_clusters distinct centres and few rows weigh anything, from as many rows drawn among
    those that do (as a memmap fit's initialization). Never all of X on the client: it may
    not fit there."""
    sample, sample_w = _sampled_rows(blocks, size, random_state)
    try:
        if len(sample) == 0:  # (only zero weights drawn)
            raise fewer_distinct_points_error(0, n_clusters)
        return initial_centers(sample, n_clusters, method, sample_w, random_state, n_threads)
    except ValueError:
        if size >= int(blocks.sizes.sum()):  # the sample was all rows
            raise
        if blocks.ws[0] is None:
            raise poor_sample_error(len(sample), n_clusters) from None
    positive = da.flatnonzero(_weights_array(blocks) > 0).compute()
    sample, sample_w = _sampled_rows(blocks, size, random_state, among=positive)
    try:
        return initial_centers(sample, n_clusters, method, sample_w, random_state, n_threads)
    except ValueError:
        raise poor_sample_error(len(sample), n_clusters) from None


def _is_dask_dataframe(X):
    return hasattr(X, "to_dask_array") and hasattr(X, "columns")


def _with_known_chunks(A):
    """A, or where some of its chunk sizes are unknown, a new array of the same graph with
    them computed (dask's compute_chunk_sizes sets them on the array it is called on: the
    caller's)."""
    if not any(math.isnan(c) for sizes in A.chunks for c in sizes):
        return A
    return da.Array(A.dask, A.name, A.chunks, meta=A._meta).compute_chunk_sizes()


def _block_as_float(xb, dtype):
    try:
        return np.asarray(xb, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _numeric_error("X", exc) from None


def _as_dask_array(X, *, to_fit=True):
    """X as a 2-D float32/float64 dask array with one chunk across the columns and known
    chunk sizes (X itself is left as it is); names.

    ``to_fit``: whether X is data to fit, for check_array's check of array-likes.
    """
    # String column names of a dask or pandas DataFrame, as fastkm.KMeans records them.
    names = _feature_names(X)
    from_dataframe = _is_dask_dataframe(X)
    if from_dataframe:
        dtypes = set(map(str, X.dtypes))
        X = X.to_dask_array(lengths=True)
        if dtypes == {"float32"}:
            X = X.astype(np.float32)
    elif not isinstance(X, da.Array):
        X = check_array(X, to_fit=to_fit)
        X = da.from_array(X, chunks=(max(1, min(len(X), 1_000_000)), X.shape[1]))
    # check_array's checks, on the dtype and shape only (the values are checked by fit's
    # statistics, and by the block functions of predict, transform and score).
    if X.dtype.kind == "c":
        raise ValueError("Complex data not supported: X is complex; fastkm needs real "
                         "numbers")
    if X.dtype.kind not in "fiubOUSV":
        raise TypeError(f"X has dtype {X.dtype}; fastkm needs real numbers")
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D array, got {X.ndim}-D")
    X = _with_known_chunks(X)
    if X.shape[1] < 1:  # (the kernels would read out of bounds)
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of "
                         f"1 is required (X)")
    target = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    if from_dataframe or X.dtype.kind in "OUSV":
        # A DataFrame's blocks are converted to the float dtype, not only declared so: they
        # may differ from to_dask_array's dtype (a nullable Int64 column is declared
        # float64 but its blocks are int64), and the kernels take the blocks as they are.
        # As check_array, strings and objects that hold numbers are converted too. No
        # copy where a block already has that dtype.
        X = X.map_blocks(_block_as_float, target, dtype=target)
    elif X.dtype != target:
        X = X.astype(target)
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return X, names


def _as_dask_weights(sample_weight, X):
    """sample_weight (None, a number, an array-like or a 1-D dask array) as a dask array of
    X's dtype chunked like X's rows, or None; checked as check_sample_weight checks it,
    but for a dask array's values (see _check_weight_values)."""
    if sample_weight is None:
        return None
    n = X.shape[0]
    if isinstance(sample_weight, numbers.Number):  # checked once, then repeated lazily
        value = check_sample_weight(sample_weight, 1, X.dtype)[0]
        return da.full(n, value, dtype=X.dtype, chunks=(X.chunks[0],))
    if not isinstance(sample_weight, da.Array):
        return da.from_array(check_sample_weight(sample_weight, n, X.dtype),
                             chunks=(X.chunks[0],))
    if sample_weight.dtype.kind not in "fiub":
        raise TypeError(f"sample_weight must be numeric: got a dask array of dtype "
                        f"{sample_weight.dtype}")
    if sample_weight.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, got shape {sample_weight.shape}")
    w = _with_known_chunks(sample_weight)
    if w.shape[0] != n:
        raise ValueError(f"sample_weight has {w.shape[0]} entries but X has {n} samples")
    return w.astype(X.dtype).rechunk((X.chunks[0],))


def _check_weight_values(w):
    """check_sample_weight's checks of the values of ``w`` (from _as_dask_weights), computed
    now."""
    if w.shape[0] == 0:
        return
    low, high = (float(v) for v in dask.compute(w.min(), w.max()))
    dtype = w.dtype.name
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"sample_weight contains NaN or infinity (as {dtype})")
    if low < 0:
        raise ValueError("sample_weight contains negative values")
    if not high > 0:
        raise ValueError(f"sample_weight is zero for every sample (as {dtype})")


class KMeans(_InMemoryKMeans):
    """Exact k-means of a ``dask.array`` (or dask DataFrame) on a Dask cluster.

    The same estimator as :class:`fastkm.KMeans`, fitted where the data lives: each Lloyd
    iteration runs fastkm's Cython pass on the workers and only per-block partial sums
    (k x d + k + 1 numbers a block) come back, added as a tree; the bounded algorithms'
    per-row state stays on the workers. See the module's docstring for that state's
    memory and for the threads the kernel gets on the workers.

    Parameters
    ----------
    n_clusters, n_init, max_iter, tol, random_state, verbose
        As in :class:`fastkm.KMeans`.
    init : {'k-means||', 'k-means++', 'random'}, array or callable, default='k-means||'
        'k-means||': scalable k-means++ (Bahmani et al. 2012), run on the workers: about
        ``oversampling_factor * n_clusters`` candidates per round for ``init_rounds``
        rounds, weighted by the samples they attract, then reclustered on the client
        (weighted greedy k-means++ on the candidates, then Lloyd on them). 'k-means++' and
        'random': fastkm's in-memory initialization on ``init_size`` rows drawn at random
        and brought to the client. An array: the initial centres. A callable:
        ``init(X, n_clusters, random_state=random_state)`` with X the dask array.
    algorithm : {'auto', 'lloyd', 'filter', 'hamerly', 'exponion', 'yinyang'}, default='auto'
        As in :class:`fastkm.KMeans`: 'auto' runs 'hamerly' or 'exponion' with enough
        clusters and samples per cluster ('yinyang' with many features too), else 'lloyd',
        by ``fastkm._lloyd.auto_algorithm``; all give the same result. 'filter', which
        sorts all rows, runs as 'lloyd' on Dask blocks. The bounded ones
        keep their per-row bounds on the workers (module docstring), also with a
        ``callback`` or ``verbose``, whose iterations then report a NaN inertia (their
        passes do not compute it).
    n_threads : int or None, default=None
        OpenMP threads of the kernel in each task on the workers (and on the client for
        k-means++ on the candidates). None: the worker's OpenMP default, which is 1 under
        Dask's nanny (``OMP_NUM_THREADS=1``).
    callback : callable or None
        Called on the client after every iteration with an :class:`fastkm.IterationInfo`
        whose ``labels`` is None (the labels stay on the workers), and whose ``inertia``
        is NaN when the fit runs a bounded algorithm. Returning True stops.
    swap_trials : int, default=0
        Only 0 is supported here.
    init_size : int or None, default=None
        Rows sampled for ``init='k-means++'`` or ``'random'``; None: ``max(100_000,
        20 * n_clusters)``. All rows if there are no more. A sample that cannot seed
        n_clusters distinct centres raises a ValueError (raise ``init_size`` or pass
        ``init`` as an array): unlike :class:`fastkm.KMeans`, the fit does not fall back to
        all rows, which would bring all of X to the client.
    oversampling_factor : float, default=2
        k-means|| candidates per round, in multiples of n_clusters: a finite positive
        number.
    init_rounds : int, default=5
        k-means|| rounds.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centres, a numpy array in X's floating dtype.
    labels_ : dask array of shape (n_samples,), int32
        Lazy: the nearest centre of each training sample, computed on the workers from the
        persisted training data when it is computed (chunked like X's rows). It refers
        to that persisted data, which stays in the workers' memory while ``labels_`` (or
        the estimator) is alive; ``labels_.persist()`` or ``.compute()`` it, or delete it
        to let the workers free it.
    inertia_ : float
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names, when fitted on a dask DataFrame with string column names.
    """

    def __init__(self, n_clusters=8, *, init="k-means||", n_init="auto", max_iter=300,
                 tol=1e-4, random_state=None, algorithm="auto", n_threads=None, verbose=0,
                 callback=None, swap_trials=0, init_size=None, oversampling_factor=2.0,
                 init_rounds=5):
        super().__init__(n_clusters, init=init, n_init=n_init, max_iter=max_iter, tol=tol,
                         random_state=random_state, algorithm=algorithm, n_threads=n_threads,
                         verbose=verbose, callback=callback, swap_trials=swap_trials,
                         init_size=init_size)
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds

    def fit(self, X, y=None, sample_weight=None):
        """Compute the k-means clustering of X (dask array, dask DataFrame or array-like).

        X is persisted on the workers (a no-op when it already is). ``sample_weight``: None,
        a number, or a 1-D dask or numpy array of n_samples non-negative weights.

        Returns
        -------
        self
        """
        X, names = _as_dask_array(X)
        n_samples, n_features = X.shape
        k = check_positive_int(self.n_clusters, "n_clusters")
        max_iter = check_positive_int(self.max_iter, "max_iter")
        tol = check_tol(self.tol)
        check_verbose(self.verbose)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.swap_trials != 0:
            raise ValueError("fastkm.dask.KMeans supports only swap_trials=0")
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable or None, got {self.callback!r}")
        if n_samples < k:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={k}.")
        n_threads = self.n_threads
        if n_threads is not None:
            n_threads = effective_n_threads(n_threads)  # validates
        local_threads = effective_n_threads(self.n_threads)
        init = self.init
        if isinstance(init, str) and init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, an array or a callable, "
                             f"got {init!r}")
        init_array = None if isinstance(init, str) or callable(init) else \
            _check_init(init, k, n_features, X.dtype, n_terms=n_samples)
        n_init = _check_n_init(self.n_init, init)
        random_state = check_random_state(self.random_state)
        rounds = check_positive_int(self.init_rounds, "init_rounds")
        # Not infinite (each round would bring every row to the client) and not a bool, as
        # the other numeric parameters.
        if not isinstance(self.oversampling_factor, numbers.Real) or \
                isinstance(self.oversampling_factor, bool) or \
                not math.isfinite(self.oversampling_factor) or \
                not self.oversampling_factor > 0:
            raise ValueError(f"oversampling_factor must be a finite positive number, got "
                             f"{self.oversampling_factor!r}")

        # With the dtype: a dask array's blocks may not have the dtype it declares.
        X = X.map_blocks(functools.partial(np.ascontiguousarray, dtype=X.dtype),
                         dtype=X.dtype)
        w = _as_dask_weights(sample_weight, X)
        X, w = dask.persist(X, w) if w is not None else (dask.persist(X)[0], None)

        blocks = _Blocks(X, w)
        # One pass for the values' check (check_finite_values': the magnitude bounds keep
        # the kernels' sums and these statistics finite) and the tolerance (mean variance
        # of the features).
        _, _, m2, largest = blocks.stats()
        if not math.isfinite(largest):
            raise ValueError("Input X contains NaN or infinity")
        check_magnitude(largest, n_features, X.dtype, n_terms=n_samples)
        if w is not None:
            _check_weight_values(w)
        tol = tol * float(np.mean(m2 / n_samples)) if tol > 0 else 0.0
        algorithm = self.algorithm
        if algorithm == "auto":
            algorithm = auto_algorithm(n_samples, n_features, k, X.dtype.itemsize,
                                       max_iter, sorted_rows=False)

        best = None
        for run in range(n_init):
            if init_array is not None:
                centers = init_array
            elif callable(init):
                centers = _check_init(init(X, k, random_state=random_state), k, n_features,
                                      X.dtype, name="the array returned by init",
                                      n_terms=n_samples)
            elif init == "k-means||":
                centers = _kmeans_parallel(blocks, k, random_state, n_threads, local_threads,
                                           self.oversampling_factor, rounds)
            else:
                size = self.init_size if self.init_size is not None else max(100_000, 20 * k)
                size = check_positive_int(size, "init_size", minimum=k)
                centers = _sampled_centers(blocks, k, init, size, random_state,
                                           local_threads)
            if self.verbose:
                print(f"Initialization complete (run {run + 1} of {n_init})")
            result = _lloyd(blocks, centers, max_iter=max_iter, tol=tol, n_threads=n_threads,
                            callback=self.callback, verbose=self.verbose,
                            algorithm=algorithm)
            if best is None or result[1] < best[1]:
                best = result
        centers, inertia, n_iter = best
        self.cluster_centers_ = centers
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        self.n_features_in_ = n_features
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.labels_ = self._predict_dask(X, check=False)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``labels_`` (a lazy dask array).

        Parameters
        ----------
        X : dask array, dask DataFrame or array-like of shape (n_samples, n_features)
            Training data, as for ``fit``.
        y : ignored
        sample_weight : None, number, or dask or numpy array of shape (n_samples,)
            Non-negative weight of each sample, as for ``fit``.

        Returns
        -------
        labels : dask array of shape (n_samples,), int32
            Lazy: the nearest centre of each training sample, chunked like X's rows.
        """
        return self.fit(X, sample_weight=sample_weight).labels_

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit, then return the distances of X to the centres (a lazy dask array).

        Parameters
        ----------
        X : dask array, dask DataFrame or array-like of shape (n_samples, n_features)
            Training data, as for ``fit``.
        y : ignored
        sample_weight : None, number, or dask or numpy array of shape (n_samples,)
            Non-negative weight of each sample, as for ``fit``.

        Returns
        -------
        distances : dask array of shape (n_samples, n_clusters)
            ``transform(X)`` with the fitted centres: lazy Euclidean distances.
        """
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def predict(self, X):
        """Nearest centre of each row: a lazy int32 dask array chunked like X's rows.

        Parameters
        ----------
        X : dask array, dask DataFrame or array-like of shape (n_samples, n_features)
            Data with the features seen in ``fit``. Its values are checked as its blocks
            are computed (a ValueError then). A dask DataFrame, or a dask array with
            unknown chunk sizes, is computed once by this call, to learn its partitions'
            lengths (its whole graph runs, reading its files, say); only the result is lazy.

        Returns
        -------
        labels : dask array of shape (n_samples,), int32
            Lazy; ties go to the lowest index.
        """
        return self._predict_dask(self._check_dask_test_data(X))

    def transform(self, X):
        """Distances to the centres: a lazy dask array (n, n_clusters), X's row chunks.

        Parameters
        ----------
        X : dask array, dask DataFrame or array-like of shape (n_samples, n_features)
            Data with the features seen in ``fit``. Its values are checked as its blocks
            are computed (a ValueError then). A dask DataFrame, or a dask array with
            unknown chunk sizes, is computed once by this call, to learn its partitions'
            lengths (its whole graph runs, reading its files, say); only the result is lazy.

        Returns
        -------
        distances : dask array of shape (n_samples, n_clusters)
            Lazy Euclidean distances of each sample to each centre, in X's floating dtype,
            chunked like X's rows.
        """
        X = self._check_dask_test_data(X)
        centers = self._centers_for(X)
        return X.map_blocks(_block_transform, centers, self.n_threads, X.shape[0],
                            dtype=X.dtype, chunks=(X.chunks[0], (centers.shape[0],)))

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the inertia of X under the fitted centres (computed now).

        Parameters
        ----------
        X : dask array, dask DataFrame or array-like of shape (n_samples, n_features)
            Data with the features seen in ``fit``.
        y : ignored
        sample_weight : None, number, or dask or numpy array of shape (n_samples,)
            Non-negative weight of each sample. None: every weight is 1.

        Returns
        -------
        float
            Minus the inertia: minus the weighted sum of squared distances of the samples
            of X to their nearest centre.
        """
        X = self._check_dask_test_data(X)
        w = _as_dask_weights(sample_weight, X)
        if w is not None:
            _check_weight_values(w)
        return -_Blocks(X, w).partials(self._centers_for(X), self.n_threads,
                                       n_terms=X.shape[0])[2]

    def _predict_dask(self, X, check=True):
        """Lazy labels of X; ``check``: check X's values as its blocks are computed (not
        needed for fit's checked X)."""
        return X.map_blocks(_block_predict, self._centers_for(X), self.n_threads,
                            X.shape[0] if check else None, dtype=np.int32, drop_axis=1)

    def _check_dask_test_data(self, X):
        # The feature names are checked as fastkm.KMeans checks them (for dask and pandas
        # DataFrames alike): a reordered frame would otherwise give wrong labels silently.
        self._check_fitted()
        self._check_feature_names(X)
        X, _ = _as_dask_array(X, to_fit=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input")
        return X
