"""Groups of centres for simplified Yinyang (``algorithm='yinyang'``)."""

import numpy as np

from ._isa import core

#: Lloyd iterations on the centres that form the groups (Ding et al. use five).
GROUP_ITERATIONS = 5


def centre_groups(centers, n_groups=None):
    """Split the centres into about ``k / 10`` groups of nearby centres.

    The groups are formed once, from the initial centres, by a few Lloyd iterations on the
    centres themselves, started from the first ``n_groups`` of them (k-means++ spreads its
    first picks out). Groups left empty are dropped. Deterministic. (The groups only decide
    which centres Yinyang's bounds cover together, never a label.)

    Returns
    -------
    ndarray of shape (n_clusters,), int32
        The group of each centre, numbered from 0 with no number unused.
    """
    C = np.ascontiguousarray(centers, dtype=np.float64)
    k = len(C)
    if n_groups is None:
        n_groups = max(1, k // 10)
    means = C[:n_groups].copy()
    # The distances by the kernel transform uses (elementwise in NumPy, with each group's
    # sum by np.add.at, a Lloyd iteration took 2 ms on MNIST's 100 centres of 784 features;
    # a matmul would leave BLAS's threads spinning on the cores the fit's first pass needs).
    dist = np.empty((k, n_groups))
    for _ in range(GROUP_ITERATIONS):
        core.sq_distances(C, means, dist, 1)
        groups = dist.argmin(axis=1)
        counts = np.bincount(groups, minlength=n_groups)
        filled = counts > 0
        starts = np.cumsum(counts) - counts  # of each group's members, sorted by group
        members = C[np.argsort(groups, kind="stable")]
        means[filled] = np.add.reduceat(members, starts[filled], axis=0) / counts[filled, None]
    _, groups = np.unique(groups, return_inverse=True)  # renumber without the empty groups
    return groups.astype(np.int32)
