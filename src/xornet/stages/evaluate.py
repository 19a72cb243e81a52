"""Stage ``evaluate``: score the trained model on the test set."""

from pathlib import Path
from typing import Any

import numpy as np

from xornet.config import footprint
from xornet.config.schema import Params
from xornet.core.data import Dataset
from xornet.core.losses import LOSSES
from xornet.core.metrics import classification_metrics
from xornet.core.model import MLP
from xornet.errors import InputMismatch
from xornet.files import atomic
from xornet.files.datasets import load_dataset
from xornet.files.models import load_model
from xornet.files.tables import PREDICTIONS_HEADER
from xornet.stages.common import RunLogger


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
    model = load_model(model_path)
    test_set = load_dataset(test_path)
    if test_set.X.shape[0] != model.arch.n_inputs:
        raise InputMismatch(
            f"{test_path} has {test_set.X.shape[0]} features but {model_path} expects "
            f"{model.arch.n_inputs}"
        )
    footprint.check(
        footprint.evaluate_estimate(params, test_set.n, test_set.X.shape[0], model.arch)
    )
    metrics, predicted = evaluate(model, test_set, params.evaluate.threshold, params.train.loss)
    rows = zip(test_set.y.ravel().tolist(), predicted.ravel().tolist(), strict=True)
    logger.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    with atomic.staged(metrics_out, predictions_out) as (metrics_file, predictions_file):
        atomic.write_json(metrics_file, metrics)
        atomic.write_csv(predictions_file, PREDICTIONS_HEADER, rows)
        logger.log_artifacts([metrics_file, predictions_file], folder="evaluate")
    return metrics
