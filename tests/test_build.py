"""Building the kernels without OpenMP: a serial build that warns, or an error on request;
and without GCC's vector extensions: the portable C fallback of the micro-kernels, which must
give their scores bit for bit.

Each test compiles the extension (about a minute), so they are marked slow; CI runs them.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastkm._isa import core

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def build(tmp_path, **env):
    source = tmp_path / "src_tree"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns(
        "*.so", "*.c", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                            cwd=source, env={**os.environ, **env}, capture_output=True,
                            text=True)
    return source, result


def test_serial_portable_build_warns_and_gives_the_same_results(tmp_path):
    # One build for both (each takes minutes): serial, and with the portable kernels.
    cflags = (os.environ.get("CFLAGS", "") + " -DFASTKM_NO_VECTOR_EXTENSIONS").strip()
    source, result = build(tmp_path, FASTKM_OPENMP="0", CFLAGS=cflags)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "building serial kernels" in result.stderr
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 3))
    np.save(tmp_path / "X.npy", X)
    script = (
        "import numpy as np, fastkm, fastkm._isa as i\n"
        f"X = np.load({str(tmp_path / 'X.npy')!r})\n"
        "print(i.core.__file__, i.core.openmp_enabled())\n"
        "r = fastkm.kmeans(X, 8, random_state=0)\n"
        f"np.save({str(tmp_path / 'centers.npy')!r}, r.centers)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(source / "src")})
    assert run.returncode == 0, run.stderr[-2000:]
    module_file, openmp = run.stdout.split()
    assert module_file.startswith(str(source)) and openmp == "False"
    import fastkm

    expected = fastkm.kmeans(X, 8, random_state=0).centers
    assert np.array_equal(np.load(tmp_path / "centers.npy"), expected)
    # The kernel tests compare every kernel with plain references and with each other (ties
    # to the lower index need the same scores from each): the portable kernels included.
    kernels = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_kernels.py")],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(source / "src")})
    assert kernels.returncode == 0, kernels.stdout[-3000:]


def test_required_openmp_makes_a_missing_one_an_error(tmp_path):
    _, result = build(tmp_path, FASTKM_OPENMP="0", FASTKM_REQUIRE_OPENMP="1")
    assert result.returncode != 0
    assert "FASTKM_REQUIRE_OPENMP" in result.stderr


def test_installed_build_has_openmp():
    assert core.openmp_enabled()
