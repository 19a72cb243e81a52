"""Stage ``train``: fit the network and write model, history, metrics and snapshots."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xornet.config import footprint
from xornet.config.schema import Params, train_config
from xornet.core.diagnosis import Diagnosis, Probe, RunSettings, diagnose, probe, probe_every
from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture
from xornet.core.training import History, Progress, TrainResult, train
from xornet.errors import InputMismatch
from xornet.files import atomic
from xornet.files.datasets import load_dataset
from xornet.files.models import load_model, save_model
from xornet.files.tables import HISTORY_HEADER, history_rows
from xornet.stages.common import RunLogger, describe


def initial_model(params: Params, n_inputs: int, init_from: Path | None = None) -> MLP:
    """A fresh network from ``params.model``, or the saved one at ``init_from``."""
    m = params.model
    arch = Architecture(n_inputs, tuple(m.hidden), m.activation)
    if init_from is None:
        return MLP.create(arch, m.init, m.init_scale, m.seed, m.bias_scale)
    model = load_model(init_from)
    if model.arch != arch:
        raise InputMismatch(
            f"{init_from}: architecture {describe(model.arch)} does not match the params' "
            f"{describe(arch)}"
        )
    return model


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
    diagnosis: Path


@dataclass(frozen=True)
class TrainedRun:
    """What the train stage produced: the training result and its diagnosis."""

    result: TrainResult
    diagnosis: Diagnosis


def run_settings(params: Params) -> RunSettings:
    """The settings a diagnosis's advice adjusts, from ``params``."""
    m, t = params.model, params.train
    return RunSettings(
        t.loss,
        t.learning_rate,
        m.activation,
        tuple(m.hidden),
        m.init,
        m.init_scale,
        m.bias_scale,
        t.epochs,
    )


def run_train(
    params: Params,
    train_path: Path,
    test_path: Path,
    outputs: TrainOutputs,
    logger: RunLogger,
    init_from: Path | None = None,
    progress: Progress | None = None,
) -> TrainedRun:
    """Train on ``train_path`` (validating on ``test_path``), diagnose the run and write
    model, history, metrics, snapshots and the diagnosis."""
    train_set, test_set = load_dataset(train_path), load_dataset(test_path)
    if test_set.X.shape[0] != train_set.X.shape[0]:
        raise InputMismatch(
            f"{test_path} has {test_set.X.shape[0]} features but {train_path} has "
            f"{train_set.X.shape[0]}"
        )
    footprint.check(footprint.train_estimate(params, train_set.n, test_set.n, train_set.X.shape[0]))
    model = initial_model(params, train_set.X.shape[0], init_from)
    epochs = params.train.epochs
    snapshots = SnapshotRecorder(params.train.snapshot_every, epochs)
    tick = max(1, epochs // 100)
    probes: list[Probe] = []
    every = probe_every(epochs)
    loss = LOSSES[params.train.loss]

    def callback(epoch: int, current: MLP, history: History) -> None:
        snapshots(epoch, current)
        if epoch % every == 0 or epoch == epochs:
            probes.append(probe(epoch, current, train_set.X, train_set.y, loss))
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
        callback_every=math.gcd(tick, params.train.snapshot_every, every),
    )
    summary = train_summary(result.history)
    diagnosis = diagnose(result.history, probes, run_settings(params))
    logger.log_history(result.history)
    logger.log_metrics({f"final_{k}": v for k, v in summary.items()})
    logger.log_metrics(diagnosis.numbers())
    logger.log_tags({"xornet.diagnosis": diagnosis.verdict})
    targets = (
        outputs.model,
        outputs.history,
        outputs.metrics,
        outputs.snapshots,
        outputs.diagnosis,
    )
    with atomic.staged(*targets) as files:
        model_file, history_file, metrics_file, snapshots_file, diagnosis_file = files
        save_model(result.model.copy(np.float64), model_file)
        atomic.write_csv(history_file, HISTORY_HEADER, history_rows(result.history))
        atomic.write_json(metrics_file, summary)
        atomic.write_npz(snapshots_file, snapshots.arrays(result.model.arch))
        atomic.write_json(diagnosis_file, diagnosis.to_json())
        logger.log_artifacts(
            [model_file, history_file, metrics_file, diagnosis_file], folder="train"
        )
        logger.log_model(result.model, model_file)
    return TrainedRun(result, diagnosis)
