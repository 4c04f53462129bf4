"""Shared fixtures and the ``--runslow`` switch for tests marked ``slow``."""

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def data_dir():
    return DATA


def reference_lloyd(X, centers, n_iter, sample_weight=None):
    """A plain NumPy Lloyd in float64: the yardstick for every fast path.

    Returns the centres after ``n_iter`` updates and the labels of the last assignment.
    Empty clusters keep their centre (tests that use it avoid them).
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    centers = np.asarray(centers, dtype=np.float64).copy()
    labels = None
    for _ in range(n_iter):
        d2 = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
        labels = d2.argmin(1)
        for j in range(len(centers)):
            mask = labels == j
            if w[mask].sum() > 0:
                centers[j] = (w[mask, None] * X[mask]).sum(0) / w[mask].sum()
    return centers, labels


def blobs(n, d, n_blobs, seed, dtype=np.float64):
    """Gaussian blobs of unit spread around ``n_blobs`` centres drawn with spread 3."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, d)) * 3
    X = centres[rng.integers(n_blobs, size=n)] + rng.normal(size=(n, d))
    return X.astype(dtype)


def near_ties(d, n_rows, dtype, seed):
    """40 centres (7 and 30 the same) and rows on the bisectors of pairs of them, then the
    two duplicates' own point: rows whose nearest centre rounding decides, and two exact
    ties that go to the lower index, 7. Returns ``(X, C)``."""
    rng = np.random.default_rng(seed)
    k = 40
    C = (rng.normal(size=(k, d)) * 2 + 5).astype(dtype)
    C[7] = C[30]  # an exact duplicate
    a, b = rng.integers(k, size=(2, n_rows))
    b[a == b] = (b[a == b] + 1) % k
    mid = (C[a].astype(np.float64) + C[b]) / 2
    axis = C[a].astype(np.float64) - C[b]
    noise = rng.normal(size=mid.shape) * 0.3
    axis_sq = np.maximum((axis * axis).sum(1), 1e-300)  # 0 for the duplicate pair
    noise -= axis * ((noise * axis).sum(1) / axis_sq)[:, None]
    return np.concatenate([mid + noise, C[[7, 30]]]).astype(dtype), C


def assert_runs_identical(runs):
    """Every run (a list of iterations, each a tuple of arrays) equals the first, bit for
    bit: thread counts must not change results."""
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for a, b in zip(runs[0], other):
            assert all(np.array_equal(x, y) for x, y in zip(a, b))


def assert_same_fit(reference, other, *, exact):
    """Two fits of the same data from the same start: the same labels and iterations; the
    same centres and inertia bit for bit (``exact``) or to float64 rounding (a bounded fit
    without weights updates its clusters' sums by the rows that move, 'lloyd' sums them
    afresh; float32 centres may then differ in their last bit)."""
    np.testing.assert_array_equal(other.labels_, reference.labels_)
    assert other.n_iter_ == reference.n_iter_
    if exact:
        assert np.array_equal(other.cluster_centers_, reference.cluster_centers_)
        assert other.inertia_ == reference.inertia_
    else:
        centres = reference.cluster_centers_
        eps = max(1e-12, 2 * float(np.finfo(centres.dtype).eps))
        np.testing.assert_allclose(other.cluster_centers_, centres, rtol=0,
                                   atol=eps * np.abs(centres).max())
        assert other.inertia_ == pytest.approx(reference.inertia_, rel=1e-9)
