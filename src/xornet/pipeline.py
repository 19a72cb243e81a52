"""One function per pipeline stage: load inputs, make one library call, write outputs.

Stage functions take validated :class:`~xornet.params.Params`, explicit paths
and a :class:`RunLogger` (the outbox recorder of :mod:`xornet.outbox` when
tracking is on, :class:`NullLogger` otherwise). Every output is written
atomically, after the computation has succeeded, so a failing stage leaves the
previous outputs untouched.
"""

import contextlib
import csv
import math
import signal
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from xornet import io
from xornet.data import DataFileError, Dataset, generate, load_dataset, save_dataset
from xornet.losses import LOSSES
from xornet.metrics import classification_metrics
from xornet.model import MLP, Architecture, ModelFileError
from xornet.params import Params
from xornet.train import History, TrainConfig, TrainResult, train

if TYPE_CHECKING:
    from xornet.study import ConfigResult, StudyOutputs

HISTORY_HEADER = ("epoch", "train_loss", "val_loss", "val_accuracy")


class RunLogger(Protocol):
    """What a stage reports to experiment tracking.

    ``log_progress`` is called during training with the history so far (so an
    interrupted training still has its epochs recorded); ``log_history`` with
    the whole history once training is done.
    """

    def log_progress(self, history: History) -> None: ...
    def log_history(self, history: History) -> None: ...
    def log_metrics(self, metrics: dict[str, float]) -> None: ...
    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None: ...
    def log_model(self, model: MLP, model_path: Path) -> None: ...


class NullLogger:
    """Tracking switched off: every call does nothing."""

    def log_progress(self, history: History) -> None:
        pass

    def log_history(self, history: History) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float]) -> None:
        pass

    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        pass

    def log_model(self, model: MLP, model_path: Path) -> None:
        pass


Progress = Callable[[int], None]


@contextlib.contextmanager
def staged(*targets: Path) -> Iterator[list[Path]]:
    """Stand-ins for ``targets`` in a private temporary folder, same file names.

    Write the outputs there, log them to tracking from there, and only when the
    block succeeds are they copied onto ``targets`` (each atomically, with
    SIGINT/SIGTERM held back until all are in place). A failure or interrupt
    anywhere before that, tracking included, leaves every target untouched.
    """
    with tempfile.TemporaryDirectory(prefix="xornet-stage-") as tmp:
        paths = []
        for i, target in enumerate(targets):
            (Path(tmp) / str(i)).mkdir()
            paths.append(Path(tmp) / str(i) / Path(target).name)
        yield paths
        with hold_signals():
            for path, target in zip(paths, targets, strict=True):
                io.write_bytes(target, path.read_bytes())


