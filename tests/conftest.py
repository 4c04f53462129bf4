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
