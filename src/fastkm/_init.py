"""Initial centres: greedy k-means++, distinct random rows, or the user's array or callable."""

import numpy as np

from ._isa import core


def fewer_distinct_points_error(n_distinct, n_clusters):
    return ValueError(f"X has only {n_distinct} distinct point(s) with positive weight, "
                      f"fewer than n_clusters={n_clusters}")


def poor_sample_error(n_rows, n_clusters):
    """The error of an initialization on a sample of rows (``init_size``) that cannot seed
    n_clusters distinct centres."""
    return ValueError(f"The initialization sample of {n_rows} rows holds fewer than "
                      f"n_clusters={n_clusters} distinct points: raise init_size or pass "
                      f"init as an array")


def initial_centers(X, n_clusters, method, sample_weight, random_state, n_threads,
                    init_size=None):
    """Initial centres by ``method``, 'k-means++' or 'random', as ``KMeans`` draws them.

    With ``init_size`` (k-means++ only), k-means++ runs on that many rows drawn at random
    (with replacement, duplicates and zero weights dropped), or on all rows if the sample
    cannot seed ``n_clusters`` distinct centres.
    """
    if method == "random":
        return random_rows(X, n_clusters, sample_weight, random_state)[0]
    if init_size is not None and init_size < len(X):
        rows = np.unique(random_state.randint(0, len(X), size=init_size))
        rows = rows[sample_weight[rows] > 0]
        try:
            return kmeans_plusplus(np.ascontiguousarray(X[rows]), n_clusters,
                                   np.ascontiguousarray(sample_weight[rows]), random_state,
                                   n_threads)[0]
        except ValueError:  # the sample holds fewer distinct points than clusters
            pass
    return kmeans_plusplus(X, n_clusters, sample_weight, random_state, n_threads)[0]


def kmeans_plusplus(X, n_clusters, sample_weight, random_state, n_threads, n_local_trials=None):
    """Greedy k-means++ (Arthur & Vassilvitskii 2007, with scikit-learn's local trials).

    Each new centre is the best, by resulting potential, of ``2 + ln(k)`` rows drawn with
    probability proportional to ``weight * squared distance to the nearest chosen centre``.
    Distances are kept in one float64 array of n values; the draws use per-chunk sums from
    the kernel, so no pass builds a cumulative sum over all rows. From
    ``core.row_major_min_features()`` features each row's nearest chosen centre is kept too
    (an int32 array), and a candidate or new centre at least twice as far from it as the row
    is not compared with the row (Raff 2021): on clustered data most rows are not read at
    all once most clusters hold a centre.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
    n_clusters : int
    sample_weight : ndarray of shape (n_samples,), X's dtype
    random_state : numpy.random.RandomState
    n_threads : int
    n_local_trials : int, optional
        Candidates per centre; ``2 + int(ln(n_clusters))`` by default.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), X's dtype
    indices : ndarray of shape (n_clusters,)
        The rows of X chosen as centres.
    """
    n = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    n_chunks, chunk_rows = core.row_chunks(n)
    indices = np.empty(n_clusters, dtype=np.intp)
    closest_sq = np.full(n, np.inf)
    chunk_pot = np.empty(n_chunks)

    # The first centre is drawn in proportion to the weights alone.
    weight_chunks = np.add.reduceat(sample_weight.astype(np.float64),
                                    np.arange(n_chunks) * chunk_rows)
    core.kmeanspp_draw_rows(sample_weight, None, weight_chunks,
                            random_state.uniform(size=1) * weight_chunks.sum(), indices[:1])
    core.kmeanspp_update_closest(X, sample_weight, X[indices[0]:indices[0] + 1], closest_sq,
                                 chunk_pot, n_threads)
    potentials = np.empty(n_local_trials)
    candidates = np.empty(n_local_trials, dtype=np.intp)
    pruned = X.shape[1] >= core.row_major_min_features()
    if pruned:  # every row's nearest chosen centre: the first, for now
        nearest = np.zeros(n, dtype=np.int32)
        chosen = np.empty((n_clusters, X.shape[1]), dtype=X.dtype)
        chosen[0] = X[indices[0]]
        gaps = np.empty((n_clusters, n_local_trials), dtype=X.dtype)
    for c in range(1, n_clusters):
        total = chunk_pot.sum()
        if not total > 0:
            raise fewer_distinct_points_error(c, n_clusters)
        draws = random_state.uniform(size=n_local_trials) * total
        core.kmeanspp_draw_rows(sample_weight, closest_sq, chunk_pot, draws, candidates)
        rows = X[candidates]
        if not pruned:
            core.kmeanspp_candidate_potentials(X, sample_weight, rows, closest_sq, potentials,
                                               n_threads)
            best = np.argmin(potentials)
            indices[c] = candidates[best]
            core.kmeanspp_update_closest(X, sample_weight, X[indices[c]:indices[c] + 1],
                                         closest_sq, chunk_pot, n_threads)
            continue
        core.sq_distances(chosen[:c], rows, gaps[:c], n_threads)
        core.kmeanspp_candidate_potentials(X, sample_weight, rows, closest_sq, potentials,
                                           n_threads, nearest, gaps[:c])
        best = np.argmin(potentials)
        indices[c] = candidates[best]
        chosen[c] = rows[best]
        core.kmeanspp_update_closest(X, sample_weight, chosen[c:c + 1], closest_sq, chunk_pot,
                                     n_threads, nearest, np.ascontiguousarray(gaps[:c, best]),
                                     c)
    return X[indices], indices


def random_rows(X, n_clusters, sample_weight, random_state):
    """``n_clusters`` distinct rows of X, drawn without replacement in proportion to weight.

    Rows are ranked by the Efraimidis-Spirakis key ``log(u) / w``: taking them in that order
    is weighted sampling without replacement. Duplicated rows are skipped, so the centres
    are distinct.
    """
    positive = np.flatnonzero(sample_weight > 0)
    keys = np.log(random_state.uniform(size=len(positive))) / sample_weight[positive]
    for n_ranked in (min(len(positive), 4 * n_clusters), len(positive)):
        top = np.argpartition(-keys, n_ranked - 1)[:n_ranked]
        order = positive[top[np.argsort(-keys[top], kind="stable")]]
        chosen, seen = [], set()
        for i in order:
            key = (X[i] + 0.0).tobytes()  # + 0.0 makes -0.0 and 0.0 the same key
            if key not in seen:
                seen.add(key)
                chosen.append(i)
                if len(chosen) == n_clusters:
                    indices = np.asarray(chosen, dtype=np.intp)
                    return X[indices], indices
    raise fewer_distinct_points_error(len(seen), n_clusters)
