"""How OpenMP's wait policy changes fastkm's times, on idle and on busy cores.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/openmp_wait.py [--rounds 2]

fastkm loads OpenMP with ``OMP_WAIT_POLICY=PASSIVE`` unless the user set ``OMP_WAIT_POLICY``
or ``GOMP_SPINCOUNT`` (src/fastkm/_isa.py); GNU OpenMP's own default spins 300,000 times
before a thread sleeps. Each setting runs in its own child process (the runtime reads it when
it loads), alternating round by round; the minimum over rounds is printed (and the maximum, on busy cores: the
cost of spinning comes in bursts), in seconds, on the default thread count.

1. Idle cores: a 12-megapixel photo (kodim23 resized to 4000x3000) at K=256 and K=16, eight
   Kodak images at K=16 and K=256, and a 10-iteration fit on the 2560x1708 photo pixels at
   k=16 (benchmarks/compare_kmeans.py's workload).
2. Busy cores: one Kodak image at K=64, on 2 threads and on 1, while another process keeps
   the CPU busy: a Python loop, or numpy matrix products (whose OpenBLAS threads spin too).

Needs the Kodak images (../shared/data/kodak or the folder given) and scikit-learn (the
photo workload). Run it with nothing else running.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_KODAK = HERE.parent.parent / "shared" / "data" / "kodak"

SETTINGS = {
    "fastkm default (passive)": {},
    "GNU OpenMP default (300,000 spins)": {"GOMP_SPINCOUNT": "300000"},
    "30,000 spins": {"GOMP_SPINCOUNT": "30000"},
}

LOADS = {
    "a Python loop": "while True: pass",
    "numpy matrix products": "import numpy as np\na = np.random.rand(400, 400)\n"
                             "while True:\n    a = a @ a\n    a /= np.abs(a).max()",
}

IDLE = r"""
import json, sys
import numpy as np
from PIL import Image
sys.path.insert(0, sys.argv[2])
import compare_kmeans
import fastkm
from _machine import best_time as best
from fastkm.image import quantize

kodak = sys.argv[1]
big = Image.open(f"{kodak}/kodim23.png").convert("RGB").resize(
    (4000, 3000), Image.Resampling.LANCZOS)
small = [np.asarray(Image.open(f"{kodak}/kodim{i:02d}.png").convert("RGB"))
         for i in range(1, 9)]
_, X = compare_kmeans.photo(False)
km = fastkm.KMeans(16, init=compare_kmeans.initial_centers(X, 16), n_init=1, max_iter=10,
                   tol=0)

print(json.dumps({
    "12 MP K=256": best(lambda: quantize(big, 256)),
    "12 MP K=16": best(lambda: quantize(big, 16)),
    "Kodak x8 K=16": best(lambda: [quantize(a, 16) for a in small]),
    "Kodak x8 K=256": best(lambda: [quantize(a, 256) for a in small]),
    "photo fit k=16": best(lambda: km.fit(X)),
}))
"""

BUSY = r"""
import json, sys, time
from fastkm.image import quantize

path = f"{sys.argv[1]}/kodim02.png"
out = {}
for threads in (2, 1):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        quantize(path, 64, n_threads=threads)
        times.append(time.perf_counter() - start)
    out[f"Kodak K=64, {threads} thread(s)"] = min(times)
print(json.dumps(out))
"""


def child(code, settings, kodak):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(settings)
    result = subprocess.run([sys.executable, "-c", code, str(kodak), str(HERE)], env=env,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(results, spread=False):
    """Minimum over rounds of each column; with ``spread``, "min / max"."""
    columns = list(next(iter(results.values()))[0])
    lines = ["| setting | " + " | ".join(columns) + " |",
             "|---|" + "--:|" * len(columns)]
    for name, runs in results.items():
        cells = []
        for c in columns:
            values = [run[c] for run in runs]
            cells.append(f"{min(values):.3f} / {max(values):.3f}" if spread
                         else f"{min(values):.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kodak_dir", nargs="?", default=str(DEFAULT_KODAK))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    idle = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, settings in SETTINGS.items():
            idle[name].append(child(IDLE, settings, args.kodak_dir))
    print("Idle cores, seconds (min over rounds)\n\n" + table(idle) + "\n")
    for load, code in LOADS.items():
        busy = {name: [] for name in SETTINGS}
        spinner = subprocess.Popen([sys.executable, "-c", code])
        try:
            for _ in range(args.rounds):
                for name, settings in SETTINGS.items():
                    busy[name].append(child(BUSY, settings, args.kodak_dir))
        finally:
            spinner.kill()
        print(f"\nBusy: {load} in another process, seconds (min / max over rounds; each"
              f" round's time is itself the best of 3 calls)\n\n" + table(busy, spread=True))

if __name__ == "__main__":
    main()
