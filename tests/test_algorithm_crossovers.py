"""benchmarks/algorithm_crossovers.py runs end to end (on two tiny workloads)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "algorithm_crossovers.py"


def test_crossover_table_times_every_algorithm_and_shows_autos_pick(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("algorithm_crossovers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    X = np.random.default_rng(0).normal(size=(30_000, 3)).astype(np.float32)
    monkeypatch.setattr(module, "workloads", lambda quick: [("tiny", X, 8), ("tiny", X, 120)])
    module.main(["--algorithms", "lloyd,exponion"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert len(lines) == 2
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert [row[-1] for row in cells] == ["lloyd", "exponion"]
    for row in cells:
        assert float(row[2]) > 0 and float(row[3]) > 0
        assert "/" not in row[4]  # both algorithms ran the same iterations
