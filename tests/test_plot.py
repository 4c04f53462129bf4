"""``fastkm.plot``: recording a fit's iterations and drawing the iteration picture."""

import doctest
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fastkm
import fastkm.plot

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def seed_fit():
    """The exercise's fit: X, its initial centres and the recorded iterations."""
    X = np.loadtxt(DATA / "ex7data2.csv", delimiter=",")
    init = np.array([[3.0, 3], [6, 2], [8, 5]])
    rec = fastkm.plot.record()
    fastkm.KMeans(3, init=init, max_iter=10, tol=0, callback=rec).fit(X)
    return X, init, rec.history


def rendered(figure):
    """The figure as a PNG: (size, number of distinct colours)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    with Image.open(buffer) as img:
        assert img.format == "PNG"
        return img.size, len(img.convert("RGB").getcolors(1 << 24))


def test_docstring_examples():
    result = doctest.testmod(fastkm.plot, verbose=False, report=True)
    assert result.failed == 0 and result.attempted > 0


def test_record_keeps_every_iteration(seed_fit):
    _, _, history = seed_fit
    assert [info.iteration for info in history] == list(range(1, 8))
    assert all(isinstance(info, fastkm.IterationInfo) for info in history)
    # The exercise's first assignment, 0-based: clusters 1, 3, 2 in its 1-based numbering.
    assert history[0].labels[:3].tolist() == [0, 2, 1]


def test_record_splits_runs():
    X = np.random.default_rng(0).normal(size=(200, 2))
    rec = fastkm.plot.record()
    km = fastkm.KMeans(4, init="random", n_init=3, random_state=0, callback=rec).fit(X)
    assert len(rec.runs) == 3 and rec.history is rec.runs[-1]
    assert all(run[0].iteration == 1 for run in rec.runs)
    assert sum(np.array_equal(run[-1].centers, km.cluster_centers_) for run in rec.runs) >= 1
    assert fastkm.plot.record().history == []


def test_single_panel_picture(seed_fit):
    X, init, history = seed_fit
    figure = fastkm.plot.iterations(X, history, init=init, feature_names=("x1", "x2"))
    ax, = figure.axes
    assert ax.get_title() == "k-means, 3 clusters, 7 iterations"
    assert ax.get_xlabel() == "x1" and ax.get_ylabel() == "x2"
    # Each centre's path starts at its initial position and ends at the final centre.
    paths = [line.get_xydata() for line in ax.lines if len(line.get_xydata()) > 1]
    assert len(paths) == 3
    for j, path in enumerate(paths):
        np.testing.assert_array_equal(path[0], init[j])
        np.testing.assert_array_equal(path[-1], history[-1].centers[j])
        assert len(path) == len(history) + 1
    size, colors = rendered(figure)
    assert size == (600, 500) and colors > 1


def test_paths_start_at_the_first_update_without_init(seed_fit):
    X, _, history = seed_fit
    ax, = fastkm.plot.iterations(X, history).axes
    path = next(line.get_xydata() for line in ax.lines if len(line.get_xydata()) > 1)
    assert len(path) == len(history)
    np.testing.assert_array_equal(path[0], history[0].centers[0])


def test_small_multiples(seed_fit):
    X, init, history = seed_fit
    figure = fastkm.plot.iterations(X, history, init=init, panels=True, max_panels=4)
    drawn = [ax for ax in figure.axes if ax.axison]
    assert [ax.get_title() for ax in drawn] == [
        "iteration 1", "iteration 3", "iteration 5", "iteration 7"]
    size, colors = rendered(figure)
    assert size == (1280, 340) and colors > 1  # 4 panels of 320 x 300, and the title


def test_more_features_use_principal_components():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4)) + np.repeat(np.eye(4)[:3] * 8, 100, axis=0)
    rec = fastkm.plot.record()
    fastkm.KMeans(3, random_state=0, callback=rec).fit(X)
    figure = fastkm.plot.iterations(X, rec.history)
    ax, = figure.axes
    assert "first two principal components of 4 features" in ax.get_title()
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("PC1", "PC2")
    assert rendered(figure)[0] == (600, 500)


def test_draws_on_a_given_axes(seed_fit):
    from matplotlib.figure import Figure

    X, _, history = seed_fit
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert fastkm.plot.iterations(X, history, ax=right, title="mine") is figure
    assert right.get_title() == "mine" and not left.lines


def test_one_panel_is_the_last_iteration(seed_fit):
    X, init, history = seed_fit
    figure = fastkm.plot.iterations(X, history, init=init, panels=True, max_panels=1)
    assert [ax.get_title() for ax in figure.axes if ax.axison] == ["iteration 7"]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_panels"):
            fastkm.plot.iterations(X, history, panels=True, max_panels=bad)


@pytest.mark.parametrize("change, message", [
    (lambda X, h: (X[:, :1], h), "at least 2 features"),
    (lambda X, h: (X, []), "the history is empty"),
    (lambda X, h: (X, None), "the history is empty"),
    (lambda X, h: (np.where(np.arange(len(X))[:, None] == 5, np.nan, X), h), "NaN"),
    (lambda X, h: (np.hstack([X, X[:, :1]]) + np.where(np.arange(len(X))[:, None] == 5,
                                                        np.inf, 0), h), "NaN"),
    (lambda X, h: (X[:10], h), "one entry per row"),
    (lambda X, h: (np.hstack([X, X]), h), "do not match"),
])
def test_bad_input(seed_fit, change, message):
    X, history = change(*seed_fit[::2])
    with pytest.raises(ValueError, match=message):
        fastkm.plot.iterations(X, history)


def test_bad_init_and_ax_with_panels(seed_fit):
    X, init, history = seed_fit
    with pytest.raises(ValueError, match="do not match"):
        fastkm.plot.iterations(X, history, init=init[:2])
    figure = fastkm.plot.iterations(X, history)
    with pytest.raises(ValueError, match="panels=False"):
        fastkm.plot.iterations(X, history, panels=True, ax=figure.axes[0])


def test_labels_colour_the_single_panel(seed_fit):
    # After one iteration the last iteration's assignment differs from the final one.
    X, init, _ = seed_fit
    rec = fastkm.plot.record()
    km = fastkm.KMeans(3, init=init, max_iter=1, callback=rec).fit(X)
    assert (rec.history[-1].labels != km.labels_).any()
    colors = np.asarray(fastkm.plot._cluster_colors(3))

    def drawn(figure):
        return figure.axes[0].collections[0].get_facecolors()[:, :3]

    figure = fastkm.plot.iterations(X, rec.history, init=init, labels=km.labels_)
    np.testing.assert_allclose(drawn(figure), colors[km.labels_])
    figure = fastkm.plot.iterations(X, rec.history, init=init)
    np.testing.assert_allclose(drawn(figure), colors[rec.history[-1].labels])
    for bad, message in ((km.labels_[:5], "one per row"), (km.labels_ + 3, "from 0 to 2"),
                         (km.labels_ * 1.0, "integers")):
        with pytest.raises(ValueError, match=message):
            fastkm.plot.iterations(X, rec.history, labels=bad)
    with pytest.raises(ValueError, match="panels=False"):
        fastkm.plot.iterations(X, rec.history, labels=km.labels_, panels=True)


def test_missing_matplotlib_is_one_clear_error(seed_fit, monkeypatch):
    X, _, history = seed_fit
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"install fastkm\[plot\]"):
        fastkm.plot.iterations(X, history)
