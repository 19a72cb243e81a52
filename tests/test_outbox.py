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
from xornet.tracking import outbox


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
    (lineage,) = header["inputs"]  # for mlflow.log_input: digest = the MD5 DVC records
    assert lineage == {
        "name": "train",
        "path": data.as_posix(),
        "md5": outbox.file_digests(data)["md5"],
        "context": "training",
    }
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


def test_entries_wait_in_the_order_the_outbox_numbered_them_not_by_clock(
    tmp_path, params, couriers, monkeypatch
):
    first, lock = outbox.Outbox(tmp_path).new_entry()  # started first, ends last
    with lock:
        with outbox.record_training_run(params, tmp_path, []):
            pass
        recorder = outbox.Recorder(first, outbox.Header("train", "late", "x", {}, {}, {}, 0))
        recorder.close("FINISHED")
        monkeypatch.setattr(outbox.time, "time_ns", lambda: 0)  # a clock set back
        monkeypatch.setattr(outbox.time, "time", lambda: 0.0)
        outbox.Outbox(tmp_path).enqueue(first)
    pending = outbox.Outbox(tmp_path).pending()
    stages = [json.loads((e / outbox.ENTRY_FILE).read_text())["stage"] for e in pending]
    assert stages == ["train", "late"]
    assert [e.name.split("-")[0] for e in pending] == ["000000000001", "000000000002"]
    ids = [json.loads((e / outbox.ENTRY_FILE).read_text())["entry_id"] for e in pending]
    assert ids == [outbox.entry_id(e) for e in pending] and len(set(ids)) == 2
    assert (tmp_path / ".xornet" / ".gitignore").read_text() == "*\n"


def test_an_entry_that_cannot_be_recorded_is_kept_in_failed_with_its_reason(
    tmp_path, params, couriers, monkeypatch
):
    def full(self, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outbox.Outbox, "enqueue", full)
    with pytest.raises(RuntimeError), outbox.record_training_run(params, tmp_path, []):
        raise RuntimeError("boom")
    (entry,) = outbox.Outbox(tmp_path).failed()
    assert "recording the FAILED run failed" in (entry / outbox.ERROR_FILE).read_text()
    assert "No space left" in (entry / outbox.ERROR_FILE).read_text()
    assert json.loads((entry / outbox.ENTRY_FILE).read_text())["status"] == "FAILED"
    assert not couriers


def test_a_deleted_experiment_is_refused_before_the_stage_computes(tmp_path, params, couriers):
    import sqlite3

    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # the column MLflow's store reads
        db.execute("CREATE TABLE experiments (name TEXT, lifecycle_stage TEXT)")
        db.execute("INSERT INTO experiments VALUES (?, 'deleted')", (params.tracking.experiment,))
    refused = pytest.raises(outbox.BadInput, match="is deleted")
    with refused, outbox.record_training_run(params, tmp_path, []):
        pytest.fail("the stage ran")
    assert not outbox.Outbox(tmp_path).pending() and not couriers


def test_a_stage_killed_outright_is_enqueued_as_killed_by_its_lock_not_its_pid(tmp_path, params):
    """A stage SIGKILLed while recording: the kernel releases its lock, and the sweep
    enqueues its entry as a KILLED run; a stage still recording is left alone."""
    script = (
        "import sys, time\n"
        "from xornet.config.schema import load_params\n"
        "from xornet.tracking import outbox\n"
        "outbox.Outbox.start_courier = lambda self: None\n"
        f"params = load_params({str(REPO_ROOT / 'params.yaml')!r})\n"
        f"with outbox.record_training_run(params, outbox.Path({str(tmp_path)!r}), []):\n"
        "    print('recording', flush=True)\n"
        "    time.sleep(600)\n"
    )
    env = {**os.environ, "XORNET_TRACKING": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    stage = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert stage.stdout.readline() == "recording\n"
        box = outbox.Outbox(tmp_path)
        (folder,) = box.staging.iterdir()
        recording, lock = box.new_entry()  # this process records too: still alive
        with lock:
            assert box.sweep_abandoned() == []  # both still hold their locks
            stage.kill()
            stage.wait(timeout=30)
            (moved,) = box.sweep_abandoned()
            assert recording.is_dir() and not folder.exists()
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait()
    assert box.pending() == [moved] and outbox.entry_id(moved) == folder.name
    header = json.loads((moved / outbox.ENTRY_FILE).read_text())
    assert header["status"] == "KILLED" and header["kind"] == "train"
    assert header["end_ms"] >= header["start_ms"]


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


def xornet_track(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "xornet-track"), *args, f"--root={root}"]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=60)


