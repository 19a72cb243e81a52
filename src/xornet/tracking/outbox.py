"""The stage side of tracking: run records in an outbox, delivered to MLflow later.

Importing MLflow and writing thousands of metric values into its store costs
a stage several seconds — many times what training XOR for 10 000 epochs
costs. So the stages do not talk to MLflow. A stage records its run (params,
tags, per-epoch curves, metrics, files, model) into an *entry* of the outbox
``<project root>/.xornet/outbox/``: a folder holding ``entry.json`` and copies
of the files. When the stage ends — FINISHED, FAILED on an exception, KILLED
on Ctrl-C or SIGTERM — the entry is moved into ``pending/`` in one rename and
a courier process is started in the background
(:mod:`xornet.tracking.courier`) unless one is at work already.

Every entry has a stable id (12 hex digits, its folder's name in ``staging/``)
and, when it is enqueued, a sequence number the outbox assigns under a lock
(``pending/<sequence>-<id>``): the courier delivers in that order, never by
clock, so an evaluate or plot entry always reaches MLflow after the training
entry it attaches to. The id is tagged on the MLflow runs the entry makes, so
delivering an entry again finds what an interrupted delivery left and replaces
it (:mod:`xornet.tracking.mlflow_writer`). Nothing but an explicit
``xornet-track discard ID`` deletes an undelivered entry: an entry that cannot
be recorded or delivered moves to ``failed/`` with its reason (``error.txt``),
where ``xornet-track status`` shows it and ``flush``/``retry`` deliver it again.

A stage holds a lock on its staging folder (``recording.lock``) while it
records; the ``entry.json`` there says RUNNING from the start. A stage killed
outright (SIGKILL, power loss) releases the lock without closing the entry: the
courier then enqueues it as KILLED, so that stage run still becomes one run.

The outbox lives at the project root (``DVC_ROOT`` or the checkout), like the
MLflow store, because queued DVC experiments run in temporary copies that are
deleted afterwards. The checks that need no MLflow still happen in the stage,
before anything is computed: the tracking URI is validated and a tracking
server is asked through MLflow's REST API, so a dead server fails the stage in
seconds and a server that is not MLflow's, or refuses the credentials, is a
one-line bad-input error (exit 2).

This module never imports MLflow.
"""

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xornet.config.schema import Params
from xornet.core.model import MLP
from xornet.core.training import History
from xornet.errors import BadInput, Failure
from xornet.files.atomic import hold_signals
from xornet.files.tables import HISTORY_HEADER
from xornet.lifeline import runner_pidfd

ENTRY_FORMAT = 2
OUTBOX_DIR = Path(".xornet") / "outbox"
ENTRY_FILE = "entry.json"
ERROR_FILE = "error.txt"  # in a failed entry: why, one line
RECORDING_LOCK = "recording.lock"  # in a staging folder: held by the stage recording into it
ABANDONED_AFTER = 60.0  # seconds: a staging folder still without its lock is abandoned
HISTORY_FILE = "history.npy"  # (4, epochs): HISTORY_HEADER's columns as rows
FILES_DIR = "files"
CODE_DIR = "code"  # the package that trained the model, for the pyfunc model
STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlruns"
DATABASE_SCHEMES = {"postgresql", "mysql", "mssql", "databricks"}  # "+driver" allowed
LOG_LIMIT = 1 << 20  # bytes of courier.log before it is rotated to courier.log.1
PROBE_TIMEOUT = 5.0  # seconds for the server check, unless MLFLOW_HTTP_REQUEST_TIMEOUT is set

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/xornet
CHECKOUT = PACKAGE_DIR.parents[1]

# Params sections in pipeline order: a stage's results depend on its own section
# and the ones before it.
SECTION_ORDER = ("data", "model", "train", "evaluate", "plot")
TRAINING_SECTIONS = SECTION_ORDER[:3]

