"""The convergence study's figure (matplotlib, headless Agg backend).

Kept apart from ``plots.py`` for now so the two can be edited independently;
it is meant to be merged into ``plots.py``. Identical results give identical
PNG bytes (fixed metadata, deterministic jitter).
"""

import io as _io
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xornet.io import write_bytes  # noqa: E402
from xornet.study import ConfigResult  # noqa: E402

PNG_METADATA = {"Software": None}
LN2 = math.log(2.0)
LOSS_FLOOR = 1e-8  # log-scale axes: losses below this are drawn at it


def _colors(count: int) -> list:
    cmap = plt.get_cmap("tab10" if count <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(count)]


def _plateau_lines(ax, horizontal: bool = True) -> None:
    for value, text in ((LN2, "ln 2"), (LN2 / 2, "ln 2 / 2")):
        ax.axhline(value, color="grey", linestyle=":", linewidth=1)
        ax.annotate(
            text,
            (1.0, value),
            xycoords=("axes fraction", "data"),
            xytext=(2, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
            color="grey",
        )


def save_convergence(
    results: list[ConfigResult], path: Path, caption: str = "", dpi: int = 100
) -> None:
    """Three panels over the configurations of a study, written as PNG to ``path``.

    (a) share of seeds solved (100 % test accuracy) by each epoch;
    (b) training loss per epoch: median over seeds and the 10–90 % band;
    (c) final training loss of every seed, solved seeds as dots, failures as
        crosses, with the solved count above each configuration.
    """
    count = len(results)
    colors = _colors(count)
    fig = plt.figure(figsize=(11, 8.2), dpi=dpi)
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1), left=0.07, right=0.95, top=0.93)
    ax_solved = fig.add_subplot(grid[0, 0])
    ax_loss = fig.add_subplot(grid[0, 1])
    ax_final = fig.add_subplot(grid[1, :])
    max_epochs = max(int(r.result.history_epoch[-1]) for r in results)

    for i, (r, color) in enumerate(zip(results, colors, strict=True)):
        b = r.result
        S = b.seeds.size
        name = f"{i + 1}: {r.label}"
        solved = np.sort(b.solved_epoch[b.success])
        epochs = np.concatenate([[1], solved, [max_epochs]])
        share = np.concatenate([[0], np.arange(1, solved.size + 1), [solved.size]]) / S
        ax_solved.step(epochs, share * 100, where="post", color=color, label=name)

        with np.errstate(all="ignore"):
            loss = np.clip(b.loss_history, LOSS_FLOOR, None)
            keep = np.isfinite(loss).any(axis=1)
            if keep.any():
                low, mid, high = np.nanquantile(loss[keep], [0.1, 0.5, 0.9], axis=1)
                x = b.history_epoch[keep]
                ax_loss.plot(x, mid, color=color, linewidth=1.5)
                ax_loss.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)

        final = np.clip(b.train_loss, LOSS_FLOOR, None)
        jitter = (np.random.default_rng(i).random(S) - 0.5) * 0.5
        ok = b.success & np.isfinite(final)
        failed = ~b.success & np.isfinite(final)
        ax_final.scatter(i + 1 + jitter[ok], final[ok], s=10, color=color, alpha=0.7)
        ax_final.scatter(
            i + 1 + jitter[failed], final[failed], s=18, color=color, marker="x", linewidths=1
        )
        ax_final.annotate(
            f"{int(b.success.sum())}/{S}",
            (i + 1, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )

    ax_solved.set_xscale("log")
    ax_solved.set_xlim(1, max_epochs)
    ax_solved.set_ylim(-2, 102)
    ax_solved.set_xlabel("epoch")
    ax_solved.set_ylabel("seeds solved (%)")
    ax_solved.set_title("(a) Seeds at 100 % test accuracy by epoch", fontsize=10)
    ax_solved.grid(True, alpha=0.3)

    ax_loss.set_xscale("log")
    ax_loss.set_yscale("log")
    ax_loss.set_xlim(1, max_epochs)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("(b) Training loss: median and 10–90 % of seeds", fontsize=10)
    ax_loss.grid(True, alpha=0.3)
    _plateau_lines(ax_loss)

    ax_final.set_yscale("log")
    ax_final.set_xlim(0.4, count + 0.6)
    ax_final.set_xticks(range(1, count + 1))
    ax_final.set_xlabel("configuration")
    ax_final.set_ylabel("final training loss")
    ax_final.set_title(
        "(c) Final training loss per seed (dot: solved, cross: not solved; solved/seeds on top)",
        fontsize=10,
        pad=16,
    )
    ax_final.grid(True, axis="y", alpha=0.3)
    _plateau_lines(ax_final)

    handles, labels = ax_solved.get_legend_handles_labels()
    columns = 1 if count <= 3 else 2 if count <= 8 else 3
    rows = math.ceil(count / columns)
    caption_lines = textwrap.wrap(caption, 170) if caption else []
    bottom = 0.08 + 0.022 * (rows + len(caption_lines))
    grid.update(bottom=bottom + 0.04, hspace=0.45)
    fig.legend(
        handles,
        labels,
        loc="lower left",
        bbox_to_anchor=(0.07, 0.02 + 0.022 * len(caption_lines)),
        ncol=columns,
        fontsize=8,
        frameon=False,
        title="configurations",
        title_fontsize=8,
        alignment="left",
    )
    if caption_lines:
        fig.text(0.07, 0.012, "\n".join(caption_lines), fontsize=7.5, va="bottom", color="0.25")
    fig.suptitle("Convergence study: XOR over model seeds", fontsize=12)

    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", metadata=PNG_METADATA)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())
