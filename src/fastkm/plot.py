"""The iteration picture: how k-means moved its centres, in the style of the classic exercise.

Points are coloured by cluster; each centre is drawn as a black cross at every iteration,
joined into the path it followed. Data with more than two columns are shown on their first
two principal components (the title says so).

The history is what the ``callback`` of :class:`fastkm.KMeans` receives: one
:class:`fastkm.IterationInfo` per iteration, which :func:`record` collects::

    rec = fastkm.plot.record()
    fastkm.KMeans(3, init=start, callback=rec).fit(X)
    fastkm.plot.iterations(X, rec.history, init=start).savefig("iterations.png")

matplotlib is an optional dependency (``pip install 'fastkm[plot]'``): it is imported only
when a picture is drawn, and never through pyplot, so no window opens and no global figure
state is kept; figures render with the Agg backend.
"""

import math
import numbers

import numpy as np

#: Size of one panel, in inches (at ``dpi=100``: 600 x 500 pixels for a single panel).
PANEL_SIZE = (6.0, 5.0)
SMALL_PANEL_SIZE = (3.2, 3.0)

#: Points drawn at most per panel: a random subset beyond this (the centres and their paths
#: are always exact), as a scatter of millions of points is slow and unreadable.
MAX_POINTS = 20_000


class Recorder:
    """A ``callback`` for :class:`fastkm.KMeans` that keeps every :class:`IterationInfo`.

    Made by :func:`record`. It never stops a fit (it returns False).

    Attributes
    ----------
    runs : list of list of IterationInfo
        One list per run of the fit (``n_init`` runs; a run starts at iteration 1).
    history : list of IterationInfo
        The last run's iterations (the only run when ``n_init=1``); empty before any fit.
        With several runs, the fitted model is the one in ``runs`` whose last centres equal
        ``cluster_centers_``.
    """

    def __init__(self):
        self.runs = []

    def __call__(self, info):
        if info.iteration == 1 or not self.runs:
            self.runs.append([])
        self.runs[-1].append(info)
        return False

    @property
    def history(self):
        return self.runs[-1] if self.runs else []

    def __repr__(self):
        return f"Recorder({len(self.runs)} run(s), {len(self.history)} iteration(s) last)"


def record():
    """A callback object that records a fit's iterations for :func:`iterations`.

    Returns
    -------
    Recorder
        Pass it as ``callback``; after the fit, ``.history`` holds the iterations.

    Examples
    --------
    >>> import numpy as np
    >>> import fastkm.plot
    >>> X = np.array([[0.0, 0], [0, 1], [5, 5], [5, 6]])
    >>> rec = fastkm.plot.record()
    >>> km = fastkm.KMeans(2, init=X[[0, 1]], callback=rec).fit(X)
    >>> [info.iteration for info in rec.history]
    [1, 2, 3]
    >>> rec.history[-1].centers.tolist()
    [[0.0, 0.5], [5.0, 5.5]]
    """
    return Recorder()