TAG_MODEL = "xornet.model"  # + .sha256 / .md5
TAG_DATA = "xornet.data"  # + .<file stem>.sha256 / .md5
TAG_STAGE = "xornet.stage"
TAG_SEARCH = "xornet.search"
DVC_TAGS = {
    "DVC_EXP_NAME": "dvc.exp_name",
    "DVC_EXP_BASELINE_REV": "dvc.exp_baseline_rev",
    "DVC_STAGE": "dvc.stage",
    "DVC_ROOT": "dvc.root",
}


# ------------------------------------------------------------------ the store
@dataclass(frozen=True)
class Store:
    """Where runs go: the tracking URI and, unless it is a server, the artifact root."""

    uri: str
    is_server: bool
    artifact_root: Path | None

    def to_fields(self) -> dict[str, Any]:
        """JSON-ready fields, for an entry's header."""
        root = self.artifact_root
        return {"uri": self.uri, "is_server": self.is_server, "artifact_root": root and str(root)}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> "Store":
        root = fields["artifact_root"]
        return cls(fields["uri"], fields["is_server"], Path(root) if root else None)


def resolve_store(root: Path) -> Store:
    """The tracking store for the project at ``root``; :class:`BadInput` for a bad URI."""
    raw = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    artifacts = root / ARTIFACTS_DIR
    if not raw:
        return Store(f"sqlite:///{root / STORE_FILE}", False, artifacts)
    where = f"MLFLOW_TRACKING_URI={raw!r}"
    try:
        parts = urllib.parse.urlsplit(raw)
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError as exc:
        raise BadInput(f"{where} is not a valid URI ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise BadInput(f"{where} has no host (expected e.g. http://127.0.0.1:5000)")
        return Store(raw.rstrip("/"), True, None)
    if scheme == "sqlite":
        if not raw.startswith("sqlite:///") or raw.endswith(":memory:"):
            raise BadInput(f"{where}: expected sqlite:///relative/path.db or sqlite:////abs.db")
        path = Path(raw[len("sqlite:///") :])
        path = path if path.is_absolute() else root / path
        if not path.parent.is_dir():
            raise BadInput(f"{where}: folder {path.parent} does not exist")
        return Store(f"sqlite:///{path}", False, artifacts)
    if not scheme or scheme == "file":
        raise BadInput(
            f"{where}: MLflow 3 no longer accepts a plain folder as tracking store; "
            "use sqlite:///mlflow.db or an http:// server"
        )
    if scheme.split("+", 1)[0] not in DATABASE_SCHEMES:
        raise BadInput(
            f"{where}: unknown scheme '{scheme}' (expected http(s)://host:port, "
            "sqlite:///path.db, postgresql://, mysql://, mssql:// or databricks)"
        )
    # Other databases and databricks: MLflow judges the rest when the run is delivered.
    return Store(raw, scheme == "databricks", artifacts)


def auth_headers() -> dict[str, str]:
    """The credentials MLflow's own client sends: ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD`` (basic auth) or ``MLFLOW_TRACKING_TOKEN`` (bearer)."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    return {}


def _tls_context(url: str) -> Any:
    if not url.startswith("https:"):
        return None
    import ssl  # as MLflow's own client would verify

    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return ssl._create_unverified_context()
    return ssl.create_default_context(
        cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
    )


def _mlflow_error_code(body: bytes) -> str | None:
    """The ``error_code`` of an MLflow REST error body, ``None`` for any other body."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer.get("error_code") if isinstance(answer, dict) else None


def probe_server(uri: str, experiment: str) -> str | None:
    """Ask the MLflow REST API at ``uri`` for ``experiment`` (a few seconds at most):
    its lifecycle stage (``active``/``deleted``), or ``None`` when it does not exist yet.

    :class:`Failure` (exit 1) when nothing answers; :class:`BadInput` (exit 2) when
    the answer is not MLflow's (another web server, a wrong path) or the server
    refuses the credentials — each one line, before the stage computes anything.
    """
    query = urllib.parse.urlencode({"experiment_name": experiment})
    path = "/api/2.0/mlflow/experiments/get-by-name"
    request = urllib.request.Request(f"{uri}{path}?{query}", headers=auth_headers())
    try:
        timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or PROBE_TIMEOUT)
    except ValueError:
        timeout = PROBE_TIMEOUT
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=_tls_context(uri)) as answer:
            status, kind, body = answer.status, answer.headers.get_content_type(), answer.read()
    except urllib.error.HTTPError as exc:
        status, kind = exc.code, exc.headers.get_content_type() if exc.headers else "?"
        try:
            body = exc.read()
        except OSError:
            body = b""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Failure(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, fix "
            "MLFLOW_TRACKING_URI, or switch tracking off with XORNET_TRACKING=0"
        ) from None
    if status == 401:
        raise BadInput(
            f"MLflow tracking server {uri} refused the credentials (HTTP 401): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a valid user"
        )
    if status == 403:
        raise BadInput(
            f"MLflow tracking server {uri}: user {os.environ.get('MLFLOW_TRACKING_USERNAME')!r} "
            f"may not read experiment '{experiment}' (HTTP 403)"
        )
    code = _mlflow_error_code(body)
    if status == 200:
        try:
            return json.loads(body)["experiment"]["lifecycle_stage"]
        except (ValueError, KeyError, TypeError):
            pass
    elif status == 404 and code == "RESOURCE_DOES_NOT_EXIST":
        return None
    elif status >= 500 and code is not None:
        raise Failure(f"MLflow tracking server {uri} failed (HTTP {status}, {code})")
    raise BadInput(
        f"{uri} does not answer as an MLflow tracking server (GET {path}: HTTP {status}, "
        f"{kind}); fix MLFLOW_TRACKING_URI (e.g. http://127.0.0.1:5000)"
    )


