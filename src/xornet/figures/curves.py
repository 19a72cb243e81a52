"""Learning curves: train/validation loss with the p = 0.5 plateau, validation accuracy,
and the train stage's diagnosis (the plateau it found, shaded, and its verdict)."""

import textwrap
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xornet.config.schema import Params
from xornet.core.training import History
from xornet.figures import style


def _markers(history: History) -> dict:
    return {"marker": "o", "markersize": 3} if len(history) <= 30 else {}


def _draw_loss(ax: Axes, history: History, loss: str, log_scale: bool) -> None:
    ax.plot(
        history.epoch, history.train_loss, color="C0", lw=1.6, label="train", **_markers(history)
    )
    if history.has_validation:
        dashed = {"color": "C1", "lw": 1.2, "ls": "--", **_markers(history)}
        ax.plot(history.epoch, history.val_loss, label="validation", **dashed)
    level = style.plateau_level(loss)
    name = "ln 2 ≈ 0.693" if loss == "bce" else f"{level:g}"
    ax.axhline(level, **style.LEVEL_STYLE, label=f"{name}: p = 0.5 everywhere")
    style.loss_scale(ax, np.concatenate([history.train_loss, history.val_loss, [level]]), log_scale)
    ax.set_ylabel(f"mean {loss} loss" + (" (log scale)" if log_scale else ""))


def _mark_diagnosis(fig: Figure, ax: Axes, diagnosis: Mapping[str, Any]) -> None:
    """The verdict under the title; the plateau it found (level ± tolerance) shaded."""
    text = "\n".join(textwrap.wrap(f"Diagnosis: {diagnosis['line']}", 150)[:2])
    color = "C2" if diagnosis["verdict"] == "converged" else "C3"
    fig.text(0.5, 0.935, text, ha="center", va="top", fontsize=8.5, color=color)
    level, tol = (diagnosis["evidence"].get(k) for k in ("plateau_level", "plateau_tol"))
    if isinstance(level, float) and isinstance(tol, float):
        ax.axhspan(level - tol, level + tol, color="C3", alpha=0.15, lw=0, label="plateau found")


def learning_curves_png(
    history: History, params: Params, diagnosis: Mapping[str, Any] | None = None
) -> bytes:
    """Loss (train, validation, plateau) and validation accuracy per epoch, side by side,
    and the train stage's ``diagnosis`` (diagnosis.json) marked (see _mark_diagnosis)."""
    fig = style.new_figure(10.0, 4.4, params.plot.dpi)
    loss_ax = fig.add_axes((0.085, 0.21, 0.385, 0.57))
    acc_ax = fig.add_axes((0.57, 0.21, 0.4, 0.57))
    fig.suptitle("Learning curves", fontsize=13, y=0.975)
    loss_ax.set_title("Loss")
    if len(history) == 0:
        style.note(loss_ax, "no epochs recorded")
    else:
        _draw_loss(loss_ax, history, params.train.loss, params.plot.log_scale)
        if diagnosis is not None:
            _mark_diagnosis(fig, loss_ax, diagnosis)
        loss_ax.legend(loc="best", fontsize=8)
    acc_ax.set_title("Validation accuracy")
    acc_ax.set_ylabel("accuracy (threshold 0.5)")
    acc_ax.set_ylim(-0.03, 1.03)
    if history.has_validation:
        line = {"color": "C2", "lw": 1.6, **_markers(history)}
        acc_ax.plot(history.epoch, history.val_accuracy, label="validation", **line)
        acc_ax.axhline(0.5, **style.LEVEL_STYLE, label="chance (0.5)")
        solved = np.flatnonzero(history.val_accuracy >= 1.0)
        if solved.size:
            epoch = int(history.epoch[solved[0]])
            acc_ax.axvline(epoch, color="C3", ls="--", lw=1, label=f"first 100 %: epoch {epoch}")
        acc_ax.legend(loc="lower right", fontsize=8)
    else:
        style.note(acc_ax, "no validation data in this run")
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.grid(True, which="major", alpha=0.3)
    style.add_caption(fig, style.caption(params))
    return style.png_bytes(fig)
