"""MLflow tracking — the one module that imports MLflow.

The stages record their runs into the project's outbox (:mod:`xornet.tracking.outbox`);
the courier (:mod:`xornet.tracking.courier`) hands each entry to :class:`Courier`,
which writes it into MLflow.

Where runs go
    The store each entry names: ``MLFLOW_TRACKING_URI`` of the stage that
    recorded it (a relative ``sqlite:///`` path taken from the project root) or
    MLflow's SQLite store ``mlflow.db`` at the project root. For every store
    that is not a server, the experiment's artifacts live under
    ``<root>/mlruns/<experiment>``. The experiment is created once, under a
    file lock, tagged ``mlflow.experimentKind=custom_model_development`` (the
    MLflow UI then opens it on its runs table), and runs are created by
    experiment id. The convergence study uses ``<experiment>-study``.

One run per trained model
    A training entry becomes a new run named for what sets it apart
    (``lr=1.0 hidden=[2] seed=0``) with the stage's real start and end times
    and status: the ``data``/``model``/``train`` params, the data files as
    dataset inputs (digest = the file's MD5, as in ``dvc.lock``; context
    ``training``/``test``), the per-epoch curves (``log_batch`` of 1 000
    values), the final metrics, the output files, a pyfunc model from code,
    and tags: context, and the SHA-256 and MD5 of the data and model files.

Evaluate and plot attach to that run
    An attach entry finds the run by the model file's hash (the latest
    FINISHED run carrying it, preferring one of the same DVC experiment), so no
    run id is written into any DVC output; entries are delivered in the order
    the outbox numbered them, so the training run is there first. The
    section's params and the results are added to it. If that run already
    holds *different* values for the section (only the evaluate or plot
    params changed), a child run holds them instead: it copies the parent's
    upstream params and dataset inputs, holds the new section params and
    results, and is tagged ``mlflow.parentRunId`` — so no run's params ever
    misdescribe the metrics it holds, and MLflow never sees a param change.

The Model Registry
    An evaluation makes the training run's model a version of the registered
    model ``tracking.registered_model`` (once per training run), tagged with
    its ``test_loss``; the alias ``champion`` points at the version with the
    lowest test loss (ties: the newer version), so
    ``models:/xornet@champion`` is always the best model evaluated so far.

The convergence study
    A study entry becomes a parent run (the study's params, best success rate,
    its files under ``study/``) with a child run per configuration (params,
    final metrics, curves with step = epoch), in ``<experiment>-study``.

Exactly once
    Every run an entry creates is tagged ``xornet.entry_id`` when it is created;
    the run that completes the delivery gets ``xornet.delivered.<entry id>`` as
    its last write before its final status. Delivering an entry first looks
    for those tags: a complete delivery is not repeated (only a missing final
    status is set); the runs of a partial one are deleted, with any model
    version of them, before the entry is delivered again — and if deleting
    fails, the delivery stops and the entry stays. So a courier killed at any
    moment, or a server dying mid-request, never leaves two visible runs for
    one stage run, and after the next delivery none is left RUNNING. A run
    ends with the status its stage ended with (FINISHED, FAILED, KILLED).
"""

import contextlib
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xornet.errors import BadInput, Failure
from xornet.files.tables import HISTORY_HEADER
from xornet.tracking.courier import TRACE_ENV
from xornet.tracking.outbox import (
    DVC_TAGS,
    ENTRY_FORMAT,
    HISTORY_FILE,
    SECTION_ORDER,
    TAG_MODEL,
    Store,
    entry_id,
    read_header,
)

# Set before MLflow is imported, unless the user chose otherwise: no telemetry,
# and HTTP retries measured in seconds rather than MLflow's default minutes.
MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
BATCH_SIZE = 1000  # metrics per log_batch call (the REST API's limit)
TAG_TRAINING_RUN = "xornet.training_run_id"
# The UI (MLflow 3.x) opens an experiment by this tag: "custom_model_development" is
# its kind for model training, whose first page is the runs table (without it,
# MLflow 3.17 guesses and may open the GenAI overview of traces).
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
TAG_PARENT = "mlflow.parentRunId"


class DeliveryError(Exception):
    """An entry that could not be written into MLflow (one line, stored with it)."""


# ------------------------------------------------------------------ the store
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


