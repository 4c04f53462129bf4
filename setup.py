"""Build the Cython kernels of fastkm.

Metadata lives in pyproject.toml; this file only describes the compiled modules:

* ``fastkm._core``: the kernels built for the baseline of the target architecture;
* ``fastkm._core_x86_64_v3`` and ``fastkm._core_x86_64_v4``: the same source compiled for
  AVX2+FMA and AVX-512 (x86-64 only, where the compiler supports them). ``fastkm._isa``
  picks one at import time from the CPU's features, so a wheel never uses ``-march=native``
  and still runs the vector width the machine has.

OpenMP is probed at build time. Without it the kernels are built serially with a warning;
``FASTKM_REQUIRE_OPENMP=1`` turns that warning into an error. ``FASTKM_OPENMP=0`` builds
serial kernels on purpose.
"""

import os
import platform
import shutil
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
CORE_PYX = Path("src", "fastkm", "_core.pyx")
# Extra instruction-set levels: module suffix -> gcc/clang flags, tried in order.
X86_LEVELS = {
    "x86_64_v3": [["-march=x86-64-v3"], ["-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c"]],
    "x86_64_v4": [
        ["-march=x86-64-v4", "-mprefer-vector-width=512"],
        ["-mavx512f", "-mavx512cd", "-mavx512bw", "-mavx512dq", "-mavx512vl",
         "-mavx2", "-mfma", "-mprefer-vector-width=512"],
    ],
}
OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += omp_get_thread_num() >= 0;
        return n > 0 ? 0 : 1;
    }
    """
)


def is_x86_64():
    return platform.machine().lower() in {"x86_64", "amd64"}


def compiles(compiler, source, extra_compile_args, extra_link_args=()):
    """Whether ``compiler`` builds and links ``source`` with the given flags."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.c")
        src.write_text(source)
        try:
            objects = compiler.compile([str(src)], output_dir=tmp,
                                       extra_postargs=list(extra_compile_args))
            compiler.link_executable(objects, "probe", output_dir=tmp,
                                     extra_postargs=list(extra_link_args))
        except Exception:  # any compiler or linker failure means "unsupported"
            return False
    return True


class BuildExt(build_ext):
    """build_ext that probes OpenMP and per-level ISA flags before compiling."""

    def build_extensions(self):
        unix_like = self.compiler.compiler_type == "unix"
        # No errno from sqrt: it would put a branch and a library call in every distance.
        # No debug information (Python's CFLAGS ask for it): 8.4 MB a module instead of 1.7.
        base_flags = ["-O3", "-fno-math-errno", "-g0"] if unix_like else []
        omp_flags = ["-fopenmp"] if unix_like else ["/openmp"]
        disabled = os.environ.get("FASTKM_OPENMP", "").strip() == "0"
        has_openmp = not disabled and compiles(self.compiler, OPENMP_PROBE, omp_flags,
                                               omp_flags if unix_like else ())
        if not has_openmp:
            reason = "disabled by FASTKM_OPENMP=0" if disabled else "not found"
            message = (f"fastkm: OpenMP was {reason}; building serial kernels "
                       f"(set FASTKM_REQUIRE_OPENMP=1 to make this an error)")
            if os.environ.get("FASTKM_REQUIRE_OPENMP", "0") not in {"", "0"}:
                raise RuntimeError(message.split(";")[0] + " and FASTKM_REQUIRE_OPENMP is set")
            warnings.warn(message)
            print(message, file=sys.stderr)

        kept = []
        for ext in self.extensions:
            level = ext.name.rpartition("_core")[2].lstrip("_")
            isa_flags = []
            if level:
                isa_flags = next((flags for flags in X86_LEVELS[level]
                                  if compiles(self.compiler, "int main(void){return 0;}", flags)),
                                 None)
                if isa_flags is None:
                    print(f"fastkm: compiler lacks {level} support; skipping {ext.name}",
                          file=sys.stderr)
                    continue
            ext.extra_compile_args = base_flags + isa_flags + (omp_flags if has_openmp else [])
            ext.extra_link_args = omp_flags if (has_openmp and unix_like) else []
            kept.append(ext)
        self.extensions = kept
        super().build_extensions()


def core_extensions():
    """The baseline module plus, on x86-64, one copy of the same source per extra level.

    Cython names a module after its file, so each level gets a renamed copy of _core.pyx
    under build/.
    """
    common = dict(include_dirs=[numpy.get_include()],
                  define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
    extensions = [Extension("fastkm._core", [str(CORE_PYX)], **common)]
    if is_x86_64():
        generated = Path("build", "isa_sources")
        generated.mkdir(parents=True, exist_ok=True)
        for level in X86_LEVELS:
            copy = generated / f"_core_{level}.pyx"
            if not copy.exists() or copy.read_bytes() != CORE_PYX.read_bytes():
                shutil.copyfile(CORE_PYX, copy)
            extensions.append(Extension(f"fastkm._core_{level}", [str(copy)], **common))
    return extensions


setup(
    ext_modules=cythonize(
        core_extensions(),
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
