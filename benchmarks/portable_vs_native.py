"""The portable build (one copy per x86-64 level, picked at import) against -march=native.

    python benchmarks/portable_vs_native.py [--rounds 3]

Copies the source tree (``git archive HEAD``) to a temporary folder, builds it in place with
the x86-64-v4 copy compiled for ``-march=native`` instead, and times one Lloyd pass
(``core.lloyd_pass``, one thread, CPU time, best of 7) on photo pixels (k=16, 256) and blobs
200k x 128 (k=256) with the installed fastkm at each of its levels and with the native
build, alternating processes round by round; then, the same way (best of 3), two whole fits
with bounded algorithms (which also find the photo's repeated pixels): Hamerly on the
photo pixels (k=64, 10 iterations) and Yinyang on the blobs (k=256, 5 iterations). Ratios
above 1: the portable build is slower.
Needs git, a C compiler and Cython (the test extra).
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import sys, time
import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_image, make_blobs
import fastkm
from fastkm._isa import core
img = Image.fromarray(load_sample_image("china.jpg")).resize((1280, 854), Image.BICUBIC)
photo = (np.asarray(img, dtype=np.float32).reshape(-1, 3) / 255).copy()
blobs = make_blobs(200_000, n_features=128, centers=50, random_state=0)[0].astype(np.float32)


def best_time(run, repeat):
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        run()
        best = min(best, time.thread_time() - start)
    return best


def centres(X, k):
    return X[np.random.default_rng(0).choice(len(X), k, replace=False)].copy()


times = []
for X, k in ((photo, 16), (photo, 256), (blobs, 256)):
    w = np.ones(len(X), np.float32)
    labels = np.empty(len(X), np.int32)
    C = centres(X, k)
    sums, weights = np.empty((k, X.shape[1])), np.empty(k)
    times.append(best_time(lambda: core.lloyd_pass(X, w, C, labels, sums, weights, 1), 7))
for X, k, algorithm, iterations in ((photo, 64, "hamerly", 10), (blobs, 256, "yinyang", 5)):
    km = fastkm.KMeans(k, init=centres(X, k), n_init=1, max_iter=iterations, tol=0,
                       algorithm=algorithm, n_threads=1)
    times.append(best_time(lambda: km.fit(X), 3))
print(fastkm.build_info()["isa"], *times)
"""
WORKLOADS = ["photo 1280x854, k=16", "photo 1280x854, k=256", "blobs 200k x 128, k=256",
             "fit: photo, k=64, hamerly, 10 it.", "fit: blobs 200k x 128, k=256, yinyang, 5 it."]


def build_native(folder):
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    setup = Path(folder, "setup.py")
    text = setup.read_text()
    portable = '["-march=x86-64-v4", "-mprefer-vector-width=512"]'
    if portable not in text:
        sys.exit("setup.py no longer names the x86-64-v4 flags this script replaces")
    setup.write_text(text.replace(portable, '["-march=native", "-mprefer-vector-width=512"]'))
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=folder,
                   check=True, capture_output=True)
    return str(Path(folder, "src"))


def probe(env_extra):
    env = dict(os.environ, **env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0], [float(t) for t in out[1:]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        native_src = build_native(folder)
        runs = {"portable (x86-64-v4 picked)": {}, "portable forced x86-64-v3": {
            "FASTKM_ISA": "x86-64-v3"}, "portable forced baseline": {"FASTKM_ISA": "baseline"},
            "-march=native": {"PYTHONPATH": native_src}}
        best = {name: [float("inf")] * len(WORKLOADS) for name in runs}
        for _ in range(args.rounds):
            for name, env in runs.items():
                _, times = probe(env)
                best[name] = [min(a, b) for a, b in zip(best[name], times)]
    native = best["-march=native"]
    print("| build | " + " | ".join(f"{w} ms" for w in WORKLOADS) + " | time / native |")
    print("|---|" + "--:|" * (len(WORKLOADS) + 1))
    for name, times in best.items():
        ratio = max(t / n for t, n in zip(times, native))
        print(f"| {name} | " + " | ".join(f"{t * 1e3:.2f}" for t in times)
              + f" | {ratio:.2f}x (worst) |")


if __name__ == "__main__":
    main()
