"""Exactly-once delivery under faults, with real processes and real stores.

- The courier (forked from a process that has imported MLflow: tests/warm_courier.py)
  is SIGKILLed at seeded random moments — at chosen delivery steps
  (run creation, metric batches, artifact upload, model logging, registration, the
  final tag) and after random delays — at least 20 times over 5 entries; then
  `xornet-track flush` leaves exactly one FINISHED run per stage run, every curve
  with one point per epoch, each evaluation attached once, one model version per
  evaluated model, nothing RUNNING and nothing pending.
- `xornet-track status` polled in a tight loop while a stage's courier starts: the
  run still arrives with no flush (status never takes the courier's lock).
- A real `mlflow server` on 127.0.0.1 killed mid-delivery and restarted: the entry
  waits in failed/, and a flush delivers it exactly once.
"""

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import free_port, mlflow_server, start, stop, wait_http

from conftest import (
    BIN_DIR,
    LIGHT_PLOTS,
    base_env,
    courier_processes,
    make_clone,
    run,
    set_params,
    unmeasured,
    wait_for_delivery,
)
from xornet.tracking.courier import TRACE_ENV, courier_lock
from xornet.tracking.outbox import Outbox, entry_id, read_header

pytestmark = pytest.mark.slow

SEED = 20261202
EPOCHS = 3000  # 9 000 curve values: 9 metric batches per training entry
CURVES = ("train_loss", "val_loss", "val_accuracy")
# How many steps the courier traces (mlflow_writer._trace) while delivering each kind
# of entry here, at least: train = run, inputs, 9 metric batches, 3 artifacts, model,
# final tag; evaluate = 2 artifacts, final tag; study = 3 runs, 2 batches, 5 artifacts,
# final tag. Kills land after a random one of them (or at a random time).
STEPS = {"train": 16, "attach": 3, "study": 11}
MUST_HIT = ["curves batch", "artifact", "model"]  # in training entries, one kill each


def tracked_env(**extra: str) -> dict[str, str]:
    return base_env(XORNET_TRACKING="1", **extra)


def stage(repo: Path, name: str, *sets: str, env: dict[str, str]) -> None:
    run([sys.executable, f"stages/{name}.py", *(f"--set={s}" for s in sets)], repo, env)


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def runs(c, experiment: str, view: str = "active") -> list:
    from mlflow.entities import ViewType

    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    kind = {"active": ViewType.ACTIVE_ONLY, "deleted": ViewType.DELETED_ONLY}[view]
    return c.search_runs([exp.experiment_id], run_view_type=kind, max_results=1000)


def steps_of(c, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in c.get_metric_history(run_id, key))


def check_training_run(c, run_, epochs: int) -> None:
    """FINISHED, every curve with exactly one point per epoch, the evaluation's
    metrics once, the data as dataset inputs."""
    assert run_.info.status == "FINISHED", run_.info
    for key in CURVES:
        assert steps_of(c, run_.info.run_id, key) == list(range(1, epochs + 1)), key
    assert len(c.get_metric_history(run_.info.run_id, "test_loss")) == 1
    contexts = {
        d.dataset.name: {t.key: t.value for t in d.tags}["mlflow.data.context"]
        for d in run_.inputs.dataset_inputs
    }
    assert contexts == {"train": "training", "test": "test"}


