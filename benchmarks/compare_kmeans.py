"""fastkm against scikit-learn (and faiss, when installed): milliseconds per Lloyd iteration.

The workloads of ../shared/GUIDE.md section 5, measured fairly: the same initial centres
(rows drawn with a fixed seed) for every library, 10 iterations, all points, float32, every
library timed in this one process with the same thread count, interleaved round by round,
and the minimum over ``--repeat`` rounds kept.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_kmeans.py

Columns: ms per iteration (fit time divided by the iterations the fit ran, which are 10
unless a fit converged earlier; the "iters" column shows them), and the ratios
sklearn/fastkm and faiss/fastkm (above 1: fastkm is faster). "fastkm hamerly" is
``fastkm.KMeans(algorithm='hamerly')``: the same iterations and result, with distance bounds.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, table  # noqa: E402

import fastkm  # noqa: E402

N_ITER = 10
SEED = 0


def photo_pixels(quick):
    from PIL import Image
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image("china.jpg"))
    size = (640, 427) if quick else (2560, 1708)
    img = img.resize(size, Image.Resampling.BICUBIC)
    return (np.asarray(img, dtype=np.float32) / 255).reshape(-1, 3)


def blobs(n, d, centers):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=n, n_features=d, centers=centers, random_state=SEED)
    return np.ascontiguousarray(X, dtype=np.float32)


def workloads(quick):
    """(name, X, k) triples: the GUIDE's workloads, or smaller ones with ``quick``."""
    pixels = photo_pixels(quick)
    h, w = (427, 640) if quick else (1708, 2560)
    out = [(f"photo {w}x{h} d=3", pixels, k) for k in (16, 64, 256)]
    n8, n128 = (100_000, 20_000) if quick else (1_000_000, 200_000)
    out.append((f"blobs {n8 // 1000}k x 8", blobs(n8, 8, 100), 100))
    out.append((f"blobs {n128 // 1000}k x 128", blobs(n128, 128, 256), 256))
    return out


def initial_centers(X, k):
    """k distinct rows of X, drawn with a fixed seed: the same start for every library."""
    rng = np.random.default_rng(SEED)
    return np.ascontiguousarray(X[rng.choice(len(X), size=k, replace=False)])


class Runner:
    """Time one library's 10-iteration fit; returns (seconds, iterations, inertia)."""

    name = ""

    def __call__(self, X, init):
        raise NotImplementedError


class FastkmRunner(Runner):
    def __init__(self, threads, algorithm):
        self.threads = threads
        self.algorithm = algorithm
        self.name = "fastkm" if algorithm == "lloyd" else f"fastkm {algorithm}"

    def __call__(self, X, init):
        km = fastkm.KMeans(n_clusters=len(init), init=init, n_init=1, max_iter=N_ITER, tol=0,
                           algorithm=self.algorithm, n_threads=self.threads)
        t = time.perf_counter()
        km.fit(X)
        return time.perf_counter() - t, km.n_iter_, km.inertia_


class SklearnRunner(Runner):
    name = "sklearn"

    def __init__(self, threads):
        from threadpoolctl import threadpool_limits

        self.threads = threads
        self.limits = threadpool_limits

    def __call__(self, X, init):
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=len(init), init=init, n_init=1, max_iter=N_ITER, tol=0,
                    algorithm="lloyd", random_state=SEED)
        with self.limits(limits=self.threads):
            t = time.perf_counter()
            km.fit(X)
            elapsed = time.perf_counter() - t
        return elapsed, km.n_iter_, km.inertia_


class FaissRunner(Runner):
    name = "faiss"

    def __init__(self, threads):
        import faiss

        self.faiss = faiss
        faiss.omp_set_num_threads(threads)

    def __call__(self, X, init):
        n, d = X.shape
        k = len(init)
        # All points (no subsampling) and our initial centres.
        km = self.faiss.Kmeans(d, k, niter=N_ITER, seed=SEED, verbose=False,
                               max_points_per_centroid=math.ceil(n / k) + 1,
                               min_points_per_centroid=1)
        t = time.perf_counter()
        km.train(X, init_centroids=init)
        elapsed = time.perf_counter() - t
        inertia = float(km.obj[-1]) if len(km.obj) else float("nan")
        return elapsed, N_ITER, inertia


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (photo 640x427, blobs 100k x 8 and 20k x 128)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every library (default: fastkm's, all usable cores)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds; the minimum time of each library is kept (default 3)")
    parser.add_argument("--no-faiss", action="store_true", help="leave faiss out")
    args = parser.parse_args(argv)
    threads = args.threads or fastkm.build_info()["threads"]

    import sklearn

    runners = [FastkmRunner(threads, "lloyd"), FastkmRunner(threads, "hamerly"),
               SklearnRunner(threads)]
    versions = [f"scikit-learn {sklearn.__version__}"]
    if not args.no_faiss:
        try:
            runners.append(FaissRunner(threads))
            versions.append(f"faiss {runners[-1].faiss.__version__}")
        except ImportError:
            versions.append("faiss: not installed (column left out)")
    for line in describe(versions):
        print(line)
    print(f"threads: {threads} for every library; {N_ITER} iterations from the same initial "
          f"centres; float32; min of {args.repeat} rounds")
    print()

    rows = []
    for name, X, k in workloads(args.quick):
        init = initial_centers(X, k)
        best = {r.name: math.inf for r in runners}
        result = {}
        for _ in range(args.repeat):
            for runner in runners:
                seconds, n_iter, inertia = runner(X, init)
                per_iter = seconds / max(n_iter, 1)
                if per_iter < best[runner.name]:
                    best[runner.name] = per_iter
                result[runner.name] = (n_iter, inertia)
        ms = {key: 1000 * value for key, value in best.items()}
        fk_inertia = result["fastkm"][1]
        sk_inertia = result["sklearn"][1]
        iters = "/".join(str(result[r.name][0]) for r in runners if r.name != "faiss")
        row = [f"{name}, k={k}", iters, f"{ms['fastkm']:.1f}", f"{ms['fastkm hamerly']:.1f}",
               f"{ms['sklearn']:.1f}"]
        if "faiss" in ms:
            row.append(f"{ms['faiss']:.1f}")
        row.append(f"{ms['sklearn'] / ms['fastkm']:.2f}x")
        if "faiss" in ms:
            row.append(f"{ms['faiss'] / ms['fastkm']:.2f}x")
        row.append(f"{ms['fastkm'] / ms['fastkm hamerly']:.2f}x")
        row.append(f"{abs(fk_inertia - sk_inertia) / sk_inertia:.1e}")
        rows.append(row)
        print(f"  done: {name}, k={k}", file=sys.stderr, flush=True)

    headers = ["workload", "iters (fk/ham/sk)", "fastkm ms/it", "fastkm hamerly ms/it",
               "sklearn ms/it"]
    if any(r.name == "faiss" for r in runners):
        headers.append("faiss ms/it")
    headers.append("sklearn/fastkm")
    if any(r.name == "faiss" for r in runners):
        headers.append("faiss/fastkm")
    headers += ["lloyd/hamerly", "inertia rel. diff fk vs sk"]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
