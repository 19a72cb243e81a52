"""Shared fixtures: temporary git clones of the project and subprocess helpers."""

import contextlib
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from coverage_hook.lazy_coverage import CONFIG_VARIABLE as LAZY_COVERAGE_CONFIG
from coverage_hook.lazy_coverage import UNMEASURED_COURIERS_VARIABLE

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent
COVERAGE_HOOK_DIR = Path(__file__).resolve().parent / "coverage_hook"


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
    a git identity, tracking off unless a test turns it on, lean MLflow servers."""
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
            # An `mlflow server` without its job runner: the runner's seven huey
            # consumers cost ~15 CPU-seconds per server start here, for GenAI jobs
            # xornet never submits.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
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
    config = env.pop("COVERAGE_PROCESS_CONFIG", None)
    if config is not None:
        # Measured only once it imports xornet: coverage_hook/lazy_coverage.py.
        env[LAZY_COVERAGE_CONFIG] = config
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([*paths, str(COVERAGE_HOOK_DIR)])
    return env


def unmeasured(env: dict[str, str]) -> dict[str, str]:
    """``env`` without coverage, for a test's queued experiments: their stages and
    couriers run the same code the pipeline tests measure, and tracing makes every
    process it measures 35-45 % slower (Python 3.11's ``sys.settrace`` slows all of
    a process's code, not just xornet's)."""
    env = dict(env)
    env.pop(LAZY_COVERAGE_CONFIG, None)
    return env


def unmeasured_couriers(env: dict[str, str]) -> dict[str, str]:
    """``env`` in which the stages stay measured but the couriers they start do not
    (for tests whose couriers deliver what the courier tests measure already): a
    courier delivering a pipeline took 6-7.5 CPU-s unmeasured, 10-13 s measured."""
    return {**env, UNMEASURED_COURIERS_VARIABLE: "1"}


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


# Figures for tests that record or check a pipeline but never look at its pictures:
# a coarser grid, 5 GIF frames, 50 dpi (the plot stage 2.3 -> 1.7 CPU-s, measured).
LIGHT_PLOTS = {"grid_resolution": 50, "animation_frames": 5, "dpi": 50}


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


def queue_looks_busy(repo: Path) -> bool:
    """A task waits in the queue's broker or a `dvc exp exec-run` works in ``repo``:
    read from the files and /proc, not asked of DVC."""
    waiting = repo / ".dvc" / "tmp" / "exps" / "celery" / "broker" / "in"
    if waiting.is_dir() and any(waiting.glob("*.celery.msg")):
        return True
    return bool(processes_running(repo, b"exec-run"))


def wait_for_queue(repo: Path, timeout: float = 600) -> None:
    """Until `dvc queue status` shows nothing running or queued. Each `dvc queue
    status` costs about a CPU-second, taken from the experiments it waits for, so DVC
    is asked only when :func:`queue_looks_busy` sees nothing busy."""
    deadline = time.monotonic() + timeout
    status = "(not asked yet)"
    while time.monotonic() < deadline:
        if not queue_looks_busy(repo):
            status = run(["dvc", "queue", "status"], repo).stdout
            if not any(word in status for word in ("Running", "Queued")):
                return
        time.sleep(0.5)
    pytest.fail(f"queue still busy after {timeout} s:\n{status}")


def processes_running(repo: Path, marker: bytes) -> list[int]:
    """Ids of the processes working in ``repo`` whose command line holds ``marker``."""
    pids = []
    for pid in processes_in(repo):
        with contextlib.suppress(OSError):  # gone meanwhile
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return pids


def courier_processes(repo: Path) -> list[int]:
    """Ids of the background couriers delivering ``repo``'s outbox."""
    return processes_running(repo, b"xornet.tracking.courier")


def wait_for_delivery(repo: Path, timeout: float = 300, check: bool = True) -> None:
    """Wait until the background courier has handled every run the stages recorded in
    ``repo`` and has exited; when ``check``, fail the test if it could not deliver one."""
    from xornet.tracking.outbox import Outbox

    outbox = Outbox(repo)
    deadline = time.monotonic() + timeout
    while outbox.pending() or courier_processes(repo):
        if time.monotonic() > deadline:
            pytest.fail(f"courier still busy after {timeout} s: {outbox.log_file.read_text()}")
        time.sleep(0.2)
    failed = {e.name: (e / "error.txt").read_text() for e in outbox.failed()}
    assert not (check and failed), failed


