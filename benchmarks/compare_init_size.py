"""k-means++ on a sample (``KMeans(init_size=...)``) against full k-means++: final inertia.

For every workload of benchmarks/compare_kmeans.py (its builders are imported, so the data
are the same) and every seed, ``fastkm.KMeans(k, random_state=seed, n_init=1, n_threads=1)``
is fitted to convergence (default tol and max_iter) once with k-means++ on all rows and once
per ``init_size``:

  default  max(65536, 20 * k): the default sample of the out-of-core path (fastkm._chunked,
           documented in KMeans.fit)
  20k      20 * k rows, the per-cluster floor of that default alone
  100k     100 * k rows

A size of at least n is the full k-means++ (``initial_centers`` then uses every row), so it
is left out. For each workload and size the table gives, over seeds, the relative excess
``inertia_sampled / inertia_full - 1`` of the two fits with the same seed (mean ± sd,
median, max; the two runs share a seed but not their draws, so this is not a paired
difference), two standard errors of the mean excess, the full k-means++'s own
seed-to-seed spread (sd / mean of its final inertia), and time ratios sampled / full: the
initialization alone (``fastkm._init.initial_centers`` as the fit calls it, seeds 0 and 1,
the faster kept) and the whole fit (mean over seeds). Issue 4's bar: the mean excess within
1%. Where k-means++'s own spread is a few percent, 10 seeds cannot resolve that bar (two
standard errors exceed 1%): raise ``--seeds`` for that workload.

Every fit runs on one thread (n_threads=1), so the script can share a machine with timings
that use the other cores; the time ratios are still noisy there. The default run (10 seeds,
full sizes) took about 13 minutes on a 2-core AMD EPYC Zen4; ``--quick`` (the small sizes of
compare_kmeans.py, 3 seeds unless ``--seeds`` is given) about half a minute.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_init_size.py \\
        [--seeds 10] [--quick] [--workloads photo,blobs8,blobs128,mnist] [--sizes default]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, table  # noqa: E402
from compare_kmeans import WORKLOADS, built_workloads, comma_list  # noqa: E402

import fastkm  # noqa: E402
from fastkm._chunked import DEFAULT_INIT_ROWS, INIT_ROWS_PER_CLUSTER  # noqa: E402
from fastkm._init import initial_centers  # noqa: E402

#: (label, init_size as a function of k)
SIZES = (
    ("default", lambda k: max(DEFAULT_INIT_ROWS, INIT_ROWS_PER_CLUSTER * k)),
    ("20k", lambda k: 20 * k),
    ("100k", lambda k: 100 * k),
)


def fit(X, k, seed, init_size):
    """(final inertia, seconds) of one single-threaded fit to convergence."""
    start = time.perf_counter()
    km = fastkm.KMeans(k, random_state=seed, n_init=1, n_threads=1, init_size=init_size).fit(X)
    return km.inertia_, time.perf_counter() - start


def init_seconds(X, k, init_size):
    """Seconds of the initialization stage of such a fit (one thread), min of seeds 0, 1."""
    weights = np.ones(len(X), dtype=X.dtype)
    seconds = []
    for seed in (0, 1):
        start = time.perf_counter()
        initial_centers(X, k, "k-means++", weights, np.random.RandomState(seed), 1,
                        init_size=init_size)
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def pct(value):
    return f"{100 * value:+.2f}%"


def compare(label, X, k, seeds, size_names):
    """Table rows for one workload: one per init_size below n."""
    sizes = {}
    for name, size in SIZES:
        rows = size(k)
        if name not in size_names:
            continue
        if rows < len(X) and rows not in sizes.values():
            sizes[name] = rows
    full, sampled = [], {name: [] for name in sizes}
    for seed in range(seeds):
        full.append(fit(X, k, seed, None))
        for name, rows in sizes.items():
            sampled[name].append(fit(X, k, seed, rows))
        print(f"  done: {label}, seed {seed}", file=sys.stderr, flush=True)
    full_inertia = np.array([inertia for inertia, _ in full])
    spread = np.std(full_inertia, ddof=1) / full_inertia.mean() if seeds > 1 else float("nan")
    full_init = init_seconds(X, k, None)
    full_fit = np.mean([seconds for _, seconds in full])
    if not sizes:
        return [[label, f">= n = {len(X)}", "0 (same as full)", "", "", "",
                 f"{100 * spread:.2f}%", "", ""]]
    out = []
    for name, rows in sizes.items():
        excess = np.array([inertia for inertia, _ in sampled[name]]) / full_inertia - 1
        sd = np.std(excess, ddof=1) if seeds > 1 else float("nan")
        out.append([label, f"{name} = {rows}", f"{pct(excess.mean())} ± {100 * sd:.2f}%",
                    pct(statistics.median(excess)), pct(excess.max()),
                    f"{200 * sd / np.sqrt(seeds):.2f}%", f"{100 * spread:.2f}%",
                    f"{init_seconds(X, k, rows) / full_init:.3f}",
                    f"{np.mean([s for _, s in sampled[name]]) / full_fit:.2f}"])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[2:]))
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds 0 .. N-1 per workload (default 10, 3 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="compare_kmeans.py's small sizes (photo 640x427, blobs 100k x 8 "
                             "and 20k x 128)")
    parser.add_argument("--workloads", type=comma_list(tuple(WORKLOADS)), default=list(WORKLOADS),
                        help=f"workloads, comma-separated (default: {','.join(WORKLOADS)})")
    parser.add_argument("--sizes", type=comma_list(tuple(name for name, _ in SIZES)),
                        default=[name for name, _ in SIZES],
                        help="init_size values, comma-separated (default: "
                             f"{','.join(name for name, _ in SIZES)})")
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 10)
    if seeds < 1:
        parser.error("--seeds must be at least 1")

    for line in describe():
        print(line)
    print(f"fastkm.KMeans(k, random_state=seed, n_init=1, n_threads=1), seeds 0..{seeds - 1}, "
          f"float32, default tol and max_iter")

    rows = []
    for name, X, ks in built_workloads(args.workloads, args.quick, WORKLOADS):
        for k in ks:
            rows += compare(f"{name}, k={k}", X, k, seeds, args.sizes)

    print("\nFinal inertia with k-means++ on init_size rows, relative to k-means++ on all rows "
          "(same seed)\n")
    print(table(["workload", "init_size", "excess mean ± sd", "median", "max", "2 s.e. of mean",
                 "full k-means++ seed sd", "init time ratio", "fit time ratio"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