def iterations(X, history, *, init=None, labels=None, panels=False, max_panels=12,
               feature_names=None, title=None, ax=None, dpi=100):
    """Draw the iteration picture of a k-means fit.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The data that was clustered; at least 2 features.
    history : sequence of IterationInfo
        One entry per iteration, in order, as :func:`record` keeps them.
    init : array-like of shape (n_clusters, n_features), optional
        The initial centres: when given, each centre's path starts there (the callback only
        sees the centres after each update).
    labels : array-like of shape (n_samples,), optional
        The clusters that colour the points of the single panel (``panels=False`` only):
        pass the fitted model's ``labels_``, those of its final centres. By default the
        last iteration's, ``history[-1].labels``: the assignment to the centres before
        that iteration's update, which differs for the points the update moved to another
        centre (many after a stop at ``max_iter``, a few after a stop within ``tol``).
    panels : bool, default False
        False: one panel, points coloured by ``labels``, every centre's whole path. True:
        small multiples, one panel per iteration (at most ``max_panels``, evenly spaced,
        the first and last always included), each with that iteration's assignment and the
        paths so far.
    max_panels : int, default 12
        At least 1 (then the last iteration alone) and at most ``len(history)`` are drawn.
    feature_names : sequence of 2 str, optional
        Axis labels for 2-D data (principal components are labelled PC1 and PC2).
    title : str, optional
        The figure's title; by default the number of clusters and iterations, and the
        projection when there is one.
    ax : matplotlib Axes, optional
        Draw the single panel there (``panels=False`` only) instead of on a new figure.
    dpi : int, default 100
        Resolution of a new figure: a single panel is 6 x 5 inches, so 600 x 500 pixels at
        100 dpi.

    Returns
    -------
    matplotlib.figure.Figure
        The new figure (or ``ax``'s), ready for ``savefig``.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If X has fewer than 2 features, the history is empty, the shapes of X, the
        history's centres and labels, ``init`` and ``labels`` disagree, or ``labels`` or
        ``ax`` is given with ``panels=True``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastkm.plot
    >>> X = np.array([[0.0, 0], [0, 1], [5, 5], [5, 6]])
    >>> rec = fastkm.plot.record()
    >>> km = fastkm.KMeans(2, init=X[[0, 1]], callback=rec).fit(X)
    >>> fig = fastkm.plot.iterations(X, rec.history, init=X[[0, 1]], labels=km.labels_)
    >>> fig.canvas.get_width_height()  # pixels, as fig.savefig("picture.png") writes it
    (600, 500)
    """
    _require_matplotlib()
    X, paths, assignments = _check(X, history, init)
    final = (assignments[-1] if labels is None
             else _check_labels(labels, len(X), paths.shape[1]))
    if X.shape[1] > 2:
        X, paths, note = _principal_components(X, paths)
        feature_names = ("PC1", "PC2")
    else:
        note = ""
    n_clusters = paths.shape[1]
    if title is None:
        title = (f"k-means, {n_clusters} clusters, {len(history)} iteration"
                 f"{'s' if len(history) != 1 else ''}{note}")
    colors = _cluster_colors(n_clusters)
    shown = _subset(len(X))
    # With an init, paths[0] is the start and iteration i ends at paths[i]; without one,
    # iteration i ends at paths[i - 1].
    offset = 0 if init is None else 1
    if not panels:
        figure, ax = _figure_and_axes(ax, dpi)
        _draw_panel(ax, X[shown], final[shown], paths, colors, feature_names)
        ax.set_title(title)
        return figure
    if ax is not None:
        raise ValueError("ax draws a single panel: pass panels=False with it")
    if labels is not None:
        raise ValueError("labels colour the single panel; with panels=True each panel "
                         "shows its iteration's own: pass panels=False with it")
    if not isinstance(max_panels, numbers.Integral) or isinstance(max_panels, bool) \
            or max_panels < 1:
        raise ValueError(f"max_panels must be an integer >= 1, got {max_panels!r}")
    chosen = _spread(len(history), max_panels)
    columns = min(4, len(chosen))
    rows = math.ceil(len(chosen) / columns)
    figure = _new_figure((SMALL_PANEL_SIZE[0] * columns, SMALL_PANEL_SIZE[1] * rows + 0.4),
                         dpi)
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, i in zip(axes, chosen):
        _draw_panel(ax, X[shown], assignments[i][shown], paths[:i + offset + 1], colors,
                    feature_names, small=True)
        ax.set_title(f"iteration {history[i].iteration}", fontsize="medium")
    for ax in axes[len(chosen):]:
        ax.set_axis_off()
    figure.suptitle(title)
    return figure


