"""The convergence study in MLflow, against a real SQLite store: recorded by
cli.study_run, delivered by the real courier as one parent run with a child run per
configuration, curves with steps, files under ``study/``; a delivery that fails or is
interrupted leaves FAILED / KILLED runs, nothing RUNNING, and its retry delivers the
study once; a dead server fails fast. The last test drives it through the real stage
command (cli's study hook)."""

import json
import math
import socket
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, base_env, make_clone, run, set_params, wait_for_delivery
from xornet import cli
from xornet.config.schema import load_params
from xornet.errors import Failure
from xornet.study import convergence as study
from xornet.tracking import courier, outbox
from xornet.tracking import mlflow_writer as tracking

GRID = "{model.hidden: [[2], [4]], train.learning_rate: [0.5, 1.0]}"
LABELS = {
    "hidden=[2], learning_rate=0.5",
    "hidden=[2], learning_rate=1.0",
    "hidden=[4], learning_rate=0.5",
    "hidden=[4], learning_rate=1.0",
}


def small(*overrides: str):
    """Shipped params, shrunk so the study takes a fraction of a second."""
    return load_params(
        REPO_ROOT / "params.yaml",
        ("study.seeds=6", "train.epochs=150", "data.n_samples=200", *overrides),
    )


@pytest.fixture(scope="module")
def results():
    params = small(f"study.grid={GRID}")
    return params, study.train_grid(params)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One project root (store and artifacts) for the module; each test logs to its
    own experiment, so creating the SQLite store is paid once."""
    return tmp_path_factory.mktemp("project")


@pytest.fixture
def env(monkeypatch):
    """Tracking on, the default store; MLflow's process-wide state restored afterwards."""
    for key in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE", cli.TRACKING_ENV):
        monkeypatch.delenv(key, raising=False)
    for key, value in tracking.MLFLOW_ENV_DEFAULTS.items():
        monkeypatch.setenv(key, value)  # open_session's setdefault leaves them as they are
    yield
    import mlflow

    while mlflow.active_run() is not None:  # a failed test must not leak a run
        mlflow.end_run("KILLED")
    mlflow.set_tracking_uri(None)


def outputs(params, results, folder: Path) -> list[Path]:
    """The study's tables (the figure's bytes are a stand-in: plots is not under test)."""
    files = study.StudyOutputs(
        folder / "summary.csv",
        folder / "summary.md",
        folder / "summary.json",
        folder / "seeds.csv",
        folder / "convergence.png",
    )
    folder.mkdir(parents=True, exist_ok=True)
    study.write_tables(params, results, files)
    files.figure.write_bytes(b"\x89PNG stand-in")
    return files.files()


def with_experiment(params, name: str):
    """``params`` logging to MLflow experiment ``name``."""
    return params.model_copy(
        update={"tracking": params.tracking.model_copy(update={"experiment": name})}
    )


