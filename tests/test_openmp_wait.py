"""fastkm loads OpenMP with passive waiting (see fastkm._isa) without leaking the setting."""

import os
import subprocess
import sys

import pytest

from fastkm._isa import core

PASSIVE = "GOMP_SPINCOUNT = '0'"  # how libgomp displays passive waiting


def run(code, **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    environ.update(env, OMP_DISPLAY_ENV="verbose")
    result = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                            text=True, check=True)
    return result.stdout, result.stderr


def libgomp_display(stderr):
    if "OPENMP DISPLAY ENVIRONMENT" not in stderr:
        pytest.skip("the OpenMP runtime is not GNU's libgomp (no OMP_DISPLAY_ENV output)")
    return stderr


@pytest.mark.skipif(not core.openmp_enabled(), reason="built without OpenMP")
def test_libgomp_loads_with_passive_waiting_and_children_do_not_inherit_it():
    stdout, stderr = run("import os, fastkm; print('OMP_WAIT_POLICY' in os.environ)")
    assert PASSIVE in libgomp_display(stderr)
    assert stdout.strip() == "False"


@pytest.mark.skipif(not core.openmp_enabled(), reason="built without OpenMP")
@pytest.mark.parametrize("name, value", [("GOMP_SPINCOUNT", "123"),
                                         ("OMP_WAIT_POLICY", "active")])
def test_a_users_own_setting_wins(name, value):
    stdout, stderr = run(f"import os, fastkm; print(os.environ[{name!r}])", **{name: value})
    assert PASSIVE not in libgomp_display(stderr)
    assert stdout.strip() == value