def _check(X, history, init):
    """X as float64, the centre paths (n_steps, k, d) and the labels of each iteration."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] < 2:
        raise ValueError(f"the iteration picture needs 2-D data with at least 2 features, "
                         f"got shape {X.shape}")
    if not np.isfinite(X).all():  # (the projection's SVD would fail on them)
        raise ValueError("X contains NaN or infinity")
    if history is None or len(history) == 0:
        raise ValueError("the history is empty: pass the callback's IterationInfo list "
                         "(fastkm.plot.record().history after a fit)")
    steps = [np.asarray(info.centers, dtype=np.float64) for info in history]
    if init is not None:
        steps.insert(0, np.asarray(init, dtype=np.float64))
    shape = steps[-1].shape
    if shape[1:] != (X.shape[1],) or any(step.shape != shape for step in steps):
        raise ValueError(f"the centres' shapes {sorted({s.shape for s in steps})} do not "
                         f"match (n_clusters, {X.shape[1]}) for X of shape {X.shape}")
    labels = [np.asarray(info.labels) for info in history]
    if any(label.shape != (len(X),) for label in labels):
        raise ValueError(f"the history's labels do not have one entry per row of X "
                         f"({len(X)} rows)")
    return X, np.stack(steps), labels


def _check_labels(labels, n_samples, n_clusters):
    """``labels`` as an integer array of one cluster (0 to n_clusters - 1) per row of X."""
    labels = np.asarray(labels)
    if labels.shape != (n_samples,) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, one per row of X ({n_samples} rows), "
                         f"got shape {labels.shape}, dtype {labels.dtype}")
    if labels.size and not 0 <= labels.min() <= labels.max() < n_clusters:
        raise ValueError(f"labels must be from 0 to {n_clusters - 1} (the centres' clusters)")
    return labels


def _principal_components(X, paths):
    """X and the paths on X's first two principal components, and the title's note."""
    mean = X.mean(axis=0)
    # The right singular vectors of the centred data are the principal axes.
    _, _, axes = np.linalg.svd(X - mean, full_matrices=False)
    components = axes[:2].T
    return (X - mean) @ components, (paths - mean) @ components, \
        f"\n(first two principal components of {X.shape[1]} features)"


def _cluster_colors(n_clusters):
    """Distinct colours: tab10 up to 10 clusters, tab20 up to 20, then a smooth colormap."""
    from matplotlib import colormaps

    if n_clusters <= 10:
        return colormaps["tab10"].colors[:n_clusters]
    if n_clusters <= 20:
        return colormaps["tab20"].colors[:n_clusters]
    return colormaps["turbo"](np.linspace(0.05, 0.95, n_clusters))


def _subset(n_rows):
    """The rows to draw: all of them, or MAX_POINTS drawn without replacement (fixed seed,
    so that the picture repeats)."""
    if n_rows <= MAX_POINTS:
        return slice(None)
    return np.sort(np.random.default_rng(0).choice(n_rows, MAX_POINTS, replace=False))


def _spread(n, count):
    """Up to ``count`` indices spread evenly over range(n), the first and last included."""
    if n <= count:
        return list(range(n))
    if count == 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("fastkm.plot needs matplotlib: install fastkm[plot] "
                          "(pip install 'fastkm[plot]')") from None


def _new_figure(size, dpi):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _figure_and_axes(ax, dpi):
    if ax is not None:
        return ax.figure, ax
    figure = _new_figure(PANEL_SIZE, dpi)
    return figure, figure.add_subplot()


def _draw_panel(ax, X, labels, paths, colors, feature_names, small=False):
    """Points coloured by label; each centre's path as black crosses joined by lines."""
    point_colors = np.asarray(colors)[labels]
    ax.scatter(X[:, 0], X[:, 1], c=point_colors, s=8 if small else 14, alpha=0.6,
               linewidths=0)
    for j in range(paths.shape[1]):
        ax.plot(paths[:, j, 0], paths[:, j, 1], color="black", linewidth=1.2,
                marker="x", markersize=5 if small else 7, markeredgewidth=1.5)
        # The final position stands out: a larger cross with a white halo.
        ax.plot(paths[-1, j, 0], paths[-1, j, 1], linestyle="none", marker="x",
                markersize=9 if small else 13, markeredgewidth=4, color="white")
        ax.plot(paths[-1, j, 0], paths[-1, j, 1], linestyle="none", marker="x",
                markersize=9 if small else 13, markeredgewidth=2.2, color="black")
    if feature_names is not None and not small:
        ax.set_xlabel(feature_names[0])
        ax.set_ylabel(feature_names[1])
    if small:
        ax.tick_params(labelsize="small")
