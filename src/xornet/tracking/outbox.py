"""The stage side of tracking: run records in an outbox, delivered to MLflow later.

Importing MLflow and writing thousands of metric values into its store costs
a stage several seconds — many times what training XOR for 10 000 epochs
costs. So the stages do not talk to MLflow. A stage records its run (params,
tags, per-epoch curves, metrics, files, model) into an *entry* of the outbox
``<project root>/.xornet/outbox/``: a folder holding ``entry.json`` and copies
of the files. When the stage ends — FINISHED, FAILED on an exception, KILLED
on Ctrl-C or SIGTERM — the entry is moved into ``pending/`` in one rename and
a courier process is started in the background
(:mod:`xornet.tracking.courier`). The courier delivers pending entries to MLflow one at
a time, oldest first, so an evaluate or plot entry always reaches MLflow after
the training entry it attaches to; it then deletes them. An entry that cannot
be delivered moves to ``failed/`` with its error; ``xornet-track flush``
retries it and waits until everything has been delivered.

The outbox lives at the project root (``DVC_ROOT`` or the checkout), like the
MLflow store, because queued DVC experiments run in temporary copies that are
deleted afterwards. The checks that need no MLflow still happen in the stage,
before anything is computed: the tracking URI is validated and a tracking
server is probed, so a dead server fails the stage in seconds.

This module never imports MLflow.
"""

import contextlib
import hashlib
import json
import os
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

ENTRY_FORMAT = 1
OUTBOX_DIR = Path(".xornet") / "outbox"
ENTRY_FILE = "entry.json"
HISTORY_FILE = "history.npy"  # (4, epochs): HISTORY_HEADER's columns as rows
FILES_DIR = "files"
CODE_DIR = "code"  # the package that trained the model, for the pyfunc model
STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlruns"
DATABASE_SCHEMES = {"postgresql", "mysql", "mssql", "databricks"}  # "+driver" allowed
LOG_LIMIT = 1 << 20  # bytes of courier.log before it is rotated to courier.log.1
PROBE_TIMEOUT = 5.0  # seconds for GET <server>/health before the stage computes anything

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/xornet
CHECKOUT = PACKAGE_DIR.parents[1]

# Params sections in pipeline order: a stage's results depend on its own section
# and the ones before it.
SECTION_ORDER = ("data", "model", "train", "evaluate", "plot")
TRAINING_SECTIONS = SECTION_ORDER[:3]

TAG_MODEL = "xornet.model"  # + .sha256 / .md5
TAG_DATA = "xornet.data"  # + .<file stem>.sha256 / .md5
TAG_STAGE = "xornet.stage"
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


def probe_server(uri: str) -> None:
    """Fail fast (one line, a few seconds) when the server at ``uri`` does not answer.

    Any HTTP answer counts as alive: only the network path is checked here.
    """
    url = f"{uri}/health"
    context = None
    if url.startswith("https:"):  # as MLflow's own client would verify
        import ssl

        if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            context = ssl._create_unverified_context()
        else:
            context = ssl.create_default_context(
                cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
            )
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT, context=context):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Failure(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, fix "
            "MLFLOW_TRACKING_URI, or switch tracking off with XORNET_TRACKING=0"
        ) from None


