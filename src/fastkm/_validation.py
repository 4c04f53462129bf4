"""Input checks shared by the estimators: arrays, weights, random state and thread count."""

import math
import numbers
import os
import sys
import warnings

import numpy as np

from ._isa import core

#: Rows per numpy step when the Python layer itself walks over X (bounds temporaries).
ROW_STEP = 65536

#: Data to fit whose largest |x| is below UNDERFLOW_MARGIN * sqrt(tiny) is refused: see
#: check_magnitude.
UNDERFLOW_MARGIN = 2.0 ** 12


def is_sparse(X):
    """Whether X is a scipy sparse matrix or array, without importing scipy."""
    return type(X).__module__.startswith("scipy.sparse")


def check_array(X, *, name="X", ensure_min_samples=1, n_threads=1, check_finite=True,
                to_fit=True):
    """X as a C-contiguous 2-D float32 or float64 array, copied only when it must be.

    Integer and boolean input becomes float64; float32 stays float32. Read-only arrays and
    memmaps are accepted as they are when already C-contiguous and floating. ``n_threads``
    and ``to_fit``: for the check that every value is finite and of a usable magnitude
    (``check_finite=False``: the caller makes it later, with :func:`check_finite_values`).
    """
    if is_sparse(X):
        raise TypeError(f"{name} is a sparse matrix; fastkm needs dense data "
                        f"(convert it with {name}.toarray())")
    if hasattr(X, "dtypes") and hasattr(X, "columns"):  # pandas DataFrame
        # Dates and durations would become nanosecond counts, as they do not in an array.
        for dtype in X.dtypes:
            if getattr(dtype, "kind", "") in "mM":
                raise TypeError(f"{name} has a column of dtype {dtype}; fastkm needs real "
                                f"numbers")
        dtypes = set(map(str, X.dtypes))
        try:
            X = X.to_numpy(dtype=np.float32 if dtypes == {"float32"} else np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _numeric_error(name, exc) from None
    if isinstance(X, np.ndarray) and X.dtype == object or not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
            if X.dtype == object or X.dtype.kind in "USV":
                X = X.astype(np.float64)
        except (TypeError, ValueError, OverflowError) as exc:  # (OverflowError: an int
            raise _numeric_error(name, exc) from None         # beyond float64's range)
    if X.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} is complex; fastkm needs real "
                         f"numbers")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{name} has dtype {X.dtype}; fastkm needs real numbers")
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D array for {name}, got a {X.ndim}-D array of shape "
                         f"{X.shape}. Reshape your data with {name}.reshape(-1, 1) if it has a "
                         f"single feature or {name}.reshape(1, -1) if it is a single sample")
    if X.shape[0] < ensure_min_samples:
        raise ValueError(f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a "
                         f"minimum of {ensure_min_samples} is required ({name})")
    if X.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of "
                         f"1 is required ({name})")
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    X = np.asarray(X, dtype=dtype, order="C") if not X.flags.c_contiguous or X.dtype != dtype \
        else X
    if check_finite:
        check_finite_values(X, name=name, n_threads=n_threads, to_fit=to_fit)
    return X


def _numeric_error(name, exc):
    error = TypeError if isinstance(exc, TypeError) else ValueError
    return error(f"{name} must be numeric: {exc}")


def check_finite_values(X, *, name="X", n_threads=1, n_terms=None, to_fit=True):
    """Raise ValueError unless every value of X (from check_array) is finite and of a
    magnitude whose squared distances X's dtype holds (:func:`check_magnitude`; ``n_terms``:
    the rows whose distances are summed, X's own by default). One parallel read of X for
    its largest |x| makes both checks.
    """
    check_magnitude(largest_magnitude(X, name=name, n_threads=n_threads), X.shape[-1],
                    X.dtype, name=name, n_terms=X.shape[0] if n_terms is None else n_terms,
                    to_fit=to_fit)


def largest_magnitude(X, *, name="X", n_threads=1):
    """The largest |x| of X (0 if empty); ValueError if X holds NaN or infinity."""
    X = np.atleast_2d(X)
    X = np.ascontiguousarray(X.reshape(-1, X.shape[-1]),
                             dtype=X.dtype if X.dtype in (np.float32, np.float64) else np.float64)
    largest = core.largest_magnitude(X, n_threads)
    if not math.isfinite(largest):
        raise ValueError(f"Input {name} contains NaN or infinity")
    return largest


