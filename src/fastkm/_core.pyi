"""Type stubs of the compiled kernels (``fastkm._core`` and its per-level builds).

Arrays are C-contiguous; every floating argument of one call has the same dtype, float32 or
float64 (``Floats``). Outputs are written in place.
"""

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32] | npt.NDArray[np.float64]
Float64 = npt.NDArray[np.float64]
Int32 = npt.NDArray[np.int32]
UInt8 = npt.NDArray[np.uint8]

def openmp_enabled() -> bool: ...
def openmp_max_threads() -> int: ...
def compiled_level() -> int: ...
def cpu_level() -> int: ...
def lloyd_layout() -> tuple[int, int]: ...
def block_rows() -> int: ...
def ball_neighbours() -> int: ...
def dot_score_allowance(n_features: int, max_base: float, norm: float, single: bool) -> float: ...
def row_major_min_features() -> int: ...
def row_chunks(n_rows: int) -> tuple[int, int]: ...
def set_allocator(empty: Callable[..., npt.NDArray[Any]] | None) -> None: ...
def lloyd_pass(
    X: Floats,
    sample_weight: Floats | None,
    centers: Floats,
    labels: Int32,
    sums: Float64,
    weight_sums: Float64,
    n_threads: int = 1,
    with_inertia: bool = True,
) -> tuple[float, int]: ...
def zorder_keys(X: Floats, n_threads: int = 1) -> npt.NDArray[np.uint32]: ...
def zorder_sort(
    X: Floats, sample_weight: Floats, n_threads: int = 1
) -> tuple[npt.NDArray[np.intp], Floats, Floats]: ...
FilterTree = tuple[npt.NDArray[np.intp], Float64, Float64, Float64, Float64]

def filter_tree(X: Floats, sample_weight: Floats, n_threads: int = 1) -> FilterTree: ...
def filter_pass(
    X: Floats,
    sample_weight: Floats | None,
    tree: FilterTree,
    centers: Floats,
    labels: Int32,
    block_labels: Int32,
    sums: Float64,
    weight_sums: Float64,
    n_threads: int = 1,
) -> tuple[float, int]: ...
def hamerly_pass(
    X: Floats,
    sample_weight: Floats,
    centers: Floats,
    shift: Floats,
    labels: Int32,
    upper: Floats,
    lower: Floats,
    sums: Float64,
    weight_sums: Float64,
    n_threads: int = 1,
    update_sums: bool = False,
) -> int: ...
def exponion_pass(
    X: Floats,
    sample_weight: Floats,
    centers: Floats,
    shift: Floats,
    labels: Int32,
    upper: Floats,
    second_labels: Int32,
    lower: Floats,
    lower_rest: Floats,
    table_centers: Floats,
    table_index: Int32,
    table_dist: Floats,
    sums: Float64,
    weight_sums: Float64,
    n_threads: int = 1,
    update_sums: bool = False,
) -> int: ...
def yinyang_pass(
    X: Floats,
    sample_weight: Floats,
    centers: Floats,
    moved: Floats,
    labels: Int32,
    upper: Floats,
    lower: Floats,
    groups: Int32,
    sums: Float64,
    weight_sums: Float64,
    n_threads: int = 1,
    update_sums: bool = False,
) -> int: ...
def kmeanspp_candidate_potentials(
    X: Floats,
    sample_weight: Floats,
    candidates: Floats,
    closest_sq: Float64,
    potentials: Float64,
    n_threads: int = 1,
    nearest: Int32 | None = None,
    gaps: Floats | None = None,
) -> None: ...
def kmeanspp_draw_rows(
    sample_weight: Floats,
    closest_sq: Float64 | None,
    chunk_mass: Float64,
    draws: Float64,
    rows: npt.NDArray[np.intp],
) -> None: ...
def kmeanspp_update_closest(
    X: Floats,
    sample_weight: Floats,
    center: Floats,
    closest_sq: Float64,
    chunk_potentials: Float64,
    n_threads: int = 1,
    nearest: Int32 | None = None,
    gaps: Floats | None = None,
    center_index: int = 0,
) -> None: ...
def take_labels(labels: Int32, index: Int32, out: Int32, n_threads: int = 1) -> None: ...
def put_labels(
    labels: Int32, index: npt.NDArray[np.intp], out: Int32, n_threads: int = 1
) -> None: ...
def largest_magnitude(X: Floats, n_threads: int = 1) -> float: ...
def mean_variance(X: Floats, n_threads: int = 1, sample_weight: Floats | None = None) -> float: ...
def sq_distances(X: Floats, centers: Floats, out: Floats, n_threads: int = 1) -> None: ...
def labelled_inertia(
    X: Floats,
    sample_weight: Floats | None,
    centers: Floats,
    labels: Int32,
    n_threads: int = 1,
) -> float: ...
def assigned_sq_distances(
    X: Floats, centers: Floats, labels: Int32, out: Float64, n_threads: int = 1
) -> None: ...
def rgb_histogram(
    rgb: UInt8, counts: npt.NDArray[np.uint32], n_threads: int = 1
) -> None: ...
def histogram_colours(
    counts: npt.NDArray[np.uint32], n_threads: int = 1
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64], UInt8]: ...
def pool_cells(
    colours: UInt8, shift: int, points: Floats, weights: Floats
) -> tuple[Float64, Float64, UInt8]: ...
def remap_rgb(rgb: UInt8, lookup: UInt8, indices: UInt8, n_threads: int = 1) -> None: ...
def dither_rgb(
    image: UInt8,
    skip: UInt8,
    palette: npt.NDArray[np.float32],
    accept_full_error: float,
    nearest: npt.NDArray[np.int16],
    strength: float,
    max_error: float,
    indices: UInt8,
) -> None: ...
def distinct_rows(
    X: Floats, sample_weight: Floats | None, max_distinct: int, inverse: Int32,
    n_threads: int = 1,
) -> tuple[Floats, Float64] | None: ...
def grid_limits() -> tuple[int, int, int]: ...
def grid_distinct_rows(
    X: Floats, max_distinct: int, inverse: Int32, n_threads: int = 1,
) -> tuple[Floats, Floats] | None | Literal[False]: ...
