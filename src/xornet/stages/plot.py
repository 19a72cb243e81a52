"""Stage ``plot``: the run's figures, drawn from its files without retraining."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xornet.config import footprint
from xornet.config.schema import Params
from xornet.errors import InputMismatch
from xornet.figures import plots
from xornet.files import atomic
from xornet.files.datasets import load_dataset
from xornet.files.models import load_model, load_snapshots
from xornet.files.tables import read_diagnosis, read_history, read_predictions
from xornet.stages.common import RunLogger, describe


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
    diagnosis: Path


def run_plot(
    params: Params,
    inputs: PlotInputs,
    outputs: PlotOutputs,
    logger: RunLogger,
) -> list[Path]:
    """Draw the run's figures from its files, without retraining: learning curves,
    decision boundary, confusion matrix and the training GIF (at most
    ``plot.animation_frames`` snapshots, evenly spread). Returns the written paths."""
    footprint.check(footprint.plot_estimate(params))
    history = read_history(inputs.history)
    diagnosis = read_diagnosis(inputs.diagnosis)
    model = load_model(inputs.model)
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
        outputs.learning_curves: plots.learning_curves_png(history, params, diagnosis),
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
        atomic.write_bytes(path, data)
    written = list(figures)
    logger.log_artifacts(written, folder="plots")
    return written
