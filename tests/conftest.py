"""Shared fixtures: temporary git clones of the project and subprocess helpers."""

import json
import os
import shutil
import subprocess
import sys
import time
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


OUTPUTS = [
    "data/train.npz",
    "data/test.npz",
    "models/model.npz",
    "models/snapshots.npz",
    "metrics/history.csv",
    "metrics/train.json",
    "metrics/evaluate.json",
    "metrics/predictions.csv",
    "plots/learning_curves.png",
    "plots/decision_boundary.png",
    "plots/confusion_matrix.png",
    "plots/training.gif",
]


def exp_rows(repo: Path) -> list[dict]:
    """`dvc exp show --json` flattened to one dict per experiment (baseline excluded)."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    rows = []
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for revision in exp.get("revs", []):
                data = revision.get("data") or {}
                rows.append(
                    {
                        "name": revision.get("name") or exp.get("name"),
                        "params": data.get("params", {}).get("params.yaml", {}).get("data", {}),
                        "metrics": {
                            path: value.get("data", {})
                            for path, value in (data.get("metrics") or {}).items()
                        },
                    }
                )
    return rows


def wait_for_queue(repo: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if not any(word in status for word in ("Running", "Queued")):
            return
        time.sleep(2)
    pytest.fail(f"queue still busy after {timeout} s:\n{status}")
