"""``fastkm.kmeans`` and ``fastkm.KMeans``: validation, initialization and restarts.

The estimator follows scikit-learn's contract (parameters in ``__init__``, fitted attributes
ending in ``_``, ``get_params``/``set_params``) without importing scikit-learn.
"""

import functools
import inspect
import sys
from typing import NamedTuple

import numpy as np

from . import _chunked, _scratch
from ._duplicates import distinct_rows
from ._init import initial_centers
from ._isa import core
from ._lloyd import lloyd
from ._swap import swap_refine
from ._validation import (
    as_checked_dtype,
    check_array,
    check_finite_values,
    check_positive_int,
    check_random_state,
    check_sample_weight,
    check_tol,
    check_verbose,
    effective_n_threads,
    warn_caller,
)

ALGORITHMS = ("auto", "lloyd", "hamerly", "exponion", "yinyang", "filter")


class NotFittedError(ValueError, AttributeError):
    """Raised when an estimator is used before ``fit`` (as scikit-learn's NotFittedError)."""


def _not_fitted_error_type():
    """NotFittedError, also a scikit-learn NotFittedError when scikit-learn is loaded.

    Code that already imported scikit-learn (a Pipeline, its estimator checks) catches its
    own exception type; importing scikit-learn here just for that would make it a
    dependency. Looked up at every call, as scikit-learn may be imported after a first error.
    """
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return NotFittedError
    return _with_sklearn_base(sklearn_exceptions.NotFittedError)


@functools.lru_cache(maxsize=None)
def _with_sklearn_base(sklearn_not_fitted_error):
    """One NotFittedError subclass that is also scikit-learn's, made once."""
    return type("NotFittedError", (NotFittedError, sklearn_not_fitted_error),
                {"__module__": __name__})


class KMeansResult(NamedTuple):
    """What :func:`fastkm.kmeans` returns.

    Attributes
    ----------
    centers : ndarray of shape (n_clusters, n_features)
    labels : ndarray of shape (n_samples,), int32
    inertia : float
        Weighted sum of squared distances of the samples to their nearest centre.
    n_iter : int
        Lloyd iterations of the best run (with ``swap_trials``, its own and those of the
        Lloyd runs behind the swaps it kept).
    """

    centers: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int


