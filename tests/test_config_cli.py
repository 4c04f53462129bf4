"""``fastkm.show_config``, ``fastkm.build_info``, ``python -m fastkm info`` and FASTKM_ISA."""

import io
import os
import subprocess
import sys

import pytest

import fastkm
from fastkm import _isa


def run_python(*args, env=None):
    """Run this interpreter in a subprocess with extra environment variables."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def assert_config_text(text, info):
    lines = text.splitlines()
    assert lines[0] == f"fastkm {fastkm.__version__}"
    assert f"OpenMP:           {'on' if info['openmp'] else 'off'}" in text
    assert f"threads:          {info['threads']} " in text
    assert f"instruction set:  {info['isa']} " in text


def test_version_option_and_help():
    from fastkm.cli import main

    for args in (["--version"], ["--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 0
    result = run_python("-m", "fastkm", "--version")
    assert result.returncode == 0 and result.stdout == f"fastkm {fastkm.__version__}\n"
    assert "'fastkm COMMAND --help'" in run_python("-m", "fastkm", "--help").stdout


def test_build_info():
    info = fastkm.build_info()
    assert info["version"] == fastkm.__version__
    assert isinstance(info["openmp"], bool)
    assert 1 <= info["threads"] <= info["usable_cpus"]
    assert info["isa"] in info["isa_available"] and info["isa"] in _isa.LEVELS
    assert info["isa_available"][0] == "baseline"
    # With no FASTKM_ISA the best level available is chosen.
    if os.environ.get("FASTKM_ISA", "auto") in ("", "auto"):
        assert info["isa"] == info["isa_available"][-1]


def test_show_config_prints_version_openmp_threads_and_isa(capsys):
    fastkm.show_config()
    assert_config_text(capsys.readouterr().out, fastkm.build_info())
    buffer = io.StringIO()
    fastkm.show_config(file=buffer)
    assert_config_text(buffer.getvalue(), fastkm.build_info())


def test_python_m_fastkm_info():
    result = run_python("-m", "fastkm", "info")
    assert result.returncode == 0, result.stderr
    assert_config_text(result.stdout, fastkm.build_info())


def test_python_m_fastkm_without_a_command_shows_usage():
    result = run_python("-m", "fastkm")
    assert result.returncode == 2
    assert "info" in result.stderr


def test_omp_num_threads_sets_the_default_thread_count():
    result = run_python("-c", "import fastkm; print(fastkm.build_info()['threads'])",
                        env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


@pytest.mark.parametrize("level", _isa.available_levels())
def test_fastkm_isa_forces_a_level(level):
    code = ("import fastkm, numpy as np\n"
            "print(fastkm.build_info()['isa'])\n"
            "X = np.random.default_rng(0).normal(size=(1000, 3))\n"
            "print(fastkm.kmeans(X, 4, init=X[:4], max_iter=10, tol=0).inertia.hex())")
    result = run_python("-c", code, env={"FASTKM_ISA": level})
    assert result.returncode == 0, result.stderr
    isa, inertia = result.stdout.split()
    assert isa == level
    reference = run_python("-c", code, env={"FASTKM_ISA": "baseline"}).stdout.split()[1]
    assert float.fromhex(inertia) == pytest.approx(float.fromhex(reference), rel=1e-12)


def test_fastkm_isa_baseline_in_info():
    result = run_python("-m", "fastkm", "info", env={"FASTKM_ISA": "baseline"})
    assert result.returncode == 0, result.stderr
    assert "instruction set:  baseline" in result.stdout


@pytest.mark.parametrize("value", ["avx9000", "x86-64-v2"])
def test_unknown_fastkm_isa_is_a_clear_import_error(value):
    result = run_python("-c", "import fastkm", env={"FASTKM_ISA": value})
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: FASTKM_ISA=")
    assert value in last_line and "baseline" in last_line


def test_info_into_a_closed_pipe_exits_quietly():
    """``fastkm info | head -1``: no traceback when the reader stops early."""
    import subprocess
    import sys

    reader = subprocess.Popen([sys.executable, "-m", "fastkm", "info"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()  # nobody reads: the first write hits a broken pipe
    stderr = reader.stderr.read().decode()
    reader.wait()
    assert "Traceback" not in stderr
