"""``fastkm.MiniBatchKMeans``: Sculley's (2010) mini-batch k-means with scikit-learn's semantics.

Each step assigns one batch of rows with the Lloyd kernel pass (``lloyd_pass`` gives the
batch's per-cluster weighted sums and weights), then moves every centre that received
samples to ``(centre * count + batch sum) / (count + batch weight)``, as scikit-learn's
``_minibatch_update_dense``. Small clusters are re-seeded from random batch rows
(``reassignment_ratio``) and the fit stops early when an exponentially weighted average of
the batch inertia stops improving (``max_no_improvement``), both as scikit-learn does.

Three departures from scikit-learn, each measured on the benchmark workloads and on other
blobs and photos (BENCHMARKS.md section 8):

- ``count`` forgets: before each step every count is multiplied by ``(W_prev / W) ** 6``,
  where ``W`` is the sample weight seen by all steps so far, so a batch's share of a
  centre's count decays as ``(W then / W now) ** 6``. scikit-learn's count (all weight ever
  received) keeps the early batches, assigned when the centre was elsewhere, in the centre
  for ever, and its 1/t learning rate soon stops the centres moving: on photo pixels the
  fit stalled 3-5% above KMeans. The learning rate now decays as about 7/t.
- ``fit`` does not stop for lack of improvement before the smoothed inertia has averaged
  over its own span (``(n + 1) / (2 * batch_size)`` steps, half a pass): started from
  the second batch's inertia alone, it could stop a fit after 12 steps.
- ``fit`` ends with one full assignment pass and moves every centre to the exact weighted
  mean of its samples (one Lloyd step), which removes the noise of the last batches.
  ``partial_fit`` does not (a stream has no full pass).

The result stays approximate: a local optimum of a stochastic process, not the fixed point
of Lloyd's iteration that :class:`fastkm.KMeans` reaches.
"""

import math
import numbers

import numpy as np

from ._init import initial_centers
from ._isa import core
from ._kmeans import _CentersEstimator, _check_init, _feature_names
from ._lloyd import centres_from_sums
from ._validation import (
    as_checked_dtype,
    check_array,
    check_positive_int,
    check_random_state,
    check_sample_weight,
    check_tol,
    check_verbose,
    effective_n_threads,
    warn_caller,
)

# Exponent of the counts' forgetting, (weight seen before / weight seen now) ** _FORGET per
# step. 0 is scikit-learn's cumulative count. Measured (3 seeds, n_init=1, inertia over
# KMeans', with the final exact-means pass): on china.jpg pixels, k=64, 0 / 1 / 3 / 6 / 10
# gave 1.034 / 1.022 / 1.013 / 1.005 / 1.008; on heavily overlapping 100k x 32 blobs,
# k=500, 1.030 (scikit-learn's rule) / 0.984 (3) / 0.979 (6) / 0.974 (10); on kodim12
# pixels, k=256, 1.128 (6) / 1.126 (3) / 1.163 (10). A fixed cap on the counts instead (a
# window of the last 100 points) helped the photos as much but cost 4% on those blobs.
_FORGET = 6


