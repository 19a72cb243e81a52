"""MLflow tracking driven by the real tools: `dvc repro` and a queued sweep
(`dvc exp run --queue` + `dvc queue start -j 2`) into the project-root store, the
same (repro, then a queued sweep) against a real `mlflow server`, and the registered
champion served by `mlflow models serve -m models:/xornet@champion --env-manager local`
answering XOR over HTTP.
(tests/test_sweeps.py compares a queued grid in `dvc exp show` and MLflow.)"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import (
    BIN_DIR,
    base_env,
    exp_rows,
    make_clone,
    queue_workers,
    run,
    set_params,
    wait_for_delivery,
    wait_for_queue,
)

pytestmark = pytest.mark.slow

EPOCHS = 200
ALL_SECTIONS = ("data", "model", "train", "evaluate", "plot")
XOR = {"columns": ["x1", "x2"], "data": [[0, 0], [0, 1], [1, 0], [1, 1]]}


def tracked_env(**extra: str) -> dict[str, str]:
    return base_env(XORNET_TRACKING="1", **extra)


def short_clone(dest: Path) -> Path:
    repo = make_clone(dest)
    set_params(repo, train={"epochs": EPOCHS})
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
    run(["dvc", "repro"], repo, tracked_env())
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout} s")


def start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A server process in its own session, so it and its workers stop together."""
    handle = open(log, "w")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc.log = handle  # type: ignore[attr-defined]
    return proc


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen) -> None:
    """Stop the server by its process id: SIGTERM to the process group it leads (its
    workers too), SIGKILL after 20 s; return once nothing of it is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if group_alive(proc.pid):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader
            if proc.returncode is not None and not group_alive(proc.pid):
                break
            time.sleep(0.2)
        else:
            continue
        break
    proc.log.close()  # type: ignore[attr-defined]
    assert proc.returncode is not None and not group_alive(proc.pid)


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


RATES = ["-S", "train.learning_rate=0.3,0.6,0.9"]


def check_sweep(c, repo: Path, before: set[str]) -> list:
    """A finished queue of RATES, in dvc and in MLflow: one complete FINISHED training
    run per DVC experiment (none lost), tagged with its name, and its study runs; every
    run in the "xornet" experiment (none under "Default"), nothing left RUNNING."""
    status = run(["dvc", "queue", "status"], repo).stdout
    assert "Failed" not in status, status
    names = {row["name"] for row in exp_rows(repo)}
    assert len(names) == 3, names
    runs = all_runs(c)
    new = [r for r in training_runs(c) if r.info.run_id not in before]
    assert len(new) == 3
    experiments = {r.info.experiment_id for r in runs}
    assert experiments == {
        c.get_experiment_by_name(name).experiment_id for name in ("xornet", "xornet-study")
    }  # none under "Default"
    assert {r.info.experiment_id for r in training_runs(c)} == {
        c.get_experiment_by_name("xornet").experiment_id
    }
    assert {r.data.tags.get("dvc.exp_name") for r in new} == names
    assert {r.data.params["train.learning_rate"] for r in new} == {"0.3", "0.6", "0.9"}
    for r in new:
        check_complete_run(c, r, repo)
        assert r.data.tags["dvc.exp_baseline_rev"]
    study = [r for r in study_runs(c) if r.info.run_id not in before]
    assert {r.data.tags["dvc.exp_name"] for r in study} == names
    assert len(study) == 6  # a parent and one configuration per experiment
    assert not [r for r in runs if r.info.status != "FINISHED"]
    # Every evaluated model is a version; the champion has the lowest test loss.
    trained = training_runs(c)
    versions = c.search_model_versions("name = 'xornet'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in trained)
    lowest = min(r.data.metrics["test_loss"] for r in trained)
    champion = c.get_model_version_by_alias("xornet", "champion")
    assert float(champion.tags["test_loss"]) == lowest
    return new


def test_queued_sweep_with_two_workers_lands_in_the_root_store(reproduced):
    c = client(store_uri(reproduced))
    before = {r.info.run_id for r in all_runs(c)}
    env = tracked_env()
    run(["dvc", "exp", "run", "--queue", *RATES], reproduced, env)
    with queue_workers(reproduced, env, jobs=2):
        wait_for_queue(reproduced)
        wait_for_delivery(reproduced)
    new = check_sweep(c, reproduced, before)
    # The artifacts are under the project root, not in the deleted temporary copies.
    experiment = c.get_experiment_by_name("xornet")
    assert experiment.artifact_location == (reproduced / "mlruns" / "xornet").as_uri()
    # A queued run's model still loads although its temporary copy is gone.
    import mlflow.pyfunc
    import pandas as pd

    mlflow.set_tracking_uri(store_uri(reproduced))
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{new[0].info.run_id}/model")
        out = model.predict(pd.DataFrame(XOR["data"], columns=XOR["columns"]).astype(float))
    finally:
        mlflow.set_tracking_uri(None)
    assert out["label"].tolist() == [0, 1, 1, 0]


def test_pipeline_and_a_queued_sweep_against_a_real_tracking_server(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start(
        [str(BIN_DIR / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
        + ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
        + ["--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
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

        # A sweep of 3 queued experiments, 2 workers. Only the shell that starts the
        # workers knows the server (and that tracking is on): that is what they see.
        before = {r.info.run_id for r in all_runs(c)}
        run(["dvc", "exp", "run", "--queue", *RATES], repo, base_env())
        with queue_workers(repo, tracked_env(MLFLOW_TRACKING_URI=uri), jobs=2):
            wait_for_queue(repo)
            wait_for_delivery(repo)
        check_sweep(c, repo, before)
        assert not (repo / "mlflow.db").exists()
        assert not (repo / "mlruns").exists()
    finally:
        stop(server)
