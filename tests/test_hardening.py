"""Issue 14: hostile params, runaway sizes and orphaned stages.

Every case of the issue's "Why", run as the stage command under a 6 GB address-space
limit: exit 2 (143 for the signal cases), one line on stderr, no traceback, nothing
written, an answer in under 20 s. Then a stage whose parent goes away (a shell, the
real `dvc repro`) stops as on SIGTERM.
"""

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_stages import digest

from conftest import (
    REPO_ROOT,
    base_env,
    end_processes_in,
    processes_in,
    queue_workers,
    run,
    set_params,
    unmeasured,
    unmeasured_couriers,
    wait_for_delivery,
)
from xornet.tracking.outbox import Outbox

STAGES = REPO_ROOT / "stages"
SMALL = ("--set", "train.epochs=60", "--set", "data.n_samples=200")
ADDRESS_SPACE = 6_000_000_000  # bytes: `ulimit -v` of the "Done when"
BIN = Path(sys.executable).parent


def stage(name: str, *args: str, cwd: Path, limit: bool = True) -> subprocess.CompletedProcess:
    prefix = ["prlimit", f"--as={ADDRESS_SPACE}"] if limit else []
    return subprocess.run(
        [*prefix, sys.executable, str(STAGES / f"{name}.py"), *args],
        cwd=cwd,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """generate, train and evaluate run once with small settings."""
    folder = tmp_path_factory.mktemp("trained")
    shutil.copy(REPO_ROOT / "params.yaml", folder / "params.yaml")
    for name in ("generate", "train", "evaluate"):
        proc = stage(name, *SMALL, cwd=folder, limit=False)
        assert proc.returncode == 0, proc.stderr
    return folder


@pytest.fixture
def workdir(trained: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    shutil.copytree(trained, folder)
    return folder


def refused(workdir: Path, name: str, *args: str, words=(), code: int = 2) -> str:
    before = digest(workdir)
    start = time.monotonic()
    proc = stage(name, *args, cwd=workdir)
    elapsed = time.monotonic() - start
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert elapsed < 20, elapsed
    assert digest(workdir) == before
    assert not list(workdir.rglob("*.tmp"))
    return lines[0]


# ------------------------------------------------------------------ runaway sizes
@pytest.mark.parametrize(
    ("name", "override", "words"),
    [
        ("train", "train.epochs=1000000000000", ["train.epochs", "GiB", "available"]),
        ("train", "model.hidden=[10000000]", ["would allocate", "GiB", "available"]),
        ("generate", "data.n_samples=10000000000", ["data.n_samples", "GiB", "available"]),
        ("evaluate", "model.hidden=[10000000]", []),  # the model file decides: it still fits
        ("plot", "train.epochs=1000000000", ["train.epochs", "GiB", "available"]),
        ("study", "study.seeds=100000", []),
    ],
    ids=lambda v: str(v)[:30],
)
def test_runaway_sizes_are_refused_before_allocating(workdir, name, override, words):
    args = ("--set", override)
    if name == "evaluate":  # evaluate reads the trained model: its size, not the params'
        proc = stage(name, *args, cwd=workdir)
        assert proc.returncode == 0, proc.stderr
        return
    if name == "study":  # 100 000 seeds of a 10 000-unit network
        args += ("--set", "model.hidden=[100000]", "--out-dir", str(workdir / "study"))
        words = ["study.seeds × model.hidden", "available"]
    refused(workdir, name, *args, words=words)


def test_a_million_sample_run_still_runs_under_the_limit(tmp_path):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    big = ("--set", "data.n_samples=1000000", "--set", "model.hidden=[16]")
    for name, extra in (("generate", ()), ("train", ("--set", "train.epochs=2"))):
        proc = stage(name, *big, *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert "epochs=2" in proc.stdout


# ------------------------------------------------------------------ hostile values
def test_infinite_noise_writes_no_data(workdir):
    refused(
        workdir,
        "generate",
        "--set",
        "data.kind=noisy_xor",
        "--set",
        "data.noise=.inf",
        words=["data.noise = inf", "finite"],
    )


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_non_finite_learning_rate(workdir, value):
    refused(
        workdir,
        "train",
        "--set",
        f"train.learning_rate={value}",
        words=["train.learning_rate", "finite"],
    )


def test_duplicate_key_in_params_file(workdir):
    path = workdir / "params.yaml"
    path.write_text(path.read_text().replace("  epochs: 1000", "  epochs: 1000\n  epochs: 5", 1))
    for name in ("generate", "train", "evaluate", "plot"):
        refused(workdir, name, words=["params.yaml", "duplicate key 'epochs'", "line"])


def test_alias_bomb_in_params_file(workdir):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    (workdir / "params.yaml").write_text("\n".join(lines) + "\n")
    refused(workdir, "train", words=["params.yaml", "expands to more than"])


def test_mapping_for_a_float_names_the_key(workdir):
    refused(
        workdir,
        "train",
        "--set",
        "train.learning_rate={a: 1}",
        words=["train.learning_rate", "{'a': 1}"],
    )


@pytest.mark.parametrize(
    ("name", "victim"),
    [
        ("train", "data/train.npz"),
        ("evaluate", "models/model.npz"),
        ("plot", "models/snapshots.npz"),
    ],
)
def test_garbage_npz_message_does_not_suggest_allow_pickle(workdir, name, victim):
    if name == "plot":
        assert stage("train", *SMALL, cwd=workdir, limit=False).returncode == 0
    (workdir / victim).write_bytes(b"this is not an npz file")
    line = refused(workdir, name, *SMALL, words=[victim, "pickled data is never loaded"])
    assert "allow_pickle" not in line


# ------------------------------------------------------------------ orphaned stages
def stage_pids(folder: Path, running: bool = False, wrappers: bool = True) -> list[int]:
    """Train stage commands working in ``folder``; with ``running``, only those past
    start-up: catching SIGTERM, which ``xornet.cli.run`` sets up just before it asks to
    die with its parent (a parent that dies before that is not noticed). Without
    ``wrappers``, only the Pythons, not the `sh -c` that DVC runs each one in."""
    pids = []
    for pid in processes_in(folder):
        with contextlib.suppress(OSError, ValueError, IndexError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"stages/train.py" not in argv or not (
                wrappers or b"python" in argv.split(b"\0")[0]
            ):
                continue
            status = Path(f"/proc/{pid}/status").read_text()
            caught = int(status.split("SigCgt:")[1].split()[0], 16)
            if not running or caught & (1 << (signal.SIGTERM - 1)):
                pids.append(pid)
    return pids


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


LONG = ("--set", "train.epochs=1000000", "--set", "data.n_samples=200")


def test_stage_dies_with_its_shell(workdir):
    before = digest(workdir)
    err = workdir.parent / "stage.err"
    command = f"{sys.executable} {STAGES / 'train.py'} {' '.join(LONG)} 2>{err} & wait"
    shell = subprocess.Popen(["sh", "-c", command], cwd=workdir, env=base_env())
    try:
        wait_until(lambda: stage_pids(workdir, running=True), 60, "the stage to start")
        os.kill(shell.pid, signal.SIGKILL)  # the parent goes, without a word to the stage
        shell.wait()
        wait_until(lambda: not stage_pids(workdir), 10, "the orphaned stage to stop")
    finally:
        end_processes_in(workdir, wait=2)
    assert err.read_text().strip().endswith("terminated"), err.read_text()
    assert digest(workdir) == before


LAUNCHER = """
import subprocess, sys
subprocess.run([sys.argv[1], "-c", sys.argv[2]])
"""


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_stage_dies_with_the_process_its_shell_wrapper_runs_for(workdir, shell):
    """What DVC does: `$SHELL -c "python stages/train.py"`. dash keeps itself as the
    stage's parent, so killing the launcher orphans the shell, not the stage: the stage
    must notice its guardian's exit all the same."""
    before = digest(workdir)
    err = workdir.parent / "stage.err"
    command = f"{sys.executable} {STAGES / 'train.py'} {' '.join(LONG)} 2>{err}"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, shell, command], cwd=workdir, env=base_env()
    )
    try:
        wait_until(lambda: stage_pids(workdir, running=True), 60, "the stage to start")
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        wait_until(lambda: not stage_pids(workdir), 10, "the stage to stop")
    finally:
        end_processes_in(workdir, wait=2)
    assert err.read_text().strip().endswith("terminated"), err.read_text()
    assert digest(workdir) == before


def test_stage_under_a_shell_wrapper_lives_while_its_guardian_does(workdir):
    model = workdir / "models" / "model.npz"
    before = model.read_bytes()
    command = f"{sys.executable} {STAGES / 'train.py'} --set train.epochs=70"
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, "/bin/sh", command],
        cwd=workdir,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr  # not 143: no guardian went away
    assert model.read_bytes() != before


@pytest.mark.slow
def test_dvc_repro_terminated_leaves_no_stage_and_no_unrecorded_outputs(clone, tmp_path):
    set_params(clone, train={"epochs": 50})
    run(["git", "commit", "-qam", "short"], clone)
    run(["dvc", "repro", "train"], clone)
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    recorded = {o["path"]: o["md5"] for o in lock["stages"]["train"]["outs"]}
    set_params(clone, train={"epochs": 1_000_000})
    # /bin/sh: on Debian dash, which stays the stage's parent (bash would exec it).
    env = unmeasured_couriers(base_env(XORNET_TRACKING="1", SHELL="/bin/sh"))
    log = tmp_path / "repro.log"
    with open(log, "w") as out:
        dvc = subprocess.Popen(
            ["dvc", "repro", "train"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: stage_pids(clone, running=True), 120, "the train stage under dvc")
        # Its MLflow run recorded as RUNNING in the outbox: the stage is training.
        staging = Outbox(clone).staging
        wait_until(lambda: staging.is_dir() and any(staging.iterdir()), 60, "its run")
        dvc.send_signal(signal.SIGTERM)  # dvc alone, not its process group
        dvc.wait(timeout=60)
        wait_until(lambda: not stage_pids(clone), 10, "no stage process left")
    except BaseException:
        end_processes_in(clone, wait=5)  # the courier too: this test has failed anyway
        raise
    # Outputs: the ones dvc.lock records, or none (DVC deleted them before the run).
    for path, md5 in recorded.items():
        file = clone / path
        if file.exists():
            assert hashlib.md5(file.read_bytes()).hexdigest() == md5, path
    # dvc status: the params changed (as we did) and the outputs are deleted, nothing else.
    status = run(["dvc", "status", "train"], clone).stdout
    outs = status.split("changed outs:")[1].strip().splitlines() if "changed outs" in status else []
    assert all(line.strip().startswith("deleted:") for line in outs), status
    assert "not in cache" not in status and "new:" not in status, status
    # Tracking: the terminated stage's run is KILLED, never FINISHED.
    wait_for_delivery(clone, check=False)  # the courier the stage started on its way out
    assert not end_processes_in(clone, wait=5)
    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    ids = [e.experiment_id for e in c.search_experiments()]
    statuses = [r.info.status for r in c.search_runs(ids)]
    assert "FINISHED" not in statuses, (statuses, log.read_text())
    assert "KILLED" in statuses, (statuses, log.read_text())


@pytest.mark.slow
def test_queued_experiments_killed_mid_training_end_their_stages_and_runs(clone):
    """`dvc queue kill NAME` and `dvc queue stop --kill` kill the task's `dvc exp
    exec-run`, not the stage command it runs: the stage notices its guardian's exit,
    stops within 10 s and its run is recorded KILLED, in the project root's store."""
    # Slow epochs (~1 ms): the history the couriers deliver stays a few thousand long.
    set_params(clone, train={"epochs": 1_000_000}, data={"n_samples": 50_000})
    run(["git", "commit", "-qam", "long training"], clone)

    def trainers(running: bool = False) -> list[int]:
        return stage_pids(clone, running, wrappers=False)

    env = unmeasured_couriers(base_env(XORNET_TRACKING="1", SHELL="/bin/sh"))
    for name in ("first", "second"):
        run(["dvc", "exp", "run", "--queue", "-n", name], clone, env)
    staging = Outbox(clone).staging

    def both_training() -> bool:  # the staging folder appears with the first entry
        staged = list(staging.iterdir()) if staging.is_dir() else []
        return len(trainers(running=True)) == 2 and len(staged) == 2

    # on exit: nothing of the queue left running
    with queue_workers(clone, unmeasured(env), jobs=2):
        wait_until(both_training, 180, "both experiments' train stages")
        run(["dvc", "queue", "kill", "first"], clone, env)
        wait_until(lambda: len(trainers()) == 1, 10, "the first stage to stop")
        run(["dvc", "queue", "stop", "--kill"], clone, env)
        wait_until(lambda: not trainers(), 10, "the second stage to stop")
        wait_for_delivery(clone)
    status = run(["dvc", "queue", "status"], clone).stdout
    assert status.count("Failed") == 2 and "Running" not in status, status
    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    ids = [e.experiment_id for e in c.search_experiments()]
    found = c.search_runs(ids)
    assert sorted(r.data.tags["dvc.exp_name"] for r in found) == ["first", "second"]
    assert {r.info.status for r in found} == {"KILLED"}
    assert all(r.data.tags["xornet.stage"] == "train" for r in found)
