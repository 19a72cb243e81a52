"""The same bytes whatever the CPU (xornet.core.determinism): the stages' outputs do not
depend on the kernels NumPy and OpenBLAS would pick for this CPU, and they are exactly
the ones the committed dvc.lock records.

Another CPU is simulated on this one: ``OPENBLAS_CORETYPE`` makes OpenBLAS use another
family's kernels, ``NPY_DISABLE_CPU_FEATURES=X86_V3`` makes NumPy take its pre-AVX2
loops (tanh differs). Both change the trained weights when nothing is pinned.
"""

import hashlib
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import base_env, make_clone, run
from xornet.core import determinism

X86_64 = platform.machine().lower() in ("x86_64", "amd64")
pytestmark = pytest.mark.skipif(
    not (X86_64 and {"avx2", "fma"} <= (determinism.cpu_flags() or set())),
    reason="the same-bytes guarantee covers x86-64 CPUs with AVX2 and FMA",
)

PINNED = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_NUM_THREADS",
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
)
STAGES = ("generate", "train", "evaluate", "study")  # the plot stage's figures are not covered
OTHER_CPUS = {
    "OpenBLAS Sandybridge kernels": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "NumPy without AVX2 loops": {"NPY_DISABLE_CPU_FEATURES": "X86_V3"},
}


def locked_outputs(repo: Path) -> dict[str, str]:
    """{path: md5} of the covered stages' outputs in ``repo``'s dvc.lock, figures excepted."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for stage in STAGES
        for out in lock["stages"][stage]["outs"]
        if not out["path"].endswith((".png", ".gif"))
    }


def run_stages(repo: Path, **env: str) -> dict[str, str]:
    """Run the covered stages as dvc would, in ``env`` on top of a shell without the pins;
    returns {path: md5} of the outputs dvc.lock lists."""
    environ = base_env()
    for name in PINNED:
        environ.pop(name, None)  # what a user's shell holds (the test process may be pinned)
    environ.update(env)
    for stage in STAGES:
        run(["python", f"stages/{stage}.py"], repo, environ)
    return {path: md5(repo / path) for path in locked_outputs(repo)}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_clone(tmp_path_factory.mktemp("determinism") / "xornet")


@pytest.fixture(scope="module")
def default_run(repo) -> dict[str, str]:
    return run_stages(repo)


def test_default_params_give_the_committed_dvc_lock_bytes(repo, default_run):
    """Golden: on any x86-64 machine with AVX2, generate, train, evaluate and study give
    exactly the md5s of the committed dvc.lock (so `dvc repro` leaves it unchanged)."""
    assert default_run == locked_outputs(repo)


@pytest.mark.parametrize("env", OTHER_CPUS.values(), ids=OTHER_CPUS.keys())
def test_other_cpu_kernels_give_the_same_bytes(repo, default_run, env):
    assert run_stages(repo, **env) == default_run


AVX2 = frozenset({"avx", "avx2", "fma", "sse4_2"})


@pytest.mark.parametrize(
    ("machine", "flags", "coretype"),
    [
        ("x86_64", AVX2 | {"avx512f", "avx512bw"}, "Haswell"),  # AVX-512 machines too
        ("x86_64", AVX2, "Haswell"),
        ("x86_64", frozenset({"avx", "sse4_2"}), "Sandybridge"),
        ("x86_64", frozenset({"sse4_2"}), None),  # no AVX: OpenBLAS chooses, never crashes
        ("x86_64", None, None),  # flags unknown (no /proc/cpuinfo)
    ],
)
def test_pins_only_kernels_the_cpu_can_run(machine, flags, coretype):
    env = determinism.settings(machine, flags)
    assert env.get("OPENBLAS_CORETYPE") == coretype
    assert ("OPENBLAS_CORETYPE" in env) == (coretype is not None)  # else the user's stays
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["NPY_DISABLE_CPU_FEATURES"] == "X86_V4 AVX512_ICL AVX512_SPR"
    assert env["NPY_ENABLE_CPU_FEATURES"] is None


def test_other_machines_pin_the_thread_count_only():
    assert determinism.settings("aarch64", None) == {"OPENBLAS_NUM_THREADS": "1"}


def test_pinning_after_numpy_loaded_changes_nothing(monkeypatch):
    """Too late to act (the libraries have read their settings): leave the environment be."""
    assert np.__name__ in sys.modules
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Sandybridge")
    assert determinism.pin() is determinism.applied
    assert os.environ["OPENBLAS_CORETYPE"] == "Sandybridge"