class MiniBatchKMeans(_CentersEstimator):
    """Mini-batch k-means (Sculley 2010): fast, approximate k-means, also on streams.

    A drop-in for :class:`sklearn.cluster.MiniBatchKMeans` on dense data: same parameters
    (plus ``n_threads``, the kernel's OpenMP threads), methods and fitted attributes; each
    batch is assigned by fastkm's Cython kernel. Results are identical for every
    ``n_threads``. As with :class:`fastkm.KMeans`, X with fewer distinct points than
    ``n_clusters`` is a ValueError. Unlike :class:`fastkm.KMeans` the result is
    approximate: a local optimum of a stochastic process, not a fixed point of Lloyd's
    iteration. Its inertia is usually within a few percent of KMeans' (BENCHMARKS.md
    section 8: 0.5% above on 4.4-megapixel photo pixels with k=64; on par, over 30 seeds,
    on 1M x 8 blobs with k=100), but on small data with many clusters (a 0.4-megapixel
    photo with k=128 or 256) it ended 3% to 13% above.

    It departs from scikit-learn's MiniBatchKMeans in three ways, with the same parameters
    (module docstring): each centre's count of received weight forgets old batches
    (the learning rate decays as about 7/t instead of 1/t, so centres keep moving to where
    their samples now are); ``fit`` does not stop for lack of improvement before half a pass
    over the data; and ``fit`` ends with one extra full pass that moves every centre to the
    exact mean of the samples nearest to it (one Lloyd step). ``partial_fit`` makes the
    same steps as ``fit`` but no final pass.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {'k-means++', 'random'}, array of shape (n_clusters, n_features) or callable, \
default='k-means++'
        As :class:`fastkm.KMeans`, run on ``init_size`` rows drawn at random.
    max_iter : int, default=100
        Maximum passes over the data: ``fit`` makes at most
        ``max_iter * n_samples // batch_size`` steps.
    batch_size : int, default=1024
        Rows per step (drawn at random with replacement).
    verbose : int, default=0
        Print progress when positive.
    compute_labels : bool, default=True
        Compute ``labels_`` and ``inertia_`` over all of X (one kernel pass, after ``fit``'s
        exact-means pass) at the end of ``fit`` and ``partial_fit``. When False, ``fit``
        sets no ``labels_`` and sets ``inertia_`` to the exact inertia of the centres just
        before the exact-means pass (an upper bound of the final centres' inertia).
    random_state : None, int or numpy.random.RandomState, default=None
        Seed of the initialization, the batches and the reassignments.
    tol : float, default=0.0
        Stop when the summed squared centre shift of a step is at most ``tol`` times the
        mean variance of the features. 0 disables this criterion.
    max_no_improvement : int or None, default=10
        Stop after this many consecutive steps without improvement of the smoothed batch
        inertia, once the steps have covered half of the samples (the smoothing's span).
        None disables this criterion.
    init_size : int or None, default=None
        Rows drawn at random for the initialization (and for choosing the best of
        ``n_init`` initializations by inertia): ``3 * batch_size`` by default, at least
        ``3 * n_clusters`` in that case, at most ``n_samples``.
    n_init : 'auto' or int, default='auto'
        Initializations tried; the one with the lowest inertia on a random sample of
        ``init_size`` rows is kept (one fit follows). 'auto' is 3 for ``init='random'`` or
        a callable and 1 otherwise (as scikit-learn).
    reassignment_ratio : float, default=0.01
        Centres whose cumulative weight is below this fraction of the largest one are moved
        to random rows of the batch (at most half a batch of them), about once every
        ``10 * n_clusters`` samples, or at the next step if a centre has no weight yet.
    n_threads : int or None, default=None
        OpenMP threads for the kernel. None uses every usable core.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,), int32
        Nearest centre of each sample of the last ``fit`` or ``partial_fit`` call (with
        ``compute_labels``).
    inertia_ : float
        Weighted sum of squared distances of those samples to their nearest centre.
    n_iter_ : int
        Passes over the data started by ``fit`` (``ceil(n_steps_ * batch_size / n)``; the
        final exact-means pass is not counted).
    n_steps_ : int
        Mini-batch steps made (``partial_fit`` counts one per call).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names, when fitted on a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm import MiniBatchKMeans
    >>> X = np.array([[1.0, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> mbk = MiniBatchKMeans(n_clusters=2, batch_size=6, random_state=0).fit(X)
    >>> sorted(mbk.cluster_centers_[:, 0].round().tolist())
    [1.0, 10.0]
    >>> mbk.predict([[0, 0], [12, 3]]).tolist() == [mbk.labels_[0], mbk.labels_[3]]
    True
    >>> stream = MiniBatchKMeans(n_clusters=2, random_state=0)
    >>> for chunk in (X[::2], X[1::2]):
    ...     stream = stream.partial_fit(chunk)
    >>> stream.n_steps_
    2
    """

    def __init__(self, n_clusters=8, *, init="k-means++", max_iter=100, batch_size=1024,
                 verbose=0, compute_labels=True, random_state=None, tol=0.0,
                 max_no_improvement=10, init_size=None, n_init="auto",
                 reassignment_ratio=0.01, n_threads=None):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.n_threads = n_threads

    # -- parameters --------------------------------------------------------------------------

    def _check_scalar_params(self):
        """Check the parameters that need no data (at every fit and partial_fit call, as
        scikit-learn does: set_params may change them between calls); sets _n_threads.
        Returns n_clusters."""
        n_clusters = check_positive_int(self.n_clusters, "n_clusters")
        check_positive_int(self.max_iter, "max_iter")
        check_positive_int(self.batch_size, "batch_size")
        check_tol(self.tol)
        if self.max_no_improvement is not None:
            check_positive_int(self.max_no_improvement, "max_no_improvement", minimum=0)
        if self.init_size is not None:
            check_positive_int(self.init_size, "init_size")
        if not isinstance(self.reassignment_ratio, numbers.Real) or \
                isinstance(self.reassignment_ratio, bool) or not self.reassignment_ratio >= 0:
            raise ValueError(f"reassignment_ratio must be a non-negative number, got "
                             f"{self.reassignment_ratio!r}")
        check_verbose(self.verbose)
        if not isinstance(self.compute_labels, (bool, np.bool_)):
            raise ValueError(f"compute_labels must be a bool, got {self.compute_labels!r}")
        if isinstance(self.n_init, str):
            if self.n_init != "auto":
                raise ValueError(f"n_init must be 'auto' or a positive integer, got "
                                 f"{self.n_init!r}")
        else:
            check_positive_int(self.n_init, "n_init")
        self._n_threads = effective_n_threads(self.n_threads)
        return n_clusters

    def _check_params(self, n_samples, n_features, dtype):
        """Validated parameters for data of this shape; sets the private step state."""
        n_clusters = self._check_scalar_params()
        if n_samples < n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={n_clusters}.")
        init_array = _check_init(self.init, n_clusters, n_features, dtype, n_terms=n_samples)
        if isinstance(self.n_init, str):
            n_init = 3 if callable(self.init) or (isinstance(self.init, str) and
                                                  self.init == "random") else 1
        else:
            n_init = int(self.n_init)
        if init_array is not None:
            if n_init != 1:  # as KMeans (_check_n_init) and scikit-learn
                warn_caller(f"init is an array of centres, so n_init={n_init} is ignored: "
                            f"a single run is made", RuntimeWarning)
            n_init = 1
        self._batch_size = min(self.batch_size, n_samples)
        init_size = self.init_size
        if init_size is None:
            init_size = max(3 * self._batch_size, 3 * n_clusters)
        self._init_size = max(min(init_size, n_samples), n_clusters)
        return n_clusters, init_array, n_init

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, X, y=None, sample_weight=None):
        """Compute the mini-batch k-means clustering of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 stays float32, other real types become float64. A
            C-contiguous float memmap is used in place.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample.

        Returns
        -------
        self
        """
        feature_names = _feature_names(X)
        X = check_array(X)
        n, d = X.shape
        k, init_array, n_init = self._check_params(n, d, X.dtype)
        sample_weight = check_sample_weight(sample_weight, n, X.dtype)
        random_state = check_random_state(self.random_state)
        tol = self.tol * core.mean_variance(X, self._n_threads) if self.tol > 0 else 0.0

        # Initializations are compared on one random sample of the rows.
        valid = random_state.randint(0, n, self._init_size)
        X_valid, w_valid = X[valid], sample_weight[valid]
        best_centers, best_inertia = None, None
        for run in range(n_init):
            centers = self._initial_centers(X, sample_weight, init_array, random_state, k)
            _, inertia = _assign(X_valid, w_valid, centers, self._n_threads)
            if self.verbose:
                print(f"Init {run + 1}/{n_init} with method {self.init!r}: inertia "
                      f"{inertia:.6g} on {self._init_size} rows")
            if best_inertia is None or inertia < best_inertia:
                best_centers, best_inertia = centers, inertia
        centers = np.array(best_centers, dtype=X.dtype, order="C")

        self._counts = np.zeros(k)
        self._seen_weight = 0.0
        self._n_since_last_reassign = 0
        self._ewa_inertia = None
        self._ewa_inertia_min = None
        self._no_improvement = 0
        n_steps = (self.max_iter * n) // self._batch_size
        step = 0
        for step in range(n_steps):
            rows = random_state.randint(0, n, self._batch_size)
            previous = centers.copy() if tol > 0 else None
            batch_inertia = self._step(X[rows], sample_weight[rows], centers, random_state)
            shift = float(((centers.astype(np.float64) - previous) ** 2).sum()) \
                if tol > 0 else 0.0
            if self._converged(step, n_steps, n, shift, tol, batch_inertia):
                break
        # The final exact-means pass: one Lloyd step from the mini-batch centres.
        sums, weight_sums = np.empty((k, d)), np.empty(k)
        last_inertia, _ = core.lloyd_pass(X, sample_weight, centers, np.empty(n, dtype=np.int32),
                                       sums, weight_sums, self._n_threads)
        centers = centres_from_sums(centers, sums, weight_sums, X.dtype)
        self.cluster_centers_ = centers
        self.n_features_in_ = d
        self.n_steps_ = step + 1
        self.n_iter_ = math.ceil((step + 1) * self._batch_size / n)
        self._random_state = random_state
        if self.compute_labels:
            self.labels_, self.inertia_ = _assign(X, sample_weight, centers, self._n_threads)
        else:
            if hasattr(self, "labels_"):
                del self.labels_
            self.inertia_ = float(last_inertia)
        self._set_feature_names(feature_names)
        return self

    def partial_fit(self, X, y=None, sample_weight=None):
        """One mini-batch step on X (all of it, as one batch): for data that comes in chunks.

        The first call initializes the centres from X (one initialization, on up to
        ``init_size`` of its rows); later calls continue the same per-centre counts, so a
        stream of chunks gives the same updates as ``fit`` would make on those batches.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One chunk of training data; float32 stays float32, other real types become
            float64. After the first call: the features seen then, converted to the fitted
            centres' dtype.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample of the chunk. None: every weight is 1.

        Returns
        -------
        self
        """
        feature_names = _feature_names(X)
        has_centers = hasattr(self, "cluster_centers_")
        if has_centers:  # the features' names and count of the first call, as predict
            self._check_scalar_params()  # (the first call checks all in _check_params)
            # Data to fit, not only to compare with centres: too small a magnitude is
            # refused as in the first call.
            X = self._check_test_data(X, to_fit=True)
            if X.dtype != self.cluster_centers_.dtype:
                X = as_checked_dtype(X, self.cluster_centers_.dtype, name="X",
                                     n_terms=X.shape[0], dtype_of="the fitted centres' dtype",
                                     to_fit=True)
        else:
            X = check_array(X)
        n, d = X.shape
        if not has_centers:
            k, init_array, _ = self._check_params(n, d, X.dtype)
            self._random_state = check_random_state(self.random_state)
        sample_weight = check_sample_weight(sample_weight, n, X.dtype)
        if not has_centers:
            self.cluster_centers_ = np.array(
                self._initial_centers(X, sample_weight, init_array, self._random_state, k),
                dtype=X.dtype, order="C")
            self._counts = np.zeros(k)
            self._seen_weight = 0.0
            self._n_since_last_reassign = 0
            self.n_features_in_ = d
            self.n_steps_ = 0
            self._set_feature_names(feature_names)
        self._step(X, sample_weight, self.cluster_centers_, self._random_state)
        if self.compute_labels:
            self.labels_, self.inertia_ = _assign(X, sample_weight, self.cluster_centers_,
                                                  self._n_threads)
        self.n_steps_ += 1
        return self

    def _set_feature_names(self, feature_names):
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def _initial_centers(self, X, sample_weight, init_array, random_state, k):
        if init_array is not None:
            return init_array
        rows = random_state.randint(0, X.shape[0], self._init_size)
        X_init = X[rows]
        if callable(self.init):
            return _check_init(self.init(X_init, k, random_state=random_state), k,
                               X.shape[1], X.dtype, name="the array returned by init",
                               n_terms=X.shape[0])
        w_init = np.ascontiguousarray(sample_weight[rows])
        try:
            return initial_centers(X_init, k, self.init, w_init, random_state,
                                   self._n_threads)
        except ValueError:  # the sample holds fewer distinct points than clusters
            return initial_centers(X, k, self.init, sample_weight, random_state,
                                   self._n_threads)

    def _step(self, X, sample_weight, centers, random_state):
        """One Sculley step on the batch X, updating ``centers`` and ``_counts`` in place.

        Returns the batch inertia (before the update).
        """
        k, d = centers.shape
        counts = self._counts
        seen_before = self._seen_weight
        self._seen_weight += float(sample_weight.sum())
        if seen_before > 0:  # forget: see _FORGET
            counts *= (seen_before / self._seen_weight) ** _FORGET
        labels = np.empty(X.shape[0], dtype=np.int32)
        sums = np.empty((k, d))
        batch_weights = np.empty(k)
        inertia, _ = core.lloyd_pass(X, sample_weight, centers, labels, sums, batch_weights,
                                  self._n_threads)
        hit = batch_weights > 0
        new_counts = counts[hit] + batch_weights[hit]
        centers[hit] = (centers[hit] * counts[hit, None] + sums[hit]) / new_counts[:, None]
        counts[hit] = new_counts
        if self._random_reassign() and self.reassignment_ratio > 0:
            to_reassign = counts < self.reassignment_ratio * counts.max()
            half_batch = int(0.5 * X.shape[0])
            if to_reassign.sum() > 0.5 * X.shape[0]:  # at most half a batch of them
                to_reassign[np.argsort(counts, kind="stable")[half_batch:]] = False
            n_reassigns = int(to_reassign.sum())
            if n_reassigns:
                new_rows = random_state.choice(X.shape[0], replace=False, size=n_reassigns)
                if self.verbose:
                    print(f"[MiniBatchKMeans] Reassigning {n_reassigns} cluster centers.")
                centers[to_reassign] = X[new_rows]
                if (~to_reassign).any():
                    # Not reset to zero, which would reassign them again at once (as
                    # scikit-learn, which notes that this also lowers their learning rate).
                    counts[to_reassign] = counts[~to_reassign].min()
        return inertia

    def _random_reassign(self):
        """Whether this step may reassign: every 10 * k samples, or while a count is 0."""
        self._n_since_last_reassign += self._batch_size
        if (self._counts == 0).any() or self._n_since_last_reassign >= 10 * self.n_clusters:
            self._n_since_last_reassign = 0
            return True
        return False

    def _converged(self, step, n_steps, n_samples, centers_squared_diff, tol, batch_inertia):
        """scikit-learn's early stopping: centre shift within tol, or no improvement of the
        exponentially weighted average of the batch inertia for max_no_improvement steps,
        counted once the average has seen ``1 / alpha`` batches (half the samples)."""
        batch_inertia /= self._batch_size
        step += 1
        if step == 1:  # its inertia is that of the initialization
            if self.verbose:
                print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}")
            return False
        alpha = min(self._batch_size * 2.0 / (n_samples + 1), 1.0)
        if self._ewa_inertia is None:
            self._ewa_inertia = batch_inertia
        else:
            self._ewa_inertia = self._ewa_inertia * (1 - alpha) + batch_inertia * alpha
        if self.verbose:
            print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}, "
                  f"ewa inertia: {self._ewa_inertia}")
        if tol > 0.0 and centers_squared_diff <= tol:
            if self.verbose:
                print(f"Converged (small centers change) at step {step}/{n_steps}")
            return True
        if self._ewa_inertia_min is None or self._ewa_inertia < self._ewa_inertia_min:
            self._no_improvement = 0
            self._ewa_inertia_min = self._ewa_inertia
        else:
            self._no_improvement += 1
        # Before its span the average is mostly the second batch's inertia: a low draw there
        # would stop the fit while the centres still improve.
        if self.max_no_improvement is not None and step * alpha >= 1 and \
                self._no_improvement >= self.max_no_improvement:
            if self.verbose:
                print(f"Converged (lack of improvement in inertia) at step {step}/{n_steps}")
            return True
        return False


def _assign(X, sample_weight, centers, n_threads):
    """Labels and inertia of X under ``centers`` (one kernel pass)."""
    k, d = centers.shape
    labels = np.empty(X.shape[0], dtype=np.int32)
    inertia, _ = core.lloyd_pass(X, sample_weight, np.ascontiguousarray(centers, dtype=X.dtype),
                              labels, np.empty((k, d)), np.empty(k), n_threads)
    return labels, float(inertia)
