"""The tests' subprocesses are measured only once they import xornet
(tests/coverage_hook/lazy_coverage.py, wired in by conftest.base_env)."""

import subprocess
import sys

import coverage

from conftest import LAZY_COVERAGE_CONFIG, REPO_ROOT, base_env, unmeasured

PROBE = "import sys; {imports}; print(sorted({{'coverage', 'xornet'}} & set(sys.modules)))"


def probe(imports: str, env: dict[str, str]) -> str:
    code = PROBE.format(imports=imports)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, check=True, capture_output=True
    )
    return out.stdout.decode().strip()


def test_a_subprocess_starts_coverage_at_its_first_xornet_import(tmp_path, monkeypatch):
    cov = coverage.Coverage(data_file=str(tmp_path / ".coverage"), config_file=False)
    cov.config.source_pkgs = ["xornet"]
    cov.config.parallel = True
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", cov.config.serialize())
    env = base_env()
    assert "COVERAGE_PROCESS_CONFIG" not in env  # coverage's own .pth start-up stays off

    assert probe("import json", env) == "[]"  # a dvc or mlflow process: not traced
    assert not list(tmp_path.glob(".coverage*"))

    assert probe("import xornet.core.activations", env) == "['coverage', 'xornet']"
    data_files = list(tmp_path.glob(".coverage.*"))
    assert len(data_files) == 1
    data = coverage.CoverageData(str(data_files[0]))
    data.read()
    measured = {f.replace("\\", "/") for f in data.measured_files()}
    assert any(f.endswith("xornet/core/activations.py") for f in measured), measured
    # Coverage started before the module's first line: its imports are in the data.
    module = next(f for f in data.measured_files() if f.endswith("activations.py"))
    source = (REPO_ROOT / "src/xornet/core/activations.py").read_text().splitlines()
    first_import = next(i for i, line in enumerate(source, 1) if line.startswith("from "))
    assert first_import in data.lines(module)

    # A queued experiment's processes, handed unmeasured(env), import xornet untraced.
    assert probe("import xornet.core.activations", unmeasured(env)) == "['xornet']"
    assert len(list(tmp_path.glob(".coverage.*"))) == 1


def test_base_env_keeps_coverage_off_when_the_tests_do_not_measure(monkeypatch):
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)
    env = base_env()
    assert LAZY_COVERAGE_CONFIG not in env
    assert probe("import xornet", env) == "['xornet']"