def trace_lines(path: Path, pid: int) -> list[str]:
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        owner, _, step = line.partition(" ")
        if owner == str(pid):
            lines.append(step)
    return lines


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (an exited, not yet reaped one has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before or while read
        return False


@contextlib.contextmanager
def warm_couriers(repo: Path, env: dict[str, str]) -> Iterator[Callable[[], int]]:
    """Yields a function that starts a courier for ``repo`` and returns its pid: forked
    from tests/warm_courier.py, which has imported MLflow once for all of them.

    Unmeasured: a forked courier ends by SIGKILL or ``os._exit``, so coverage would
    never save what it traced, and tracing made each one ~40 % slower. The flush that
    cleans up after them is measured."""
    launcher = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("warm_courier.py")), str(repo)],
        cwd=repo,
        env=unmeasured(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def start_courier() -> int:
        launcher.stdin.write("start\n")
        launcher.stdin.flush()
        line = launcher.stdout.readline()
        assert line, f"the courier launcher exited {launcher.wait()}"
        return int(line)

    try:
        yield start_courier
    finally:
        launcher.stdin.close()
        try:
            launcher.wait(timeout=30)
        finally:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()


def kill_courier_at(start_courier: Callable[[], int], trace: Path, target: dict) -> dict:
    """Start a courier; SIGKILL it when ``target`` is reached — the ``n``-th ``step``
    of entry ``entry``, or ``delay`` seconds into that entry — or report that it ended
    first. Returns what it was doing when killed."""
    pid = start_courier()
    deadline = time.monotonic() + 180
    entered = None
    try:
        while alive(pid):
            assert time.monotonic() < deadline, f"courier stuck before {target}"
            lines = trace_lines(trace, pid)
            marker = f"entry {target['entry']}"
            if marker in lines:
                entered = entered or time.monotonic()
                after = lines[lines.index(marker) + 1 :]
                step = target.get("step")
                timed = step is None and target.get("index") is None
                if timed and time.monotonic() - entered >= target["delay"]:
                    break
                if step is not None and (step in after or "done" in after):
                    time.sleep(target["delay"])
                    break
                index = target.get("index")
                if index is not None and (len(after) >= index or "done" in after):
                    time.sleep(target["delay"])
                    break
            time.sleep(0.003)
        else:
            return {"killed": False}
    finally:  # reached, ended first, or the test failed: it dies here
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        gone = time.monotonic() + 30
        while alive(pid):
            assert time.monotonic() < gone, f"courier {pid} outlived SIGKILL"
            time.sleep(0.01)
    lines = trace_lines(trace, pid)
    entries = [line.split(" ", 1)[1] for line in lines if line.startswith("entry ")]
    return {
        "killed": True,
        "entry": entries[-1] if entries else None,
        "last": lines[-1] if lines else "start-up",
    }


def test_sigkilled_courier_delivers_every_stage_run_exactly_once(tmp_path):
    repo = make_clone(tmp_path / "xornet")
    set_params(
        repo,
        train={"epochs": EPOCHS},
        study={"seeds": 4},
        data={"n_samples": 400},
        plot=LIGHT_PLOTS,
    )
    run(["git", "commit", "-qam", "shorter"], repo)  # run names show what differs from it
    trace = tmp_path / "trace.txt"
    env = tracked_env(**{TRACE_ENV: str(trace)})
    stage(repo, "generate", env=base_env())
    outbox = Outbox(repo)
    client(f"sqlite:///{repo / 'mlflow.db'}").search_experiments()  # create the store once
    # Five stage runs recorded while this test holds the courier lock: they start no
    # courier (one is at work), so their entries stay pending.
    with courier_lock(outbox, wait=True):
        stage(repo, "train", env=env)
        stage(repo, "evaluate", env=env)
        stage(repo, "train", "model.seed=1", "train.learning_rate=1.0", env=env)
        stage(repo, "evaluate", env=env)
        stage(repo, "study", "study.grid={model.hidden: [[2], [4]]}", "train.epochs=200", env=env)
        deadline = time.monotonic() + 60
        while courier_processes(repo):  # none should have started; any would leave
            assert time.monotonic() < deadline
            time.sleep(0.1)
    entries = [(entry_id(e), read_header(e)["kind"]) for e in outbox.pending()]
    assert [kind for _, kind in entries] == ["train", "attach", "train", "attach", "study"]

    rng = random.Random(SEED)
    kinds = dict(entries)
    must_hit = {e: rng.sample(MUST_HIT, 3) if kind == "train" else [] for e, kind in entries}
    kills: list[dict] = []
    with warm_couriers(repo, env) as start_courier:
        for _ in range(60):  # bounded
            done = [k for k in kills if k["killed"]]
            pending = [entry_id(e) for e in outbox.pending()]
            if len(done) >= 22 or not pending:
                break
            # The first pending entry not yet killed in 6 times (later ones wait their turn).
            per_entry = [k["entry"] for k in done]
            wanted = next((e for e in pending if per_entry.count(e) < 6), pending[-1])
            kind = kinds[wanted]
            missing = [s for s in must_hit[wanted] if s not in {k["last"] for k in done}]
            if missing:
                target = {"entry": wanted, "step": missing[0], "delay": rng.uniform(0, 0.03)}
            elif rng.random() < 0.75:
                index = rng.randint(1, STEPS[kind])
                target = {"entry": wanted, "index": index, "delay": rng.uniform(0, 0.03)}
            else:  # a random moment
                target = {"entry": wanted, "delay": rng.uniform(0, 1.0)}
            kills.append({**kill_courier_at(start_courier, trace, target), "target": target})
    summary = [(k["entry"], k["last"]) for k in kills if k["killed"]]
    done = [k for k in kills if k["killed"]]
    assert len(done) >= 20, summary
    assert len({k["entry"] for k in done}) >= 4, summary
    hit = {k["last"] for k in done}
    assert {"curves batch", "artifact", "model"} <= hit, hit
    print(f"{len(done)} kills over {len({e for e, _ in summary})} entries: {summary}")

    flushed = run([str(BIN_DIR / "xornet-track"), "flush", f"--root={repo}"], repo, env)
    assert flushed.stderr == ""
    assert not outbox.pending() and not outbox.failed() and not list(outbox.staging.iterdir())

    c = client(f"sqlite:///{repo / 'mlflow.db'}")
    training = runs(c, "xornet")
    assert len(training) == 2, [(r.info.run_name, r.data.tags) for r in training]
    for run_ in training:
        check_training_run(c, run_, EPOCHS)
    names = {r.info.run_name for r in training}
    assert names == {"lr=0.5 hidden=[8] seed=0", "lr=1.0 hidden=[8] seed=1"}, names
    study = runs(c, "xornet-study")
    parents = [r for r in study if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in study if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert steps_of(c, child.info.run_id, "solved_share")[-1] == 200
        counts = [m.step for m in c.get_metric_history(child.info.run_id, "solved_share")]
        assert len(counts) == len(set(counts))
    assert parents[0].info.status == "FINISHED"
    everything = [r for e in c.search_experiments() for r in runs(c, e.name)]
    assert not [r for r in everything if r.info.status != "FINISHED"]
    # One model version per evaluated model; champion = the lower test loss.
    versions = c.search_model_versions("name = 'xornet'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in training)
    best = min(training, key=lambda r: r.data.metrics["test_loss"])
    assert c.get_model_version_by_alias("xornet", "champion").run_id == best.info.run_id
    # The kills did cut deliveries short: their partial runs were replaced.
    assert runs(c, "xornet", "deleted") or runs(c, "xornet-study", "deleted")


def test_status_polled_in_a_tight_loop_never_stops_a_courier(tmp_path):
    repo = make_clone(tmp_path / "xornet")
    stage(repo, "generate", env=base_env())
    xornet_track = str(BIN_DIR / "xornet-track")
    seen: list[str] = []
    stop_polling = threading.Event()

    def poll() -> None:
        while not stop_polling.is_set():
            out = subprocess.run(
                [xornet_track, "status", f"--root={repo}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            seen.append(out.stdout.splitlines()[0])

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for poller in pollers:
        poller.start()
    try:
        stage(repo, "train", "train.epochs=2000", env=tracked_env())
        wait_for_delivery(repo, timeout=180)  # no flush
    finally:
        stop_polling.set()
        for poller in pollers:
            poller.join(timeout=60)
    c = client(f"sqlite:///{repo / 'mlflow.db'}")
    (only,) = runs(c, "xornet")
    assert only.info.status == "FINISHED"
    assert steps_of(c, only.info.run_id, "train_loss") == list(range(1, 2001))
    assert any("courier: delivering (pid " in line for line in seen), seen[-5:]
    assert len(seen) >= 10


def server_command(port: int, tmp_path: Path) -> list[str]:
    return mlflow_server(
        port,
        f"sqlite:///{tmp_path / 'server.db'}",
        *("--artifacts-destination", str(tmp_path / "artifacts")),
    )


def wait_api(uri: str, proc, timeout: float = 300) -> None:
    """Until the server's tracking API answers (on a loaded machine a fresh server
    may pass /health long before its first API call answers in time)."""
    wait_http(f"{uri}/health", proc, timeout)
    url = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer in {timeout} s"
            assert proc.poll() is None, f"the server exited {proc.returncode}"
            time.sleep(0.5)


def test_a_server_killed_and_restarted_mid_delivery_gets_the_run_exactly_once(tmp_path):
    epochs = 6000  # 18 metric batches through the server; it dies after the 10th
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    trace = tmp_path / "trace.txt"
    # Generous HTTP timeouts: on a loaded machine the restarted server answers slowly.
    env = tracked_env(
        MLFLOW_TRACKING_URI=uri, MLFLOW_HTTP_REQUEST_TIMEOUT="60", **{TRACE_ENV: str(trace)}
    )
    repo = make_clone(tmp_path / "xornet")
    stage(repo, "generate", env=base_env())
    server = start(server_command(port, tmp_path), tmp_path, base_env(), tmp_path / "s1.log")
    try:
        wait_api(uri, server)
        stage(repo, "train", f"train.epochs={epochs}", env=env)
        deadline = time.monotonic() + 180
        while not trace.exists() or trace.read_text().count("curves batch") < 10:
            assert time.monotonic() < deadline, "the courier never reached the curves"
            time.sleep(0.01)
        os.killpg(server.pid, signal.SIGKILL)  # the server dies mid-delivery
    finally:
        stop(server)  # reaps it (and would stop it, had the test failed before)
    deadline = time.monotonic() + 180
    while courier_processes(repo):  # it gives up after MLflow's few retries
        assert time.monotonic() < deadline, "the courier never gave up on the dead server"
        time.sleep(0.2)
    outbox = Outbox(repo)
    (failed,) = outbox.failed()
    assert "MLflow" in (failed / "error.txt").read_text()
    status = run([str(BIN_DIR / "xornet-track"), "status", f"--root={repo}"], repo).stdout
    assert f"failed {entry_id(failed)}: " in status

    server = start(server_command(port, tmp_path), tmp_path, base_env(), tmp_path / "s2.log")
    try:
        wait_api(uri, server)
        run([str(BIN_DIR / "xornet-track"), "flush", f"--root={repo}"], repo, env)
        assert not outbox.pending() and not outbox.failed()
        c = client(uri)
        (only,) = runs(c, "xornet")
        assert only.info.status == "FINISHED"
        for key in CURVES:
            assert steps_of(c, only.info.run_id, key) == list(range(1, epochs + 1)), key
        (partial,) = runs(c, "xornet", "deleted")  # what the dead server was given
        assert partial.data.tags["xornet.entry_id"] == only.data.tags["xornet.entry_id"]
        experiment = c.get_experiment_by_name("xornet")
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    finally:
        stop(server)


def test_a_non_mlflow_answer_is_a_one_line_exit_2_before_training(tmp_path):
    """A URI that reaches some other web server (it answers 404 HTML) is refused."""
    import http.server

    class NotMlflow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            body = b"<html><body>Not Found</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotMlflow)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    repo = make_clone(tmp_path / "xornet")
    stage(repo, "generate", env=base_env())
    try:
        uri = f"http://127.0.0.1:{web.server_address[1]}"
        proc = run(
            [sys.executable, "stages/train.py"],
            repo,
            tracked_env(MLFLOW_TRACKING_URI=uri),
            check=False,
        )
    finally:
        web.shutdown()
        web.server_close()
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("train: error: ") and "does not answer as an MLflow" in line
    assert "HTTP 404, text/html" in line
    assert proc.stdout == "" and not (repo / "models" / "model.npz").exists()
    assert not (repo / ".xornet" / "outbox" / "pending").exists() or not Outbox(repo).pending()
