"""MLflow tracking, stage by stage, against a real MLflow SQLite store in temporary clones:
what a run holds, evaluate/plot attaching (and child runs when their params change),
FAILED/KILLED on faults, fast one-line errors for dead servers and bad URIs, and the
outbox: stages that never import MLflow, a background courier that delivers, retries
and survives being stopped. (tests/test_tracking_dvc.py drives the same through dvc,
a real server and serving.)"""

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import (
    TerminalStage,
    base_env,
    courier_processes,
    make_clone,
    run,
    wait_for_delivery,
)
from xornet.errors import BadInput
from xornet.tracking.courier import TRACE_ENV, courier_lock, lock_holder
from xornet.tracking.outbox import Outbox, entry_id, read_header, resolve_store

TRAIN_OUTPUTS = ["models/model.npz", "models/snapshots.npz", "metrics/history.csv"]
STAGE_OUTPUTS = [*TRAIN_OUTPUTS, "metrics/train.json"]
EPOCHS = 200  # enough for the default network to solve XOR


def tracked_env(**extra: str) -> dict[str, str]:
    return base_env(XORNET_TRACKING="1", **extra)


def stage(repo: Path, name: str, *sets: str, env=None, check=True):
    args = [sys.executable, f"stages/{name}.py", *(f"--set={s}" for s in sets)]
    return run(args, repo, env or tracked_env(), check=check)


def client(repo: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")


def courier_for(repo: Path, runner: int) -> subprocess.Popen:
    """`xornet-track deliver` handed a pidfd of process ``runner``, as a stage DVC runs
    starts it (its output piped here rather than into courier.log)."""
    pidfd = os.pidfd_open(runner)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "xornet.tracking.courier", "deliver"]
            + [f"--root={repo}", f"--runner-pidfd={pidfd}"],
            cwd=repo,
            env=tracked_env(),
            pass_fds=(pidfd,),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    finally:
        os.close(pidfd)


@contextlib.contextmanager
def kept_courier(repo: Path) -> Iterator[subprocess.Popen]:
    """One courier for the whole block, kept at work as `dvc repro` keeps one (its
    runner a `sleep`, ended on the way out): the stages run inside leave their entries
    to it (:func:`runs_of` with ``kept``). On the way out it delivers what is left
    and exits; what it printed is then its ``output``."""
    runner = subprocess.Popen(["sleep", "600"])
    courier = courier_for(repo, runner.pid)
    try:
        deadline = time.monotonic() + 60
        while lock_holder(Outbox(repo).lock_file) != courier.pid:
            assert courier.poll() is None, f"the courier exited {courier.returncode}"
            assert time.monotonic() < deadline, "the courier never took the lock"
            time.sleep(0.05)
        yield courier
        runner.kill()
        courier.output, _ = courier.communicate(timeout=120)  # type: ignore[attr-defined]
        assert courier.returncode == 0, courier.output  # type: ignore[attr-defined]
    finally:
        for proc in (runner, courier):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def runs_of(repo: Path, experiment: str = "xornet", kept: subprocess.Popen | None = None) -> list:
    """The experiment's runs, once the background courier has delivered them all —
    or, with a courier ``kept`` at work (:func:`kept_courier`), once it has delivered
    every pending entry (it deletes each as it is delivered)."""
    if kept is None:
        wait_for_delivery(repo)
    else:
        outbox = Outbox(repo)
        deadline = time.monotonic() + 300
        while outbox.pending():
            assert kept.poll() is None, f"the kept courier exited {kept.returncode}"
            assert time.monotonic() < deadline, "the kept courier delivered nothing"
            time.sleep(0.1)
        assert not outbox.failed()
    c = client(repo)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def running(repo: Path) -> list:
    wait_for_delivery(repo)
    if not (repo / "mlflow.db").exists():
        return []
    c = client(repo)
    ids = [e.experiment_id for e in c.search_experiments()]
    return c.search_runs(ids, filter_string="attributes.status = 'RUNNING'")


def snapshot(repo: Path) -> dict[str, bytes]:
    """Every file under the output folders, by path (temporary leftovers included)."""
    files = {}
    for folder in ("models", "metrics", "data"):
        for path in sorted((repo / folder).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(repo))] = path.read_bytes()
    return files


