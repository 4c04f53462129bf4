"""What the benchmark scripts print about the machine they ran on."""

import os
import platform
import time


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def load_average():
    try:
        return "%.2f, %.2f, %.2f" % os.getloadavg()
    except OSError:
        return "unknown"


def git_state():
    """The commit of the source tree and whether src/ has uncommitted changes."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {head}" + (", src/ has uncommitted changes" if dirty else ", src/ clean")


def describe(extra=()):
    """Lines describing the machine, the build and the library versions."""
    import fastkm
    import numpy as np

    lines = [
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"cpu: {cpu_model()} ({os.cpu_count()} logical CPUs, {usable_cpus()} usable)",
        f"load average (1, 5, 15 min) at start: {load_average()}",
        f"python {platform.python_version()}, numpy {np.__version__}",
        f"fastkm.build_info(): {fastkm.build_info()}",
        f"fastkm source: {git_state()}",
    ]
    lines.extend(extra)
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if name in os.environ:
            lines.append(f"WARNING: {name}={os.environ[name]} is set; it can slow numpy's BLAS "
                         "(scikit-learn, faiss). Run with `env -u OPENBLAS_CORETYPE "
                         "-u OPENBLAS_L2_SIZE` for a fair comparison.")
    return lines


def table(headers, rows):
    """A Markdown table, columns padded to line up."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    # Numbers right-aligned, text left-aligned.
    numeric = [all(_is_number(r[i]) for r in cells[1:]) for i in range(len(headers))]

    def line(r):
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w)
                                 for c, w, num in zip(r, widths, numeric)) + " |"

    sep = "|" + "|".join("-" * (w + 1) + (":" if num else "-")
                         for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _is_number(text):
    try:
        float(text.rstrip("x%").replace("/", ""))
        return True
    except ValueError:
        return False


def best_time(run, repeat=3):
    """The shortest wall time of ``repeat`` calls of ``run()``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)
