"""Input checks shared by the estimators: arrays, weights, random state and thread count."""

import numbers
import os

import numpy as np

from ._isa import core

#: Rows per numpy step when the Python layer itself walks over X (bounds temporaries).
ROW_STEP = 65536


def is_sparse(X):
    """Whether X is a scipy sparse matrix or array, without importing scipy."""
    return type(X).__module__.startswith("scipy.sparse")


def check_array(X, *, name="X", ensure_min_samples=1, n_threads=1, check_finite=True):
    """X as a C-contiguous 2-D float32 or float64 array, copied only when it must be.

    Integer and boolean input becomes float64; float32 stays float32. Read-only arrays and
    memmaps are accepted as they are when already C-contiguous and floating. ``n_threads``:
    for the check that every value is finite (``check_finite=False``: the caller makes it
    later, with :func:`check_finite_values`).
    """
    if is_sparse(X):
        raise TypeError(f"{name} is a sparse matrix; fastkm needs dense data "
                        f"(convert it with {name}.toarray())")
    if hasattr(X, "dtypes") and hasattr(X, "columns"):  # pandas DataFrame
        dtypes = set(map(str, X.dtypes))
        try:
            X = X.to_numpy(dtype=np.float32 if dtypes == {"float32"} else np.float64)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name} must be numeric: {exc}") from None
    if isinstance(X, np.ndarray) and X.dtype == object or not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
            if X.dtype == object or X.dtype.kind in "USV":
                X = X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name} must be numeric: {exc}") from None
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
        check_finite_values(X, name=name, n_threads=n_threads)
    return X


def check_finite_values(X, *, name="X", n_threads=1):
    """Raise ValueError unless every value of X (from check_array) is finite."""
    if not core.all_finite(X, n_threads):
        raise ValueError(f"Input {name} contains NaN or infinity")


def check_sample_weight(sample_weight, n_samples, dtype):
    """Sample weights as a C-contiguous 1-D array of X's dtype; ones when None."""
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype)
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight)
    try:
        # Checked in X's dtype, the one the kernels see: a float32 cast can turn a huge
        # weight into inf and a tiny one into 0.
        with np.errstate(over="ignore"):  # an overflow is reported below as infinity
            weights = np.asarray(sample_weight, dtype=np.float64).astype(dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"sample_weight must be numeric: {exc}") from None
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
    return int(n_threads)


def check_positive_int(value, name, minimum=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
