"""Random-swap refinement of k-means centres (Franti 2018, "Efficiency of random swap
clustering", Journal of Big Data 5:13).

Lloyd's algorithm only moves centres locally, so a centre stuck between two true clusters,
or two centres sharing one, stay that way. A swap moves one random centre to a random
sample, runs a couple of Lloyd iterations, and keeps the result only if the inertia went
down; repeated, this escapes such local minima.
"""

import numpy as np

from ._lloyd import lloyd


def random_swap(X, sample_weight, centers, *, n_trials, random_state, n_threads,
                local_iter=2):
    """Improve ``centers`` by ``n_trials`` random swaps; returns (centers, inertia).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
    sample_weight : ndarray of shape (n_samples,), X's dtype
    centers : ndarray of shape (n_clusters, n_features)
        Starting centres (typically a k-means result).
    n_trials : int
        Swaps to try.
    random_state : numpy.random.RandomState
        Draws which centre moves (uniformly) and where (a sample, in proportion to weight).
    n_threads : int
    local_iter : int, default=2
        Lloyd iterations after each swap before comparing inertias.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
        Never worse (in inertia) than the input after ``local_iter`` iterations.
    inertia : float
    """
    best, _, best_inertia, _ = lloyd(X, sample_weight, centers, max_iter=local_iter, tol=0,
                                     n_threads=n_threads)
    if n_trials == 0 or len(best) < 2:
        return best, best_inertia
    cumulative = np.cumsum(sample_weight, dtype=np.float64)
    for _ in range(n_trials):
        moved = random_state.randint(len(best))
        target = np.searchsorted(cumulative, random_state.uniform() * cumulative[-1],
                                 side="right")
        trial = best.copy()
        trial[moved] = X[min(target, len(X) - 1)]
        trial, _, inertia, _ = lloyd(X, sample_weight, trial, max_iter=local_iter, tol=0,
                                     n_threads=n_threads)
        if inertia < best_inertia:
            best, best_inertia = trial, inertia
    return best, best_inertia
