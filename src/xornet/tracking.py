"""MLflow tracking for the stages — the one module that imports MLflow.

Where runs go
    ``MLFLOW_TRACKING_URI`` when set (a relative ``sqlite:///`` path is taken
    from the project root); otherwise MLflow's SQLite store ``mlflow.db`` at
    the project root. For every store that is not a server, the experiment's
    artifacts live under ``<root>/mlruns/<experiment>``. The project root is
    ``DVC_ROOT`` or the checkout, never the cwd: queued DVC experiments run in
    temporary copies that are deleted afterwards.

One run per trained model
    The train stage creates the experiment (once, under a file lock, so
    parallel queue workers never race to create a fresh store or experiment),
    starts a run by experiment id, logs the ``data``/``model``/``train``
    params, the per-epoch curves (buffered, written with ``log_batch``), the
    final metrics, the output files and a pyfunc model, and tags the run with
    the SHA-256 and MD5 of the data and model files (the MD5 is what
    ``dvc.lock`` records).

Evaluate and plot attach to that run
    They find it by the model file's hash (the latest FINISHED run carrying
    it, preferring one of the same DVC experiment), so no run id is written
    into any DVC output. They add their section's params and their results.
    If that run already holds *different* values for the section (only the
    evaluate or plot params changed), they start a child run instead: it
    copies the parent's other params, holds the new section params and
    results, and is tagged ``mlflow.parentRunId`` — so no run's params ever
    misdescribe the metrics it holds, and MLflow never sees a param change.

The convergence study
    :func:`log_study` logs one parent run (the study's params, its best success
    rate, its output files under ``study/``) and a child run per configuration
    (params, final metrics, curves with step = epoch), in the same experiment,
    tagged ``xornet.stage=study`` so they never pass for training runs.

Faults
    A run this process started ends FAILED on an exception and KILLED on
    Ctrl-C or SIGTERM; the status write itself is shielded from a second
    signal. A tracking server is probed before training (a dead one fails in
    seconds, not after minutes of retries); a bad ``MLFLOW_TRACKING_URI`` is
    a one-line :class:`~xornet.cli.BadInput`.
"""

import contextlib
import functools
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xornet.cli import BadInput, Failure
from xornet.model import MLP
from xornet.params import Params
from xornet.pipeline import HISTORY_HEADER, hold_signals
from xornet.train import History

# Set before MLflow is imported, unless the user chose otherwise: no telemetry,
# and HTTP retries measured in seconds rather than MLflow's default minutes.
MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
PROBE_TIMEOUT = 5.0  # seconds for GET <server>/health before training starts
FLUSH_SECONDS = 15.0  # during training, per-epoch metrics are written at most this often
BATCH_SIZE = 1000  # metrics per log_batch call (the REST API's limit)
# Params sections in pipeline order: a stage's results depend on its own section
# and the ones before it.
SECTIONS = ("data", "model", "train", "evaluate", "plot")
TRAINING_SECTIONS = SECTIONS[:3]
STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlruns"

PACKAGE_DIR = Path(__file__).resolve().parent
PYFUNC_FILE = PACKAGE_DIR / "pyfunc_model.py"
CHECKOUT = PACKAGE_DIR.parents[1]

TAG_MODEL = "xornet.model"  # + .sha256 / .md5
TAG_DATA = "xornet.data"  # + .<file stem>.sha256 / .md5
TAG_STAGE = "xornet.stage"
TAG_TRAINING_RUN = "xornet.training_run_id"
TAG_PARENT = "mlflow.parentRunId"
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
    # Other databases (postgresql://, mysql://, ...) or databricks: MLflow judges them.
    return Store(raw, scheme.startswith("databricks"), artifacts)


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


