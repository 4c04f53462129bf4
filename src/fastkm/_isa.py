"""Choose, at import time, the instruction-set build of the kernels.

``setup.py`` compiles ``_core.pyx`` several times: ``fastkm._core`` for the architecture's
baseline and, on x86-64, ``fastkm._core_x86_64_v3`` (AVX2 + FMA) and ``fastkm._core_x86_64_v4``
(AVX-512). ``core`` is the best of those that this CPU supports. Set ``FASTKM_ISA`` to
``baseline``, ``x86-64-v3`` or ``x86-64-v4`` to force a level (an error if the CPU or the build
lacks it); ``auto`` or unset picks the best one.
"""

import importlib
import os
from typing import TYPE_CHECKING

from . import _scratch

# OpenMP's idle threads spin before they sleep (GNU's 300000 times). When other processes
# keep the cores busy, a spinning thread takes the core its partner needs, and passes that
# take under a millisecond wait for the scheduler instead: a Kodak image at K=64 on 2
# threads, beside another process's numpy products, took up to 1.9 s instead of 0.13 s.
# Passive waiting (threads sleep at once) avoided that in every run and cost 1% to 5% on
# idle cores (BENCHMARKS.md, section 3). The runtime reads the setting when it loads, with
# the first kernel module below; it is removed again afterwards, so child processes do not
# inherit it. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone.
_set_wait_policy = not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ)
if _set_wait_policy:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
try:
    from . import _core as _baseline
finally:
    if _set_wait_policy:
        del os.environ["OMP_WAIT_POLICY"]

if TYPE_CHECKING:  # every level has the baseline's interface (see _core.pyi)
    from . import _core as core

__all__ = ["core", "LEVELS", "available_levels", "level_name"]

#: Instruction-set level names, their numeric level and the module built for them.
LEVELS = {
    "baseline": (1, "fastkm._core"),
    "x86-64-v3": (3, "fastkm._core_x86_64_v3"),
    "x86-64-v4": (4, "fastkm._core_x86_64_v4"),
}


def _load(name):
    """The kernel module for level ``name``, or None if it was not built; its large
    temporaries come from fastkm._scratch."""
    try:
        module = importlib.import_module(LEVELS[name][1])
    except ImportError:
        return None
    module.set_allocator(_scratch.empty)
    return module


def available_levels():
    """Names of the levels that are both built and supported by this CPU, lowest first."""
    cpu = _baseline.cpu_level()
    return [name for name, (level, _) in LEVELS.items()
            if level <= cpu and _load(name) is not None]


def level_name(module):
    """The level name of a kernel module."""
    return next(name for name, (_, mod) in LEVELS.items() if mod == module.__name__)


def _select():
    requested = os.environ.get("FASTKM_ISA", "auto").strip().lower() or "auto"
    available = available_levels()
    if requested == "auto":
        return _load(available[-1])
    if requested not in LEVELS:
        raise ImportError(f"FASTKM_ISA={requested!r} is not one of "
                          f"{['auto', *LEVELS]}")
    if requested not in available:
        raise ImportError(f"FASTKM_ISA={requested!r} is not available on this machine "
                          f"(available: {available})")
    return _load(requested)


core = _select()  # noqa: F811