@contextlib.contextmanager
def hold_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back during the block and deliver them after it, so a
    short critical step (renaming outputs, writing a run's final status) is never
    cut in half. Only in the main thread, where Python runs signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        pending.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            signal.raise_signal(pending[0])


# ---------------------------------------------------------------- generate
def run_generate(params: Params, train_out: Path, test_out: Path) -> tuple[Dataset, Dataset]:
    """Generate the dataset of ``params.data`` and write the train/test ``.npz`` files."""
    d = params.data
    train_set, test_set = generate(d.kind, d.n_samples, d.test_fraction, d.seed, d.noise, d.n_bits)
    save_dataset(train_out, train_set)
    save_dataset(test_out, test_set)
    return train_set, test_set


# ------------------------------------------------------------------- train
def train_config(params: Params) -> TrainConfig:
    """The library's TrainConfig for ``params.train``."""
    t = params.train
    return TrainConfig(
        loss=t.loss,
        optimizer=t.optimizer,
        learning_rate=t.learning_rate,
        epochs=t.epochs,
        batch_size=t.batch_size,
        shuffle_seed=t.shuffle_seed,
        momentum=t.momentum,
        beta1=t.beta1,
        beta2=t.beta2,
        eps=t.eps,
        dtype=t.dtype,
    )


class InputMismatch(ValueError):
    """Input files that do not fit each other or the params (features, architecture)."""


def initial_model(params: Params, n_inputs: int, init_from: Path | None = None) -> MLP:
    """A fresh network from ``params.model``, or the saved one at ``init_from``."""
    m = params.model
    arch = Architecture(n_inputs, tuple(m.hidden), m.activation)
    if init_from is None:
        return MLP.create(arch, m.init, m.init_scale, m.seed, m.bias_scale)
    model = MLP.load(init_from)
    if model.arch != arch:
        raise InputMismatch(
            f"{init_from}: architecture {describe(model.arch)} does not match the params' "
            f"{describe(arch)}"
        )
    return model


def describe(arch: Architecture) -> str:
    """``2-4-1 tanh`` style summary."""
    return "-".join(map(str, arch.layer_sizes)) + f" {arch.activation}"


@dataclass
class SnapshotRecorder:
    """Copies of the weights every ``every`` epochs (and at epochs 0 and ``last_epoch``),
    for the training animation."""

    every: int
    last_epoch: int
    epochs: list[int] = field(default_factory=list)
    weights: list[dict[str, np.ndarray]] = field(default_factory=list)

    def __call__(self, epoch: int, model: MLP) -> None:
        if epoch % self.every == 0 or epoch == self.last_epoch:
            self.epochs.append(epoch)
            self.weights.append({k: v.astype(np.float64) for k, v in model.params.items()})

    def arrays(self, arch: Architecture) -> dict[str, np.ndarray]:
        """``epoch`` (k,), each parameter stacked as (k, *shape), and the architecture JSON."""
        out: dict[str, np.ndarray] = {"epoch": np.array(self.epochs, dtype=np.int64)}
        for name in self.weights[0]:
            out[name] = np.stack([w[name] for w in self.weights])
        out["architecture"] = np.array(arch.to_json())
        return out


def history_rows(history: History) -> list[tuple[Any, ...]]:
    """CSV rows; validation columns are empty when there was no validation data."""
    rows = []
    for e, tl, vl, va in zip(
        history.epoch, history.train_loss, history.val_loss, history.val_accuracy, strict=True
    ):
        rows.append(
            (
                int(e),
                repr(float(tl)),
                None if np.isnan(vl) else repr(float(vl)),
                None if np.isnan(va) else repr(float(va)),
            )
        )
    return rows


def train_summary(history: History) -> dict[str, float | int]:
    """Final training metrics; ``solved_at_epoch`` is the first epoch with validation
    accuracy 1.0, or -1 if it never got there."""
    solved = np.flatnonzero(history.val_accuracy >= 1.0)
    return {
        "epochs": len(history),
        "train_loss": float(history.train_loss[-1]),
        "val_loss": float(history.val_loss[-1]),
        "val_accuracy": float(history.val_accuracy[-1]),
        "solved_at_epoch": int(history.epoch[solved[0]]) if solved.size else -1,
    }


@dataclass(frozen=True)
class TrainOutputs:
    model: Path
    history: Path
    metrics: Path
    snapshots: Path


def run_train(
    params: Params,
    train_path: Path,
    test_path: Path,
    outputs: TrainOutputs,
    logger: RunLogger,
    init_from: Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train on ``train_path`` (validating on ``test_path``) and write model, history,
    metrics and snapshots."""
    train_set, test_set = load_dataset(train_path), load_dataset(test_path)
    if test_set.X.shape[0] != train_set.X.shape[0]:
        raise InputMismatch(
            f"{test_path} has {test_set.X.shape[0]} features but {train_path} has "
            f"{train_set.X.shape[0]}"
        )
    model = initial_model(params, train_set.X.shape[0], init_from)
    epochs = params.train.epochs
    snapshots = SnapshotRecorder(params.train.snapshot_every, epochs)
    tick = max(1, epochs // 100)

    def callback(epoch: int, current: MLP, history: History) -> None:
        snapshots(epoch, current)
        logger.log_progress(history)
        if progress is not None:
            progress(epoch)

    result = train(
        model,
        train_set.X,
        train_set.y,
        train_config(params),
        validation=(test_set.X, test_set.y),
        callback=callback,
        callback_every=math.gcd(tick, params.train.snapshot_every),
    )
    summary = train_summary(result.history)
    logger.log_history(result.history)
    logger.log_metrics({f"final_{k}": v for k, v in summary.items()})
    with staged(outputs.model, outputs.history, outputs.metrics, outputs.snapshots) as files:
        model_file, history_file, metrics_file, snapshots_file = files
        result.model.copy(np.float64).save(model_file)
        io.write_csv(history_file, HISTORY_HEADER, history_rows(result.history))
        io.write_json(metrics_file, summary)
        io.write_npz(snapshots_file, snapshots.arrays(result.model.arch))
        logger.log_artifacts([model_file, history_file, metrics_file], folder="train")
        logger.log_model(result.model, model_file)
    return result


# ---------------------------------------------------------------- evaluate
def evaluate(model: MLP, test_set: Dataset, threshold: float, loss: str) -> tuple[dict, np.ndarray]:
    """Test metrics and the (1, n) 0/1 predictions at ``threshold``."""
    probability = model.predict_proba(test_set.X)
    predicted = (probability >= threshold).astype(np.int64)
    metrics: dict[str, Any] = classification_metrics(test_set.y, predicted)
    metrics["loss"] = model.loss(test_set.X, test_set.y, LOSSES[loss])
    return metrics, predicted


def run_evaluate(
    params: Params,
    model_path: Path,
    test_path: Path,
    metrics_out: Path,
    predictions_out: Path,
    logger: RunLogger,
) -> dict[str, Any]:
    """Score the model on the test set; write metrics JSON and per-sample predictions CSV."""
    model = MLP.load(model_path)
    test_set = load_dataset(test_path)
    if test_set.X.shape[0] != model.arch.n_inputs:
        raise InputMismatch(
            f"{test_path} has {test_set.X.shape[0]} features but {model_path} expects "
            f"{model.arch.n_inputs}"
        )
    metrics, predicted = evaluate(model, test_set, params.evaluate.threshold, params.train.loss)
    rows = zip(test_set.y.ravel().tolist(), predicted.ravel().tolist(), strict=True)
    logger.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    with staged(metrics_out, predictions_out) as (metrics_file, predictions_file):
        io.write_json(metrics_file, metrics)
        io.write_csv(predictions_file, ("actual", "predicted"), rows)
        logger.log_artifacts([metrics_file, predictions_file], folder="evaluate")
    return metrics


# -------------------------------------------------------------------- plot
@dataclass(frozen=True)
class Snapshots:
    """Weights saved during training: ``epochs`` (k,) and each parameter stacked as
    (k, *shape), e.g. ``params["W1"]`` is (k, out, in)."""

    epochs: np.ndarray
    arch: Architecture
    params: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.epochs)

    def model(self, index: int) -> MLP:
        """The network as it was at snapshot ``index``."""
        return MLP(self.arch, {name: value[index] for name, value in self.params.items()})


def load_snapshots(path: Path) -> Snapshots:
    """Read the train stage's snapshots file; raises ModelFileError naming the file."""
    if not path.is_file():
        raise ModelFileError(f"{path}: snapshots file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{path}: not a readable .npz snapshots file ({exc})") from None
    if "epoch" not in arrays or arrays["epoch"].ndim != 1 or arrays["epoch"].size == 0:
        raise ModelFileError(f"{path}: needs a non-empty 1-D 'epoch' array")
    epochs = arrays.pop("epoch")
    k = len(epochs)
    stacked = {name: value for name, value in arrays.items() if name != "architecture"}
    if any(value.ndim < 1 or value.shape[0] != k for value in stacked.values()):
        raise ModelFileError(f"{path}: every weight array must have {k} snapshots (axis 0)")
    if "architecture" not in arrays:
        raise ModelFileError(f"{path}: no 'architecture' entry")
    # MLP.from_arrays validates the architecture and every shape, on the first snapshot.
    first = MLP.from_arrays(
        {"architecture": arrays["architecture"], **{k: v[0] for k, v in stacked.items()}},
        source=str(path),
    )
    if not all(np.all(np.isfinite(value)) for value in stacked.values()):
        raise ModelFileError(f"{path}: snapshots hold non-finite values")
    params = {name: stacked[name].astype(np.float64) for name in first.params}
    return Snapshots(epochs.astype(np.int64), first.arch, params)


def frame_indices(n_snapshots: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` snapshot indices spread evenly from the first to the last
    (both included when ``max_frames`` >= 2), strictly increasing; one frame is the last
    snapshot (the trained network)."""
    if n_snapshots < 1 or max_frames < 1:
        raise ValueError("need at least one snapshot and one frame")
    m = min(n_snapshots, max_frames)
    if m == 1:
        return np.array([n_snapshots - 1], dtype=np.int64)
    # Steps are >= 1, so floor(x + 0.5) keeps the indices distinct (round-half-even would not).
    return np.floor(np.linspace(0, n_snapshots - 1, m) + 0.5).astype(np.int64)


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = set(columns) - set(reader.fieldnames or ())
            if missing:
                raise DataFileError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{path}: not a readable CSV file ({exc})") from None


def read_history(path: Path) -> History:
    """The train stage's per-epoch CSV (empty validation cells become NaN)."""
    rows = _read_csv(path, HISTORY_HEADER)
    try:
        columns = [
            np.array([float(r[name]) if r[name] else np.nan for r in rows], dtype=np.float64)
            for name in HISTORY_HEADER
        ]
    except (TypeError, ValueError) as exc:
        raise DataFileError(f"{path}: not a history file ({exc})") from None
    epoch = columns[0]
    if not np.all(np.isfinite(epoch)) or np.any(np.diff(epoch) <= 0):
        raise DataFileError(f"{path}: epochs must be finite and increasing")
    return History(epoch.astype(np.int64), *columns[1:])


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The evaluate stage's ``actual`` and ``predicted`` 0/1 columns, each (n,)."""
    rows = _read_csv(path, ("actual", "predicted"))
    try:
        actual = np.array([int(r["actual"]) for r in rows], dtype=np.int64)
        predicted = np.array([int(r["predicted"]) for r in rows], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataFileError(f"{path}: not a predictions file ({exc})") from None
    if not np.all(np.isin(actual, (0, 1)) & np.isin(predicted, (0, 1))):
        raise DataFileError(f"{path}: actual and predicted must be 0/1 labels")
    return actual, predicted


@dataclass(frozen=True)
class PlotOutputs:
    learning_curves: Path
    decision_boundary: Path
    confusion_matrix: Path
    animation: Path


@dataclass(frozen=True)
class PlotInputs:
    history: Path
    model: Path
    snapshots: Path
    train_data: Path
    test_data: Path
    predictions: Path


def run_plot(
    params: Params,
    inputs: PlotInputs,
    outputs: PlotOutputs,
    logger: RunLogger,
) -> list[Path]:
    """Draw the run's figures from its files, without retraining: learning curves,
    decision boundary, confusion matrix and the training GIF (at most
    ``plot.animation_frames`` snapshots, evenly spread). Returns the written paths."""
    from xornet import plots  # matplotlib lives in one module

    history = read_history(inputs.history)
    model = MLP.load(inputs.model)
    snapshots = load_snapshots(inputs.snapshots)
    train_set, test_set = load_dataset(inputs.train_data), load_dataset(inputs.test_data)
    actual, predicted = read_predictions(inputs.predictions)
    for path, data in ((inputs.train_data, train_set), (inputs.test_data, test_set)):
        if data.X.shape[0] != model.arch.n_inputs:
            raise InputMismatch(
                f"{path} has {data.X.shape[0]} features but {inputs.model} expects "
                f"{model.arch.n_inputs}"
            )
    if snapshots.arch != model.arch:
        raise InputMismatch(
            f"{inputs.snapshots}: architecture {describe(snapshots.arch)} does not match "
            f"{inputs.model}'s {describe(model.arch)}"
        )
    frames = frame_indices(len(snapshots), params.plot.animation_frames)
    last_epoch = int(history.epoch[-1]) if len(history) else None
    figures = {
        outputs.learning_curves: plots.learning_curves_png(history, params),
        outputs.decision_boundary: plots.decision_boundary_png(
            model, train_set, test_set, params, last_epoch
        ),
        outputs.confusion_matrix: plots.confusion_matrix_png(actual, predicted, params),
        outputs.animation: plots.training_gif(
            [snapshots.model(int(i)) for i in frames],
            [int(snapshots.epochs[i]) for i in frames],
            history,
            train_set,
            test_set,
            params,
        ),
    }
    for path, data in figures.items():
        io.write_bytes(path, data)
    written = list(figures)
    logger.log_artifacts(written, folder="plots")
    return written


# ------------------------------------------------------------------- study
def run_study(
    params: Params, outputs: "StudyOutputs", progress: Progress | None = None
) -> "list[ConfigResult]":
    """Train every configuration of ``params.study`` over its seeds; write the figure and
    the tables."""
    from xornet import study  # study builds on this module (train_config)

    results = study.run_study(params, progress)
    from xornet import plots  # matplotlib only once the training is done

    plots.save_convergence(results, outputs.figure, params)
    study.write_tables(params, results, outputs)
    return results