@contextlib.contextmanager
def _store_lock(store: Store) -> Iterator[None]:
    """An exclusive lock per tracking store, for every process on this machine: in the
    project's (git-ignored) artifact folder for a local store, in the temp folder
    (one file per server URI and user) for a server."""
    import fcntl

    if store.artifact_root is not None:
        store.artifact_root.mkdir(parents=True, exist_ok=True)
        path = store.artifact_root / ".xornet-store.lock"
    else:
        key = hashlib.sha256(store.uri.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"xornet-mlflow-{os.getuid()}-{key}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass
class Session:
    """An open tracking store and the experiment's id."""

    store: Store
    client: Any  # mlflow.MlflowClient
    experiment_id: str
    experiment: str


def open_session(params: Params, root: Path) -> Session:
    """Resolve and check the store, import MLflow, get or create the experiment."""
    store = resolve_store(root)
    if store.is_server and store.uri.startswith("http"):
        probe_server(store.uri)
    for key, value in MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import logging

    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    name = params.tracking.experiment
    artifact_location = (
        (store.artifact_root / _slug(name)).as_uri() if store.artifact_root else None
    )
    try:
        # Serialise store creation and get-or-create of the experiment: parallel
        # creation crashes a fresh SQLite store and, through a server, files runs
        # under "Default". In the root, so MLflow's own default artifact path
        # (used only by its "Default" experiment) is not in a temporary copy.
        with _store_lock(store), contextlib.chdir(root):
            client = mlflow.MlflowClient(store.uri)
            experiment_id = _experiment_id(client, name, artifact_location, store)
    except (BadInput, Failure):
        raise
    except Exception as exc:
        if store.is_server:
            raise Failure(f"MLflow tracking server {store.uri}: {_one_line(exc)}") from None
        raise BadInput(f"cannot use MLflow tracking store {store.uri}: {_one_line(exc)}") from None
    mlflow.set_tracking_uri(store.uri)
    return Session(store, client, experiment_id, name)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _experiment_id(client: Any, name: str, artifact_location: str | None, store: Store) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as exc:  # created meanwhile by another machine
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment.lifecycle_stage == "deleted":
        raise BadInput(
            f"MLflow experiment '{name}' is deleted in {store.uri}: restore it with "
            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` "
            "or choose another tracking.experiment"
        )
    return experiment.experiment_id


# ------------------------------------------------------------------ tags
def file_digests(path: Path) -> dict[str, str]:
    """``{"sha256": ..., "md5": ...}`` of a file's bytes (DVC records the MD5)."""
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(block)
            md5.update(block)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


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


def _model_tags(digests: dict[str, str]) -> dict[str, str]:
    return {f"{TAG_MODEL}.{kind}": value for kind, value in digests.items()}


def param_value(value: Any) -> str:
    """How a param is shown in MLflow: strings as they are, the rest as JSON
    (``[8, 8]``, ``true``, ``0.5``)."""
    return value if isinstance(value, str) else json.dumps(value)


# ------------------------------------------------------------------ logging
def _mlflow_errors(what: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Turn MLflow's exceptions (HTTP, database, validation) into a one-line Failure."""

    def decorate(method: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(method)
        def wrapper(self: "MlflowLogger", *args: Any, **kwargs: Any) -> None:
            try:
                method(self, *args, **kwargs)
            except (BadInput, Failure):
                raise
            except Exception as exc:
                raise _tracking_error(self.session, what, exc) from None

        return wrapper

    return decorate


class MlflowLogger:
    """The :class:`~xornet.pipeline.RunLogger` of one MLflow run.

    ``params`` are logged with the first result (metrics or files), so a stage that
    fails before producing anything leaves a run it attached to unchanged.
    """

    def __init__(self, session: Session, run_id: str, params: dict[str, str] | None = None):
        self.session = session
        self.client = session.client
        self.run_id = run_id
        self._pending_params = dict(params or {})
        self._epochs_logged = 0
        self._last_flush = time.monotonic()

    def _flush_params(self) -> None:
        if self._pending_params:
            self.log_params(self._pending_params)
            self._pending_params = {}

    @_mlflow_errors("cannot log params")
    def log_params(self, values: dict[str, str]) -> None:
        from mlflow.entities import Param

        params = [Param(key, value) for key, value in values.items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    @_mlflow_errors("cannot set tags")
    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_progress(self, history: History) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.log_history(history)

    @_mlflow_errors("cannot log the per-epoch metrics")
    def log_history(self, history: History) -> None:
        """The epochs not written yet, as ``train_loss``/``val_loss``/``val_accuracy``
        with step = epoch, in batches."""
        from mlflow.entities import Metric

        self._flush_params()
        start, stop = self._epochs_logged, len(history)
        if stop <= start:
            return
        timestamp = int(time.time() * 1000)
        columns = [np.asarray(getattr(history, key)[start:stop]) for key in HISTORY_HEADER[1:]]
        epochs = np.asarray(history.epoch[start:stop]).tolist()
        metrics = []
        for key, values in zip(HISTORY_HEADER[1:], columns, strict=True):
            for epoch, value in zip(epochs, values.tolist(), strict=True):
                if value == value:  # NaN: no validation data
                    metrics.append(Metric(key, value, timestamp, epoch))
        self._log_metric_batches(metrics)
        self._epochs_logged = stop
        self._last_flush = time.monotonic()

    def _log_metric_batches(self, metrics: list[Any]) -> None:
        for first in range(0, len(metrics), BATCH_SIZE):
            self.client.log_batch(self.run_id, metrics=metrics[first : first + BATCH_SIZE])

    @_mlflow_errors("cannot log the curves")
    def log_curves(self, curves: dict[str, tuple[list[int], list[float]]]) -> None:
        """Each ``{name: (steps, values)}`` curve as the metric ``name`` with those
        steps, in batches (NaN points are left out, as in :meth:`log_history`)."""
        from mlflow.entities import Metric

        self._flush_params()
        timestamp = int(time.time() * 1000)
        metrics = [
            Metric(name, float(value), timestamp, int(step))
            for name, (steps, values) in curves.items()
            for step, value in zip(steps, values, strict=True)
            if value == value
        ]
        self._log_metric_batches(metrics)

    @_mlflow_errors("cannot log metrics")
    def log_metrics(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        self._flush_params()
        timestamp = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), timestamp, 0)
            for key, value in metrics.items()
            if isinstance(value, int | float | np.number)
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    @_mlflow_errors("cannot log files")
    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        self._flush_params()
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    @_mlflow_errors("cannot log the model")
    def log_model(self, model: MLP, model_path: Path) -> None:
        """Tag the run with the model file's hashes and log it as an MLflow pyfunc
        (models from code: this package's source plus the weights, no pickle)."""
        import mlflow
        import pandas as pd
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

        self.set_tags(_model_tags(file_digests(model_path)))
        n = model.arch.n_inputs
        columns = [f"x{i}" for i in range(1, n + 1)]  # pyfunc_model.feature_columns
        signature = ModelSignature(
            inputs=Schema([ColSpec("double", c) for c in columns]),
            outputs=Schema([ColSpec("double", "probability"), ColSpec("long", "label")]),
            params=ParamSchema([ParamSpec("threshold", "double", 0.5)]),
        )
        corners = list(itertools.islice(itertools.product((0.0, 1.0), repeat=n), 8))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts={"weights": str(model_path)},
            code_paths=[str(PACKAGE_DIR)],
            signature=signature,
            input_example=pd.DataFrame(corners, columns=columns),
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}",
            ],
        )
        self.set_tags({"xornet.model_uri": info.model_uri})


# ------------------------------------------------------------------ runs
def _warn(message: str) -> None:
    print(f"{Path(sys.argv[0]).stem}: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _owned_run(
    session: Session, tags: dict[str, str], run_name: str | None, nested: bool = False
) -> Iterator[str]:
    """Start a run; end it FINISHED, FAILED (exception) or KILLED (Ctrl-C, SIGTERM).

    Signals are held while the run starts and while its status is written, and
    delivered inside the ``try``, so no interrupt can leave the run RUNNING.
    ``nested``: a child of the run started by the enclosing ``_owned_run``.
    """
    import mlflow

    started = False
    try:
        with hold_signals():
            try:
                run = mlflow.start_run(
                    experiment_id=session.experiment_id,
                    run_name=run_name,
                    tags=tags,
                    nested=nested,
                )
            except Exception as exc:
                raise _tracking_error(session, "cannot start a run", exc) from None
            started = True
        yield run.info.run_id
    except Exception:
        if started:
            _end_run(session, "FAILED", strict=False)
        raise
    except BaseException:
        if started:
            _end_run(session, "KILLED", strict=False)
        raise
    _end_run(session, "FINISHED", strict=True)


def _end_run(session: Session, status: str, strict: bool) -> None:
    import mlflow

    with hold_signals():
        try:
            mlflow.end_run(status)
        except Exception as exc:
            if strict:
                raise _tracking_error(session, "cannot end the run", exc) from None
            _warn(f"could not mark the MLflow run {status}: {_one_line(exc)}")


def _tracking_error(session: Session, what: str, exc: Exception) -> Failure:
    return Failure(f"MLflow ({session.store.uri}): {what}: {_one_line(exc)}")


@contextlib.contextmanager
def training_run(params: Params, root: Path, data_paths: list[Path]) -> Iterator[MlflowLogger]:
    """A new run for the train stage, with the params and tags of what trains."""
    session = open_session(params, root)
    tags = context_tags("train")
    for path in data_paths:
        if path.is_file():
            for kind, value in file_digests(path).items():
                tags[f"{TAG_DATA}.{path.stem}.{kind}"] = value
    with _owned_run(session, tags, os.environ.get("DVC_EXP_NAME")) as run_id:
        logger = MlflowLogger(session, run_id)
        flat = params.flat(TRAINING_SECTIONS)
        logger.log_params({key: param_value(value) for key, value in flat.items()})
        yield logger


def find_training_run(session: Session, model_sha256: str) -> Any | None:
    """The latest FINISHED run holding the model with this hash, preferring one of the
    current DVC experiment (two experiments may train byte-identical models)."""
    runs = session.client.search_runs(
        [session.experiment_id],
        filter_string=f"tags.`{TAG_MODEL}.sha256` = '{model_sha256}' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=100,
    )
    exp_name = os.environ.get("DVC_EXP_NAME")
    if exp_name:
        for run in runs:
            if run.data.tags.get(DVC_TAGS["DVC_EXP_NAME"]) == exp_name:
                return run
    return runs[0] if runs else None


@contextlib.contextmanager
def attached_run(
    params: Params, root: Path, model_path: Path, section: str
) -> Iterator[MlflowLogger]:
    """The run that trained ``model_path``, for the ``section`` stage's results; a
    child of it when it already holds other values of the section's params."""
    if not model_path.is_file():
        raise BadInput(f"{model_path}: model file not found")
    session = open_session(params, root)
    digests = file_digests(model_path)
    values = {key: param_value(v) for key, v in params.flat((section,)).items()}
    try:
        found = find_training_run(session, digests["sha256"])
    except Exception as exc:
        raise _tracking_error(session, "cannot search runs", exc) from None
    if found is not None:
        logged = found.data.params
        if all(logged.get(key, value) == value for key, value in values.items()):
            missing = {key: value for key, value in values.items() if key not in logged}
            yield MlflowLogger(session, found.info.run_id, missing)
            return  # the run keeps its status: it is the training's
    tags = {**context_tags(section), **_model_tags(digests)}
    inherited: dict[str, str] = {}
    if found is None:
        _warn(
            f"no FINISHED run in MLflow experiment '{session.experiment}' trained "
            f"{model_path} (sha256 {digests['sha256'][:12]}); logging {section} to a new run"
        )
        run_name = None
    else:
        training_id = found.data.tags.get(TAG_TRAINING_RUN, found.info.run_id)
        tags[TAG_PARENT] = training_id
        tags[TAG_TRAINING_RUN] = training_id
        upstream = SECTIONS[: SECTIONS.index(section)] if section in SECTIONS else SECTIONS
        inherited = {
            key: value
            for key, value in found.data.params.items()
            if key.split(".", 1)[0] in upstream
        }
        run_name = f"{found.info.run_name}-{section}"
    with _owned_run(session, tags, run_name) as run_id:
        logger = MlflowLogger(session, run_id)
        logger.log_params({**inherited, **values})
        yield logger


# ------------------------------------------------------------------ the study
def _log_record(logger: MlflowLogger, record: Any) -> None:
    """A :class:`xornet.study.RunRecord`'s params, final metrics and curves."""
    logger.log_params({key: param_value(value) for key, value in record.params.items()})
    logger.log_metrics(record.metrics)
    if record.curves:
        logger.log_curves(record.curves)


def log_study(
    params: Params, root: Path, parent: Any, children: list[Any], artifacts: list[Path]
) -> None:
    """The convergence study as one parent run with a child run per configuration.

    ``parent`` and ``children`` are :class:`xornet.study.RunRecord` objects. The
    parent holds the study's params and metrics and the ``artifacts`` under
    ``study/``; each child (tagged ``mlflow.parentRunId``) holds its
    configuration's params, final metrics and curves with step = epoch. Every run
    carries the stage's context tags. Each run ends FINISHED, FAILED or KILLED like
    a training run; a child's failure fails the parent too.
    """
    session = open_session(params, root)
    context = context_tags("study")
    exp_name = os.environ.get("DVC_EXP_NAME")
    name = f"{exp_name}-{parent.name}" if exp_name else parent.name
    with _owned_run(session, {**context, **parent.tags}, name) as parent_id:
        logger = MlflowLogger(session, parent_id)
        _log_record(logger, parent)
        for child in children:
            tags = {**context, **child.tags, TAG_PARENT: parent_id}
            with _owned_run(session, tags, child.name, nested=True) as child_id:
                _log_record(MlflowLogger(session, child_id), child)
        if artifacts:
            logger.log_artifacts(list(artifacts), "study")
