"""Clustering a CSV file from the command line with ``fastkm cluster``.

Runs, and prints as it goes::

    fastkm cluster DATA.csv -k 3 -o OUT/clusters.csv --plot OUT/clusters.png --force

which writes one label per row to clusters.csv, the centres to clusters-centers.csv and the
iteration picture to clusters.png (--force, so that the example can run again into the same
folder), then shows the first lines of the two CSV files.

Usage::

    python examples/cluster_csv.py OUT_FOLDER [DATA.csv] [-k K]

DATA.csv defaults to the repository's tests/data/ex7data2.csv.
"""

import argparse
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "ex7data2.csv"


def main(argv=None):
    parser = argparse.ArgumentParser(description="fastkm cluster on a CSV file.")
    parser.add_argument("out", type=Path, help="folder for the results (created if needed)")
    parser.add_argument("data", type=Path, nargs="?", default=DATA,
                        help="a CSV file (default: the repository's tests/data/ex7data2.csv)")
    parser.add_argument("-k", type=int, default=3, help="clusters (default 3)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    labels, picture = args.out / "clusters.csv", args.out / "clusters.png"
    command = ["fastkm", "cluster", str(args.data), "-k", str(args.k), "-o", str(labels),
               "--plot", str(picture), "--force"]
    print("$ " + " ".join(command), flush=True)
    # python -m fastkm is the fastkm command, with this interpreter's fastkm.
    done = subprocess.run([sys.executable, "-m", *command])
    if done.returncode:
        sys.exit(done.returncode)
    for path in (labels, args.out / "clusters-centers.csv"):
        head = path.read_text().splitlines()[:4]
        print(f"\n{path} begins with:\n  " + "\n  ".join(head))


if __name__ == "__main__":
    main()
