"""The tests' subprocesses are measured only once they import xornet
(tests/coverage_hook/lazy_coverage.py, wired in by conftest.base_env)."""

import subprocess
import sys
from pathlib import Path

import coverage

from conftest import LAZY_COVERAGE_CONFIG, REPO_ROOT, base_env, unmeasured, unmeasured_couriers

PROBE = "import sys; {imports}; print(sorted({{'coverage', 'xornet'}} & set(sys.modules)))"


def probe(imports: str, env: dict[str, str]) -> str:
    code = PROBE.format(imports=imports)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, check=True, capture_output=True
    )
    return out.stdout.decode().strip()


def measured_env(data_dir: Path, monkeypatch) -> dict[str, str]:
    """base_env() under a coverage run of xornet whose data files go to ``data_dir``."""
    cov = coverage.Coverage(data_file=str(data_dir / ".coverage"), config_file=False)
    cov.config.source_pkgs = ["xornet"]
    cov.config.parallel = True
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", cov.config.serialize())
    return base_env()


def measured_lines(data_dir: Path, module: str) -> set[int]:
    """The lines of the one measured file ending in ``module``, from the one data file in
    ``data_dir`` (an error if there are several or none of either)."""
    (data_file,) = data_dir.glob(".coverage.*")
    data = coverage.CoverageData(str(data_file))
    data.read()
    (path,) = [f for f in data.measured_files() if f.replace("\\", "/").endswith(module)]
    return set(data.lines(path))


def line_of(module: str, text: str) -> int:
    source = (REPO_ROOT / "src/xornet" / module).read_text().splitlines()
    return next(i for i, line in enumerate(source, 1) if line.strip().startswith(text))


def test_a_subprocess_starts_coverage_at_its_first_xornet_import(tmp_path, monkeypatch):
    env = measured_env(tmp_path, monkeypatch)
    assert "COVERAGE_PROCESS_CONFIG" not in env  # coverage's own .pth start-up stays off

    assert probe("import json", env) == "[]"  # a dvc or mlflow process: not traced
    assert not list(tmp_path.glob(".coverage*"))

    assert probe("import xornet.core.activations", env) == "['coverage', 'xornet']"
    # One data file, with the module; coverage started before the module's first line:
    # its imports are in the data.
    lines = measured_lines(tmp_path, "xornet/core/activations.py")
    assert line_of("core/activations.py", "from ") in lines

    # A queued experiment's processes, handed unmeasured(env), import xornet untraced.
    assert probe("import xornet.core.activations", unmeasured(env)) == "['xornet']"
    assert len(list(tmp_path.glob(".coverage.*"))) == 1


def test_unmeasured_couriers_leaves_the_couriers_untraced_and_the_stages_measured(
    tmp_path, monkeypatch
):
    env = unmeasured_couriers(measured_env(tmp_path, monkeypatch))
    courier = [sys.executable, "-m", "xornet.tracking.courier", "deliver", "--help"]

    def data_files() -> int:
        return len(list(tmp_path.glob(".coverage.*")))

    subprocess.run(courier, env=env, cwd=REPO_ROOT, check=True, capture_output=True)
    assert data_files() == 0  # the courier imported xornet, untraced
    assert probe("import xornet.core.activations", env) == "['coverage', 'xornet']"
    assert data_files() == 1  # anything else (a stage) is measured
    measured = measured_env(tmp_path, monkeypatch)
    subprocess.run(courier, env=measured, cwd=REPO_ROOT, check=True, capture_output=True)
    assert data_files() == 2  # and couriers are, without unmeasured_couriers


def test_base_env_keeps_coverage_off_when_the_tests_do_not_measure(monkeypatch):
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)
    env = base_env()
    assert LAZY_COVERAGE_CONFIG not in env
    assert probe("import xornet", env) == "['xornet']"


THIRD_PARTY = """import sys
TRACER_WHILE_IMPORTED = sys.gettrace()
import xornet.core.losses  # a xornet module imported by another package's import
"""

AFTER_THE_IMPORT = """import sys
sys.path.insert(0, {folder!r})
from xornet.core.activations import sigmoid
import numpy as np
import third_party
print(third_party.TRACER_WHILE_IMPORTED, type(sys.gettrace()).__name__)
sigmoid(np.zeros(1))
"""


def test_other_modules_import_untraced_and_xornet_stays_measured(tmp_path, monkeypatch):
    """Once measuring, a process imports everything but xornet with its tracer stopped
    (it costs ~40 % more CPU traced, for no xornet line); xornet's modules, even one
    imported from such an import, and every line run afterwards are measured."""
    data_dir, folder = tmp_path / "data", tmp_path / "modules"
    data_dir.mkdir()
    folder.mkdir()
    (folder / "third_party.py").write_text(THIRD_PARTY)
    code = AFTER_THE_IMPORT.format(folder=str(folder))
    env = measured_env(data_dir, monkeypatch)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, check=True, capture_output=True
    )
    assert out.stdout.decode().split() == ["None", "CTracer"]
    assert line_of("core/losses.py", "from dataclasses") in measured_lines(data_dir, "losses.py")
    sigmoid_body = line_of("core/activations.py", "np.negative(z, out=out)")
    assert sigmoid_body in measured_lines(data_dir, "core/activations.py")