def open_session(store: Store, experiment: str, root: Path) -> Session:
    """Import MLflow, open ``store`` and get or create ``experiment`` (:class:`BadInput`
    for a store or experiment that cannot be used, :class:`Failure` for a server's)."""
    for key, value in MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import logging

    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    artifact_location = (
        (store.artifact_root / _slug(experiment)).as_uri() if store.artifact_root else None
    )
    try:
        # Serialise store creation and get-or-create of the experiment: parallel
        # creation crashes a fresh SQLite store and, through a server, files runs
        # under "Default". In the root, so MLflow's own default artifact path
        # (used only by its "Default" experiment) is not in a temporary copy.
        with _store_lock(store), contextlib.chdir(root):
            client = mlflow.MlflowClient(store.uri)
            experiment_id = _experiment_id(client, experiment, artifact_location, store)
    except (BadInput, Failure):
        raise
    except Exception as exc:
        if store.is_server:
            raise Failure(f"MLflow tracking server {store.uri}: {_one_line(exc)}") from None
        raise BadInput(f"cannot use MLflow tracking store {store.uri}: {_one_line(exc)}") from None
    mlflow.set_tracking_uri(store.uri)
    return Session(store, client, experiment_id, experiment)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _experiment_id(client: Any, name: str, artifact_location: str | None, store: Store) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name, artifact_location=artifact_location, tags={EXPERIMENT_KIND: MODEL_TRAINING}
            )
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
    if EXPERIMENT_KIND not in experiment.tags:  # made by an older xornet or by hand
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
    return experiment.experiment_id


