"""The confusion matrix of the test set: counts and each one's share of its actual class."""

import numpy as np

from xornet.config.schema import Params
from xornet.figures import style


def confusion_matrix_png(actual: np.ndarray, predicted: np.ndarray, params: Params) -> bytes:
    """2×2 counts of (actual, predicted) on the test set, each with its share of the
    actual class (row rate: true negative/positive rates on the diagonal)."""
    counts = np.zeros((2, 2), dtype=np.int64)
    np.add.at(counts, (np.ravel(actual).astype(int), np.ravel(predicted).astype(int)), 1)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    n = int(counts.sum())

    fig = style.new_figure(5.6, 5.4, params.plot.dpi)
    ax = fig.add_axes((0.16, 0.2, 0.6, 0.64))
    image = ax.imshow(np.nan_to_num(rates), cmap="Blues", vmin=0.0, vmax=1.0)
    cax = fig.add_axes((0.8, 0.2, 0.035, 0.64))
    fig.colorbar(image, cax=cax, label="share of the actual class")
    for (i, j), count in np.ndenumerate(counts):
        rate = "–" if np.isnan(rates[i, j]) else f"{100 * rates[i, j]:.1f} %"
        kind = ("TN", "FP", "FN", "TP")[2 * i + j]
        color = "white" if rates[i, j] > 0.55 else "black"  # NaN compares False
        text = f"{kind}\n{count}\n{rate}"
        ax.text(j, i, text, ha="center", va="center", fontsize=12, color=color, linespacing=1.4)
    names = ("0 (even)", "1 (odd)") if params.data.kind == "parity" else ("0", "1")
    ax.set_xticks((0, 1), labels=names)
    ax.set_yticks((0, 1), labels=names)
    ax.set(xlabel="predicted class", ylabel="actual class")
    accuracy = f"accuracy {100 * np.trace(counts) / n:.1f} %" if n else "no test predictions"
    ax.set_title(f"Confusion matrix — test set, n = {n}\n{accuracy}", fontsize=11)
    style.add_caption(fig, style.caption(params))
    return style.png_bytes(fig)
