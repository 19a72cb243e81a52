"""Classification metrics for 0/1 labels and predictions, each (1, n) or (n,)."""

import numpy as np


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, int]:
    """True/false positives/negatives as plain ints."""
    t = np.asarray(y_true).ravel().astype(bool)
    p = np.asarray(y_pred).ravel().astype(bool)
    return {
        "tp": int(np.sum(t & p)),
        "fp": int(np.sum(~t & p)),
        "tn": int(np.sum(~t & ~p)),
        "fn": int(np.sum(t & ~p)),
    }


def _ratio(num: int, den: int) -> float:
    # Undefined ratios (no positives predicted / present) are reported as 0.
    return num / den if den else 0.0


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | int]:
    """Accuracy, precision, recall, F1 and the confusion counts."""
    c = confusion_counts(y_true, y_pred)
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    return {
        "accuracy": _ratio(c["tp"] + c["tn"], sum(c.values())),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        **c,
    }
