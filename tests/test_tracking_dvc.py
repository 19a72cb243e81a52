"""MLflow tracking driven by the real tools: `dvc repro`, and a queued 2 x 2 grid
(`dvc exp run --queue` + `dvc queue start -j 2`) into the project-root store that
must tell `dvc exp show`'s story; the same (repro, then a queued sweep) against a real
`mlflow server`; and the registered champion served by `mlflow models serve -m
models:/xornet@champion --env-manager local` answering XOR over HTTP."""

import hashlib
import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml
from servers import free_port, group_commands, mlflow_server, start, stop, wait_http

from conftest import (
    BIN_DIR,
    LIGHT_PLOTS,
    base_env,
    exp_rows,
    make_clone,
    queue_workers,
    run,
    set_params,
    unmeasured,
    unmeasured_couriers,
    wait_for_delivery,
    wait_for_queue,
)
from xornet.tracking.outbox import param_value

pytestmark = pytest.mark.slow

EPOCHS = 200
ALL_SECTIONS = ("data", "model", "train", "evaluate", "plot")
TRAINING_SECTIONS = ALL_SECTIONS[:3]  # what the study stage logs of a configuration
XOR = {"columns": ["x1", "x2"], "data": [[0, 0], [0, 1], [1, 0], [1, 1]]}


def tracked_env(**extra: str) -> dict[str, str]:
    return base_env(XORNET_TRACKING="1", **extra)


def short_clone(dest: Path) -> Path:
    repo = make_clone(dest)
    set_params(repo, train={"epochs": EPOCHS}, plot=LIGHT_PLOTS)
    run(["git", "commit", "-qam", "short training"], repo)
    return repo


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def store_uri(repo: Path) -> str:
    return f"sqlite:///{repo / 'mlflow.db'}"


def all_runs(c) -> list:
    ids = [e.experiment_id for e in c.search_experiments()]
    return c.search_runs(ids, order_by=["attributes.start_time ASC"])


def training_runs(c) -> list:
    """The runs of trained models (the study stage logs runs of its own)."""
    return [r for r in all_runs(c) if r.data.tags.get("xornet.stage") == "train"]


def study_runs(c) -> list:
    return [r for r in all_runs(c) if r.data.tags.get("xornet.stage") == "study"]


