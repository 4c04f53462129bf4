"""fastkm: exact k-means clustering with parallel Cython kernels.

The public API:

* :class:`KMeans` and :func:`kmeans`: exact k-means, scikit-learn compatible (a large
  ``numpy.memmap`` is fitted out of core, chunk by chunk);
* :class:`MiniBatchKMeans`: approximate mini-batch k-means with ``partial_fit`` for streams;
* :func:`show_config`: version, OpenMP, threads and instruction-set level in use;
* :func:`release_memory`: give back the scratch memory kept between fits.
"""

from importlib.metadata import PackageNotFoundError, version

from ._config import build_info, show_config
from ._kmeans import KMeans, KMeansResult, NotFittedError, kmeans
from ._lloyd import IterationInfo
from ._minibatch import MiniBatchKMeans
from ._scratch import release_memory

try:
    __version__ = version("fastkm")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "unknown"

__all__ = [
    "IterationInfo",
    "KMeans",
    "KMeansResult",
    "MiniBatchKMeans",
    "NotFittedError",
    "__version__",
    "build_info",
    "kmeans",
    "release_memory",
    "show_config",
]
