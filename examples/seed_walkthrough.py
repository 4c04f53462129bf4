"""The classic k-means exercise, step by step, with fastkm.

Clusters the exercise's 300 2-D points (ex7data2) from the initial centroids
[[3, 3], [6, 2], [8, 5]] for at most 10 iterations, prints the first assignments and the
centroids after each step, and draws the iteration picture: one panel with every centroid's
path, and one small panel per iteration.

Usage::

    python examples/seed_walkthrough.py OUT_FOLDER [DATA_FOLDER]

DATA_FOLDER holds ex7data2.csv; by default the repository's tests/data.
"""

import argparse
from pathlib import Path

import numpy as np

import fastkm
import fastkm.plot

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
INITIAL_CENTROIDS = np.array([[3.0, 3.0], [6.0, 2.0], [8.0, 5.0]])


def main(argv=None):
    parser = argparse.ArgumentParser(description="The k-means exercise's walkthrough.")
    parser.add_argument("out", type=Path, help="folder for the pictures (created if needed)")
    parser.add_argument("data", type=Path, nargs="?", default=DATA,
                        help="folder holding ex7data2.csv (default: the repository's "
                             "tests/data)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    X = np.loadtxt(args.data / "ex7data2.csv", delimiter=",")
    print(f"{len(X)} points from {args.data / 'ex7data2.csv'}; initial centroids "
          f"{INITIAL_CENTROIDS.tolist()}")

    # tol=0: stop only when no label changes (or after 10 iterations), as the exercise does.
    recorder = fastkm.plot.record()
    km = fastkm.KMeans(3, init=INITIAL_CENTROIDS, max_iter=10, tol=0,
                       callback=recorder).fit(X)
    history = recorder.history

    first = history[0].labels[:3]
    print(f"closest centroids of the first 3 points: {first.tolist()} (0-based; the "
          f"exercise's 1-based {', '.join(str(i + 1) for i in first)})")
    for info in history:
        centroids = ", ".join(f"[{x:.6f}, {y:.6f}]" for x, y in info.centers)
        print(f"iteration {info.iteration}: centroids {centroids}")
    print(f"stopped after {km.n_iter_} iterations (at most 10): "
          + ("the last one changed no label" if km.n_iter_ < 10 else "the limit"))
    print(f"cluster sizes {np.bincount(km.labels_).tolist()}, inertia (SSE) "
          f"{km.inertia_:.4f}")

    for name, panels in (("seed-iterations.png", False), ("seed-panels.png", True)):
        figure = fastkm.plot.iterations(X, history, init=INITIAL_CENTROIDS, panels=panels,
                                        feature_names=("x1", "x2"))
        figure.savefig(args.out / name)
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
