"""Repeated rows: fastkm.KMeans fitting each distinct row once against fitting every row.

On the photo pixels of benchmarks/compare_kmeans.py (4.4 million pixels, 855 thousand
distinct colours), ``fastkm.KMeans`` is fitted from the same initial centres as there, for
10 iterations (tol=0) and to convergence (default tol and max_iter), once as it runs by
default (finding the distinct rows, fastkm._duplicates, unless the fit is too short to pay
for the search) and once with the search switched off (``fastkm._duplicates.MIN_ROWS``
raised above n), the two interleaved, best of ``--repeat`` rounds. The table gives both
times, their ratio, and the iterations and inertia of each (the same fits, so they should
agree to float rounding). A line before it times the two searches alone, each kernel with
a fresh ``inverse`` as in a fit: the grid search that pixels take
(``fastkm._core.grid_distinct_rows``) and the hash search for other rows
(``fastkm._core.distinct_rows``), against one Lloyd pass; and the grid search on rows off
the grid, the time it takes to give up before the hash search runs: the photo's colours
at 10 bits a channel, each moved by its own random offset of 0 to 3 steps of 1/1023 (the
same repeats, but 30 bits for a row's values, more than a grid takes).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_duplicates.py \\
        [--repeat 2] [--threads 2] [--quick] [--ks 16,64,256]

About 3 minutes on a 2-core AMD EPYC Zen4 (the fits of every row to convergence at k=256
take most of it); ``--quick`` (640x427 pixels) a few seconds.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, table  # noqa: E402
from compare_kmeans import comma_list, initial_centers, photo  # noqa: E402

import fastkm  # noqa: E402
from fastkm import _duplicates  # noqa: E402
from fastkm._isa import core  # noqa: E402


def fit(X, init, threads, search, **stopping):
    """Seconds, iterations and inertia of one fit, with or without the search."""
    saved = _duplicates.MIN_ROWS
    _duplicates.MIN_ROWS = saved if search else len(X) + 1
    try:
        km = fastkm.KMeans(len(init), init=init, n_init=1, n_threads=threads, **stopping)
        start = time.perf_counter()
        km.fit(X)
        return time.perf_counter() - start, km.n_iter_, km.inertia_
    finally:
        _duplicates.MIN_ROWS = saved


def best_of(repeat, run):
    return min((run() for _ in range(repeat)), key=lambda result: result[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="640x427 pixels")
    parser.add_argument("--ks", type=comma_list(None), default=["16", "64", "256"])
    args = parser.parse_args(argv)
    name, X = photo(args.quick)
    print("\n".join(describe()))
    limit = len(X) // _duplicates.MAX_DISTINCT_SHARE
    searches = {name: best_of(args.repeat, lambda kernel=kernel: _timed(
        lambda: kernel(np.empty(len(X), np.int32))))
        for name, kernel in [
            ("grid", lambda inverse: core.grid_distinct_rows(X, limit, inverse, args.threads)),
            ("hash", lambda inverse: core.distinct_rows(X, None, limit, inverse,
                                                        args.threads))]}
    colours, colour_of_row = np.unique(X, axis=0, return_inverse=True)
    offsets = np.random.default_rng(0).integers(0, 4, size=colours.shape)
    moved = (np.round(colours * 1020 + offsets) / 1023).astype(np.float32)
    off_grid = np.ascontiguousarray(moved[colour_of_row.ravel()])
    give_up = best_of(args.repeat, lambda: _timed(lambda: core.grid_distinct_rows(
        off_grid, limit, np.empty(len(X), np.int32), args.threads)))
    assert core.grid_distinct_rows(off_grid, limit, np.empty(len(X), np.int32)) is False
    found = _duplicates.distinct_rows(X, None, args.threads)
    init = initial_centers(X, 16)
    labels, sums, counts = np.zeros(len(X), np.int32), np.empty((16, 3)), np.empty(16)
    one_pass = best_of(args.repeat, lambda: _timed(
        lambda: core.lloyd_pass(X, None, init, labels, sums, counts, args.threads)))
    n_distinct = len(np.unique(X, axis=0)) if found is None else len(found.rows)
    print(f"\n{name}: {len(X)} rows, {n_distinct} distinct "
          f"({'not used: too many' if found is None else 'used'}, "
          f"{'on a grid' if found is not None and found.zordered else 'hash search'}); "
          f"the grid search took {searches['grid'][0] * 1e3:.1f} ms, the hash search "
          f"{searches['hash'][0] * 1e3:.1f} ms, one Lloyd pass over all rows at k=16 "
          f"{one_pass[0] * 1e3:.1f} ms ({args.threads} threads); on the colours moved off "
          f"the grid, the grid search gave up after {give_up[0] * 1e3:.1f} ms\n")
    rows = []
    for k in map(int, args.ks):
        init = initial_centers(X, k)
        for label, stopping in (("10 iterations", {"max_iter": 10, "tol": 0}),
                                ("to convergence", {})):
            results = {}
            for _ in range(args.repeat):  # interleaved
                for searched in (True, False):
                    result = fit(X, init, args.threads, searched, **stopping)
                    if searched not in results or result[0] < results[searched][0]:
                        results[searched] = result
            (t_on, it_on, in_on), (t_off, it_off, in_off) = results[True], results[False]
            rows.append([f"k={k}", label, f"{t_off:.3f}", f"{t_on:.3f}",
                         f"{t_off / t_on:.2f}x", f"{it_off} / {it_on}",
                         f"{abs(in_on / in_off - 1):.1e}"])
            print(rows[-1], flush=True)
    print()
    print(table(["k", "fit", "search off s", "default s", "speed-up",
                 "iterations (off / default)", "inertia rel. diff"], rows))


def _timed(run):
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start,)


if __name__ == "__main__":
    main()