def experiment_state(store: Store, name: str) -> str | None:
    """The experiment's lifecycle stage (``active``/``deleted``) as far as it can be
    read without MLflow: a server's REST API or a SQLite store's table. ``None``
    when it does not exist yet or cannot be read here (the courier judges then)."""
    if store.uri.startswith(("http:", "https:")):
        query = urllib.parse.urlencode({"experiment_name": name})
        url = f"{store.uri}/api/2.0/mlflow/experiments/get-by-name?{query}"
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as answer:
                return json.load(answer)["experiment"]["lifecycle_stage"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
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
    """:func:`resolve_store`; a server must answer (:func:`probe_server`) and the
    experiment must not be deleted."""
    store = resolve_store(root)
    if store.is_server and store.uri.startswith("http"):
        probe_server(store.uri)
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

    ``staging/<id>``: entries being recorded by a running stage; ``pending/<id>``:
    complete entries waiting for the courier, named so that they sort in the
    order they were completed; ``failed/<id>``: entries the courier could not
    deliver (``error.txt`` says why); ``courier.lock`` is held by the one courier
    delivering; ``courier.log`` says what it did.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / OUTBOX_DIR
        self.staging = self.path / "staging"
        self.pending_dir = self.path / "pending"
        self.failed_dir = self.path / "failed"
        self.lock_file = self.path / "courier.lock"
        self.log_file = self.path / "courier.log"

    def make_dirs(self) -> None:
        for folder in (self.staging, self.pending_dir, self.failed_dir):
            folder.mkdir(parents=True, exist_ok=True)
        ignore = self.path.parent / ".gitignore"  # the outbox is never part of the project
        if not ignore.exists():
            ignore.write_text("*\n")

    def new_entry(self) -> Path:
        self.make_dirs()
        folder = self.staging / f"{os.getpid()}-{time.time_ns()}"
        folder.mkdir()
        return folder

    def enqueue(self, folder: Path) -> Path:
        """Move a recorded entry into ``pending/``, after every entry enqueued before."""
        target = self.pending_dir / f"{time.time_ns():020d}-{os.getpid()}"
        os.replace(folder, target)
        return target

    def pending(self) -> list[Path]:
        return _entries(self.pending_dir)

    def failed(self) -> list[Path]:
        return _entries(self.failed_dir)

    def start_courier(self) -> None:
        """Start a courier in the background (it exits at once if one is delivering).

        It runs in its own session, so Ctrl-C in the terminal or DVC ending the
        stage does not stop it, with the project root's library when there is
        one: a queued experiment's copy, where this stage may run, is deleted
        soon after the stage ends.
        """
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
        with open(self.log_file, "ab") as log:
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "xornet.tracking.courier",
                    "deliver",
                    "--root",
                    str(self.root),
                ],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )


def read_header(entry: Path) -> dict[str, Any]:
    """An entry's ``entry.json`` (``OSError``/``ValueError`` when it cannot be read)."""
    return json.loads((entry / ENTRY_FILE).read_text())


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
        self._history: History | None = None

    def log_progress(self, history: History) -> None:
        self._history = history

    def log_history(self, history: History) -> None:
        self._history = history

    def log_metrics(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if _is_number(value):
                self.header.metrics[key] = float(value)

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

    def close(self, status: str, error: str | None = None) -> None:
        """Write ``entry.json`` (and the history) with the run's final status."""
        if self._history is not None and len(self._history):
            columns = [np.asarray(getattr(self._history, k), float) for k in HISTORY_HEADER]
            np.save(self.folder / HISTORY_FILE, np.stack(columns))
            self.header.history = HISTORY_FILE
        self.header.status = status
        self.header.error = error
        self.header.end_ms = int(time.time() * 1000)
        text = json.dumps(asdict(self.header), indent=1, sort_keys=True)
        (self.folder / ENTRY_FILE).write_text(text + "\n")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number)


@contextlib.contextmanager
def _recorded(root: Path, header: Header) -> Iterator[Recorder]:
    """Record a run; on the way out — success, exception or interrupt — close the
    entry with FINISHED, FAILED or KILLED, enqueue it and start the courier.

    Signals are held while the entry is closed and enqueued, so an interrupt
    never leaves a half-written entry (nor a run that never ends)."""
    outbox = Outbox(root)
    recorder = Recorder(outbox.new_entry(), header)
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
                outbox.enqueue(recorder.folder)
            except OSError:
                shutil.rmtree(recorder.folder, ignore_errors=True)
                if status == "FINISHED":
                    raise
            else:
                outbox.start_courier()


def _new_header(settings: Params, kind: str, stage: str, store: Store, **fields: Any) -> Header:
    return Header(
        kind=kind,
        stage=stage,
        experiment=settings.tracking.experiment,
        store=store.to_fields(),
        start_ms=int(time.time() * 1000),
        **fields,
    )


@contextlib.contextmanager
def record_training_run(params: Params, root: Path, data_paths: list[Path]) -> Iterator[Recorder]:
    """Record a new training run: the data, model and train params, the context tags
    and the hashes of the data files."""
    store = checked_store(root, params.tracking.experiment)
    tags = context_tags("train")
    for path in data_paths:
        if Path(path).is_file():
            for kind, value in file_digests(path).items():
                tags[f"{TAG_DATA}.{Path(path).stem}.{kind}"] = value
    header = _new_header(
        params,
        "train",
        "train",
        store,
        tags=tags,
        params=section_params(params, TRAINING_SECTIONS),
        run_name=os.environ.get("DVC_EXP_NAME"),
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
    store = checked_store(root, params.tracking.experiment)
    context = context_tags("study")
    exp_name = os.environ.get("DVC_EXP_NAME")
    header = _new_header(
        params,
        "study",
        "study",
        store,
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