def kmeans(X, n_clusters=8, *, sample_weight=None, init="k-means++", n_init="auto",
           max_iter=300, tol=1e-4, random_state=None, algorithm="auto", n_threads=None,
           verbose=0, callback=None, swap_trials=0, init_size=None):
    """Exact k-means clustering of the rows of X.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data to cluster, as for :meth:`KMeans.fit`: float32 stays float32, other real types
        become float64; a large file-backed ``numpy.memmap`` is fitted out of core (with
        ``swap_trials=0``).
    n_clusters : int, default=8
        Number of clusters.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weight of each sample; a weight of 2 counts as the sample twice.
        None: every weight is 1.
    init, n_init, max_iter, tol, random_state, algorithm, n_threads, init_size
        As in :class:`KMeans`.
    verbose, callback, swap_trials
        As in :class:`KMeans` (a ``callback`` or ``verbose`` makes 'hamerly', 'exponion'
        and 'yinyang' run as 'lloyd', with the same result).

    Returns
    -------
    KMeansResult
        ``(centers, labels, inertia, n_iter)`` of the run with the lowest inertia.

    Examples
    --------
    >>> import numpy as np
    >>> import fastkm
    >>> X = np.array([[1.0, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> result = fastkm.kmeans(X, 2, init=X[[0, 3]])
    >>> result.centers
    array([[ 1.,  2.],
           [10.,  2.]])
    >>> result.labels
    array([0, 0, 0, 1, 1, 1], dtype=int32)
    >>> result.inertia
    16.0
    """
    n_threads = effective_n_threads(n_threads)
    reader = None
    if _chunked.is_out_of_core(X) and swap_trials == 0:  # see fastkm._chunked
        reader = _chunked.RowReader(X)
        n_samples, n_features = reader.shape
        dtype = reader.dtype
        if n_samples < 1 or n_features < 1:
            X = check_array(X)  # raises the in-memory path's error
    else:
        # The values' finiteness is checked below, with the search for repeated rows.
        X = check_array(X, n_threads=n_threads, check_finite=False)
        n_samples, n_features = X.shape
        dtype = X.dtype
    n_clusters = check_positive_int(n_clusters, "n_clusters")
    max_iter = check_positive_int(max_iter, "max_iter")
    check_tol(tol)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    check_verbose(verbose)
    swap_trials = check_positive_int(swap_trials, "swap_trials", minimum=0)
    if init_size is not None:
        init_size = check_positive_int(init_size, "init_size", minimum=n_clusters)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {callback!r}")
    if n_samples < n_clusters:
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={n_clusters}.")
    if sample_weight is not None:  # (None: unit weights, made below where needed)
        sample_weight = check_sample_weight(sample_weight, n_samples, dtype)
    init_array = _check_init(init, n_clusters, n_features, dtype, n_terms=n_samples)
    n_init = _check_n_init(n_init, init)
    random_state = check_random_state(random_state)
    if reader is not None:
        tol = _chunked.scan(reader, tol)

    # Repeated rows (pixels, say) are fitted once each, weighted by their count.
    distinct, fit_X, fit_weight = None, X, sample_weight
    if reader is None:
        distinct, fit_X, fit_weight = _fit_rows(X, sample_weight, n_threads, n_clusters,
                                                n_init * max_iter)
        # The grid search takes finite values only: where it found the rows, X's own
        # check, a read of all of X (1.7 ms on the GUIDE's photo), is not needed.
        if distinct is None or not distinct.zordered:
            check_finite_values(X, n_threads=n_threads)
        else:  # (the magnitudes, from X's values, all among those of its distinct rows)
            check_finite_values(distinct.rows, n_terms=n_samples)
        if distinct is None:
            sample_weight = fit_weight
        elif sample_weight is None and init_size is not None:
            sample_weight = check_sample_weight(None, n_samples, dtype)
    if reader is None and tol > 0:  # (X's variance: with unit weights, the distinct rows'
        counted = distinct is not None and sample_weight is None  # weighted by their counts)
        tol = tol * core.mean_variance(fit_X if counted else X, n_threads,
                                       fit_weight if counted else None)
    elif reader is None:
        tol = 0.0
    if distinct is not None and callback is not None:
        callback = _with_all_labels(callback, distinct.inverse, n_threads)
    stopped = []  # a run the callback stopped is not refined by swaps
    if callback is not None and swap_trials:
        callback = _noting_stops(callback, stopped)

    best = None
    for run in range(n_init):
        if init_array is not None:
            centers = init_array
        elif callable(init):
            centers = _check_init(init(X, n_clusters, random_state=random_state), n_clusters,
                                  n_features, dtype, name="the array returned by init",
                                  n_terms=n_samples)
        elif reader is not None:
            centers = _chunked.sample_initial_centers(reader, n_clusters, init, sample_weight,
                                                      random_state, n_threads,
                                                      init_size=init_size)
        elif init_size is not None:  # a sample of the rows, not of the distinct rows
            centers = initial_centers(X, n_clusters, init, sample_weight, random_state,
                                      n_threads, init_size=init_size)
        else:
            centers = initial_centers(fit_X, n_clusters, init, fit_weight, random_state,
                                      n_threads)
        if verbose:
            print(f"Initialization complete (run {run + 1} of {n_init})")
        if reader is not None:
            result = KMeansResult(*_chunked.chunked_lloyd(
                reader, sample_weight, centers, max_iter=max_iter, tol=tol,
                n_threads=n_threads, callback=callback, verbose=verbose))
        else:
            result = KMeansResult(*lloyd(fit_X, fit_weight, centers, max_iter=max_iter,
                                         tol=tol, n_threads=n_threads, callback=callback,
                                         verbose=verbose, algorithm=algorithm,
                                         zordered=distinct is not None and distinct.zordered))
        if swap_trials and not stopped:
            refined = KMeansResult(*swap_refine(
                fit_X, fit_weight, result.centers, max_trials=swap_trials, tol=tol,
                max_iter=max_iter, random_state=random_state, n_threads=n_threads))
            result = refined._replace(n_iter=result.n_iter + refined.n_iter)
        stopped.clear()
        if best is None or result.inertia < best.inertia:
            best = result
    if distinct is not None:  # (in inverse's memory: no longer needed)
        best = best._replace(labels=_all_labels(best.labels, distinct.inverse, n_threads,
                                                out=distinct.inverse))
    return best._replace(labels=_scratch.owned(best.labels))


