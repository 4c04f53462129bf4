"""Out-of-core fit: fastkm.KMeans on a float32 memmap far larger than its memory bar.

    python benchmarks/memmap_fit.py [--n 50000000] [--d 8] [--k 20] [--max-iter 10] [--path F]

Writes n x d float32 Gaussian blobs (k centres in [-10, 10]^d, unit noise) to a file (kept if
it already has the right size), then fits ``fastkm.KMeans(k, random_state=0)`` on a read-only
``numpy.memmap`` of it in a child process and prints that process's peak resident memory
(VmHWM from /proc/self/status, which counts the file pages it has mapped) and the fit time.
Bar (issue 5): 50M x 8 float32 (1.6 GB) under 400 MB.
"""

import argparse
import os
import subprocess
import sys
import textwrap
import time

import numpy as np


def write_blobs(path, n, d, k):
    if os.path.exists(path) and os.path.getsize(path) == n * d * 4:
        return
    rng = np.random.default_rng(0)
    centers = rng.uniform(-10, 10, size=(k, d)).astype(np.float32)
    partial = path + ".partial"  # renamed when complete
    writer = np.memmap(partial, dtype=np.float32, mode="w+", shape=(n, d))
    step = 1_000_000
    for start in range(0, n, step):
        rows = min(step, n - start)
        writer[start:start + rows] = centers[rng.integers(k, size=rows)] + \
            rng.standard_normal((rows, d), dtype=np.float32)
        writer.flush()
    del writer
    os.replace(partial, path)


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import fastkm

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) / 1024

    path, n, d, k, max_iter = sys.argv[1], *map(int, sys.argv[2:6])
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
    print(f"before fit: VmRSS {status('VmRSS'):.0f} MiB, VmHWM {status('VmHWM'):.0f} MiB")
    start = time.perf_counter()
    km = fastkm.KMeans(k, random_state=0, max_iter=max_iter).fit(X)
    seconds = time.perf_counter() - start
    print(f"fit: {seconds:.1f} s, {km.n_iter_} iterations, inertia {km.inertia_:.6g}")
    print(f"peak resident memory (VmHWM): {status('VmHWM'):.0f} MiB "
          f"(file {X.nbytes / 2**20:.0f} MiB, labels {km.labels_.nbytes / 2**20:.0f} MiB)")
""")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000_000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--path", default="/tmp/fastkm_memmap_fit.f32")
    args = parser.parse_args()
    start = time.perf_counter()
    write_blobs(args.path, args.n, args.d, args.k)
    print(f"data: {args.n} x {args.d} float32 in {args.path} "
          f"({time.perf_counter() - start:.1f} s to prepare)")
    subprocess.run([sys.executable, "-c", CHILD, args.path, str(args.n), str(args.d),
                    str(args.k), str(args.max_iter)], check=True)


if __name__ == "__main__":
    main()
