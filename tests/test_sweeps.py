"""A queued DVC grid with MLflow tracking, by the real tools: `dvc exp run --queue` with
two `-S` sweeps (2 x 2), `dvc queue start -j 2`, then `dvc exp show` and the MLflow
store must tell the same story about every experiment."""

from pathlib import Path

import pytest

from conftest import (
    base_env,
    exp_rows,
    make_clone,
    queue_workers,
    run,
    set_params,
    wait_for_delivery,
    wait_for_queue,
)
from xornet.tracking.outbox import param_value

pytestmark = pytest.mark.slow

EPOCHS = 150
SWEEP = ["-S", "train.learning_rate=0.3,0.9", "-S", "model.hidden=[4],[6]"]
GRID = {(0.3, (4,)), (0.3, (6,)), (0.9, (4,)), (0.9, (6,))}
TRAINING_SECTIONS = ("data", "model", "train")


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=1e-12, abs=1e-15)


def test_queued_grid_agrees_in_dvc_exp_show_and_mlflow(tmp_path: Path):
    repo = make_clone(tmp_path / "xornet")
    set_params(repo, train={"epochs": EPOCHS})
    run(["git", "commit", "-qam", "short training"], repo)
    env = base_env(XORNET_TRACKING="1")
    run(["dvc", "exp", "run", "--queue", *SWEEP], repo, env)
    with queue_workers(repo, env, jobs=2):
        wait_for_queue(repo, timeout=300)
        wait_for_delivery(repo)
    status = run(["dvc", "queue", "status"], repo).stdout
    assert "Failed" not in status, status

    rows = {row["name"]: row for row in exp_rows(repo)}
    assert len(rows) == 4, sorted(rows)
    grid = {
        (row["params"]["train"]["learning_rate"], tuple(row["params"]["model"]["hidden"]))
        for row in rows.values()
    }
    assert grid == GRID

    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = c.get_experiment_by_name("xornet")
    study_experiment = c.get_experiment_by_name("xornet-study")  # the study's own
    everything = c.search_runs([e.experiment_id for e in c.search_experiments()])
    assert {r.info.status for r in everything} == {"FINISHED"}

    training = [r for r in everything if r.data.tags["xornet.stage"] == "train"]
    assert {r.info.experiment_id for r in training} == {experiment.experiment_id}
    by_name = {r.data.tags["dvc.exp_name"]: r for r in training}
    assert len(training) == 4 and set(by_name) == set(rows)
    for name, row in rows.items():
        mlflow_run = by_name[name]
        lr, hidden = row["params"]["train"]["learning_rate"], row["params"]["model"]["hidden"]
        # named for what sets it apart from the committed params.yaml
        assert mlflow_run.info.run_name == f"lr={lr} hidden={param_value(hidden)} seed=0"
        logged = mlflow_run.data.params
        for section in (*TRAINING_SECTIONS, "evaluate"):
            for key, value in row["params"][section].items():
                assert logged[f"{section}.{key}"] == param_value(value), (name, section, key)
        metrics = mlflow_run.data.metrics
        trained = row["metrics"]["metrics/train.json"]
        evaluated = row["metrics"]["metrics/evaluate.json"]
        assert trained and evaluated
        for key, value in trained.items():
            assert close(metrics[f"final_{key}"], value), (name, key)
        for key, value in evaluated.items():
            assert close(metrics[f"test_{key}"], value), (name, key)

    # The study stage runs in every experiment too: a parent run and its one
    # configuration ("base"), whose metrics are the experiment's study/summary.json.
    study = [r for r in everything if r.data.tags["xornet.stage"] == "study"]
    assert {r.info.experiment_id for r in study} == {study_experiment.experiment_id}
    assert {r.info.experiment_id for r in everything} == {
        experiment.experiment_id,
        study_experiment.experiment_id,
    }
    parents = {
        r.data.tags["dvc.exp_name"]: r for r in study if r.data.tags["xornet.kind"] == "study"
    }
    assert set(parents) == set(rows) and len(study) == 8
    for name, row in rows.items():
        parent = parents[name]
        (child,) = [r for r in study if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert child.info.run_name == "base"
        assert child.data.tags["dvc.exp_name"] == name
        for section in TRAINING_SECTIONS:
            for key, value in row["params"][section].items():
                assert child.data.params[f"{section}.{key}"] == param_value(value)
        summary = row["metrics"]["study/summary.json"]["base"]
        for key, value in summary.items():
            if isinstance(value, int | float) and key != "epochs":
                assert close(child.data.metrics[key], value), (name, key)
        assert child.data.tags["xornet.diagnosis"] == summary["verdict"]
        assert close(parent.data.metrics["best_success_rate"], summary["success_rate"])