def _fit_rows(X, sample_weight, n_threads, n_clusters, max_passes):
    """The rows an in-memory fit of X works on, which a string init draws from.

    Repeated rows (pixels, say) are fitted once each, weighted by their count, where
    :func:`distinct_rows` finds that this pays off. ``fastkm cluster --plot`` calls this
    too, so that the starting centres it records are the ones ``init="k-means++"`` or
    ``"random"`` gives.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
    sample_weight : ndarray of shape (n_samples,), X's dtype, or None (every weight 1)
    n_threads : int
    n_clusters, max_passes : int
        The fit's clusters and its most Lloyd passes (``n_init * max_iter``).

    Returns
    -------
    distinct : DistinctRows or None
        :func:`distinct_rows`'s answer.
    rows : ndarray of shape (n_rows, n_features)
        ``distinct.rows``, or X when ``distinct`` is None.
    weights : ndarray of shape (n_rows,)
        The rows' weights: ``distinct.weights``, or else ``sample_weight`` (ones for None).
    """
    distinct = distinct_rows(X, sample_weight, n_threads, n_clusters, max_passes)
    if distinct is not None:
        return distinct, distinct.rows, distinct.weights
    if sample_weight is None:
        sample_weight = check_sample_weight(None, len(X), X.dtype)
    return None, X, sample_weight


def _all_labels(labels, inverse, n_threads, out=None):
    """The labels of all rows, from those of the distinct rows (``out`` may be
    ``inverse``)."""
    out = np.empty(len(inverse), dtype=np.int32) if out is None else out
    core.take_labels(labels, inverse, out, n_threads)
    return out


def _noting_stops(callback, stopped):
    """``callback``, appending True to the list ``stopped`` when it asks to stop."""
    def noting_stops(info):
        stop = callback(info)
        if stop:
            stopped.append(True)
        return stop
    return noting_stops


def _with_all_labels(callback, inverse, n_threads):
    """``callback`` seeing the labels of all rows, from those of the distinct rows."""
    def with_all_labels(info):
        if info.labels is not None:
            info = info._replace(labels=_all_labels(info.labels, inverse, n_threads))
        return callback(info)
    return with_all_labels


def _check_init(init, n_clusters, n_features, dtype, name="init", n_terms=None):
    """The init array as a C-contiguous array of X's dtype, or None for a string/callable.

    ``n_terms``: X's rows, whose distances to these centres are summed (check_magnitude).
    """
    if name == "init":
        if isinstance(init, str) and init in ("k-means++", "random") or callable(init):
            return None
        if isinstance(init, str) or np.ndim(init) == 0:  # (None, a number: no array)
            raise ValueError(f"init must be 'k-means++', 'random', an array or a callable, "
                             f"got {init!r}")
    centers = check_array(init, name=name, check_finite=False)
    if centers.shape != (n_clusters, n_features):
        raise ValueError(f"{name} has shape {centers.shape}; expected (n_clusters, "
                         f"n_features) = ({n_clusters}, {n_features})")
    return as_checked_dtype(centers, dtype, name=name,
                            n_terms=n_clusters if n_terms is None else n_terms)


def _check_n_init(n_init, init):
    if isinstance(n_init, str):
        if n_init != "auto":
            raise ValueError(f"n_init must be 'auto' or a positive integer, got {n_init!r}")
        return 10 if callable(init) or (isinstance(init, str) and init == "random") else 1
    n_init = check_positive_int(n_init, "n_init")
    if n_init != 1 and not isinstance(init, str) and not callable(init):
        warn_caller(f"init is an array of centres, so n_init={n_init} is ignored: a single "
                    f"run is made", RuntimeWarning)
        return 1
    return n_init


