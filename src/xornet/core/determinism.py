"""Same bytes on every x86-64 machine with AVX2: pin the kernels NumPy and OpenBLAS pick by CPU.

Training is deterministic on one machine, but two libraries choose their
floating-point kernels by the CPU they find, and different kernels round
differently (weights then differ by ~1e-13 relative, and every md5 changes):

- NumPy's bundled OpenBLAS (``DYNAMIC_ARCH``) picks its matrix-product kernels
  and blocking by CPU family (Haswell, Zen, SkylakeX, SapphireRapids, ...), and
  its thread count by the number of cores;
- NumPy dispatches its own loops (exp, log, log1p, tanh, ...) by CPU feature
  level: AVX2 machines take the X86_V3 paths, AVX-512 ones the X86_V4 paths.

Both read their settings from environment variables once, when they load, so
:func:`pin` sets these variables before NumPy is first imported (the package's
``__init__`` calls it: every stage process imports ``xornet`` before NumPy):

- ``OPENBLAS_CORETYPE=Haswell`` on CPUs with AVX2 and FMA (what Haswell's
  kernels need; OpenBLAS picks Haswell's or Zen's kernels there by itself,
  which give the same bytes, except on AVX-512 CPUs); ``Sandybridge`` on CPUs
  with AVX only; otherwise it is left alone (kernels the CPU cannot run crash).
- ``OPENBLAS_NUM_THREADS=1``: a threaded dot product splits its sum by thread
  count. The model keeps its products below OpenBLAS's threading threshold
  anyway (see ``xornet.core.model``), so this costs nothing measurable.
- ``NPY_DISABLE_CPU_FEATURES`` = NumPy's dispatch targets above X86_V3
  (AVX-512): AVX-512 machines then run the AVX2 loops. Disabling a feature the
  CPU lacks does nothing, so this is safe everywhere; a CPU without AVX2 runs
  NumPy's baseline loops.

Whatever a user has set in these variables (or ``NPY_ENABLE_CPU_FEATURES``) is
replaced: it would change the bytes. Not pinned: the C library's scalar ``exp``
and ``log1p``, which NumPy calls for float64. glibc picks their FMA variants on
every CPU with AVX2 and FMA, so one glibc gives the same bytes on all of them;
another glibc release may round some values differently. On a CPU without AVX2,
results agree with the pinned ones to ~1e-12 but are not the same bytes.
``bench/bench_determinism.py`` measures the cost of pinning.

This module uses the standard library only: it must run before NumPy loads.
"""

import os
import platform
import re
import sys
from collections.abc import Mapping, MutableMapping

# NumPy's dispatch targets above X86_V3 (AVX2, FMA3, ...), by naming scheme: NumPy
# 2.4 groups features by x86-64 level; earlier releases name each AVX-512 set.
NUMPY_ABOVE_AVX2 = {
    "levels": "X86_V4 AVX512_ICL AVX512_SPR",
    "features": (
        "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL "
        "AVX512_ICL AVX512_SPR"
    ),
}

# OpenBLAS kernel families, best first, with the /proc/cpuinfo flags they need.
OPENBLAS_CORETYPES = (("Haswell", {"avx2", "fma"}), ("Sandybridge", {"avx"}))

# What pin() set in this process: None if it did nothing (NumPy was already loaded).
applied: dict[str, str | None] | None = None


def settings(
    machine: str, flags: frozenset[str] | None, numpy_naming: str = "levels"
) -> dict[str, str | None]:
    """The environment that pins the kernels: variable -> value, or None to unset it.

    ``machine`` is ``platform.machine()``; ``flags`` the CPU's feature flags as
    /proc/cpuinfo names them (None when unknown); ``numpy_naming`` a key of
    :data:`NUMPY_ABOVE_AVX2`. Never names kernels the CPU cannot run: on a CPU
    without AVX (or whose flags are unknown) ``OPENBLAS_CORETYPE`` is left as it is.
    """
    env: dict[str, str | None] = {"OPENBLAS_NUM_THREADS": "1"}
    if machine.lower() not in ("x86_64", "amd64"):
        return env
    env["NPY_DISABLE_CPU_FEATURES"] = NUMPY_ABOVE_AVX2[numpy_naming]
    env["NPY_ENABLE_CPU_FEATURES"] = None  # NumPy refuses both at once
    for coretype, needs in OPENBLAS_CORETYPES:
        if flags is not None and needs <= flags:
            env["OPENBLAS_CORETYPE"] = coretype
            break
    return env


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The first CPU's feature flags from /proc/cpuinfo (Linux), or None if unreadable."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as lines:
            for line in lines:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def numpy_naming() -> str:
    """Which feature names the installed NumPy uses, read from its version file
    without importing it: "levels" from 2.4 on, "features" before."""
    for entry in sys.path:
        try:
            with open(os.path.join(entry or ".", "numpy", "version.py"), encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        found = re.search(r"^version\b[^=\n]*=\s*[\"'](\d+)\.(\d+)", text, re.MULTILINE)
        if found:
            return "levels" if (int(found[1]), int(found[2])) >= (2, 4) else "features"
    return "levels"


def apply(env: Mapping[str, str | None], environ: MutableMapping[str, str]) -> None:
    for name, value in env.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value


def pin() -> dict[str, str | None] | None:
    """Pin the kernels in this process (and its children) unless NumPy is already loaded.

    Returns what was set (None: too late, NumPy was imported first, nothing changed).
    """
    global applied
    if "numpy" in sys.modules:
        return applied
    env = settings(platform.machine(), cpu_flags(), numpy_naming())
    apply(env, os.environ)
    applied = env
    return env
