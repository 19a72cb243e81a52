"""The pipeline's tables: the per-epoch training history, the per-sample predictions, and
the train stage's diagnosis (JSON)."""

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from xornet.core.training import History
from xornet.errors import DataFileError

HISTORY_HEADER = ("epoch", "train_loss", "val_loss", "val_accuracy")
PREDICTIONS_HEADER = ("actual", "predicted")


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
    rows = _read_csv(path, PREDICTIONS_HEADER)
    try:
        actual = np.array([int(r["actual"]) for r in rows], dtype=np.int64)
        predicted = np.array([int(r["predicted"]) for r in rows], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataFileError(f"{path}: not a predictions file ({exc})") from None
    if not np.all(np.isin(actual, (0, 1)) & np.isin(predicted, (0, 1))):
        raise DataFileError(f"{path}: actual and predicted must be 0/1 labels")
    return actual, predicted


def read_diagnosis(path: Path) -> dict[str, Any]:
    """The train stage's ``diagnosis.json``: at least ``verdict`` and ``line`` (strings)
    and ``evidence`` (an object)."""
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataFileError(f"{path}: not a readable JSON file ({exc})") from None
    if not (
        isinstance(report, dict)
        and isinstance(report.get("verdict"), str)
        and isinstance(report.get("line"), str)
        and isinstance(report.get("evidence"), dict)
    ):
        raise DataFileError(f"{path}: not a diagnosis (needs verdict, line and evidence)")
    return report
