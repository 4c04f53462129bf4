"""benchmarks/bench_lloyd_pass.py: its rates in GFLOP/s agree with its timings."""

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("threadpoolctl")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_lloyd_pass.py"


def test_gflops(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_lloyd_pass", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    reference = bench.matmul_gflops
    monkeypatch.setattr(bench, "matmul_gflops", lambda threads: reference(threads, size=256))
    n, d, k = 200_000, 16, 16  # (a pass of a few ms: printed to 0.1 ms)
    assert bench.main(["--gflops", "--workloads", f"d={d},{n},{k}", "--threads", "1", "2",
                       "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    reference = re.findall(r"(\d)T ([\d.]+) GFLOP/s", out.splitlines()[1])
    assert [t for t, _ in reference] == ["1", "2"]
    assert all(float(rate) > 0 for _, rate in reference)
    (line,) = [line for line in out.splitlines() if line.strip().startswith(f"blobs {n} x {d}")]
    passes = re.findall(r"(\d)T +([\d.]+) ms \( *([\d.]+) GFLOP/s\)", line)
    assert [t for t, _, _ in passes] == ["1", "2"]
    for _, ms, rate in passes:
        # The rate is the pass's 2 n d k floating-point operations over its time (both
        # printed rounded): a rate of n d k, or one without the centres, fails.
        assert float(rate) == pytest.approx(2 * n * d * k / (float(ms) / 1e3) / 1e9, rel=0.1)
