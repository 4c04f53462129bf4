"""Groups of centres for simplified Yinyang (``algorithm='yinyang'``)."""

import numpy as np

#: Lloyd iterations on the centres that form the groups (Ding et al. use five).
GROUP_ITERATIONS = 5


def centre_groups(centers, n_groups=None):
    """Split the centres into about ``k / 10`` groups of nearby centres.

    The groups are formed once, from the initial centres, by a few Lloyd iterations on the
    centres themselves, started from the first ``n_groups`` of them (k-means++ spreads its
    first picks out). Groups left empty are dropped. Deterministic.

    Returns
    -------
    ndarray of shape (n_clusters,), int32
        The group of each centre, numbered from 0 with no number unused.
    """
    C = np.asarray(centers, dtype=np.float64)
    k = len(C)
    if n_groups is None:
        n_groups = max(1, k // 10)
    means = C[:n_groups].copy()
    groups = np.zeros(k, dtype=np.intp)
    for _ in range(GROUP_ITERATIONS):
        dist = np.stack([((C - m) ** 2).sum(axis=1) for m in means], axis=1)
        groups = dist.argmin(axis=1)
        counts = np.bincount(groups, minlength=len(means))
        sums = np.zeros_like(means)
        np.add.at(sums, groups, C)
        filled = counts > 0
        means[filled] = sums[filled] / counts[filled, None]
    _, groups = np.unique(groups, return_inverse=True)  # renumber without the empty groups
    return groups.astype(np.int32)
