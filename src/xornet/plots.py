"""Figures of a run (matplotlib, headless Agg backend). The only module that imports matplotlib."""

import csv
import io as _io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xornet.io import write_bytes  # noqa: E402
from xornet.params import Params  # noqa: E402
from xornet.train import History  # noqa: E402

# PNG metadata fixed so identical figures give identical bytes.
PNG_METADATA = {"Software": None}


def read_history(path: Path) -> History:
    """Read the history CSV written by the train stage."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))

    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r[name] else np.nan for r in rows])

    return History(
        col("epoch").astype(np.int64), col("train_loss"), col("val_loss"), col("val_accuracy")
    )


def save_learning_curves(history: History, path: Path, params: Params) -> None:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=params.plot.dpi)
    ax.plot(history.epoch, history.train_loss, label="train loss")
    ax.plot(history.epoch, history.val_loss, label="validation loss")
    ax.axhline(np.log(2), color="grey", linestyle=":", label="ln 2 plateau")
    if params.plot.log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Learning curves")
    ax.legend()
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", metadata=PNG_METADATA)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())
