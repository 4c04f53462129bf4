"""Greedy k-means++ initialization: fastkm against scikit-learn, same data and thread count.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_init.py [--n 1000000] [--k 256]

Data: the first n photo pixels of the GUIDE's workload (sklearn's china.jpg resized to
2560x1708 with Pillow BICUBIC, /255, float32, d=3). Both use 2 + ln(k) local trials per
centre and sample weights of one; min of --repeat runs.
"""

import argparse
import time

import numpy as np
from PIL import Image
from sklearn.cluster import kmeans_plusplus as sklearn_kmeans_plusplus
from sklearn.datasets import load_sample_image
from threadpoolctl import threadpool_limits

from fastkm._init import kmeans_plusplus
from fastkm._validation import effective_n_threads


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    image = Image.fromarray(load_sample_image("china.jpg")).resize((2560, 1708), Image.BICUBIC)
    X = np.ascontiguousarray((np.asarray(image).reshape(-1, 3) / 255.0)[:args.n],
                             dtype=np.float32)
    weights = np.ones(len(X), dtype=np.float32)
    threads = effective_n_threads(args.threads)
    timings = {"fastkm": [], "scikit-learn": []}
    with threadpool_limits(threads):
        for _ in range(args.repeat):
            start = time.perf_counter()
            kmeans_plusplus(X, args.k, weights, np.random.RandomState(0), threads)
            timings["fastkm"].append(time.perf_counter() - start)
            start = time.perf_counter()
            sklearn_kmeans_plusplus(X, args.k, random_state=0)
            timings["scikit-learn"].append(time.perf_counter() - start)
    fast, slow = min(timings["fastkm"]), min(timings["scikit-learn"])
    print(f"k-means++ on {len(X)} x 3 float32, k={args.k}, {threads} threads, min of "
          f"{args.repeat}")
    print(f"| fastkm s | scikit-learn s | scikit-learn/fastkm |\n|--:|--:|--:|\n"
          f"| {fast:.3f} | {slow:.3f} | {slow / fast:.1f}x |")


if __name__ == "__main__":
    main()
