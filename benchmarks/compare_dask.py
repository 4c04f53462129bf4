"""fastkm.dask.KMeans against dask-ml's KMeans on one LocalCluster, same init and iterations.

    python benchmarks/compare_dask.py [--n 10000000] [--d 8] [--k 100] [--iters 10]
        [--algorithm auto]

Data: blobs (k true centres uniform in [-10, 10]^d, unit Gaussian noise), float32, generated on
the workers with ``dask.array.random`` and persisted there before timing; chunks of --chunk
rows. Both estimators get the same initial centres (an array: k rows of X drawn at random, as
dask-ml accepts an ndarray ``init``), ``max_iter=--iters`` and ``tol=0`` so that both run
exactly --iters iterations (dask-ml's loop stops only when the shift is < tol). Reported: time per
iteration as (fit with --iters + 1 iterations - fit with 1 iteration) / --iters for both
(so fixed costs, such as fastkm's checks pass and both final assignment passes, cancel),
fastkm's median iteration from its callback, and the final inertia: the
weighted sum of squared distances to the returned centres, computed for both by
``fastkm.dask.KMeans.score`` (dask-ml's own ``inertia_`` is printed too: it sums unsquared
distances after its final assignment pass). dask-ml's numba kernel is
compiled on every worker by a warm-up fit first. The cluster: --workers processes with
--threads-per-worker threads each; fastkm's kernel runs one OpenMP thread per task (Dask's
``OMP_NUM_THREADS=1``), the same parallelism as dask-ml's tasks. --algorithm is fastkm's
(default 'auto': 'hamerly' for the default shape, whose per-row bounds stay on the workers and
whose passes get cheaper as fewer samples move, so its time per iteration depends on --iters);
--algorithm lloyd,auto times each in turn against the same dask-ml run; --repeat R times every
estimator R times, interleaved, and compares the fastest of each. --malloc-arena starts
the workers with glibc's MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_ at 1 GiB instead of
Dask's default (trim threshold 64 KiB, which makes every array over 128 KiB fresh pages,
faulted in at first touch), for both libraries. Also reported: the CPU time per iteration of
the client's process (which runs the scheduler) and the workers, measured the same way, less
sensitive than wall time to other work on a shared machine.
"""

import argparse
import os
import time

import dask
import dask.array as da
import numpy as np
import psutil
from distributed import Client, LocalCluster, wait

