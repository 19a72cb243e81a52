"""One function per pipeline stage: load inputs, make one library call, write outputs.

Stage functions take validated :class:`~xornet.params.Params`, explicit paths
and a :class:`RunLogger` (MLflow when tracking is on, :class:`NullLogger`
otherwise). Every output is written atomically, after the computation has
succeeded, so a failing stage leaves the previous outputs untouched.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from xornet import io
from xornet.data import Dataset, generate, load_dataset, save_dataset
from xornet.losses import LOSSES
from xornet.metrics import classification_metrics
from xornet.model import MLP, Architecture
from xornet.params import Params
from xornet.train import History, TrainConfig, TrainResult, train

HISTORY_HEADER = ("epoch", "train_loss", "val_loss", "val_accuracy")


class RunLogger(Protocol):
    """What a stage reports to experiment tracking."""

    def log_history(self, history: History) -> None: ...
    def log_metrics(self, metrics: dict[str, float]) -> None: ...
    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None: ...
    def log_model(self, model: MLP, model_path: Path) -> None: ...


class NullLogger:
    """Tracking switched off: every call does nothing."""

    def log_history(self, history: History) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float]) -> None:
        pass

    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        pass

    def log_model(self, model: MLP, model_path: Path) -> None:
        pass


Progress = Callable[[int], None]


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
    result.model.copy(np.float64).save(outputs.model)
    io.write_csv(outputs.history, HISTORY_HEADER, history_rows(result.history))
    io.write_json(outputs.metrics, summary)
    io.write_npz(outputs.snapshots, snapshots.arrays(result.model.arch))
    logger.log_artifacts([outputs.model, outputs.history, outputs.metrics], folder="train")
    logger.log_model(result.model, outputs.model)
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
    io.write_json(metrics_out, metrics)
    io.write_csv(predictions_out, ("actual", "predicted"), rows)
    logger.log_artifacts([metrics_out, predictions_out], folder="evaluate")
    return metrics


# -------------------------------------------------------------------- plot
@dataclass(frozen=True)
class PlotOutputs:
    learning_curves: Path
    decision_boundary: Path
    confusion_matrix: Path
    animation: Path


def run_plot(
    params: Params,
    history_path: Path,
    model_path: Path,
    outputs: PlotOutputs,
    logger: RunLogger,
) -> None:
    """Draw the figures of a run. (Learning curves only, for now.)"""
    from xornet import plots  # matplotlib lives in one module

    history = plots.read_history(history_path)
    plots.save_learning_curves(history, outputs.learning_curves, params)
    logger.log_artifacts([outputs.learning_curves], folder="plots")