def experiment_state(store: Store, name: str) -> str | None:
    """The experiment's lifecycle stage (``active``/``deleted``) as far as it can be
    read without MLflow: a server's REST API or a SQLite store's table. ``None``
    when it does not exist yet or cannot be read here (the courier judges then)."""
    if store.uri.startswith(("http:", "https:")):
        return probe_server(store.uri, name)
    if store.uri.startswith("sqlite:///"):
        import sqlite3

        path = Path(store.uri[len("sqlite:///") :])
        if not path.is_file():
            return None
        try:
            with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
                row = db.execute(
                    "SELECT lifecycle_stage FROM experiments WHERE name = ?", (name,)
                ).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None
    return None


def checked_store(root: Path, experiment: str) -> Store:
    """:func:`resolve_store`; a server must answer as MLflow (:func:`probe_server`) and
    the experiment must not be deleted."""
    store = resolve_store(root)
    if experiment_state(store, experiment) == "deleted":
        raise BadInput(
            f"MLflow experiment '{experiment}' is deleted in {store.uri}: restore it with "
            "`mlflow experiments restore` or choose another tracking.experiment"
        )
    return store


# ------------------------------------------------------------------ tags
def file_digests(path: Path) -> dict[str, str]:
    """``{"sha256": ..., "md5": ...}`` of a file's bytes (DVC records the MD5)."""
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(block)
            md5.update(block)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def model_tags(digests: dict[str, str]) -> dict[str, str]:
    return {f"{TAG_MODEL}.{kind}": value for kind, value in digests.items()}


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=CHECKOUT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def context_tags(stage: str) -> dict[str, str]:
    """The stage, the checkout's git commit (and whether it has uncommitted changes),
    and DVC's experiment variables when DVC runs the stage."""
    tags = {TAG_STAGE: stage}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        # dvc.lock changes under every `dvc repro`; it says nothing about the code.
        status = _git("status", "--porcelain", "--untracked-files=no", "--", ":!dvc.lock")
        if status is not None:
            tags["xornet.git.dirty"] = "true" if status else "false"
    for variable, tag in DVC_TAGS.items():
        if os.environ.get(variable):
            tags[tag] = os.environ[variable]
    return tags


def param_value(value: Any) -> str:
    """How a param is shown in MLflow: strings as they are, the rest as JSON
    (``[8, 8]``, ``true``, ``0.5``)."""
    return value if isinstance(value, str) else json.dumps(value)