def check_magnitude(largest, n_features, dtype, *, name="X", n_terms=1, to_fit=True):
    """Raise ValueError where values up to ``largest`` in magnitude would make squared
    distances overflow ``dtype``, or, in data to fit (``to_fit``), underflow it."""
    dtype = np.dtype(dtype)
    info = np.finfo(dtype)
    # Rows and centres (means of rows, or init arrays checked the same way) lie within
    # [-L, L] for an L that passes: a squared distance is at most 4 d L**2, and so is every
    # partial sum of the kernels' dot form |c'|**2 / 2 - x'.c' (x' = x - s, c' = c - s, s
    # the centres' mean); a factor 2 covers their rounding. The inertia, the variance behind
    # tol and k-means++'s potentials add n_terms such distances in float64: a bound for
    # float64 X only, as n float32 squares cannot reach float64's range.
    terms = max(1, n_terms) if dtype == np.float64 else 1
    limit = math.sqrt(float(info.max) / (8 * n_features * terms))
    if largest > limit:
        rows = f" and {terms} rows" if terms > 1 else ""
        raise ValueError(f"{name} holds values too large: squared distances overflow "
                         f"{dtype.name} (largest |x| = {largest:.3g}, above {limit:.3g} for "
                         f"{n_features} features{rows}); rescale {name}"
                         + (" or use float64" if dtype == np.float32 else ""))
    # Rows a 4096th of largest apart or more then have squared distances of at least
    # tiny, normal numbers with all their precision; below, subnormal distances lose
    # digits, and vanish to 0 (distinct rows then look equal). All-zero data is fine.
    floor = UNDERFLOW_MARGIN * math.sqrt(float(info.tiny))
    if to_fit and 0 < largest < floor:
        raise ValueError(f"{name} holds values too small: squared distances underflow "
                         f"{dtype.name} (largest |x| = {largest:.3g}, below {floor:.3g}); "
                         f"rescale {name}"
                         + (" or use float64" if dtype == np.float32 else ""))


def as_checked_dtype(A, dtype, *, name, n_terms, dtype_of="X's dtype", to_fit=False):
    """C-contiguous A (centres, or X from check_array) as an array of ``dtype``, a copy only
    where it differs, checked as check_finite_values checks data not to fit (``to_fit``:
    data to fit).

    A value beyond ``dtype``'s range is a ValueError, not an infinity and numpy's warning.
    """
    dtype = np.dtype(dtype)
    largest = largest_magnitude(A, name=name)
    if largest > float(np.finfo(dtype).max):
        raise ValueError(f"{name} overflows {dtype.name}, {dtype_of} (largest |value| = "
                         f"{largest:.3g}); rescale {name}")
    check_magnitude(largest, A.shape[-1], dtype, name=name, n_terms=n_terms, to_fit=to_fit)
    return np.ascontiguousarray(A, dtype=dtype)


def check_sample_weight(sample_weight, n_samples, dtype):
    """Sample weights as a C-contiguous 1-D array of X's dtype; ones when None."""
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype)
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight)
    try:
        weights = np.asarray(sample_weight)
        complex_values = weights.dtype.kind == "c"  # (the cast would drop imaginary parts)
        # Checked in X's dtype, the one the kernels see: a float32 cast can turn a huge
        # weight into inf and a tiny one into 0.
        with np.errstate(over="ignore"):  # an overflow is reported below as infinity
            weights = weights.real.astype(np.float64).astype(dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"sample_weight must be numeric: {exc}") from None
    if complex_values:
        raise ValueError("Complex data not supported: sample_weight is complex; fastkm "
                         "needs real numbers")
    if weights.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, got shape {weights.shape}")
    if weights.shape[0] != n_samples:
        raise ValueError(f"sample_weight has {weights.shape[0]} entries but X has "
                         f"{n_samples} samples")
    if not np.isfinite(weights).all():
        raise ValueError(f"sample_weight contains NaN or infinity (as {np.dtype(dtype).name})")
    if (weights < 0).any():
        raise ValueError("sample_weight contains negative values")
    if not (weights > 0).any():
        raise ValueError(f"sample_weight is zero for every sample (as {np.dtype(dtype).name})")
    return np.ascontiguousarray(weights)


def check_random_state(seed):
    """A numpy RandomState from None, an int or a RandomState (scikit-learn's convention)."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, "
                     f"got {seed!r}")


def warn_caller(message, category):
    """warnings.warn at the first caller outside fastkm: the user's line, however many of
    fastkm's own calls lie between (``kmeans`` is called directly and by ``KMeans.fit``)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2  # level 2: warn_caller's caller
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def usable_cpus():
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def effective_n_threads(n_threads):
    """The thread count for the kernels: None means every usable core.

    None follows OpenMP's default, so OMP_NUM_THREADS and threadpoolctl's limits apply.
    """
    if n_threads is None:
        return max(1, min(core.openmp_max_threads(), usable_cpus()))
    if not isinstance(n_threads, numbers.Integral) or isinstance(n_threads, bool) \
            or n_threads < 1:
        raise ValueError(f"n_threads must be None or a positive integer, got {n_threads!r}")
    # The kernels take a C int; none starts more threads than it has chunks of work.
    return min(int(n_threads), 2**31 - 1)


def check_tol(tol):
    """``tol`` as the estimators take it: a non-negative real number, not a bool."""
    if not isinstance(tol, numbers.Real) or isinstance(tol, bool) or not tol >= 0:
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    return tol


def check_verbose(verbose):
    """``verbose``: a non-negative integer (a bool, numpy's too, is one)."""
    if isinstance(verbose, np.bool_):
        verbose = bool(verbose)
    if not isinstance(verbose, numbers.Integral) or verbose < 0:
        raise ValueError(f"verbose must be a non-negative integer, got {verbose!r}")
    return verbose


def check_positive_int(value, name, minimum=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
