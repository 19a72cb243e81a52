"""Shared fixtures: temporary git clones of the project and subprocess helpers."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent


def project_files() -> list[str]:
    """Tracked files plus untracked ones git does not ignore: the work tree as a clone sees it."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [f for f in out.split("\0") if f and (REPO_ROOT / f).is_file()]


def base_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this interpreter first on PATH, no telemetry,
    a git identity, tracking off unless a test turns it on."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        {
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "GIT_AUTHOR_NAME": "xornet tests",
            "GIT_AUTHOR_EMAIL": "tests@xornet.invalid",
            "GIT_COMMITTER_NAME": "xornet tests",
            "GIT_COMMITTER_EMAIL": "tests@xornet.invalid",
            "XORNET_TRACKING": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    for key in (
        "DVC_ROOT",
        "DVC_STAGE",
        "DVC_EXP_NAME",
        "DVC_EXP_BASELINE_REV",
        "MLFLOW_TRACKING_URI",
    ):
        env.pop(key, None)
    env.update(extra)
    return env


def run(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output when ``check`` and it fails."""
    proc = subprocess.run(
        args, cwd=cwd, env=env or base_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        command = " ".join(args)
        pytest.fail(f"{command} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_clone(dest: Path) -> Path:
    """A fresh git repository holding the project's working tree, committed."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in project_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    env = base_env()
    run(["git", "init", "-q", "-b", "main"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-q", "-m", "clone"], dest, env)
    return dest


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A temporary git clone of the project (working tree as it is now)."""
    return make_clone(tmp_path / "xornet")


def set_params(repo: Path, **sections: dict) -> None:
    """Edit params.yaml in ``repo``: ``set_params(repo, train={"epochs": 100})``."""
    import yaml

    path = repo / "params.yaml"
    data = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        data[section].update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