def processes_in(repo: Path) -> list[int]:
    """Ids of processes whose working directory is ``repo`` or inside it: its queue
    workers and the stage commands they run in ``.dvc/tmp/exps/*`` copies."""
    repo = repo.resolve()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone meanwhile, or not ours
            continue
        if cwd == repo or cwd.is_relative_to(repo):
            pids.append(int(entry.name))
    return pids


def end_processes_in(repo: Path, wait: float = 10) -> list[int]:
    """Give the processes working in ``repo`` ``wait`` seconds to end, then SIGTERM
    and, ``wait`` seconds later, SIGKILL each by id. Returns those still alive after
    that (none, barring a process stuck in the kernel)."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            for pid in processes_in(repo):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while processes_in(repo) and time.monotonic() < deadline:
            time.sleep(0.25)
        if not processes_in(repo):
            return []
    return processes_in(repo)


@pytest.fixture(autouse=True)
def no_courier_left_running(tmp_path_factory) -> Iterator[None]:
    """After every test, no background courier may still run in a test's folders: a
    test that records runs waits for their delivery (:func:`wait_for_delivery`)."""
    yield
    base = tmp_path_factory.getbasetemp()
    left = courier_processes(base)
    deadline = time.monotonic() + 60
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = courier_processes(base)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"courier processes still running after the test: {left}"


@contextlib.contextmanager
def queue_workers(repo: Path, env: dict[str, str], jobs: int) -> Iterator[None]:
    """`dvc queue start -j JOBS` with ``env`` (what the workers and the stages they
    run see); on exit, also on failure, nothing of the queue is left running.

    - The workers are daemons that inherit `dvc queue start`'s stdout and stderr:
      with pipes there (as :func:`run` captures), the start blocks until they exit
      of their own accord, 10 s after the queue runs dry. So its output goes to a
      file and the caller waits (:func:`wait_for_queue`).
    - `dvc queue stop --kill` kills the `dvc exp exec-run` of each running task, not
      the stage command it runs (the stage stops on its own when its guardian goes:
      tests/test_hardening.py), and an idle worker may still take the next queued
      task. So on failure the queued tasks are removed first, and afterwards every
      process working in ``repo`` (workers, their stage commands in
      `.dvc/tmp/exps/*`) is ended by id.
    """
    log = repo / ".dvc" / "tmp" / "queue-start.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    finished = False
    try:
        with open(log, "w") as out:
            proc = subprocess.run(
                ["dvc", "queue", "start", "-j", str(jobs)],
                cwd=repo,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=60,
            )
        if proc.returncode != 0:
            pytest.fail(f"dvc queue start exited {proc.returncode}\n{log.read_text()}")
        yield
        finished = True
    finally:
        if not finished:
            run(["dvc", "queue", "remove", "--queued"], repo, env, check=False, timeout=120)
        run(["dvc", "queue", "stop", "--kill"], repo, env, check=False, timeout=120)
        left = end_processes_in(repo)
        # Reported only when the body passed: never hide the failure that got us here.
        assert not (finished and left), f"still running after SIGKILL: {left}"


class TerminalStage:
    """A stage command whose stderr is a terminal, so it draws its progress bar: a test
    can wait until training is under way (the bar past 0 %) instead of sleeping."""

    PERCENT = re.compile(rb"\b([1-9][0-9]?|100)%")

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]):
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            # As from a terminal: a suite started as a background job, where the shell
            # ignores SIGINT, would otherwise hand the stage an ignored Ctrl-C.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        os.close(slave)
        self._master = master
        self.output = b""

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout`` s; False once the terminal has closed."""
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self._master, 65536)
        except OSError:  # EIO: the stage and everything it started closed the terminal
            chunk = b""
        self.output += chunk
        return bool(chunk)

    def wait_for_training(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.PERCENT.search(self.output):
            assert self.proc.poll() is None, self.output.decode(errors="replace")
            assert time.monotonic() < deadline, f"no progress in {timeout} s: {self.output!r}"
            self._read(0.2)

    def finish(self, timeout: float = 60) -> str:
        """Wait for the stage to exit; its stderr as text, the last line last."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        while self._read(0.5):
            pass
        os.close(self._master)
        return self.output.decode(errors="replace").replace("\r", "\n")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests (real dvc queues, servers) first, each module's tests
    kept together and in order: with two workers the long ones start early instead of
    leaving one worker alone with them at the end."""
    slow_modules = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow_modules)
