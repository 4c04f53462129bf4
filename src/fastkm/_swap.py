"""Swap refinement of k-means centres, after I-k-means-+ (Ismkhan 2018, "I-k-means-+: An
iterative clustering algorithm based on an enhanced version of the k-means", Pattern
Recognition 79).

Lloyd's algorithm only moves centres locally, so two centres sharing one true cluster, or
one centre spread over two, stay that way. A swap removes the centre whose loss costs least
(its samples' move to their second-nearest centre adds the least squared distance), puts a
new centre inside the cluster with the largest squared error, runs Lloyd to convergence and
keeps the result only if the inertia went down. Unlike random swaps (Franti 2018), the
choice is directed, so far fewer trials are needed than with random swaps (50 solved every
clustering basic benchmark set, BENCHMARKS.md section 4).
"""

import numpy as np

from ._isa import core
from ._lloyd import lloyd

# Centres to consider removing, and clusters to consider adding to, per round of trials.
CANDIDATES_PER_ROUND = 3
# A swap must lower the inertia by this relative amount, so rounding noise cannot cycle.
MIN_RELATIVE_GAIN = 1e-9


def swap_refine(X, sample_weight, centers, *, max_trials, tol, max_iter, random_state,
                n_threads):
    """Improve converged ``centers`` by directed swaps; returns (centers, labels, inertia, n_iter).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
    sample_weight : ndarray of shape (n_samples,), X's dtype
    centers : ndarray of shape (n_clusters, n_features)
        Starting centres, typically a k-means result.
    max_trials : int
        Swaps to try at most; each costs a Lloyd run (with Hamerly's bounds).
    tol, max_iter : float, int
        Convergence of each Lloyd run (tol absolute, as ``lloyd`` takes it).
    random_state : numpy.random.RandomState
        Draws where in the chosen cluster the new centre goes (in proportion to weight times
        squared distance).
    n_threads : int

    Returns
    -------
    centers, labels, inertia, n_iter
        Of the final Lloyd run, but n_iter: the iterations of the Lloyd runs behind the
        result (from ``centers``, then each kept swap's); the inertia is never above that
        of the starting centres after Lloyd.
    """
    best = lloyd(X, sample_weight, centers, max_iter=max_iter, tol=tol, n_threads=n_threads,
                 algorithm="auto")
    n_iter = best[3]
    k = len(centers)
    trials = 0
    while trials < max_trials and k > 1:
        labels, sq_dist, removal_cost, cluster_error = _cluster_costs(
            X, sample_weight, best[0], n_threads)
        improved = False
        for removed in np.argsort(removal_cost, kind="stable")[:CANDIDATES_PER_ROUND]:
            for target in np.argsort(-cluster_error, kind="stable")[:CANDIDATES_PER_ROUND]:
                if target == removed or trials >= max_trials or cluster_error[target] <= 0:
                    continue
                trials += 1
                trial_centers = best[0].copy()
                trial_centers[removed] = X[_draw_member(labels == target, sample_weight,
                                                        sq_dist, random_state)]
                trial = lloyd(X, sample_weight, trial_centers, max_iter=max_iter, tol=tol,
                              n_threads=n_threads, algorithm="auto")
                if trial[2] < best[2] * (1 - MIN_RELATIVE_GAIN):
                    best, improved = trial, True
                    n_iter += trial[3]
                    break
            if improved:
                break
        if not improved:
            break
    return (*best[:3], n_iter)


def _cluster_costs(X, sample_weight, centers, n_threads):
    """Labels, squared distances, and per cluster: removal cost and squared error.

    The removal cost of a cluster is the weighted squared distance its samples would gain
    moving to their second-nearest centre. A bounds pass started from scratch compares
    every sample with every centre and leaves exact nearest and second-nearest distances.
    """
    n, k = len(X), len(centers)
    labels = np.zeros(n, dtype=np.int32)
    nearest = np.full(n, np.inf, dtype=X.dtype)
    second = np.zeros(n, dtype=X.dtype)
    core.hamerly_pass(X, sample_weight, centers, np.zeros(k, dtype=X.dtype), labels, nearest,
                      second, np.empty(centers.shape), np.empty(k), n_threads)
    w = sample_weight.astype(np.float64)
    sq_dist = nearest.astype(np.float64) ** 2
    removal_cost = np.bincount(labels, weights=w * (second.astype(np.float64) ** 2 - sq_dist),
                               minlength=k)
    cluster_error = np.bincount(labels, weights=w * sq_dist, minlength=k)
    return labels, sq_dist, removal_cost, cluster_error


def _draw_member(mask, sample_weight, sq_dist, random_state):
    """A sample of ``mask`` drawn in proportion to weight times squared distance."""
    members = np.flatnonzero(mask)
    mass = np.cumsum(sample_weight[members] * sq_dist[members])
    pick = np.searchsorted(mass, random_state.uniform() * mass[-1], side="right")
    return members[min(pick, len(members) - 1)]