class _CentersEstimator:
    """What :class:`KMeans` and :class:`fastkm.MiniBatchKMeans` share: scikit-learn's
    parameter protocol and the methods that use fitted ``cluster_centers_``.

    A subclass defines ``__init__`` (its parameters, one attribute each, as scikit-learn
    requires), ``fit`` and a ``n_threads`` parameter.
    """

    # -- scikit-learn's parameter protocol ----------------------------------------------------

    @classmethod
    def _get_param_names(cls):
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind != p.VAR_KEYWORD]

    def get_params(self, deep=True):
        """Parameters of this estimator, as a dict (``deep`` is accepted for compatibility)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set parameters by name; returns the estimator."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {self}. "
                                 f"Valid parameters are: {sorted(valid)!r}.")
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {p.name: p.default
                    for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{name}={value!r}" for name, value in self.get_params().items()
                   if not (isinstance(value, type(defaults[name])) and
                           _same_value(value, defaults[name]))]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so importing it here adds no dependency.
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(estimator_type="clusterer", target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
                    input_tags=InputTags(allow_nan=False, sparse=False))

    # -- using the fitted centres ----------------------------------------------------------

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``labels_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, as for ``fit``.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample, as for ``fit``.

        Returns
        -------
        labels : ndarray of shape (n_samples,), int32
            Index of the nearest centre of each training sample (for
            :class:`fastkm.MiniBatchKMeans`, only with ``compute_labels=True``).
        """
        return self.fit(X, sample_weight=sample_weight).labels_

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit, then return the distances of X to the centres.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, as for ``fit``.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample, as for ``fit``.

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
            ``transform(X)`` with the fitted centres: Euclidean distances, in X's floating
            dtype.
        """
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def predict(self, X):
        """Index of the nearest centre of each sample of X (ties: the lowest index).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with the features seen in ``fit``. A large file-backed ``numpy.memmap`` is
            read chunk by chunk, as ``fit`` reads it.

        Returns
        -------
        labels : ndarray of shape (n_samples,), int32
        """
        if _chunked.is_out_of_core(X):
            self._check_fitted()
            return _chunked.assign(X, None, self.cluster_centers_,
                                   effective_n_threads(self.n_threads))[0]
        X = self._check_test_data(X)
        labels, _ = self._assign(X, np.ones(X.shape[0], dtype=X.dtype))
        return labels

    def transform(self, X):
        """Euclidean distance of each sample of X to each centre.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with the features seen in ``fit``.

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
            In X's floating dtype: float32 for float32 X, else float64.
        """
        X = self._check_test_data(X)
        centers = self._centers_for(X)
        distances = np.empty((X.shape[0], centers.shape[0]), dtype=X.dtype)
        core.sq_distances(X, centers, distances, effective_n_threads(self.n_threads))
        return np.sqrt(distances, out=distances)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the inertia of X under the fitted centres (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with the features seen in ``fit``. A large file-backed ``numpy.memmap`` is
            read chunk by chunk, as ``fit`` reads it.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample. None: every weight is 1.

        Returns
        -------
        float
            Minus the inertia: minus the weighted sum of squared distances of the samples
            of X to their nearest centre.
        """
        if _chunked.is_out_of_core(X):
            self._check_fitted()
            if sample_weight is not None:
                sample_weight = check_sample_weight(sample_weight, X.shape[0],
                                                    _chunked.RowReader(X).dtype)
            return -_chunked.assign(X, sample_weight, self.cluster_centers_,
                                    effective_n_threads(self.n_threads))[1]
        X = self._check_test_data(X)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        _, inertia = self._assign(X, sample_weight)
        return -inertia

    def get_feature_names_out(self, input_features=None):
        """Names of the ``transform`` outputs: ``kmeans0``, ``kmeans1``, ..."""
        self._check_fitted()
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.cluster_centers_.shape[0])],
                          dtype=object)

    def _assign(self, X, sample_weight):
        centers = self._centers_for(X)
        k, d = centers.shape
        labels = np.empty(X.shape[0], dtype=np.int32)
        inertia, _ = core.lloyd_pass(X, sample_weight, centers, labels, np.empty((k, d)),
                                  np.empty(k), effective_n_threads(self.n_threads))
        return labels, inertia

    def _check_fitted(self):
        if not hasattr(self, "cluster_centers_"):
            raise _not_fitted_error_type()(f"This {type(self).__name__} instance is not "
                                           f"fitted yet; call 'fit' first")

    def _check_feature_names(self, X):
        """X's column names (a DataFrame's) against those seen in fit, as scikit-learn
        checks them: different names are an error, names on one side only a warning."""
        names = _feature_names(X)
        fitted_names = getattr(self, "feature_names_in_", None)
        if fitted_names is not None and names is not None and \
                not np.array_equal(names, fitted_names):
            raise ValueError("The feature names of X differ from those seen in fit")
        if fitted_names is not None and names is None and hasattr(X, "shape"):
            warn_caller(f"X does not have valid feature names, but {type(self).__name__} "
                        f"was fitted with feature names", UserWarning)
        if fitted_names is None and names is not None:
            warn_caller(f"X has feature names, but {type(self).__name__} was fitted "
                        f"without feature names", UserWarning)

    def _check_test_data(self, X, to_fit=False):
        """X checked as data to compare with the fitted centres, or with ``to_fit`` (later
        ``partial_fit`` chunks) as data to fit: values too small are then refused too."""
        self._check_fitted()
        self._check_feature_names(X)
        X = check_array(X, n_threads=effective_n_threads(self.n_threads), to_fit=to_fit)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input")
        return X

    def _centers_for(self, X):
        """The fitted centres in X's dtype (float64 centres may overflow float32 X's)."""
        return as_checked_dtype(self.cluster_centers_, X.dtype, name="cluster_centers_",
                                n_terms=X.shape[0])


