"""Clustering quality on Franti & Sieranoja's clustering basic benchmark (CBB).

For each data set and seed, the centroid index (CI, Franti et al. 2014) of the fitted
centres against the ground truth: map every centre to its nearest ground-truth centroid and
count the ground-truth centroids nobody maps to, both ways, and take the larger count.
CI = 0 means every true cluster was found. Prints mean CI, success rate (CI = 0) and mean
time per fit for fastkm (defaults, n_init=10, swap_trials) and scikit-learn (defaults).

    python benchmarks/cbb_quality.py [--data ../shared/data/cbb] [--seeds 20] [--swaps 50]
"""

import argparse
import time
from pathlib import Path

import numpy as np

import fastkm

SETS = ["s1", "s2", "s3", "s4", "a1", "a2", "a3", "unbalance", "birch1", "birch2", "dim032"]


def centroid_index(centers, truth):
    """CI: ground-truth centroids left without a fitted centre, the larger of both ways."""
    def orphans(source, target):
        nearest = ((source[:, None, :] - target[None, :, :]) ** 2).sum(-1).argmin(1)
        return len(target) - len(np.unique(nearest))
    return max(orphans(centers, truth), orphans(truth, centers))


def methods(k, seed, swaps):
    from sklearn.cluster import KMeans as SKLearnKMeans

    return {
        "fastkm": fastkm.KMeans(k, random_state=seed),
        "fastkm n_init=10": fastkm.KMeans(k, n_init=10, random_state=seed),
        f"fastkm swap_trials={swaps}": fastkm.KMeans(k, swap_trials=swaps, random_state=seed),
        "sklearn": SKLearnKMeans(k, random_state=seed),
    }


def main():
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data" / "cbb")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--swaps", type=int, default=50)
    parser.add_argument("--sets", nargs="*", default=SETS)
    args = parser.parse_args()

    totals = {}
    print(f"{'set':10} {'method':28} {'mean CI':>8} {'CI=0':>6} {'s/fit':>8}")
    for name in args.sets:
        X = np.loadtxt(args.data / f"{name}.txt")
        truth = np.loadtxt(args.data / f"{name}-gt.txt")
        k = len(truth)
        results = {}
        for seed in range(args.seeds):
            for method, estimator in methods(k, seed, args.swaps).items():
                start = time.perf_counter()
                estimator.fit(X)
                elapsed = time.perf_counter() - start
                ci = centroid_index(estimator.cluster_centers_, truth)
                results.setdefault(method, []).append((ci, elapsed))
        for method, runs in results.items():
            cis = np.array([ci for ci, _ in runs])
            times = np.array([t for _, t in runs])
            totals.setdefault(method, []).append((cis == 0).mean())
            print(f"{name:10} {method:28} {cis.mean():8.2f} {(cis == 0).mean():6.0%} "
                  f"{times.mean():8.3f}")
    print("\nsuccess rate (CI = 0) over all sets:")
    for method, rates in totals.items():
        print(f"  {method:28} {np.mean(rates):6.1%}   sets always solved: "
              f"{sum(r == 1 for r in rates)}/{len(rates)}")


if __name__ == "__main__":
    main()
