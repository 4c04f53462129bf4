"""Time one Lloyd pass (``core.lloyd_pass``) per workload, and scikit-learn's iteration.

``--filter`` also times ``core.filter_pass`` (algorithm='filter', up to 4 features) on the
same rows sorted by ``core.zorder_sort``, and that sort plus ``core.filter_tree`` once
("set-up"); ``--settle N`` first moves the centres by N Lloyd iterations (the filter skips
more once centres settle). ``--distinct`` runs on the workloads' distinct rows instead,
weighted by their counts, as a fit does (``core.grid_distinct_rows``: workloads on a grid
only, such as the photo); they come in Z-order, so the filter's set-up is its tree alone.
``--gflops`` adds each pass's rate in GFLOP/s (its ``n d k`` multiply-adds, ``2 n d k``
floating-point operations, over its time) and, as the machine's reference, NumPy's float32 matrix product of 2048 x 2048
matrices (BLAS) on the same thread counts: the rate issue 4 asks the kernel to approach
from 64 features.

Run with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` (those variables slow numpy's BLAS
on the shared machines, see GUIDE section 5). Timings are the minimum of ``--repeat`` runs:
the machines are shared and noisy. Example::

    PYTHONPATH=src python benchmarks/bench_lloyd_pass.py --workloads blobs128 blobs8 photo
    PYTHONPATH=src python benchmarks/bench_lloyd_pass.py --gflops --workloads d=64,400000,256
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import best_time  # noqa: E402
from fastkm._isa import core, level_name  # noqa: E402


def photo_pixels(n=2560 * 1708, seed=0):
    """Photo-like colours: smooth random fields in [0, 1], 4.4 M pixels by default."""
    try:
        from PIL import Image
        from sklearn.datasets import load_sample_image
        img = Image.fromarray(load_sample_image("china.jpg")).resize((2560, 1708),
                                                                     Image.BICUBIC)
        return (np.asarray(img, dtype=np.float32).reshape(-1, 3) / 255)[:n].copy()
    except Exception:
        rng = np.random.default_rng(seed)
        return rng.uniform(size=(n, 3)).astype(np.float32)


def workloads(names):
    from sklearn.datasets import make_blobs
    rng = np.random.default_rng(0)
    if "blobs128" in names:
        X, _ = make_blobs(200_000, 128, centers=256, random_state=0)
        X = X.astype(np.float32)
        yield "blobs 200k x 128", X, [256]
    if "blobs8" in names:
        X, _ = make_blobs(1_000_000, 8, centers=100, random_state=0)
        yield "blobs 1M x 8", X.astype(np.float32), [100]
    if "photo" in names:
        yield "photo 4.4M x 3", photo_pixels(), [16, 64, 256]
    for name in names:
        if name.startswith("d="):  # d=<d>,<n>,<k>: uniform blobs of any shape
            d, n, k = map(int, name[2:].split(","))
            X, _ = make_blobs(n, d, centers=k, random_state=0)
            yield f"blobs {n} x {d}", X.astype(np.float32), [k]
    del rng


def matmul_gflops(threads, size=2048, repeat=5):
    """NumPy's float32 product of two size x size matrices on ``threads`` BLAS threads, in
    GFLOP/s: what a tuned kernel reaches on this machine."""
    from threadpoolctl import threadpool_limits
    A = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    with threadpool_limits(threads):
        A @ A  # (the first call starts BLAS's threads)
        return 2 * size ** 3 / best_time(lambda: A @ A, repeat) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", nargs="+", default=["blobs128", "blobs8", "photo"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sklearn", action="store_true", help="also time scikit-learn")
    parser.add_argument("--filter", action="store_true", help="also time filter_pass")
    parser.add_argument("--settle", type=int, default=0,
                        help="Lloyd iterations applied to the initial centres first")
    parser.add_argument("--ks", nargs="+", type=int, help="cluster counts for every workload")
    parser.add_argument("--distinct", action="store_true",
                        help="the workloads' distinct rows (on a grid), weighted by counts")
    parser.add_argument("--gflops", action="store_true",
                        help="also each pass's GFLOP/s, and NumPy's matrix product's")
    args = parser.parse_args(argv)
    print(f"kernels: {level_name(core)} ({core.__file__})")
    if args.gflops:
        print("reference: NumPy float32 matmul 2048 x 2048, "
              + ", ".join(f"{t}T {matmul_gflops(t):.1f} GFLOP/s" for t in args.threads))
    for name, X, ks in workloads(args.workloads):
        rng = np.random.default_rng(1)
        w = np.ones(len(X), dtype=X.dtype)
        if args.distinct:
            found = core.grid_distinct_rows(X, len(X), np.empty(len(X), np.int32),
                                            max(args.threads))
            if found is False:
                print(f"{name:>18} not on a grid: left out")
                continue
            X, w = found[0], found[1].astype(X.dtype)
            name = f"{name}, {len(X)} distinct"
        labels = np.empty(len(X), dtype=np.int32)
        sorted_rows = None
        if args.filter and X.shape[1] <= core.lloyd_layout()[0]:
            def set_up():
                if args.distinct:  # (in Z-order already)
                    return X, w, core.filter_tree(X, w, max(args.threads))
                order, rows, row_weights = core.zorder_sort(X, w, max(args.threads))
                return rows, row_weights, core.filter_tree(rows, row_weights, max(args.threads))
            set_up_sec = best_time(set_up, max(2, args.repeat // 3))
            sorted_rows = set_up()
            print(f"{name:>18} filter set-up ({'tree' if args.distinct else 'sort and tree'}, "
                  f"{max(args.threads)}T) "
                  f"{set_up_sec * 1e3:8.1f} ms")
        for k in args.ks or ks:
            C = X[rng.choice(len(X), k, replace=False)].copy()
            sums = np.empty((k, X.shape[1]))
            weights = np.empty(k)
            for _ in range(args.settle):
                core.lloyd_pass(X, w, C, labels, sums, weights, max(args.threads))
                filled = weights > 0
                C[filled] = (sums[filled] / weights[filled, None]).astype(X.dtype)
            row = [f"{name:>18} k={k:<4}"]
            for t in args.threads:
                core.lloyd_pass(X, w, C, labels, sums, weights, t)
                sec = best_time(lambda: core.lloyd_pass(X, w, C, labels, sums, weights, t),
                                args.repeat)
                row.append(f"{t}T {sec * 1e3:8.1f} ms")
                if args.gflops:
                    row[-1] += f" ({2 * X.shape[0] * X.shape[1] * k / sec / 1e9:6.1f} GFLOP/s)"
            if sorted_rows is not None:
                rows, row_weights, tree = sorted_rows
                sorted_labels = np.full(len(X), -1, dtype=np.int32)
                block_labels = np.full(tree[0][1], -1, dtype=np.int32)
                for t in args.threads:
                    def one_pass():
                        core.filter_pass(rows, row_weights if args.distinct else None, tree,
                                         C, sorted_labels, block_labels, sums, weights, t)
                    one_pass()
                    sec = best_time(one_pass, args.repeat)
                    row.append(f"filter {t}T {sec * 1e3:8.1f} ms")
            if args.sklearn:
                from sklearn.cluster import KMeans
                from threadpoolctl import threadpool_limits
                for t in args.threads:
                    with threadpool_limits(t):
                        iters = 10
                        sec = best_time(lambda: KMeans(k, init=C, n_init=1, max_iter=iters,
                                                       tol=0).fit(X), max(2, args.repeat // 3))
                    row.append(f"sklearn {t}T {sec / iters * 1e3:8.1f} ms/it")
            print("  ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