class KMeans(_CentersEstimator):
    """Exact k-means clustering (Lloyd's algorithm) with parallel Cython kernels.

    Used as :class:`sklearn.cluster.KMeans` on dense data: the same fitting, prediction
    and transform methods and fitted attributes, and scikit-learn's parameters but two:
    ``copy_x`` is not accepted (a TypeError), and ``algorithm`` takes fastkm's exact
    algorithms, without 'elkan' (its distance-bound counterparts here are 'hamerly',
    'exponion' and 'yinyang'). Added: ``n_threads``, ``callback``, ``swap_trials`` and
    ``init_size``. scikit-learn's ``set_output`` and metadata-routing methods
    (``set_fit_request`` and the like) are absent. X with fewer distinct points (of
    positive weight) than ``n_clusters`` is a ValueError, where scikit-learn warns and
    returns duplicate centres. Results are bit-identical for every ``n_threads``.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {'k-means++', 'random'}, array of shape (n_clusters, n_features) or callable, \
default='k-means++'
        'k-means++': greedy k-means++ (``2 + ln(n_clusters)`` candidates per centre,
        weighted by ``sample_weight``). 'random': distinct rows drawn in proportion to their
        weight. An array: the initial centres. A callable: called as
        ``init(X, n_clusters, random_state=random_state)`` and must return such an array.
    n_init : 'auto' or int, default='auto'
        Runs from different initializations; the one with the lowest inertia is kept.
        'auto' is 10 for ``init='random'`` or a callable and 1 otherwise (as scikit-learn).
    max_iter : int, default=300
        Maximum number of Lloyd iterations per run.
    tol : float, default=1e-4
        Convergence tolerance on the summed squared centre shift, relative to the mean
        variance of the features (as scikit-learn). A run also stops when no label changes.
    random_state : None, int or numpy.random.RandomState, default=None
        Seed of the initialization. Pass an int for reproducible results.
    algorithm : {'auto', 'lloyd', 'filter', 'hamerly', 'exponion', 'yinyang'}, default='auto'
        The exact algorithm to run; all give 'lloyd''s labels and iterations (a sample
        within rounding of two centres may rarely go to the other one), and its centres up
        to the rounding of their sums (the bounded algorithms without sample weights update
        the sums by the samples that move).
        'auto' runs, below 5 features, 'filter' from 100k samples, 16 clusters and 256
        samples per cluster in fits that can pay for its set-up (``max_iter * (64 + n_clusters *
        n_features) >= 4000``; with ``tol > 0``, only after Lloyd iterations that cost
        about as much, so that short fits never sort; on the distinct colours of pixels,
        which come sorted, at any k in fits of 5 iterations or more); from 5 features,
        'yinyang' from 96 features and 48 clusters on (from 8 in fits allowed 20
        iterations or more), else 'exponion' from 96 clusters (192 below 12 features) and
        100 samples per cluster, and 'hamerly' from 12 clusters and 1000 samples per
        cluster; each while its per-sample state fits in 1 GiB or X's size; else
        'lloyd': the crossovers measured in BENCHMARKS.md. With a ``callback`` or
        ``verbose``, 'hamerly', 'exponion' and 'yinyang' (chosen or picked by 'auto') run
        as 'lloyd', since their passes do not compute the inertia that those report.
        'filter' (the filtering algorithm of Pelleg & Moore 1999 and Kanungo et al. 2002;
        at most 4 features, as colours have: with more it runs as 'lloyd') sorts the
        samples once along a Z-order curve and compares each block of 32 with only the
        centres that Kanungo et al.'s test leaves for the boxes holding it; a box left with
        one centre is assigned whole. Its labels are those of 'lloyd', ties included; its
        sums are added in another order, so the centres agree to rounding. It keeps a
        sorted copy of X and the weights and an 8-byte index per sample (none of it for
        the distinct rows of data on a grid: see Notes).
        'hamerly' (Hamerly 2010) keeps two distance bounds per sample (two values of X's
        dtype) and skips the samples they prove cannot change cluster (from 5 features on,
        it searches the others with the kernel of 'lloyd'): faster once few samples move.
        With sample weights (other than all 1) its sums are those of 'lloyd' bit for bit;
        without, once fewer than an eighth of the samples change cluster in a pass, the
        next updates the clusters' sums by the samples that move rather than summing them
        all afresh (cheaper: only those are read; each thread keeps a copy of its chunk's
        labels, 4 bytes a row), so the centres agree with 'lloyd''s to rounding. 'exponion'
        and 'yinyang' do the same.
        'exponion' (Newling & Fleuret 2016) keeps three bounds and the second-nearest
        centre per sample (three values of X's dtype and an int32, plus 32 neighbours per
        centre) and compares a sample whose bounds fail only with the centres near its
        own: faster still with many clusters in few dimensions.
        'yinyang' (simplified Yinyang: Ding et al. 2015, Newling & Fleuret 2016) splits the
        centres once into ``G = max(1, n_clusters // 10)`` groups (fewer if some end up
        empty) and keeps, per sample, an upper bound on the distance to its centre and a
        lower bound per group: ``1 + G`` values of X's dtype per sample (for float32,
        ``4 * (1 + n_clusters // 10)`` bytes), plus per thread about 32 bytes per row of a
        chunk (``max(2048, n_samples / 64)`` rows). A sample is compared only with the
        groups its bounds cannot rule out (a block of 32 samples with all the centres,
        when more than a quarter of its group bounds fail); the labels are exactly those
        of 'lloyd', ties included. For medium and high dimensions.
    n_threads : int or None, default=None
        OpenMP threads for the kernels. None uses every usable core, as limited by
        ``OMP_NUM_THREADS`` or ``threadpoolctl.threadpool_limits``.
    verbose : int, default=0
        Print progress when positive. The iterations then run as 'lloyd' where
        ``algorithm`` is (or 'auto' picks) 'hamerly', 'exponion' or 'yinyang': the same
        result, to rounding, without their speed-up (see ``callback``).
    callback : callable or None, default=None
        Called after every iteration with an :class:`IterationInfo` (iteration number,
        inertia, centre shift, centres, labels). Returning True stops the run. Where
        ``algorithm`` is (or 'auto' picks) 'hamerly', 'exponion' or 'yinyang', the fit
        runs as 'lloyd', since their passes do not compute the inertia: the same result,
        to rounding, but a slower fit wherever the bounds would have paid.
    init_size : int or None, default=None
        With ``init='k-means++'``, run the initialization on this many rows drawn at random
        (with replacement; duplicates dropped) instead of all of them, as scikit-learn's
        MiniBatchKMeans does: k-means++ costs about ``2 + ln k`` passes over the data per
        centre, which dominates a fit of millions of rows. Lloyd's iterations still use
        every row. If the sample cannot seed ``n_clusters`` distinct centres, all rows are
        used (in an out-of-core fit of a memmap, which never loads all rows, that is a
        ValueError). None: all rows. ``max(65536, 20 * n_clusters)`` (the out-of-core default)
        ended within 1% of k-means++ on all rows in final inertia, on average over seeds,
        on every workload of BENCHMARKS.md section 5; on a million rows or more its
        initialization took 2% to 8% of the time.
    swap_trials : int, default=0
        Swap refinement after each run (after I-k-means-+, Ismkhan 2018), at most this many
        trials: each removes the centre whose loss costs least, adds one inside the cluster
        with the largest squared error, reruns Lloyd and keeps the result if the inertia
        went down; it stops when a round of trials brings no gain. It repairs what
        k-means++ and Lloyd leave behind (two centres in one true cluster, one centre over
        two). With 50 trials it solved every clustering basic benchmark set for 20 seeds
        (BENCHMARKS.md). The callback sees the first Lloyd run only; if it stops that run,
        no swap is tried.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centres, in X's floating dtype.
    labels_ : ndarray of shape (n_samples,), int32
        Index of the nearest centre of each training sample.
    inertia_ : float
        Weighted sum of squared distances of the training samples to their nearest centre.
    n_iter_ : int
        Lloyd iterations of the best run (with ``swap_trials``, its own and those of the
        Lloyd runs behind the swaps it kept).
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names, when ``fit`` was given a DataFrame with string column names.

    Notes
    -----
    Repeated rows: when X (in memory, from 65,536 rows) holds at most half as many
    distinct rows as rows, as the pixels of a photo do, ``fit`` clusters the distinct rows
    weighted by their counts (and their total ``sample_weight``): the same labels and
    centres as clustering every row, up to the order of the sums, for the cost of one
    parallel search that finds them. Without ``sample_weight``, data on a grid (at most 4
    features, each with at most 4096 values and 2**24 combinations of them, as pixels have)
    take a search that moves no row (about 5 Lloyd passes at k=16 in 3 dimensions; extra
    memory: 4 bytes a row, and while it runs up to 4 more and 3.5 MiB a thread), and their
    distinct rows come sorted along a Z-order curve, as the filtering algorithm wants them;
    other data take a hash search (about 9 passes; while it runs, a copy of X and 5 bytes
    a row more). An evenly spaced sample of ``8 * sqrt(n_samples)`` rows decides whether to
    look, and it is not done when ``n_init * max_iter`` passes could not pay for it.
    k-means++ and 'random' then draw from the distinct rows in proportion to their weight
    (the same distribution as from all rows), and a cluster left empty takes the farthest
    distinct row with all its copies, where scikit-learn moves one sample.

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm import KMeans
    >>> X = np.array([[1.0, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    >>> km.predict([[0, 0], [12, 3]]).tolist() == [km.labels_[0], km.labels_[3]]
    True
    """

    def __init__(self, n_clusters=8, *, init="k-means++", n_init="auto", max_iter=300,
                 tol=1e-4, random_state=None, algorithm="auto", n_threads=None, verbose=0,
                 callback=None, swap_trials=0, init_size=None):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.algorithm = algorithm
        self.n_threads = n_threads
        self.verbose = verbose
        self.callback = callback
        self.swap_trials = swap_trials
        self.init_size = init_size

    # -- fitting and prediction --------------------------------------------------------------

    def fit(self, X, y=None, sample_weight=None):
        """Compute the k-means clustering of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 stays float32, other real types become float64.
            A file-backed ``numpy.memmap`` of at least 128 MiB (or an array-like of that
            size with row slicing, such as an h5py dataset) is fitted out of core: exact
            Lloyd chunk by chunk, never loading or copying X, in memory of about one chunk
            (16 MiB) plus the labels (4 bytes per row); 'k-means++' and 'random' then run on
            a sample of ``init_size`` rows (default ``max(65536, 20 * n_clusters)``) and
            the other algorithms run as 'lloyd' (see ``fastkm._chunked``).
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sample; a weight of 2 counts as the sample twice.

        Returns
        -------
        self
        """
        feature_names = _feature_names(X)
        result = kmeans(X, self.n_clusters, sample_weight=sample_weight, init=self.init,
                        n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                        random_state=self.random_state, algorithm=self.algorithm,
                        n_threads=self.n_threads, verbose=self.verbose,
                        callback=self.callback, swap_trials=self.swap_trials,
                        init_size=self.init_size)
        self.cluster_centers_ = result.centers
        self.labels_ = result.labels
        self.inertia_ = result.inertia
        self.n_iter_ = result.n_iter
        self.n_features_in_ = result.centers.shape[1]
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

def _feature_names(X):
    """String column names of a DataFrame, else None."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "dtypes"):
        return None
    names = np.asarray(columns, dtype=object)
    if len(names) and all(isinstance(name, str) for name in names):
        return names
    return None


def _same_value(a, b):
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays compare element-wise
        return a is b