def test_a_failed_entry_is_shown_and_deleted_only_by_discard_with_its_id(
    tmp_path, params, couriers
):
    with outbox.record_training_run(params, tmp_path, []):
        pass
    with outbox.record_training_run(params, tmp_path, []):
        pass
    box = outbox.Outbox(tmp_path)
    failed, waiting = box.pending()
    failed = box.set_aside(failed, "MLflow (sqlite:///x.db): database is locked")
    wanted = outbox.entry_id(failed)
    status = xornet_track(tmp_path, "status").stdout
    assert "pending: 1  failed: 1  courier: idle" in status
    assert f"failed {wanted}: MLflow (sqlite:///x.db): database is locked" in status
    shown = xornet_track(tmp_path, "show", wanted)
    assert shown.returncode == 0, shown.stderr
    assert f"entry {wanted}: failed, sequence 000000000001" in shown.stdout
    assert "not delivered: MLflow (sqlite:///x.db): database is locked" in shown.stdout
    assert "params: data.kind=xor" in shown.stdout
    for args, message in (
        (["discard", wanted[:6]], "no pending or failed entry"),  # the whole id, no prefix
        (["discard", outbox.entry_id(waiting)], "is pending, not failed"),
        (["show", "nope"], "no pending or failed entry 'nope'"),
    ):
        proc = xornet_track(tmp_path, *args)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith("xornet-track: error: ") and message in line
    assert box.failed() == [failed] and box.pending() == [waiting]
    done = xornet_track(tmp_path, "discard", wanted)
    assert done.returncode == 0 and done.stdout == f"discarded {wanted} (never delivered)\n"
    assert box.failed() == [] and box.pending() == [waiting]


def test_run_names_say_what_differs_and_search_runs_are_tagged(
    tmp_path, params, couriers, monkeypatch
):
    from xornet.config.schema import load_params

    changed = load_params(
        REPO_ROOT / "params.yaml", ("train.learning_rate=1.0", "model.hidden=[2]", "data.seed=3")
    )
    monkeypatch.setattr(
        outbox,
        "_git",
        lambda *args: (REPO_ROOT / "params.yaml").read_text() if args[0] == "show" else None,
    )
    assert outbox.run_name(params) == "lr=0.5 hidden=[8] seed=0"
    # data.seed and model.seed share a leaf: the changed one is named in full.
    assert outbox.run_name(changed) == "lr=1.0 hidden=[2] seed=0 data.seed=3"
    monkeypatch.setenv("DVC_EXP_NAME", "search-7-3")  # xornet-search: PREFIX-SEED-INDEX
    with outbox.record_training_run(changed, tmp_path, []):
        pass
    _, header = entry_of(tmp_path)
    assert header["run_name"] == "lr=1.0 hidden=[2] seed=0 data.seed=3"
    assert header["tags"]["xornet.search"] == "search-7"
    assert header["tags"]["dvc.exp_name"] == "search-7-3"


def test_a_courier_is_started_only_when_none_is_at_work(tmp_path, monkeypatch):
    from xornet.tracking.courier import courier_lock

    started: list[list[str]] = []
    monkeypatch.setattr(outbox.subprocess, "Popen", lambda args, **kw: started.append(args))
    box = outbox.Outbox(tmp_path)
    with courier_lock(box, wait=True) as held:  # a courier delivering: it looks again
        assert held and box.courier_at_work()
        box.start_courier()
        assert started == []
    assert not box.courier_at_work()
    box.start_courier()
    (args,) = started
    assert args[1:] == ["-m", "xornet.tracking.courier", "deliver", f"--root={tmp_path}"]
    assert not box.courier_at_work()  # asking never keeps the lock
