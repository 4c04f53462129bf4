"""benchmarks/compare_kmeans.py runs every section end to end, on one small workload."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("threadpoolctl")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compare_kmeans.py"


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("compare_kmeans", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    # Eight overlapping blobs, 100k x 4 float32 (1.6 MB: large enough for RSS to see a copy).
    X = rng.integers(0, 8, size=(100_000, 1)) * 2.0 + rng.standard_normal((100_000, 4))
    workload = ("tiny blobs", np.ascontiguousarray(X, dtype=np.float32))
    monkeypatch.setattr(module, "WORKLOADS", {"tiny": (lambda quick: workload, (4,))})
    return module


def rows(text, title):
    """The table rows printed under ``title``, each a list of cells."""
    table = text.split(title, 1)[1].strip().split("\n\n")[0].splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                    reason="the memory section reads Linux /proc")
def test_every_section(bench, capsys):
    assert bench.main(["--workloads", "tiny", "--algorithms", "hamerly", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    label = "tiny blobs, k=4"
    titles = bench.TITLES

    per_iter = rows(out, titles["per-iter"])
    assert len(per_iter) == 1 and per_iter[0][0] == label
    assert float(per_iter[0][-1]) < 1e-4  # every library ends at the same inertia

    converge = rows(out, titles["converge"])
    libraries = [row[1] for row in converge]
    assert libraries[:4] == ["fastkm", "fastkm hamerly", "sklearn lloyd", "sklearn elkan"]
    inertias = [float(row[4]) for row in converge]
    assert max(inertias) / min(inertias) - 1 < 1e-4

    (init,) = rows(out, titles["init"])
    assert init[1] == "3"  # 2 + ln(4) local trials
    assert float(init[2]) > 0 and float(init[3]) > 0

    (memory,) = rows(out, titles["memory"])
    extra = [float(cell.split()[0]) for cell in memory[2:]]
    assert len(extra) == len(per_iter[0]) - 2  # every library of the per-iteration table
    assert min(extra) >= 0
    # scikit-learn copies X (copy_x=True): the measurement must see at least that copy.
    sklearn_lloyd = memory[2 + libraries.index("sklearn lloyd")]
    assert float(sklearn_lloyd.split("(")[1].rstrip("x)")) >= 0.95

    (threads,) = rows(out, titles["threads"])
    assert len(threads) == 3  # workload, fastkm, fastkm hamerly


@pytest.mark.parametrize("argv, message", [
    (["--only", "per-iter,speed"], "unknown ['speed']"),
    (["--workloads", "tiny,huge"], "unknown ['huge']"),
    (["--algorithms", "hamerly,nope"], "algorithm must be one of"),
])
def test_bad_choice_is_refused(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err



def test_ks_keeps_only_those_cluster_counts(bench, capsys, monkeypatch):
    workload = bench.WORKLOADS["tiny"][0](False)
    monkeypatch.setattr(bench, "WORKLOADS", {"tiny": (lambda quick: workload, (4, 6))})
    assert bench.main(["--workloads", "tiny", "--only", "per-iter", "--ks", "6",
                       "--repeat", "1"]) == 0
    per_iter = rows(capsys.readouterr().out, bench.TITLES["per-iter"])
    assert [row[0] for row in per_iter] == ["tiny blobs, k=6"]
