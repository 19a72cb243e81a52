"""Classification metrics on known confusion cases."""

import numpy as np
import pytest

from xornet.core.metrics import classification_metrics, confusion_counts


def test_known_confusion():
    y_true = np.array([[1, 1, 1, 0, 0, 0, 0, 1]])
    y_pred = np.array([[1, 1, 0, 0, 0, 1, 0, 1]])
    m = classification_metrics(y_true, y_pred)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 1, 3, 1)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)


def test_asymmetric_case():
    m = classification_metrics([1, 1, 1, 1, 0], [1, 0, 0, 0, 0])
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 0, 1, 3)
    assert m["precision"] == 1.0
    assert m["recall"] == pytest.approx(0.25)
    assert m["f1"] == pytest.approx(2 * 1.0 * 0.25 / 1.25)
    assert m["accuracy"] == pytest.approx(0.4)


def test_perfect_and_all_wrong():
    y = np.array([[0, 1, 1, 0]])
    perfect = classification_metrics(y, y)
    assert perfect["accuracy"] == perfect["precision"] == perfect["recall"] == perfect["f1"] == 1.0
    wrong = classification_metrics(y, 1 - y)
    assert wrong["accuracy"] == wrong["precision"] == wrong["recall"] == wrong["f1"] == 0.0


def test_undefined_ratios_are_zero():
    m = classification_metrics([0, 0, 0], [0, 0, 0])  # no positives at all
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (0, 0, 3, 0)
    assert m["precision"] == m["recall"] == m["f1"] == 0.0
    assert m["accuracy"] == 1.0


def test_types_are_plain_python():
    m = classification_metrics(np.array([[1, 0]]), np.array([[1, 1]]))
    for key in ("tp", "fp", "tn", "fn"):
        assert type(m[key]) is int
    for key in ("accuracy", "precision", "recall", "f1"):
        assert type(m[key]) is float


def test_shapes_1d_and_row_agree():
    a = confusion_counts(np.array([1, 0, 1]), np.array([1, 1, 0]))
    b = confusion_counts(np.array([[1, 0, 1]]), np.array([[1, 1, 0]]))
    assert a == b == {"tp": 1, "fp": 1, "tn": 0, "fn": 1}