def param_values(values: dict[str, Any]) -> dict[str, str]:
    """``{name: value}`` as MLflow shows the params (:func:`param_value`)."""
    return {key: param_value(value) for key, value in values.items()}


def section_params(params: Params, sections: tuple[str, ...]) -> dict[str, str]:
    """The dotted params of ``sections`` as MLflow shows them."""
    return param_values(params.flat(sections))


# ------------------------------------------------------------------ the outbox
class Outbox:
    """The folders of the outbox at a project root.

    ``staging/<id>``: entries being recorded by a running stage (which holds
    ``recording.lock`` in it); ``pending/<sequence>-<id>``: complete entries
    waiting for the courier, in the order the outbox numbered them;
    ``failed/<sequence>-<id>``: entries that could not be recorded or delivered
    (``error.txt`` says why); ``sequence`` is the last number given, under
    ``sequence.lock``; ``courier.lock`` is held by the one courier delivering;
    ``courier.log`` says what it did.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / OUTBOX_DIR
        self.staging = self.path / "staging"
        self.pending_dir = self.path / "pending"
        self.failed_dir = self.path / "failed"
        self.lock_file = self.path / "courier.lock"
        self.log_file = self.path / "courier.log"
        self.sequence_file = self.path / "sequence"

    def make_dirs(self) -> None:
        for folder in (self.staging, self.pending_dir, self.failed_dir):
            folder.mkdir(parents=True, exist_ok=True)
        ignore = self.path.parent / ".gitignore"  # the outbox is never part of the project
        if not ignore.exists():
            ignore.write_text("*\n")

    def new_entry(self) -> tuple[Path, Any]:
        """A new staging folder named by a fresh entry id, and the open, locked
        ``recording.lock`` in it: the stage keeps it open while it records (the
        kernel releases the lock when the stage dies, however it dies)."""
        self.make_dirs()
        while True:
            folder = self.staging / secrets.token_hex(6)
            try:
                folder.mkdir()
                break
            except FileExistsError:
                continue
        # Locked before it gets its name, so a sweep never finds it unlocked.
        handle = open(folder / f".{RECORDING_LOCK}", "w")  # noqa: SIM115 - the caller closes it
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.replace(folder / f".{RECORDING_LOCK}", folder / RECORDING_LOCK)
        return folder, handle

    def next_sequence(self) -> int:
        """The next number in the outbox's own sequence (a lock, never the clock)."""
        self.make_dirs()
        with open(self.path / "sequence.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                last = int(self.sequence_file.read_text() or 0)
            except (FileNotFoundError, ValueError):
                last = max(
                    (int(p.name.split("-", 1)[0]) for p in self._numbered()),
                    default=0,
                )
            temporary = self.sequence_file.with_suffix(".tmp")
            temporary.write_text(f"{last + 1}\n")
            os.replace(temporary, self.sequence_file)
            return last + 1

    def _numbered(self) -> list[Path]:
        return [
            p
            for folder in (self.pending_dir, self.failed_dir)
            if folder.is_dir()
            for p in folder.iterdir()
            if p.name.split("-", 1)[0].isdigit()
        ]

    def enqueue(self, folder: Path) -> Path:
        """Move a recorded entry into ``pending/``, numbered after every entry before."""
        target = self.pending_dir / f"{self.next_sequence():012d}-{entry_id(folder)}"
        os.replace(folder, target)
        return target

    def set_aside(self, entry: Path, reason: str) -> Path:
        """Move ``entry`` (staging or pending) into ``failed/`` with its one-line reason."""
        (entry / ERROR_FILE).write_text(reason + "\n")
        name = entry.name if entry.parent != self.staging else None
        name = name or f"{self.next_sequence():012d}-{entry_id(entry)}"
        target = self.failed_dir / name
        os.replace(entry, target)
        return target

    def pending(self) -> list[Path]:
        """Entries waiting for the courier, in sequence order."""
        return _entries(self.pending_dir)

    def failed(self) -> list[Path]:
        """Entries set aside, in sequence order (with or without a readable entry.json)."""
        if not self.failed_dir.is_dir():
            return []
        return sorted(p for p in self.failed_dir.iterdir() if p.is_dir())

    def find(self, wanted: str) -> Path | None:
        """The pending or failed entry with id ``wanted`` (or its folder's full name)."""
        for entry in (*self.pending(), *self.failed()):
            if wanted in (entry.name, entry_id(entry)):
                return entry
        return None

    def sweep_abandoned(self) -> list[Path]:
        """Enqueue the entries of stages that died without closing them (SIGKILL, power
        loss), as KILLED runs: a staging folder whose ``recording.lock`` nobody holds.
        PIDs are never trusted (they are reused); the kernel's lock is."""
        moved = []
        for folder in sorted(self.staging.iterdir()) if self.staging.is_dir() else ():
            lock = folder / RECORDING_LOCK
            try:
                handle = open(lock, "r+")  # noqa: SIM115 - closed below
            except FileNotFoundError:  # between mkdir and lock, or died there
                if folder.is_dir() and time.time() - folder.stat().st_mtime > ABANDONED_AFTER:
                    moved.append(self.set_aside(folder, "its stage died before recording"))
                continue
            except OSError:
                continue
            with handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its stage is still recording
                    continue
                if not folder.is_dir():  # enqueued meanwhile by its stage
                    continue
                moved.append(self._close_abandoned(folder))
        return moved

    def _close_abandoned(self, folder: Path) -> Path:
        try:
            header = read_header(folder)
        except (OSError, ValueError) as exc:
            return self.set_aside(folder, f"its stage died; entry unreadable ({exc})")
        if header.get("status") == "RUNNING":
            header["status"] = "KILLED"
            header["error"] = "the stage ended without closing its run (killed)"
            newest = max(p.stat().st_mtime for p in folder.rglob("*"))
            header["end_ms"] = max(int(newest * 1000), header.get("start_ms") or 0)
            write_header(folder, header)
        return self.enqueue(folder)

    def courier_at_work(self) -> bool:
        """Whether a courier holds ``courier.lock`` now. It looks for pending entries
        again after it releases the lock, so an entry enqueued before this is asked
        gets delivered by it, with no courier of its own. Only tries the lock, never
        waits for it."""
        try:
            self.make_dirs()
            with open(self.lock_file, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on close
        except BlockingIOError:
            return True
        except OSError:
            return False  # the courier will report what is wrong with the outbox
        return False

    def start_courier(self) -> None:
        """Start a courier in the background unless one is delivering already (which
        will deliver this stage's entry too: one courier for a whole ``dvc repro``).

        It runs in its own session, so Ctrl-C in the terminal or DVC ending the
        stage does not stop it, with the project root's library when there is
        one: a queued experiment's copy, where this stage may run, is deleted
        soon after the stage ends. A stage DVC runs (``DVC_STAGE`` set) hands it
        a pidfd of the ``dvc`` process: it stays at work while that runs, so the
        later stages' entries need no courier (and no MLflow import) of their own.
        """
        if self.courier_at_work():
            return
        source = self.root / "src"
        library = (
            source
            if (source / "xornet" / "tracking" / "courier.py").is_file()
            else PACKAGE_DIR.parent
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(library), env.get("PYTHONPATH", "")) if p
        )
        if self.log_file.is_file() and self.log_file.stat().st_size > LOG_LIMIT:
            os.replace(self.log_file, self.log_file.with_suffix(".log.1"))
        args = [sys.executable, "-m", "xornet.tracking.courier", "deliver", f"--root={self.root}"]
        runner = runner_pidfd() if os.environ.get("DVC_STAGE") else None
        if runner is not None:
            args.append(f"--runner-pidfd={runner}")
        try:
            with open(self.log_file, "ab") as log:
                subprocess.Popen(
                    args,
                    cwd=self.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                    pass_fds=() if runner is None else (runner,),
                )
        finally:
            if runner is not None:
                os.close(runner)


def read_header(entry: Path) -> dict[str, Any]:
    """An entry's ``entry.json`` (``OSError``/``ValueError`` when it cannot be read)."""
    return json.loads((entry / ENTRY_FILE).read_text())


def write_header(entry: Path, header: dict[str, Any]) -> None:
    """Write ``entry.json`` whole or not at all (a temporary file, then a rename)."""
    temporary = entry / (ENTRY_FILE + ".tmp")
    temporary.write_text(json.dumps(header, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, entry / ENTRY_FILE)


def entry_id(entry: Path) -> str:
    """An entry's id: its staging folder's name, the part after the sequence number."""
    return entry.name.rsplit("-", 1)[-1]


def _entries(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (p / ENTRY_FILE).is_file())


# ------------------------------------------------------------------ recording
@dataclass
class Header:
    """What ``entry.json`` says about the run to create or attach to."""

    # "train": a new run; "attach": results for the run that trained a model;
    # "study": a parent run and its children
    kind: str
    stage: str
    experiment: str
    store: dict[str, Any]
    tags: dict[str, str]
    params: dict[str, str]
    start_ms: int
    section: str | None = None  # attach: the stage's params section
    model_sha256: str | None = None  # attach: the model whose training run to find
    run_name: str | None = None
    status: str = "RUNNING"
    end_ms: int | None = None
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: str | None = None
    artifacts: list[tuple[str, str | None]] = field(default_factory=list)
    model: dict[str, Any] | None = None
    children: list[dict[str, Any]] = field(default_factory=list)  # study: one per configuration
    # data files the run read: {"name", "path", "md5", "context"} (mlflow.log_input)
    inputs: list[dict[str, str]] = field(default_factory=list)
    registered_model: str | None = None  # evaluate: register the model under this name
    entry_id: str = ""
    format: int = ENTRY_FORMAT


class Recorder:
    """The :class:`~xornet.stages.common.RunLogger` that records a run into an outbox entry.

    Files are copied into the entry when logged (a stage logs its outputs from a
    temporary folder). The per-epoch history is kept by reference and saved
    when the entry is closed, so a failed or interrupted training still records
    the epochs it ran.
    """

    def __init__(self, folder: Path, header: Header):
        self.folder = folder
        self.header = header
        header.entry_id = header.entry_id or entry_id(folder)
        self._history: History | None = None

    def log_progress(self, history: History) -> None:
        self._history = history

    def log_history(self, history: History) -> None:
        self._history = history

    def log_metrics(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if _is_number(value):
                self.header.metrics[key] = float(value)

    def log_tags(self, tags: dict[str, str]) -> None:
        self.header.tags.update({key: str(value) for key, value in tags.items()})

    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        for path in paths:
            relative = Path(FILES_DIR, folder or ".", Path(path).name)
            (self.folder / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.folder / relative)
            self.header.artifacts.append((relative.as_posix(), folder))

    def log_model(self, model: MLP, model_path: Path) -> None:
        """Record the weights file and this package's source: the courier logs them as
        a pyfunc model from code (never a pickle) and tags the run with the file's hashes."""
        self.header.tags.update(model_tags(file_digests(model_path)))
        weights = Path(FILES_DIR, "model", Path(model_path).name)
        (self.folder / weights).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_path, self.folder / weights)
        code = self.folder / CODE_DIR / PACKAGE_DIR.name
        shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        self.header.model = {
            "weights": weights.as_posix(),
            "n_inputs": model.arch.n_inputs,
            "code": (Path(CODE_DIR) / PACKAGE_DIR.name).as_posix(),
        }

    def log_child(
        self,
        name: str,
        tags: dict[str, str],
        params: dict[str, str],
        metrics: dict[str, float],
        curves: dict[str, tuple[Any, Any]],
    ) -> None:
        """A child run (a study configuration): params, final metrics and curves as
        ``{name: (steps, values)}`` with steps = epochs."""
        self.header.children.append(
            {
                "name": name,
                "tags": tags,
                "params": params,
                "metrics": {k: float(v) for k, v in metrics.items() if _is_number(v)},
                "curves": {
                    key: [np.asarray(steps).tolist(), np.asarray(values, float).tolist()]
                    for key, (steps, values) in curves.items()
                },
            }
        )

    def write(self) -> None:
        write_header(self.folder, asdict(self.header))

    def close(self, status: str, error: str | None = None) -> None:
        """Write ``entry.json`` (and the history) with the run's final status."""
        if self._history is not None and len(self._history):
            columns = [np.asarray(getattr(self._history, k), float) for k in HISTORY_HEADER]
            np.save(self.folder / HISTORY_FILE, np.stack(columns))
            self.header.history = HISTORY_FILE
        self.header.status = status
        self.header.error = error
        self.header.end_ms = int(time.time() * 1000)
        self.write()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number)


@contextlib.contextmanager
def _recorded(root: Path, header: Header) -> Iterator[Recorder]:
    """Record a run; on the way out — success, exception or interrupt — close the
    entry with FINISHED, FAILED or KILLED, enqueue it and start the courier.

    Signals are held while the entry is closed and enqueued, so an interrupt
    never leaves a half-written entry (nor a run that never ends). An entry that
    cannot be closed or enqueued (disk full, ...) is never deleted: it moves to
    ``failed/`` with the error, or, if even that fails, stays in staging, where
    the courier finds it once this stage has ended."""
    outbox = Outbox(root)
    folder, lock = outbox.new_entry()
    with lock:
        recorder = Recorder(folder, header)
        recorder.write()  # RUNNING: a stage killed outright is still one (KILLED) run
        status, error = "FINISHED", None
        try:
            yield recorder
        except Exception as exc:
            status, error = "FAILED", f"{type(exc).__name__}: {exc}"
            raise
        except BaseException as exc:
            status, error = "KILLED", type(exc).__name__
            raise
        finally:
            with hold_signals():
                try:
                    recorder.close(status, error)
                    outbox.enqueue(folder)
                except OSError as exc:
                    with contextlib.suppress(OSError):
                        outbox.set_aside(folder, f"recording the {status} run failed: {exc}")
                    if status == "FINISHED":
                        raise
                else:
                    outbox.start_courier()


def _new_header(settings: Params, kind: str, stage: str, store: Store, **fields: Any) -> Header:
    fields.setdefault("experiment", settings.tracking.experiment)
    return Header(
        kind=kind,
        stage=stage,
        store=store.to_fields(),
        start_ms=int(time.time() * 1000),
        **fields,
    )


def study_experiment(params: Params) -> str:
    """The convergence study's runs go to an experiment of their own: ``<experiment>-study``."""
    return f"{params.tracking.experiment}-study"


def _shown_path(path: Path) -> str:
    """A data file's path as DVC names it: relative to the stage's folder when inside."""
    path = Path(path).absolute()
    with contextlib.suppress(ValueError):
        return path.relative_to(Path.cwd().absolute()).as_posix()
    return path.as_posix()


def dataset_inputs(data_paths: list[Path]) -> list[dict[str, str]]:
    """The data files as MLflow dataset inputs: named by stem, digest = the file's MD5
    (what dvc.lock records), source = its path; ``train*`` is read for training,
    the rest (the held-out set, also the validation curves') is ``test``."""
    inputs = []
    for path in data_paths:
        if Path(path).is_file():
            name = Path(path).stem
            inputs.append(
                {
                    "name": name,
                    "path": _shown_path(Path(path)),
                    "md5": file_digests(path)["md5"],
                    "context": "training" if name.startswith("train") else "test",
                }
            )
    return inputs


SHORT_NAMES = {"train.learning_rate": "lr", "model.hidden": "hidden", "model.seed": "seed"}
SEARCH_NAME = re.compile(r"^(?P<search>.+-\d+)-\d+$")  # xornet-search: PREFIX-SEED-INDEX


def run_name(params: Params) -> str:
    """What tells this training run apart: ``lr=1.0 hidden=[2] seed=0``, then every
    other data/model/train param that differs from the committed params.yaml."""
    values = params.flat(TRAINING_SECTIONS)
    committed: dict[str, Any] = {}
    text = _git("show", "HEAD:params.yaml")
    if text:
        with contextlib.suppress(Exception):
            import yaml

            loaded = yaml.safe_load(text)
            committed = {
                f"{section}.{key}": value
                for section in TRAINING_SECTIONS
                for key, value in (loaded.get(section) or {}).items()
            }
    leaves = [key.split(".", 1)[1] for key in values]
    parts = [f"{short}={param_value(values[key])}" for key, short in SHORT_NAMES.items()]
    for key, value in values.items():
        if key in SHORT_NAMES or key not in committed or committed[key] == value:
            continue
        leaf = key.split(".", 1)[1]
        parts.append(f"{leaf if leaves.count(leaf) == 1 else key}={param_value(value)}")
    return " ".join(parts)


def search_tags() -> dict[str, str]:
    """``xornet.search``: the random search (``xornet-search``) a queued experiment
    belongs to, read from its DVC name ``PREFIX-SEED-INDEX``."""
    match = SEARCH_NAME.match(os.environ.get("DVC_EXP_NAME", ""))
    return {TAG_SEARCH: match["search"]} if match else {}


@contextlib.contextmanager
def record_training_run(params: Params, root: Path, data_paths: list[Path]) -> Iterator[Recorder]:
    """Record a new training run: the data, model and train params, the context tags,
    the hashes of the data files and the data as dataset inputs; named for what
    sets it apart (:func:`run_name`)."""
    store = checked_store(root, params.tracking.experiment)
    tags = {**context_tags("train"), **search_tags()}
    for path in data_paths:
        if Path(path).is_file():
            for kind, value in file_digests(path).items():
                tags[f"{TAG_DATA}.{Path(path).stem}.{kind}"] = value
    exp_name = os.environ.get("DVC_EXP_NAME")
    if exp_name:
        tags["mlflow.note.content"] = f"DVC experiment {exp_name}"
    header = _new_header(
        params,
        "train",
        "train",
        store,
        tags=tags,
        params=section_params(params, TRAINING_SECTIONS),
        run_name=run_name(params),
        inputs=dataset_inputs(data_paths),
    )
    with _recorded(root, header) as recorder:
        yield recorder


@contextlib.contextmanager
def record_attached_run(
    params: Params, root: Path, model_path: Path, section: str
) -> Iterator[Recorder]:
    """Record the ``section`` stage's results for the run that trained ``model_path``."""
    if not Path(model_path).is_file():
        raise BadInput(f"{model_path}: model file not found")
    store = checked_store(root, params.tracking.experiment)
    digests = file_digests(model_path)
    header = _new_header(
        params,
        "attach",
        section,
        store,
        tags={**context_tags(section), **model_tags(digests)},
        params=section_params(params, (section,)),
        section=section,
        model_sha256=digests["sha256"],
        registered_model=params.tracking.registered_model if section == "evaluate" else None,
    )
    with _recorded(root, header) as recorder:
        yield recorder


def record_study(
    params: Params, root: Path, parent: Any, children: list[Any], artifacts: list[Path]
) -> None:
    """Record the convergence study: one parent run with a child run per configuration.

    ``parent`` and ``children`` are :class:`xornet.study.convergence.RunRecord` objects. The
    parent holds the study's params and metrics and the ``artifacts`` under
    ``study/``; each child (tagged ``mlflow.parentRunId`` when delivered) holds its
    configuration's params, final metrics and curves with step = epoch. Every run
    carries the stage's context tags.
    """
    experiment = study_experiment(params)
    store = checked_store(root, experiment)
    context = context_tags("study")
    exp_name = os.environ.get("DVC_EXP_NAME")
    header = _new_header(
        params,
        "study",
        "study",
        store,
        experiment=experiment,
        tags={**context, **parent.tags},
        params=param_values(parent.params),
        run_name=f"{exp_name}-{parent.name}" if exp_name else parent.name,
    )
    with _recorded(root, header) as recorder:
        recorder.log_metrics(parent.metrics)
        recorder.log_artifacts(list(artifacts), "study")
        for child in children:
            recorder.log_child(
                child.name,
                {**context, **child.tags},
                param_values(child.params),
                child.metrics,
                child.curves,
            )