# ------------------------------------------------------------------ writing a run
class RunWriter:
    """Writes params, tags, metrics, files and the model into one existing run."""

    def __init__(self, session: Session, run_id: str, timestamp_ms: int | None = None):
        self.session = session
        self.client = session.client
        self.run_id = run_id
        self.timestamp_ms = timestamp_ms or int(time.time() * 1000)

    def log_params(self, values: dict[str, str]) -> None:
        from mlflow.entities import Param

        params = [Param(key, value) for key, value in values.items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_curves(self, curves: dict[str, tuple[Any, Any]]) -> None:
        """Each ``{name: (steps, values)}`` curve as the metric ``name`` with those
        steps, in batches; NaN points (no validation data) are left out."""
        from mlflow.entities import Metric

        metrics = [
            Metric(name, value, self.timestamp_ms, step)
            for name, (steps, values) in curves.items()
            for step, value in zip(
                np.asarray(steps).tolist(), np.asarray(values, float).tolist(), strict=True
            )
            if value == value
        ]
        for first in range(0, len(metrics), BATCH_SIZE):
            _trace("curves batch")
            self.client.log_batch(self.run_id, metrics=metrics[first : first + BATCH_SIZE])

    def log_metrics(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        batch = [
            Metric(key, float(value), self.timestamp_ms, 0)
            for key, value in metrics.items()
            if isinstance(value, int | float | np.number)
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        for path in paths:
            _trace("artifact")
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def log_inputs(self, inputs: list[dict[str, str]]) -> None:
        """Dataset lineage (what ``mlflow.log_input`` records): each data file as a
        dataset named by its stem, digest = its MD5 (as in dvc.lock), source = its
        path, with the context it was read in (``training`` / ``test``)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        datasets = [
            DatasetInput(
                Dataset(
                    name=item["name"],
                    digest=item["md5"],
                    source_type="local",
                    source=json.dumps({"uri": item["path"]}),
                ),
                tags=[InputTag("mlflow.data.context", item["context"])],
            )
            for item in inputs
        ]
        if datasets:
            _trace("inputs")
            self.client.log_inputs(self.run_id, datasets=datasets)

    def copy_inputs(self, run: Any) -> None:
        """The dataset inputs of ``run`` (a child run read the same data)."""
        inputs = getattr(run, "inputs", None)
        datasets = list(inputs.dataset_inputs) if inputs else []
        if datasets:
            self.client.log_inputs(self.run_id, datasets=datasets)

    def log_model(self, weights: Path, n_inputs: int, code: Path) -> None:
        """The weights as an MLflow pyfunc from code (``code`` is the package that
        trained them, no pickle), with a signature and an input example."""
        import mlflow
        import pandas as pd
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

        columns = [f"x{i}" for i in range(1, n_inputs + 1)]  # pyfunc_model.feature_columns
        signature = ModelSignature(
            inputs=Schema([ColSpec("double", c) for c in columns]),
            outputs=Schema([ColSpec("double", "probability"), ColSpec("long", "label")]),
            params=ParamSchema([ParamSpec("threshold", "double", 0.5)]),
        )
        corners = list(itertools.islice(itertools.product((0.0, 1.0), repeat=n_inputs), 8))
        # log_model attaches to the active run: resume ours around it, in its store
        # (a courier may deliver entries for several stores).
        mlflow.set_tracking_uri(self.session.store.uri)
        _trace("model")
        with mlflow.start_run(run_id=self.run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code / "tracking" / "pyfunc_model.py"),
                artifacts={"weights": str(weights)},
                code_paths=[str(code)],
                signature=signature,
                input_example=pd.DataFrame(corners, columns=columns),
                pip_requirements=[
                    f"mlflow=={mlflow.__version__}",
                    f"numpy=={np.__version__}",
                    f"pandas=={pd.__version__}",
                ],
            )
        self.set_tags({"xornet.model_uri": info.model_uri})


# ------------------------------------------------------------------ delivering entries
def _trace(step: str) -> None:
    """Append ``step`` to the file ``XORNET_COURIER_TRACE`` names, if any (the fault
    tests kill the courier at chosen steps)."""
    path = os.environ.get(TRACE_ENV)
    if path:
        with open(path, "a") as handle:
            handle.write(f"{os.getpid()} {step}\n")


class Courier:
    """Delivers outbox entries of one project into MLflow, keeping one session per
    store and experiment."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._sessions: dict[tuple[str, str], Session] = {}

    def session(self, header: dict[str, Any]) -> Session:
        store = Store.from_fields(header["store"])
        key = (store.uri, header["experiment"])
        if key not in self._sessions:
            self._sessions[key] = open_session(store, header["experiment"], self.root)
        return self._sessions[key]

    def deliver(self, entry: Path) -> str:
        """Write one entry into MLflow, exactly once however often it is called; the id
        of the run it went to. Raises :class:`DeliveryError` (one line) when it cannot."""
        try:
            header = read_header(entry)
        except (OSError, ValueError) as exc:
            raise DeliveryError(f"unreadable entry: {_one_line(exc)}") from None
        if header.get("format") != ENTRY_FORMAT:
            raise DeliveryError(f"entry format {header.get('format')} is not {ENTRY_FORMAT}")
        header["entry_id"] = header.get("entry_id") or entry_id(entry)
        try:
            session = self.session(header)
        except (BadInput, Failure) as exc:
            raise DeliveryError(str(exc)) from None
        _trace(f"entry {header['entry_id']}")
        try:
            done = _delivered_run(session, header)
            if done is not None:
                return done
            _discard_partial_delivery(session, header)
            deliver = {"train": _deliver_training, "study": _deliver_study}.get(
                header["kind"], _deliver_attached
            )
            run_id = deliver(session, entry, header)
            _trace("done")
            return run_id
        except DeliveryError:
            raise
        except Exception as exc:
            _end_created_runs(session, header, "FAILED")
            raise DeliveryError(f"MLflow ({session.store.uri}): {_one_line(exc)}") from None
        except BaseException:
            _end_created_runs(session, header, "KILLED")
            raise


# Idempotence. Every run an entry creates is tagged TAG_ENTRY = the entry's id when it
# is created (one call); the run that completes the delivery gets TAG_DELIVERED.<id>
# as its last write before its final status. So a delivery that is cut off at any
# point is found again by those tags: complete (only its status may be missing) or
# partial (deleted, with any model versions of it, before the entry is delivered again;
# if deleting fails, the delivery stops and the entry is kept).
TAG_ENTRY = "xornet.entry_id"
TAG_DELIVERED = "xornet.delivered"  # + ".<entry id>" = "true"


def _runs_tagged(session: Session, key: str, value: str) -> list[Any]:
    from mlflow.entities import ViewType

    return session.client.search_runs(
        [session.experiment_id],
        filter_string=f"tags.`{key}` = '{value}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=5000,
    )


def _delivered_run(session: Session, header: dict[str, Any]) -> str | None:
    """The run an earlier delivery of this entry completed, given its final status if it
    was cut off just before; ``None`` when the entry was never completely delivered."""
    key = f"{TAG_DELIVERED}.{header['entry_id']}"
    for run in _runs_tagged(session, key, "true"):
        created = run.data.tags.get(TAG_ENTRY) == header["entry_id"]
        if created and run.info.status == "RUNNING":
            session.client.set_terminated(
                run.info.run_id, header["status"], end_time=header["end_ms"]
            )
        return run.info.run_id
    return None


def _discard_partial_delivery(session: Session, header: dict[str, Any]) -> None:
    """Delete the runs an interrupted delivery of this entry created (and their model
    versions). Errors are not swallowed: the entry is then kept, never delivered twice."""
    for run in _runs_tagged(session, TAG_ENTRY, header["entry_id"]):
        run_id = run.info.run_id
        _delete_model_versions(session, run_id)
        if run.info.status == "RUNNING":
            session.client.set_terminated(run_id, "FAILED")
        session.client.delete_run(run_id)
        _trace(f"deleted partial run {run_id}")


def _end_created_runs(session: Session, header: dict[str, Any], status: str) -> None:
    """Best effort, on the way out of a failed delivery: end the runs it left RUNNING
    (the next delivery deletes them anyway)."""
    with contextlib.suppress(Exception):
        for run in _runs_tagged(session, TAG_ENTRY, header["entry_id"]):
            if run.info.status == "RUNNING":
                session.client.set_terminated(run.info.run_id, status)


def _create_run(
    session: Session,
    header: dict[str, Any],
    tags: dict[str, str],
    name: str | None,
    start_ms: int | None = None,
) -> RunWriter:
    tags = {**tags, TAG_ENTRY: header["entry_id"]}
    run = session.client.create_run(
        session.experiment_id, start_time=start_ms or header["start_ms"], tags=tags, run_name=name
    )
    _trace("created run")
    return RunWriter(session, run.info.run_id, header["end_ms"])


def _complete(writer: RunWriter, header: dict[str, Any], status: str | None = None) -> None:
    """Mark the entry delivered into this run, then (if given) end it with ``status``."""
    writer.set_tags({f"{TAG_DELIVERED}.{header['entry_id']}": "true"})
    _trace("delivered tag")
    if status is not None:
        writer.client.set_terminated(writer.run_id, status, end_time=header["end_ms"])


def _results(writer: RunWriter, entry: Path, header: dict[str, Any]) -> None:
    """The entry's curves, metrics and files."""
    if header.get("history"):
        columns = np.load(entry / HISTORY_FILE)
        epochs = columns[0].astype(np.int64)
        curves = zip(HISTORY_HEADER[1:], columns[1:], strict=True)
        writer.log_curves({key: (epochs, values) for key, values in curves})
    if header.get("metrics"):
        writer.log_metrics(header["metrics"])
    by_folder: dict[str | None, list[Path]] = {}
    for relative, folder in header.get("artifacts") or []:
        by_folder.setdefault(folder, []).append(entry / relative)
    for folder, paths in by_folder.items():
        writer.log_artifacts(paths, folder)


def _has_results(header: dict[str, Any]) -> bool:
    return bool(header.get("history") or header.get("metrics") or header.get("artifacts"))


def _deliver_training(session: Session, entry: Path, header: dict[str, Any]) -> str:
    writer = _create_run(session, header, header["tags"], header.get("run_name"))
    writer.log_params(header["params"])
    writer.log_inputs(header.get("inputs") or [])
    _results(writer, entry, header)
    model = header.get("model")
    if model:
        writer.log_model(entry / model["weights"], model["n_inputs"], entry / model["code"])
    _complete(writer, header, header["status"])
    return writer.run_id


def find_training_run(session: Session, model_sha256: str, exp_name: str | None) -> Any | None:
    """The latest FINISHED run holding the model with this hash, preferring one of the
    DVC experiment ``exp_name`` (two experiments may train byte-identical models)."""
    runs = session.client.search_runs(
        [session.experiment_id],
        filter_string=f"tags.`{TAG_MODEL}.sha256` = '{model_sha256}' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=100,
    )
    if exp_name:
        for run in runs:
            if run.data.tags.get(DVC_TAGS["DVC_EXP_NAME"]) == exp_name:
                return run
    return runs[0] if runs else None


def _warn(message: str) -> None:
    print(f"{Path(sys.argv[0]).stem}: warning: {message}", file=sys.stderr)


def _deliver_attached(session: Session, entry: Path, header: dict[str, Any]) -> str:
    """Into the run that trained the model, or a child of it when that run already
    holds other values of the section's params (see the module's docstring)."""
    section, values = header["section"], header["params"]
    exp_name = header["tags"].get(DVC_TAGS["DVC_EXP_NAME"])
    found = find_training_run(session, header["model_sha256"], exp_name)
    if found is not None:
        logged = found.data.params
        if all(logged.get(key, value) == value for key, value in values.items()):
            writer = RunWriter(session, found.info.run_id, header["end_ms"])
            if _has_results(header):  # a stage that failed early changes nothing
                writer.log_params({k: v for k, v in values.items() if k not in logged})
                _results(writer, entry, header)
                _register(session, found, header)
            _complete(writer, header)  # the run keeps its status: it is the training's
            return found.info.run_id
    tags = dict(header["tags"])
    inherited: dict[str, str] = {}
    if found is None:
        _warn(
            f"no FINISHED run in MLflow experiment '{session.experiment}' trained the model "
            f"(sha256 {header['model_sha256'][:12]}); logging {section} to a new run"
        )
        run_name = None
    else:
        training_id = found.data.tags.get(TAG_TRAINING_RUN, found.info.run_id)
        tags[TAG_PARENT] = training_id
        tags[TAG_TRAINING_RUN] = training_id
        upstream = (
            SECTION_ORDER[: SECTION_ORDER.index(section)]
            if section in SECTION_ORDER
            else SECTION_ORDER
        )
        inherited = {
            key: value
            for key, value in found.data.params.items()
            if key.split(".", 1)[0] in upstream
        }
        changed = " ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in values.items() if k in logged)
        run_name = f"{found.info.run_name} {section} {changed}".strip()
    writer = _create_run(session, header, tags, run_name)
    writer.log_params({**inherited, **values})
    if found is not None:
        writer.copy_inputs(found)
    _results(writer, entry, header)
    if found is not None and _has_results(header):
        _register(session, found, header)
    _complete(writer, header, header["status"])
    return writer.run_id


def _deliver_study(session: Session, entry: Path, header: dict[str, Any]) -> str:
    """A parent run (the study's params, metrics and files) and a child run per
    configuration (params, final metrics, curves), tagged ``mlflow.parentRunId``."""
    parent = _create_run(session, header, header["tags"], header.get("run_name"))
    parent.log_params(header["params"])
    for child in header.get("children") or []:
        tags = {**child["tags"], TAG_PARENT: parent.run_id}
        writer = _create_run(session, header, tags, child["name"])
        writer.log_params(child["params"])
        writer.log_metrics(child["metrics"])
        writer.log_curves(child["curves"])
        writer.client.set_terminated(writer.run_id, header["status"], end_time=header["end_ms"])
    _results(parent, entry, header)
    _complete(parent, header, header["status"])
    return parent.run_id


# ------------------------------------------------------------------ the Model Registry
CHAMPION = "champion"
VERSION_LOSS_TAG = "test_loss"


def _delete_model_versions(session: Session, run_id: str) -> None:
    for version in session.client.search_model_versions(f"run_id = '{run_id}'"):
        session.client.delete_model_version(version.name, version.version)


def _register(session: Session, training: Any, header: dict[str, Any]) -> None:
    """Make the evaluated model a version of the registered model (once per training
    run), tagged with its test loss; point the alias ``champion`` at the version
    with the lowest test loss (ties: the newer version)."""
    name = header.get("registered_model")
    loss = (header.get("metrics") or {}).get("test_loss")
    model_uri = training.data.tags.get("xornet.model_uri")
    if not name or loss is None or not model_uri:
        return
    import mlflow

    client = session.client
    run_id = training.info.run_id
    versions = [v for v in client.search_model_versions(f"run_id = '{run_id}'") if v.name == name]
    if versions:
        version = versions[0]
    else:
        mlflow.set_tracking_uri(session.store.uri)
        mlflow.set_registry_uri(session.store.uri)
        version = mlflow.register_model(model_uri, name, await_registration_for=0)
        _trace("registered")
    client.set_model_version_tag(name, version.version, VERSION_LOSS_TAG, repr(float(loss)))
    client.set_model_version_tag(name, version.version, TAG_TRAINING_RUN, run_id)
    _update_champion(client, name)


def _update_champion(client: Any, name: str) -> None:
    best = None
    for version in client.search_model_versions(f"name = '{name}'"):
        text = version.tags.get(VERSION_LOSS_TAG)
        try:
            loss = float(text)
        except (TypeError, ValueError):
            continue
        key = (loss, -int(version.version))
        if loss == loss and (best is None or key < best[0]):
            best = (key, version.version)
    if best is None:
        return
    current = client.get_registered_model(name).aliases.get(CHAMPION)
    if str(current) != str(best[1]):
        client.set_registered_model_alias(name, CHAMPION, best[1])
        _trace("champion")
