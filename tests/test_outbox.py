"""The stage side of tracking, without MLflow: what an outbox entry holds for each way a
stage can end, and the order entries wait in. (Delivery by the real courier into real
MLflow stores is tested in tests/test_tracking.py and tests/test_tracking_dvc.py.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT
from xornet.config.schema import load_params
from xornet.core.model import MLP, Architecture
from xornet.core.training import History
from xornet.files.models import save_model
from xornet.tracking import courier, outbox


@pytest.fixture
def params():
    return load_params(REPO_ROOT / "params.yaml")


@pytest.fixture
def couriers(monkeypatch) -> list[Path]:
    """Roots a courier was started for (none is started: these tests stop at the outbox)."""
    started: list[Path] = []
    monkeypatch.setattr(outbox.Outbox, "start_courier", lambda self: started.append(self.root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return started


def entry_of(root: Path) -> tuple[Path, dict]:
    (entry,) = outbox.Outbox(root).pending()
    return entry, json.loads((entry / outbox.ENTRY_FILE).read_text())


def history(epochs: int) -> History:
    out = History.empty(epochs)
    out.train_loss[:] = np.linspace(0.7, 0.1, epochs)
    return out


def test_a_finished_training_records_everything_the_courier_needs(tmp_path, params, couriers):
    data = tmp_path / "train.npz"
    data.write_bytes(b"data")
    model = MLP.create(Architecture(2, (8,), "tanh"), "xavier", 1.0, 0, 0.0)
    model_file = tmp_path / "model.npz"
    save_model(model, model_file)
    with outbox.record_training_run(params, tmp_path, [data]) as recorder:
        recorder.log_progress(history(10).head(5))
        recorder.log_history(history(10))
        recorder.log_metrics({"final_train_loss": 0.1, "note": "not a number"})
        recorder.log_artifacts([model_file], folder="train")
        recorder.log_model(model, model_file)
        assert not outbox.Outbox(tmp_path).pending()  # nothing waits until the stage ends
    assert couriers == [tmp_path]
    entry, header = entry_of(tmp_path)
    assert header["status"] == "FINISHED" and header["error"] is None
    assert header["kind"] == "train" and header["experiment"] == params.tracking.experiment
    assert header["store"]["uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert header["params"]["model.hidden"] == "[8]"
    assert not any(key.startswith(("evaluate.", "plot.")) for key in header["params"])
    assert header["tags"]["xornet.data.train.sha256"] == outbox.file_digests(data)["sha256"]
    assert header["tags"]["xornet.model.md5"] == outbox.file_digests(model_file)["md5"]
    assert header["metrics"] == {"final_train_loss": 0.1}
    assert header["start_ms"] <= header["end_ms"]
    columns = np.load(entry / header["history"])
    assert columns.shape == (4, 10) and columns[0].tolist() == list(range(1, 11))
    ((relative, folder),) = header["artifacts"]
    assert folder == "train" and (entry / relative).read_bytes() == model_file.read_bytes()
    code = entry / header["model"]["code"]
    assert (code / "tracking" / "pyfunc_model.py").is_file() and not (code / "__pycache__").exists()
    assert header["model"]["n_inputs"] == 2
    assert not list(outbox.Outbox(tmp_path).staging.iterdir())


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")]
)
def test_a_stage_that_fails_or_is_interrupted_still_records_its_epochs(
    tmp_path, params, couriers, error, status
):
    with pytest.raises(type(error)), outbox.record_training_run(params, tmp_path, []) as recorder:
        recorder.log_progress(history(100).head(40))
        raise error
    assert couriers == [tmp_path]
    entry, header = entry_of(tmp_path)
    assert header["status"] == status
    assert header["artifacts"] == [] and header["model"] is None
    assert np.load(entry / header["history"]).shape == (4, 40)
    if status == "FAILED":
        assert header["error"] == "RuntimeError: boom"


def test_evaluate_records_for_the_model_it_read(tmp_path, params, couriers):
    model_file = tmp_path / "model.npz"
    model_file.write_bytes(b"weights")
    with outbox.record_attached_run(params, tmp_path, model_file, "evaluate") as recorder:
        recorder.log_metrics({"test_accuracy": 1.0})
    _, header = entry_of(tmp_path)
    assert header["kind"] == "attach" and header["section"] == "evaluate"
    assert header["model_sha256"] == outbox.file_digests(model_file)["sha256"]
    assert set(header["params"]) == {f"evaluate.{k}" for k in params.evaluate.model_dump()}


def test_entries_wait_in_the_order_their_stages_ended(tmp_path, params, couriers):
    first = outbox.Outbox(tmp_path).new_entry()  # started first, ends last
    with outbox.record_training_run(params, tmp_path, []):
        pass
    recorder = outbox.Recorder(first, outbox.Header("train", "late", "x", {}, {}, {}, 0))
    recorder.close("FINISHED")
    outbox.Outbox(tmp_path).enqueue(first)
    stages = [
        json.loads((e / outbox.ENTRY_FILE).read_text())["stage"]
        for e in outbox.Outbox(tmp_path).pending()
    ]
    assert stages == ["train", "late"]
    assert (tmp_path / ".xornet" / ".gitignore").read_text() == "*\n"


def test_a_deleted_experiment_is_refused_before_the_stage_computes(tmp_path, params, couriers):
    import sqlite3

    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # the column MLflow's store reads
        db.execute("CREATE TABLE experiments (name TEXT, lifecycle_stage TEXT)")
        db.execute("INSERT INTO experiments VALUES (?, 'deleted')", (params.tracking.experiment,))
    refused = pytest.raises(outbox.BadInput, match="is deleted")
    with refused, outbox.record_training_run(params, tmp_path, []):
        pytest.fail("the stage ran")
    assert not outbox.Outbox(tmp_path).pending() and not couriers


def test_staging_folders_of_dead_stages_are_swept(tmp_path):
    box = outbox.Outbox(tmp_path)
    box.make_dirs()
    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned = box.staging / f"{dead.pid}-1"
    recording = box.staging / f"{os.getpid()}-2"  # this process is alive: still recording
    for folder in (abandoned, recording):
        folder.mkdir()
    assert courier.sweep_abandoned(box) == [abandoned]
    assert not abandoned.exists() and recording.is_dir()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flush", "--root=README.md"], "Invalid value for '--root'"),
        (["deliver-everything"], "No such command 'deliver-everything'"),
        (["status", "--verbose"], "No such option '--verbose'"),
    ],
)
def test_xornet_track_bad_usage_is_one_line_exit_2(args, message):
    xornet_track = Path(sys.executable).parent / "xornet-track"
    proc = subprocess.run(
        [str(xornet_track), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("xornet-track: error: ") and message in line
    assert proc.stdout == ""