def client(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def runs_in(root: Path, experiment: str) -> list:
    """The study's runs: in ``<experiment>-study``, never among the training runs."""
    c = client(root)
    assert c.get_experiment_by_name(experiment) is None
    exp = c.get_experiment_by_name(f"{experiment}-study")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    return c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def split(runs: list) -> tuple:
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_study_logs_one_finished_parent_and_a_child_per_configuration(results, root, env, tmp_path):
    params, found = results
    params = with_experiment(params, "study-ok")
    files = outputs(params, found, tmp_path / "study")
    cli.study_run(params, root, found, files)
    wait_for_delivery(root)  # by the courier study_run started

    runs = runs_in(root, "study-ok")
    (parent,), children = split(runs)
    c = client(root)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "study"
    assert parent.data.tags["xornet.kind"] == "study"
    assert parent.data.tags["xornet.stage"] == "study"
    assert parent.data.params["study.configurations"] == "4"
    assert parent.data.params["study.seeds"] == "6"
    assert json.loads(parent.data.params["study.grid"]) == {
        "model.hidden": [[2], [4]],
        "train.learning_rate": [0.5, 1.0],
    }
    best = max(r.summary["success_rate"] for r in found)
    assert parent.data.metrics["best_success_rate"] == pytest.approx(best)
    logged = {a.path for a in c.list_artifacts(parent.info.run_id, "study")}
    assert logged == {f"study/{f.name}" for f in files}

    assert len(children) == len(found) == 4
    assert {r.info.run_name for r in children} == LABELS
    by_label = {r.label: r for r in found}
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["xornet.kind"] == "study-configuration"
        label = child.data.tags["xornet.configuration"]
        assert label == child.info.run_name
        result = by_label[label]
        config = result.config.params
        assert child.data.params["model.hidden"] == json.dumps(config.model.hidden)
        assert child.data.params["train.learning_rate"] == str(config.train.learning_rate)
        assert child.data.params["train.epochs"] == "150"
        assert json.loads(child.data.params["study.overrides"]) == result.config.overrides
        for key, value in result.summary.items():
            if isinstance(value, int | float) and key != "epochs":  # not the verdict
                assert child.data.metrics[key] == pytest.approx(value), key
        assert "seconds" in child.data.metrics
        # Curves: one point per recorded epoch, step = epoch, values as computed.
        steps = [int(e) for e in result.result.history_epoch]
        assert steps[-1] == 150
        for name in ("solved_share", "loss_median", "loss_q10", "loss_q90"):
            history = sorted(c.get_metric_history(child.info.run_id, name), key=lambda m: m.step)
            assert [m.step for m in history] == steps, name
        share = sorted(
            c.get_metric_history(child.info.run_id, "solved_share"), key=lambda m: m.step
        )
        assert share[-1].value == pytest.approx(result.summary["success_rate"])
        median = sorted(
            c.get_metric_history(child.info.run_id, "loss_median"), key=lambda m: m.step
        )
        assert all(math.isfinite(m.value) for m in median)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # Artifacts under the project root, as for training runs.
    experiment = c.get_experiment_by_name("study-ok-study")
    assert experiment.artifact_location == (root / "mlruns" / "study-ok-study").as_uri()


def test_a_failed_or_interrupted_delivery_ends_its_runs_and_the_retry_delivers_once(
    results, root, env, monkeypatch, tmp_path
):
    """Delivered in this process (no courier started), with MLflow failing inside the
    second child's curves: first an error, then Ctrl-C."""
    params, found = results
    files = outputs(params, found, tmp_path / "study")
    monkeypatch.setattr(outbox.Outbox, "start_courier", lambda self: None)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    original = MlflowClient.log_batch
    curve_runs: list[str] = []

    def curves_fail_in_second_child(error: BaseException):
        def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
            if any(m.key == "solved_share" for m in metrics):
                curve_runs.append(run_id)
                if len(curve_runs) == 2:
                    raise error
            return original(self, run_id, metrics=metrics, params=params, tags=tags, **kwargs)

        return log_batch

    def statuses(experiment: str) -> tuple[str, list[str]]:
        (parent,), children = split(runs_in(root, experiment))
        return parent.info.status, sorted(r.info.status for r in children)

    # An MLflow error inside the second child: the entry moves to failed/ with one
    # line; that child and the parent FAILED, the first child FINISHED, no third.
    monkeypatch.setattr(
        MlflowClient,
        "log_batch",
        curves_fail_in_second_child(MlflowException("database is locked")),
    )
    cli.study_run(with_experiment(params, "study-fails"), root, found, files)
    ((entry, message),) = courier.flush(root)
    assert message.endswith("database is locked") and "\n" not in message
    assert statuses("study-fails") == ("FAILED", ["FAILED", "FINISHED"])
    # MLflow works again: the retry deletes the partial runs and delivers the study once.
    monkeypatch.setattr(MlflowClient, "log_batch", original)
    assert courier.flush(root) == []
    assert statuses("study-fails") == ("FINISHED", ["FINISHED"] * 4)

    # Ctrl-C inside the second child: it and the parent KILLED, the entry kept pending.
    curve_runs.clear()
    monkeypatch.setattr(MlflowClient, "log_batch", curves_fail_in_second_child(KeyboardInterrupt()))
    cli.study_run(with_experiment(params, "study-killed"), root, found, files)
    with pytest.raises(KeyboardInterrupt):
        courier.flush(root)
    assert statuses("study-killed") == ("KILLED", ["FINISHED", "KILLED"])
    assert len(outbox.Outbox(root).pending()) == 1
    monkeypatch.setattr(MlflowClient, "log_batch", original)
    assert courier.flush(root) == []
    assert statuses("study-killed") == ("FINISHED", ["FINISHED"] * 4)
    assert not outbox.Outbox(root).pending() and not outbox.Outbox(root).failed()
    c = client(root)
    ids = [e.experiment_id for e in c.search_experiments()]
    assert not c.search_runs(ids, filter_string="attributes.status = 'RUNNING'")


def test_dead_server_fails_fast_without_logging(results, env, monkeypatch, tmp_path):
    params, found = results
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(Failure, match="unreachable"):
        cli.study_run(params, tmp_path, found, [])
    assert time.monotonic() - start < 15
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_study_stage_logs_through_the_cli_hook(tmp_path):
    """stages/study.py with tracking on, in a clone: the store at the clone's root."""
    repo = make_clone(tmp_path / "xornet")
    set_params(repo, study={"seeds": 6}, train={"epochs": 150}, data={"n_samples": 200})
    proc = run(
        [sys.executable, "stages/study.py", f"--set=study.grid={GRID}"],
        repo,
        base_env(XORNET_TRACKING="1"),
    )
    wait_for_delivery(repo)
    assert proc.stdout.count("study: hidden=") == 4
    assert "not logged" not in proc.stderr
    runs = runs_in(repo, "xornet")
    (parent,), children = split(runs)
    assert parent.info.status == "FINISHED"
    assert {r.info.run_name for r in children} == LABELS
    assert all(r.info.status == "FINISHED" for r in children)
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    assert {r.data.tags["mlflow.source.git.commit"] for r in runs} == {head}
    logged = {a.path for a in client(repo).list_artifacts(parent.info.run_id, "study")}
    assert {"study/summary.csv", "study/summary.md", "study/summary.json"} <= logged
    assert "study/convergence.png" in logged
