"""What fastkm was built with and what it runs on."""

import sys

import numpy as np

from . import _isa
from ._validation import effective_n_threads, usable_cpus


def build_info():
    """Facts about this installation, as a dict.

    Keys: ``version``, ``openmp`` (bool), ``threads`` (the default ``n_threads``),
    ``usable_cpus``, ``isa`` (the instruction-set level in use), ``isa_available`` (levels
    built and supported here), ``python`` and ``numpy`` versions.

    Examples
    --------
    >>> import fastkm
    >>> info = fastkm.build_info()
    >>> info["isa"] in info["isa_available"]
    True
    """
    from . import __version__

    return {
        "version": __version__,
        "openmp": _isa.core.openmp_enabled(),
        "threads": effective_n_threads(None),
        "usable_cpus": usable_cpus(),
        "isa": _isa.level_name(_isa.core),
        "isa_available": _isa.available_levels(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }


def show_config(file=None):
    """Print the version, OpenMP on/off, thread count and instruction-set level in use.

    Examples
    --------
    >>> import fastkm
    >>> fastkm.show_config()  # doctest: +ELLIPSIS
    fastkm ...
    """
    info = build_info()
    lines = [
        f"fastkm {info['version']}",
        f"  OpenMP:           {'on' if info['openmp'] else 'off (serial build)'}",
        f"  threads:          {info['threads']} (of {info['usable_cpus']} usable CPUs)",
        f"  instruction set:  {info['isa']} (available: {', '.join(info['isa_available'])}; "
        f"set FASTKM_ISA to force one)",
        f"  python {info['python']}, numpy {info['numpy']}",
    ]
    print("\n".join(lines), file=file or sys.stdout)