def xornet_runs(c) -> list:
    exp = c.get_experiment_by_name("xornet")
    return c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def check_complete_run(c, run_, repo: Path) -> None:
    """A FINISHED run with every section's params, the curves, the evaluation and files."""
    assert run_.info.status == "FINISHED"
    sections = {key.split(".")[0] for key in run_.data.params}
    assert set(ALL_SECTIONS) <= sections, sorted(run_.data.params)
    epochs = int(run_.data.params["train.epochs"])
    history = c.get_metric_history(run_.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == list(range(1, epochs + 1))
    for key in ("test_accuracy", "test_loss", "test_precision", "test_recall", "test_f1"):
        assert key in run_.data.metrics, key
    paths = set()
    for folder in ("train", "evaluate", "plots"):
        paths |= {a.path for a in c.list_artifacts(run_.info.run_id, folder)}
    for path in ("train/model.npz", "train/history.csv", "evaluate/evaluate.json"):
        assert path in paths
    assert any(p.startswith("plots/") and p.endswith(".png") for p in paths), paths
    assert run_.data.tags["xornet.model_uri"].startswith("models:/")


def lock_md5(repo: Path, path: str) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == path:
                return out["md5"]
    raise KeyError(path)


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    """`dvc repro` with tracking on, in a fresh clone."""
    repo = short_clone(tmp_path_factory.mktemp("tracked") / "xornet")
    # Its courier untraced: the courier tests measure what it delivers.
    run(["dvc", "repro"], repo, unmeasured_couriers(tracked_env()))
    wait_for_delivery(repo)  # the courier the stages started
    return repo


def test_repro_on_a_fresh_clone_records_exactly_one_complete_run(reproduced, tmp_path):
    c = client(store_uri(reproduced))
    (only,) = training_runs(c)
    check_complete_run(c, only, reproduced)
    assert only.info.run_name == "lr=0.5 hidden=[8] seed=0"
    # Dataset lineage: the data files, digest = their MD5 in dvc.lock, source = path.
    inputs = {d.dataset.name: d for d in only.inputs.dataset_inputs}
    assert set(inputs) == {"train", "test"}
    for name, context in (("train", "training"), ("test", "test")):
        dataset = inputs[name]
        assert dataset.dataset.digest == lock_md5(reproduced, f"data/{name}.npz")
        assert json.loads(dataset.dataset.source) == {"uri": f"data/{name}.npz"}
        assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == context
    # The evaluated model is version 1 of the registered model, and the champion.
    champion = c.get_model_version_by_alias("xornet", "champion")
    assert champion.run_id == only.info.run_id and str(champion.version) == "1"
    assert float(champion.tags["test_loss"]) == only.data.metrics["test_loss"]
    # The UI opens both experiments on their runs table (custom model training).
    for name in ("xornet", "xornet-study"):
        experiment = c.get_experiment_by_name(name)
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # The study stage's parent run and its one configuration, in an experiment of
    # their own. (They start at the same time: tell them apart by tag.)
    parent, child = sorted(study_runs(c), key=lambda r: r.data.tags["xornet.kind"])
    assert len(all_runs(c)) == 3
    study = c.get_experiment_by_name("xornet-study").experiment_id
    assert parent.info.experiment_id == child.info.experiment_id == study
    assert parent.data.tags["xornet.kind"] == "study"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.run_name == "base"
    assert parent.info.status == child.info.status == "FINISHED"
    # One courier, kept at work by `dvc repro`, delivered all four stages' entries.
    log = (reproduced / ".xornet" / "outbox" / "courier.log").read_text()
    couriers = re.findall(r"courier\[(\d+)\]: \w+: delivered to run", log)
    assert len(couriers) == 4 and len(set(couriers)) == 1, log
    tags = only.data.tags
    head = run(["git", "rev-parse", "HEAD"], reproduced).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head
    assert tags["dvc.stage"] == "train"
    assert tags["xornet.model.md5"] == lock_md5(reproduced, "models/model.npz")
    model = (reproduced / "models/model.npz").read_bytes()
    assert tags["xornet.model.sha256"] == hashlib.sha256(model).hexdigest()
    # Tracking leaves no trace in DVC outputs: an untracked clone of the same commit
    # (not of the work tree, which others may be editing meanwhile) locks the same bytes.
    plain = tmp_path / "plain"
    run(["git", "clone", "-q", str(reproduced), str(plain)], tmp_path)
    run(["dvc", "repro"], plain)
    assert (plain / "dvc.lock").read_bytes() == (reproduced / "dvc.lock").read_bytes()
    assert not (plain / "mlflow.db").exists()
    assert not (plain / ".xornet").exists()


def invoke(port: int, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_served_champion_answers_xor_over_http(reproduced, tmp_path):
    model_uri = "models:/xornet@champion"
    env = base_env(MLFLOW_TRACKING_URI=store_uri(reproduced))
    # `mlflow models predict` from a file, then `mlflow models serve` over HTTP.
    (tmp_path / "xor.json").write_text(json.dumps({"dataframe_split": XOR}))
    predicted = run(
        [str(BIN_DIR / "mlflow"), "models", "predict", "-m", model_uri, "-t", "json"]
        + ["-i", str(tmp_path / "xor.json"), "--env-manager", "local"],
        tmp_path,
        env,
    )
    assert '"label": 1' in predicted.stdout
    port = free_port()
    server = start(
        [str(BIN_DIR / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
        + ["-h", "127.0.0.1", "-p", str(port)],
        tmp_path,
        env,
        tmp_path / "serve.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", server)
        split = invoke(port, {"dataframe_split": XOR})["predictions"]
        records = [dict(zip(XOR["columns"], row, strict=True)) for row in XOR["data"]]
        by_records = invoke(port, {"dataframe_records": records})["predictions"]
        strict = invoke(port, {"dataframe_split": XOR, "params": {"threshold": 0.999999}})
    finally:
        stop(server)
    assert [p["label"] for p in split] == [0, 1, 1, 0]
    assert [p["label"] for p in by_records] == [0, 1, 1, 0]
    for p in split:
        assert 0.0 <= p["probability"] <= 1.0
        assert (p["probability"] >= 0.5) == (p["label"] == 1)
    assert sum(p["label"] for p in strict["predictions"]) < 2


RATES = ["-S", "train.learning_rate=0.3,0.9"]  # two experiments, one per worker
GRID_SWEEP = ["-S", "train.learning_rate=0.3,0.9", "-S", "model.hidden=[4],[6]"]
GRID_POINTS = {(0.3, (4,)), (0.3, (6,)), (0.9, (4,)), (0.9, (6,))}


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=1e-12, abs=1e-15)


def check_sweep(c, repo: Path, before: set[str]) -> list:
    """A finished queue of RATES, in dvc and in MLflow: one complete FINISHED training
    run per DVC experiment (none lost), tagged with its name, and its study runs; every
    run in the "xornet" experiment (none under "Default"), nothing left RUNNING."""
    status = run(["dvc", "queue", "status"], repo).stdout
    assert "Failed" not in status, status
    names = {row["name"] for row in exp_rows(repo)}
    assert len(names) == 2, names
    runs = all_runs(c)
    new = [r for r in training_runs(c) if r.info.run_id not in before]
    assert len(new) == 2
    experiments = {r.info.experiment_id for r in runs}
    assert experiments == {
        c.get_experiment_by_name(name).experiment_id for name in ("xornet", "xornet-study")
    }  # none under "Default"
    assert {r.info.experiment_id for r in training_runs(c)} == {
        c.get_experiment_by_name("xornet").experiment_id
    }
    assert {r.data.tags.get("dvc.exp_name") for r in new} == names
    assert {r.data.params["train.learning_rate"] for r in new} == {"0.3", "0.9"}
    for r in new:
        check_complete_run(c, r, repo)
        assert r.data.tags["dvc.exp_baseline_rev"]
    study = [r for r in study_runs(c) if r.info.run_id not in before]
    assert {r.data.tags["dvc.exp_name"] for r in study} == names
    assert len(study) == 4  # a parent and one configuration per experiment
    assert not [r for r in runs if r.info.status != "FINISHED"]
    check_registry(c, training_runs(c))
    return new


def check_registry(c, trained: list) -> None:
    """Every evaluated model is a version; the champion has the lowest test loss."""
    versions = c.search_model_versions("name = 'xornet'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in trained)
    lowest = min(r.data.metrics["test_loss"] for r in trained)
    champion = c.get_model_version_by_alias("xornet", "champion")
    assert float(champion.tags["test_loss"]) == lowest


def test_queued_grid_lands_in_the_root_store_and_agrees_with_dvc_exp_show(tmp_path: Path):
    """A 2 x 2 grid (two `-S` sweeps) on two queue workers: every experiment's runs
    land in the project root's store, complete, and tell `dvc exp show`'s story."""
    repo = short_clone(tmp_path / "xornet")
    env = tracked_env()
    run(["dvc", "exp", "run", "--queue", *GRID_SWEEP], repo, env)
    with queue_workers(repo, unmeasured(env), jobs=2):
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
    assert grid == GRID_POINTS

    c = client(store_uri(repo))
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
        for section in ALL_SECTIONS:
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

    # Complete runs, each a registered version, the champion the lowest test loss;
    # the artifacts under the project root, not in the deleted temporary copies.
    for r in training:
        check_complete_run(c, r, repo)
    check_registry(c, training)
    assert experiment.artifact_location == (repo / "mlruns" / "xornet").as_uri()
    import mlflow.pyfunc
    import pandas as pd

    mlflow.set_tracking_uri(store_uri(repo))
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{training[0].info.run_id}/model")
        out = model.predict(pd.DataFrame(XOR["data"], columns=XOR["columns"]).astype(float))
    finally:
        mlflow.set_tracking_uri(None)
    assert out["label"].tolist() == [0, 1, 1, 0]


def test_pipeline_and_a_queued_sweep_against_a_real_tracking_server(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start(
        mlflow_server(
            port,
            f"sqlite:///{tmp_path / 'server.db'}",
            *("--artifacts-destination", str(tmp_path / "artifacts")),
        ),
        tmp_path,
        base_env(),
        tmp_path / "server.log",
    )
    try:
        wait_http(f"{uri}/health", server)
        repo = short_clone(tmp_path / "xornet")
        run(["dvc", "repro"], repo, tracked_env(MLFLOW_TRACKING_URI=uri))
        wait_for_delivery(repo)
        c = client(uri)
        (only,) = training_runs(c)
        assert c.get_experiment(only.info.experiment_id).name == "xornet"
        check_complete_run(c, only, repo)

        # A sweep of 2 queued experiments, 2 workers. Only the shell that starts the
        # workers knows the server (and that tracking is on): that is what they see.
        # Measured (unlike the other queued tests): the one place coverage sees the
        # queue's stages and couriers, e.g. an attach preferring its own experiment's run.
        before = {r.info.run_id for r in all_runs(c)}
        run(["dvc", "exp", "run", "--queue", *RATES], repo, base_env())
        with queue_workers(repo, tracked_env(MLFLOW_TRACKING_URI=uri), jobs=2):
            wait_for_queue(repo)
            wait_for_delivery(repo)
        check_sweep(c, repo, before)
        assert not (repo / "mlflow.db").exists()
        assert not (repo / "mlruns").exists()
        commands = group_commands(server)  # base_env turned the job runner off
        assert any("uvicorn" in command for command in commands), commands
        assert not [c for c in commands if "huey" in c or "_job_runner" in c], commands
    finally:
        stop(server)
