"""The convergence study's figure: three panels over its configurations
(see :mod:`xornet.study.convergence`)."""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.axes import Axes

from xornet.config.schema import Params
from xornet.figures import style
from xornet.files.atomic import write_bytes

if TYPE_CHECKING:  # xornet.study.convergence pulls in the training code: not needed to draw
    from xornet.study.convergence import ConfigResult

LOSS_FLOOR = 1e-8  # on log axes, losses below this (XOR fitted exactly) are drawn at it


def _levels(ax: Axes) -> None:
    """The two levels where unsolved XOR seeds stall, labelled at the right edge: ln 2
    (nothing fitted, p = 0.5 everywhere) and ln 2 / 2 (two of four patterns fitted)."""
    ln2 = style.plateau_level("bce")
    look = dict(xytext=(3, 0), textcoords="offset points", va="center", fontsize=7, color="0.45")
    for value, text in ((ln2, "ln 2"), (ln2 / 2, "ln 2 / 2")):
        ax.axhline(value, **style.LEVEL_STYLE)
        ax.annotate(text, (1.0, value), xycoords=("axes fraction", "data"), **look)


def study_caption(params: Params) -> str:
    """Seeds per configuration, then the base setting each configuration's overrides change."""
    seeds = params.study.seeds
    if params.study.grid in ({}, []):
        head = f"{seeds} model seeds of this setting:"
    else:
        head = f"{seeds} model seeds per configuration; each configuration changes this base:"
    return f"{head}\n{style.caption(params, model_seeds=seeds)}"


def convergence_png(results: "Sequence[ConfigResult]", params: Params) -> bytes:
    """(a) share of seeds solved (100 % test accuracy) by each epoch; (b) training loss per
    epoch, median over seeds and the 10–90 % band; (c) final training loss of every seed,
    solved as dots, unsolved as crosses: by configuration (seeds spread across its slot
    in seed order), or against the model seed when there is one configuration.
    ``params`` is the study's base (caption, ``plot.dpi``)."""
    if not results:
        raise ValueError("convergence_png needs at least one configuration")
    count = len(results)
    cmap = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    text = study_caption(params)
    # Bottom up, in figure fractions: the caption, the legend of configurations, the panels.
    caption_top = 0.012 + 7 * 1.5 / 72 / 8.2 * (text.count("\n") + 1)
    columns = 1 if count <= 3 else 2 if count <= 8 else 3
    one = count == 1  # then no legend of configurations
    legend_top = caption_top + (0 if one else 0.012 + 0.024 * (math.ceil(count / columns) + 1))
    fig = style.new_figure(11.0, 8.2, params.plot.dpi)
    grid = fig.add_gridspec(2, 2, left=0.07, right=0.94, top=0.9, bottom=legend_top + 0.07)
    grid.update(hspace=0.5)
    ax_solved, ax_loss = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    ax_final = fig.add_subplot(grid[1, :])
    max_epochs = max(int(r.result.history_epoch[-1]) for r in results)

    for i, r in enumerate(results):
        b, color = r.result, cmap(i % cmap.N)
        S = b.seeds.size
        solved = np.sort(b.solved_epoch[b.success])
        epochs = np.concatenate([[1], solved, [max_epochs]])
        share = np.concatenate([[0], np.arange(1, solved.size + 1), [solved.size]]) / S
        name = f"{i + 1}: {r.label}"
        ax_solved.step(epochs, 100 * share, where="post", color=color, lw=1.5, label=name)

        with np.errstate(all="ignore"):
            loss = np.clip(b.loss_history, LOSS_FLOOR, None)
            keep = np.isfinite(loss).any(axis=1)
            if keep.any():
                low, mid, high = np.nanquantile(loss[keep], [0.1, 0.5, 0.9], axis=1)
                x = b.history_epoch[keep]
                ax_loss.plot(x, mid, color=color, lw=1.5)
                ax_loss.fill_between(x, low, high, color=color, alpha=0.15, lw=0)

        final = np.clip(b.train_loss, LOSS_FLOOR, None)
        x = b.seeds if one else i + 1 + 0.7 * ((np.arange(S) + 0.5) / S - 0.5)
        ok, failed = b.success & np.isfinite(final), ~b.success & np.isfinite(final)
        ax_final.scatter(x[ok], final[ok], s=14 if one else 10, color=color, alpha=0.8)
        ax_final.scatter(x[failed], final[failed], s=24, color=color, marker="x", linewidths=1)
        if not one:
            tag = dict(
                xycoords=("data", "axes fraction"), xytext=(0, 3), textcoords="offset points"
            )
            tag |= dict(ha="center", va="bottom", fontsize=8)
            ax_final.annotate(f"{int(b.success.sum())}/{S}", (i + 1, 1.0), **tag)

    for ax in (ax_solved, ax_loss):
        ax.set(xscale="log", xlim=(1, max_epochs), xlabel="epoch")
        ax.grid(True, alpha=0.3)
    ax_solved.set(ylim=(-2, 102), ylabel="seeds solved (%)")
    ax_solved.set_title("(a) Seeds at 100 % test accuracy by epoch", fontsize=10)
    ax_loss.set(yscale="log", ylabel=f"training loss ({params.train.loss})")
    ax_loss.set_title("(b) Training loss: median and 10–90 % of seeds", fontsize=10)
    ax_final.set(yscale="log", ylabel="final training loss")
    if one:
        seeds = results[0].result.seeds
        solved = f"{int(results[0].result.success.sum())}/{seeds.size} solved"
        ax_final.set_xlabel("model seed")
        ax_final.margins(x=0.02)
        title = f"(c) Final training loss of each seed (dot: solved, cross: not solved): {solved}"
    else:
        ax_final.set(xlim=(0.4, count + 0.6), xticks=range(1, count + 1))
        ax_final.set_xlabel("configuration (numbered as in the legend; seeds in order across)")
        title = "(c) Final training loss per seed (dot: solved, cross: not; solved/seeds on top)"
    ax_final.set_title(title, fontsize=10, pad=6 if one else 16)
    ax_final.grid(True, axis="y", alpha=0.3)
    for ax in (ax_loss, ax_final):
        _levels(ax)

    if not one:
        look = dict(
            ncol=columns, fontsize=8, frameon=False, title="configurations", title_fontsize=8
        )
        look |= dict(loc="lower left", bbox_to_anchor=(0.07, caption_top + 0.006), alignment="left")
        fig.legend(*ax_solved.get_legend_handles_labels(), **look)
    fig.suptitle("Convergence study: XOR over model seeds", fontsize=13, y=0.97)
    style.add_caption(fig, text)
    return style.png_bytes(fig)


def save_convergence(results: "Sequence[ConfigResult]", path: Path, params: Params) -> None:
    """Write :func:`convergence_png` to ``path`` atomically."""
    write_bytes(path, convergence_png(results, params))