def one_error_line(proc: subprocess.CompletedProcess, stage_name: str = "train") -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{stage_name}: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A clone with data and a trained model (tracking off), copied by each test."""
    repo = make_clone(tmp_path_factory.mktemp("base") / "xornet")
    stage(repo, "generate", env=base_env())
    stage(repo, "train", f"train.epochs={EPOCHS}", env=base_env())
    return repo


@pytest.fixture
def repo(base, tmp_path) -> Path:
    dest = tmp_path / "xornet"
    shutil.copytree(base, dest, symlinks=True)
    return dest


# ------------------------------------------------------------------ no MLflow needed
def test_store_is_resolved_from_the_project_root_never_the_cwd(tmp_path, monkeypatch):
    root = tmp_path / "project"
    (root / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = resolve_store(root)
    assert store.uri == f"sqlite:///{root}/mlflow.db"
    assert store.artifact_root == root / "mlruns"
    assert not store.is_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///sub/runs.db")
    assert resolve_store(root).uri == f"sqlite:///{root}/sub/runs.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/abs.db")
    assert resolve_store(root).uri == f"sqlite:///{tmp_path}/abs.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000/")
    server = resolve_store(root)
    assert (server.uri, server.is_server, server.artifact_root) == (
        "http://127.0.0.1:5000",
        True,
        None,
    )


@pytest.mark.parametrize(
    "uri",
    [
        "http://",
        "http://127.0.0.1:99999",
        "sqlite:///missing/dir/x.db",
        "sqlite://",
        "./mlruns",
        "foo://bar",
    ],
)
def test_bad_tracking_uri_is_bad_input(tmp_path, monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(BadInput, match="MLFLOW_TRACKING_URI"):
        resolve_store(tmp_path)


# ------------------------------------------------------------------ stages with MLflow
slow = pytest.mark.slow


@slow
@pytest.mark.parametrize(
    ("flag", "sets"), [("0", []), ("1", ["--set=tracking.enabled=false"])], ids=["env", "params"]
)
def test_tracking_off_never_imports_mlflow(repo, flag, sets):
    env = base_env(XORNET_TRACKING=flag)
    for name in ("train", "evaluate"):
        proc = run([sys.executable, "-X", "importtime", f"stages/{name}.py", *sets], repo, env)
        imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines()]
        assert not [m for m in imported if m.split(".")[0] == "mlflow"], name
    assert not (repo / "mlflow.db").exists()
    assert not (repo / ".xornet").exists()


@slow
def test_stages_fill_one_run_and_changed_params_get_child_runs(repo):
    # One courier delivers all seven stage runs, as one does for a `dvc repro` (the
    # courier tests below cover stages that start their own).
    with kept_courier(repo) as courier:
        # The stages record; the courier delivers: they never import MLflow.
        for name, sets in (
            ("train", [f"--set=train.epochs={EPOCHS}"]),
            ("evaluate", []),
            ("plot", []),
        ):
            proc = run(
                [sys.executable, "-X", "importtime", f"stages/{name}.py", *sets],
                repo,
                tracked_env(),
            )
            imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines()]
            assert not [m for m in imported if m.split(".")[0] == "mlflow"], name
        assert courier_processes(repo) == [courier.pid]  # no stage started one
        (training,) = runs_of(repo, kept=courier)
        c = client(repo)
        assert training.info.status == "FINISHED"
        params = training.data.params
        assert params["train.epochs"] == str(EPOCHS)
        assert params["model.hidden"] == "[8]"
        assert params["evaluate.threshold"] == "0.5"
        assert {"data.kind", "train.learning_rate", "plot.dpi"} <= set(params)
        for key in ("train_loss", "val_loss", "val_accuracy"):
            history = c.get_metric_history(training.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
        metrics = training.data.metrics
        for key in ("final_train_loss", "test_accuracy", "test_loss", "test_precision", "test_f1"):
            assert key in metrics
        model_bytes = (repo / "models/model.npz").read_bytes()
        tags = training.data.tags
        assert tags["xornet.model.sha256"] == hashlib.sha256(model_bytes).hexdigest()
        assert tags["xornet.model.md5"] == hashlib.md5(model_bytes).hexdigest()
        train_bytes = (repo / "data/train.npz").read_bytes()
        assert tags["xornet.data.train.sha256"] == hashlib.sha256(train_bytes).hexdigest()
        head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
        assert tags["mlflow.source.git.commit"] == head
        folders = {a.path for a in c.list_artifacts(training.info.run_id)}
        assert {"train", "evaluate", "plots"} <= folders
        files = {a.path for a in c.list_artifacts(training.info.run_id, "train")}
        assert {"train/model.npz", "train/history.csv", "train/train.json"} <= files

        # Only evaluate's params change: a child run holds the new threshold and its results.
        stage(repo, "evaluate", "evaluate.threshold=0.7")
        training, child = runs_of(repo, kept=courier)
        assert training.data.params["evaluate.threshold"] == "0.5"
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == training.info.run_id
        assert child.data.params["evaluate.threshold"] == "0.7"
        assert child.data.params["train.epochs"] == str(EPOCHS)
        assert not any(key.startswith("plot.") for key in child.data.params)
        assert "test_accuracy" in child.data.metrics
        # The same params again attach to that child; plot (unchanged params) follows it.
        stage(repo, "evaluate", "evaluate.threshold=0.7")
        stage(repo, "plot")
        training, child = runs_of(repo, kept=courier)
        assert child.data.params["plot.dpi"] == "100"
        # A plot param change: a child of the training run that keeps the 0.7 evaluation.
        stage(repo, "plot", "plot.dpi=50")
        *_, plot_child = runs_of(repo, kept=courier)
        assert plot_child.data.tags["mlflow.parentRunId"] == training.info.run_id
        assert plot_child.data.params["plot.dpi"] == "50"
        assert plot_child.data.params["evaluate.threshold"] == "0.7"
        assert len(runs_of(repo, kept=courier)) == 3
    assert not running(repo)


@slow
def test_logged_pyfunc_predicts_xor_without_pickle(repo):
    import mlflow.pyfunc
    import pandas as pd

    stage(repo, "train", f"train.epochs={EPOCHS}")
    (training,) = runs_of(repo)
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{training.info.run_id}/model")
        corners = pd.DataFrame([[0, 0], [0, 1], [1, 0], [1, 1]], columns=["x1", "x2"])
        out = model.predict(corners.astype(float))
        strict = model.predict(corners.astype(float), params={"threshold": 0.999999})
    finally:
        mlflow.set_tracking_uri(None)
    assert out["label"].tolist() == [0, 1, 1, 0]
    assert ((out["probability"] > 0.5) == out["label"].astype(bool)).all()
    assert strict["label"].sum() < 2
    info = model.metadata
    assert info.signature is not None and info.saved_input_example_info is not None
    pyfunc = info.flavors["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model"  # from code
    assert "python_model" not in pyfunc  # no pickled PythonModel


@slow
def test_exceptions_mark_the_run_failed_and_leave_outputs(repo):
    before = snapshot(repo)
    diverging = stage(
        repo,
        "train",
        "model.activation=relu",
        "train.learning_rate=1.0e+300",
        "train.epochs=50",
        check=False,
    )
    assert diverging.returncode == 1
    assert "diverged" in one_error_line(diverging)
    (repo / "broken.npz").write_bytes(b"not a zip")
    bad_data = run(
        [sys.executable, "stages/train.py", "--test-data=broken.npz"],
        repo,
        tracked_env(),
        check=False,
    )
    assert bad_data.returncode == 2
    assert [r.info.status for r in runs_of(repo)] == ["FAILED", "FAILED"]
    assert snapshot(repo) == before
    assert not running(repo)


@slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupts_mark_the_run_killed_and_leave_outputs(repo, sig, code):
    before = snapshot(repo)
    # Seconds of training left after the 1 % the test waits for, ~2 000 epochs delivered.
    stage = TerminalStage(
        [sys.executable, "stages/train.py", "--set=train.epochs=200000"], repo, tracked_env()
    )
    stage.wait_for_training()  # the progress bar past 0 %: epochs are in the history
    assert any(Outbox(repo).staging.glob("*")), "the stage is not recording its run"
    stage.proc.send_signal(sig)
    stderr = stage.finish()
    proc = stage.proc
    assert proc.returncode == code, stderr
    (killed,) = runs_of(repo)
    assert killed.info.status == "KILLED"
    assert killed.info.end_time > killed.info.start_time
    # The epochs it trained before the signal are in the run.
    assert client(repo).get_metric_history(killed.info.run_id, "train_loss")
    assert not running(repo)
    assert snapshot(repo) == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@slow
@pytest.mark.parametrize("server", ["refused", "silent"])
def test_dead_tracking_server_fails_fast_before_training(repo, server):
    before = snapshot(repo)
    listener = None
    if server == "refused":
        uri = f"http://127.0.0.1:{_free_port()}"
    else:  # accepts connections, never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        start = time.monotonic()
        proc = stage(repo, "train", env=tracked_env(MLFLOW_TRACKING_URI=uri), check=False)
        elapsed = time.monotonic() - start
    finally:
        if listener is not None:
            listener.close()
    assert proc.returncode == 1
    assert "unreachable" in one_error_line(proc)
    assert elapsed < 15
    assert proc.stdout == ""  # training never started
    assert snapshot(repo) == before


@slow
@pytest.mark.parametrize(
    "uri", ["foo://bar", "http//127.0.0.1:5000", "sqlite:///no/such/dir/x.db", "http://:5000"]
)
def test_invalid_tracking_uri_is_one_line_exit_2(repo, uri):
    before = snapshot(repo)
    proc = stage(repo, "train", env=tracked_env(MLFLOW_TRACKING_URI=uri), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "MLflow" in one_error_line(proc) or "MLFLOW_TRACKING_URI" in proc.stderr
    assert snapshot(repo) == before


@slow
def test_deleted_experiment_is_a_one_line_hint(repo):
    c = client(repo)
    c.delete_experiment(c.create_experiment("xornet"))
    proc = stage(repo, "train", check=False)
    assert proc.returncode == 2
    assert "mlflow experiments restore" in one_error_line(proc)
    assert proc.stdout == ""


# ------------------------------------------------------------------ the courier
def track(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(
        [str(Path(sys.executable).parent / "xornet-track"), *args, f"--root={repo}"],
        repo,
        check=check,
    )


@slow
def test_an_undeliverable_run_waits_in_failed_until_flush_delivers_it(repo):
    broken = repo / "broken.db"
    broken.write_text("not an SQLite database\n")
    env = tracked_env(MLFLOW_TRACKING_URI="sqlite:///broken.db")
    stage(repo, "train", f"train.epochs={EPOCHS}", env=env)  # the stage itself succeeds
    wait_for_delivery(repo, check=False)
    stage(repo, "evaluate", env=env)
    wait_for_delivery(repo, check=False)
    entry, evaluation = (entry_id(e) for e in Outbox(repo).failed())
    status = track(repo, "status").stdout
    assert "pending: 0  failed: 2  courier: idle" in status
    assert f"failed {entry}: cannot use MLflow tracking store" in status
    # The evaluation is kept back with its training run, not logged to a run of its own.
    assert f"failed {evaluation}: waits for its training run (entry {entry}" in status
    # Without --root, from a subfolder: the nearest folder holding dvc.yaml.
    xornet_track = str(Path(sys.executable).parent / "xornet-track")
    assert run([xornet_track, "status"], repo / "models").stdout == status
    shown = track(repo, "show", entry).stdout
    assert f"entry {entry}: failed" in shown and "kind: train" in shown
    assert "not delivered: cannot use MLflow tracking store" in shown
    retry = track(repo, "flush", check=False)
    assert retry.returncode == 1
    first, second = retry.stderr.splitlines()
    assert first.startswith(f"xornet-track: error: {entry}: cannot use MLflow tracking store")
    assert second.startswith(f"xornet-track: error: {evaluation}: waits for its training")
    broken.unlink()  # the store is fixed: retry delivers the training entry, flush the rest
    track(repo, "retry", entry)
    assert [entry_id(e) for e in Outbox(repo).failed()] == [evaluation]
    track(repo, "flush")
    assert not Outbox(repo).failed() and not Outbox(repo).pending()
    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{broken}")
    (delivered,) = c.search_runs([c.get_experiment_by_name("xornet").experiment_id])
    assert delivered.info.status == "FINISHED"
    assert delivered.data.params["train.epochs"] == str(EPOCHS)
    assert "test_accuracy" in delivered.data.metrics  # the evaluation attached to it


@slow
def test_stages_ending_while_a_courier_delivers_leave_their_runs_to_it(repo):
    outbox = Outbox(repo)
    with courier_lock(outbox, wait=True):  # this test is the courier at work
        stage(repo, "train", f"train.epochs={EPOCHS}")
        stage(repo, "evaluate")
        assert not courier_processes(repo)  # neither stage started one of its own
        # A courier started anyway finds the lock held and leaves before importing MLflow.
        late = run(
            [sys.executable, "-X", "importtime", "-m", "xornet.tracking.courier", "deliver"],
            repo,
            tracked_env(),
        )
        imported = {line.split("|")[-1].strip() for line in late.stderr.splitlines()}
        assert "xornet.tracking.outbox" in imported  # it ran (as __main__)
        assert not {m for m in imported if m.split(".")[0] in ("mlflow", "sqlalchemy")}
        assert [read_header(e)["kind"] for e in outbox.pending()] == ["train", "attach"]
    outbox.start_courier()  # what the courier at work does after releasing the lock
    (training,) = runs_of(repo)
    assert training.info.status == "FINISHED"
    assert "test_accuracy" in training.data.metrics
    log = outbox.log_file.read_text()
    assert len(re.findall(r"courier\[\d+\]: \w+: delivered to run", log)) == 2, log
    assert len(set(re.findall(r"courier\[(\d+)\]", log))) == 1, log  # one courier did both


@slow
def test_a_courier_handed_its_runner_delivers_until_the_runner_ends(repo):
    """What a stage DVC runs starts: a courier holding a pidfd of the `dvc` process.
    It stays at work while that runs — later stages' entries need no courier of their
    own — delivering each as it arrives, and leaves once the runner has ended."""
    with kept_courier(repo) as courier:  # took the lock, and holds it with nothing to do
        stage(repo, "train", f"train.epochs={EPOCHS}")
        stage(repo, "evaluate")
        assert courier_processes(repo) == [courier.pid]  # neither stage started one
        (training,) = runs_of(repo, kept=courier)  # delivered while the runner runs
        assert courier.poll() is None  # and still at work
    assert training.info.status == "FINISHED"
    assert "test_accuracy" in training.data.metrics
    delivered = re.findall(r"courier\[(\d+)\]: \w+: delivered to run", courier.output)
    assert delivered == [str(courier.pid)] * 2, courier.output
    assert not courier_processes(repo)  # gone with its runner


def test_a_courier_whose_runner_has_ended_leaves_at_once(repo):
    """A runner gone before the courier looks (a dvc that ended meanwhile): the courier
    delivers what is pending (nothing here) and exits instead of waiting."""
    runner = subprocess.Popen(["true"])
    os.waitid(os.P_PID, runner.pid, os.WEXITED | os.WNOWAIT)  # ended, not yet reaped
    courier = courier_for(repo, runner.pid)
    runner.wait()
    try:
        log, _ = courier.communicate(timeout=120)
    finally:
        if courier.poll() is None:
            courier.kill()
            courier.wait()
    assert courier.returncode == 0, log
    assert not (repo / "mlflow.db").exists()  # nothing to deliver: no store opened


@pytest.mark.parametrize("handed", ["closed", "pipe"])
def test_a_courier_handed_no_pidfd_is_a_one_line_exit_2(repo, handed):
    """Only stages pass --runner-pidfd, with a pidfd they just opened; anything else
    (an fd not open in the courier, or open but not a pidfd) is refused up front."""
    read_end, write_end = os.pipe()
    try:
        fd = read_end if handed == "pipe" else 99
        proc = subprocess.run(
            [sys.executable, "-m", "xornet.tracking.courier", "deliver"]
            + [f"--root={repo}", f"--runner-pidfd={fd}"],
            cwd=repo,
            env=tracked_env(),
            pass_fds=(read_end,),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"xornet-track: error: Invalid value for '--runner-pidfd': {fd} is not an open pidfd"
        " (stages pass one of the process they run for)"
    ]
    assert proc.stdout == ""
    assert not (repo / "mlflow.db").exists()


@slow
def test_a_courier_stopped_mid_delivery_leaves_no_run_running_and_is_resumed(repo):
    from mlflow.entities import ViewType

    epochs = 10000  # 30 metric batches, then artifacts and the model: seconds of delivery
    c = client(repo)
    c.search_experiments()  # create the store first
    trace = repo.parent / "trace.txt"
    stage(repo, "train", f"train.epochs={epochs}", env=tracked_env(**{TRACE_ENV: str(trace)}))
    deadline = time.monotonic() + 120
    while not trace.exists() or "curves batch" not in trace.read_text():
        assert time.monotonic() < deadline, "the courier never reached the curves"
        time.sleep(0.01)
    (pid,) = courier_processes(repo)
    ids = [e.experiment_id for e in c.search_experiments()]
    assert c.search_runs(ids, filter_string="attributes.status = 'RUNNING'")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while courier_processes(repo):
        assert time.monotonic() < deadline, "the courier ignored SIGTERM"
        time.sleep(0.1)
    ids = [e.experiment_id for e in c.search_experiments()]
    (stopped,) = c.search_runs(ids)
    assert stopped.info.status == "KILLED"
    assert len(Outbox(repo).pending()) == 1  # the entry waits for the next courier
    track(repo, "flush")
    (delivered,) = runs_of(repo)
    assert delivered.info.status == "FINISHED"
    steps = [m.step for m in c.get_metric_history(delivered.info.run_id, "train_loss")]
    assert sorted(steps) == list(range(1, epochs + 1))  # complete, no duplicates
    (deleted,) = c.search_runs(ids, run_view_type=ViewType.DELETED_ONLY)
    assert deleted.info.run_id == stopped.info.run_id
    assert not running(repo)