import fastkm.dask
from fastkm._lloyd import auto_algorithm


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algorithm", default="auto",
                        help="fastkm's algorithm, or several separated by commas")
    parser.add_argument("--skip-dask-ml", action="store_true")
    parser.add_argument("--malloc-arena", action="store_true")
    parser.add_argument("--repeat", type=int, default=1,
                        help="timings per estimator, interleaved; the fastest is kept")
    args = parser.parse_args()
    if args.malloc_arena:
        dask.config.set({f"distributed.nanny.pre-spawn-environ.{name}": 1 << 30
                         for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")})

    with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads_per_worker,
                      processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        rng = np.random.RandomState(args.seed)
        true_centers = rng.uniform(-10, 10, (args.k, args.d)).astype(np.float32)
        drs = da.random.RandomState(args.seed)
        which = drs.randint(0, args.k, size=args.n, chunks=args.chunk)
        noise = drs.standard_normal((args.n, args.d), chunks=(args.chunk, args.d))
        X = (da.from_array(true_centers)[which] + noise).astype(np.float32)
        X = X.rechunk((args.chunk, args.d)).persist()
        wait(X)
        rows = np.sort(rng.choice(args.n, args.k, replace=False))
        init = X[rows].compute()
        print(f"n={args.n} d={args.d} k={args.k} iters={args.iters} chunk={args.chunk} "
              f"workers={args.workers}x{args.threads_per_worker} threads, "
              f"{len(X.chunks[0])} blocks, malloc arena {args.malloc_arena}, load average "
              f"{os.getloadavg()[0]:.2f}")

        # CPU time of the client's process (with the scheduler's thread) and the workers':
        # less sensitive than wall time to other work on a shared machine.
        processes = [psutil.Process()] + [psutil.Process(pid) for pid in
                                          client.run(os.getpid).values()]

        def cpu_seconds():
            return sum(sum(p.cpu_times()[:2]) for p in processes)

        def timed(make, max_iter):
            begin, cpu = time.perf_counter(), cpu_seconds()
            est = make(max_iter).fit(X)
            return est, time.perf_counter() - begin, cpu_seconds() - cpu

        def report(name, make):
            short, t_short, cpu_short = timed(make, 1)
            est, t_long, cpu_long = timed(make, args.iters + 1)
            per_iter = (t_long - t_short) / (est.n_iter_ - short.n_iter_)
            cpu_per_iter = (cpu_long - cpu_short) / (est.n_iter_ - short.n_iter_)
            print(f"{name}: fit of {est.n_iter_} iterations {t_long:.2f} s, of 1 iteration "
                  f"{t_short:.2f} s: {per_iter:.3f} s per iteration, {cpu_per_iter:.3f} CPU s "
                  f"per iteration")
            return est, per_iter, cpu_per_iter

        variants = []
        for algorithm in args.algorithm.split(","):
            ran = algorithm if algorithm != "auto" else \
                auto_algorithm(args.n, args.d, args.k, np.dtype(np.float32).itemsize)
            name = f"fastkm.dask {algorithm}" + (f" ({ran})" if ran != algorithm else "")
            variants.append((name, lambda m, algorithm=algorithm: fastkm.dask.KMeans(
                args.k, init=init, max_iter=m, tol=0, algorithm=algorithm,
                callback=lambda info: stamps.append(time.perf_counter()))))
        if not args.skip_dask_ml:
            from dask_ml.cluster import KMeans as DaskMLKMeans

            small = X[:min(args.n, 2 * args.chunk)].rechunk(args.chunk // 10).persist()
            DaskMLKMeans(args.k, init=init, max_iter=1, tol=0, n_init=1).fit(small)  # JIT
            variants.append(("dask-ml    ", lambda m: DaskMLKMeans(
                args.k, init=init, max_iter=m, tol=0, n_init=1)))
        # Repeats interleave the estimators; each one's fastest repeat is kept (and its
        # least CPU time per iteration).
        best, least_cpu = {}, {}
        for repeat in range(args.repeat):
            for name, make in variants:
                stamps = []
                est, per_iter, cpu_per_iter = report(name, make)
                least_cpu[name] = min(cpu_per_iter, least_cpu.get(name, np.inf))
                if stamps:
                    steps = np.diff(stamps[-args.iters - 1:])
                    print(f"{name}: median iteration from its callback "
                          f"{np.median(steps):.3f} s, inertia {est.inertia_:.10g}")
                if name not in best or per_iter < best[name][1]:
                    best[name] = est, per_iter
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        fits = [(name, *best[name]) for name, _ in variants if name != "dask-ml    "]
        if args.skip_dask_ml:
            return
        ref, ref_iter = best["dask-ml    "]
        reported = float(dask.compute(ref.inertia_)[0])
        # dask-ml's inertia_ sums unsquared distances when its last shift exceeds 1e-7 (its
        # final pairwise_distances_argmin_min call lacks squared=True): recompute the sum of
        # squared distances to its centres with the same code as fastkm's inertia_.
        scorer = fastkm.dask.KMeans(args.k)
        scorer.cluster_centers_ = np.asarray(ref.cluster_centers_, dtype=np.float32)
        scorer.n_features_in_ = args.d
        ref_inertia = -scorer.score(X)
        print(f"dask-ml: inertia {ref_inertia:.10g} (its inertia_ attribute: {reported:.6g})")
        for name, km, fast_iter in fits:
            centre_gap = float(np.abs(np.asarray(ref.cluster_centers_, dtype=np.float64) -
                                      km.cluster_centers_).max())
            cpu_ratio = least_cpu["dask-ml    "] / least_cpu[name]
            print(f"{name}: per-iteration speed-up {ref_iter / fast_iter:.1f}x (CPU time per "
                  f"iteration: {cpu_ratio:.1f}x less); inertia ratio fastkm/dask-ml - 1 "
                  f"{km.inertia_ / ref_inertia - 1:.2e}; max centre difference {centre_gap:.2e}")
        del client


if __name__ == "__main__":
    main()
