"""The training animation: the decision view and the loss so far, one frame per weight
snapshot. Matplotlib draws the frames (the figure and its artists are built once; each
frame updates their data and redraws them over a background drawn once: blitting) and
Pillow writes them as a looping GIF on one shared palette."""

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from PIL import Image

from xornet.config.schema import Params
from xornet.core.data import Dataset
from xornet.core.model import MLP
from xornet.core.training import History
from xornet.figures import style
from xornet.figures.decision import PlaneView, decision_view

# P on a grid this fine (at most), interpolated bilinearly to the pixels.
ANIMATION_GRID = 100


def _loss_panel(ax: Axes, history: History, loss: str, log_scale: bool):
    """The whole run's loss faint; the returned line and marker show it up to an epoch."""
    ax.plot(history.epoch, history.train_loss, color="C0", lw=1.2, alpha=0.3, label="whole run")
    level = style.plateau_level(loss)
    ax.axhline(level, **style.LEVEL_STYLE, label=f"{style.plateau_name(loss)}: p = 0.5 plateau")
    (line,) = ax.plot([], [], color="C0", lw=2, label="so far")
    (marker,) = ax.plot([], [], "o", color="C0", markersize=5)
    style.loss_scale(ax, np.append(history.train_loss, level), log_scale)
    last = int(history.epoch[-1]) if len(history) else 1
    ax.set_xlim(-0.02 * last, 1.02 * last)
    ax.set(xlabel="epoch", ylabel=f"{loss} loss" + (" (log)" if log_scale else ""))
    ax.set_title(f"train loss ({loss})", fontsize=9)
    ax.grid(True, alpha=0.3)
    # Placed where the whole run's curve and the plateau line are not ("so far" is
    # still empty here and later only retraces the whole run).
    ax.legend(loc="best", fontsize=7)
    return line, marker


def training_gif(
    models: Sequence[MLP],
    epochs: Sequence[int],
    history: History,
    train: Dataset,
    test: Dataset,
    params: Params,
) -> bytes:
    """One GIF frame per (model, epoch): the decision view and the loss so far."""
    if not models or len(models) != len(epochs):
        raise ValueError("training_gif needs one epoch per model and at least one model")
    p = params.plot
    fig = style.new_figure(8.0, 4.0, p.dpi)
    left = fig.add_axes((0.07, 0.2, 0.36, 0.66))
    resolution = min(p.grid_resolution, ANIMATION_GRID)
    view = decision_view(left, models[0], train, test, resolution, animated=True)
    plane = isinstance(view, PlaneView)
    heading = "P(y = 1 | x) in 10 bands, 0.5 contour" if plane else "P(y = 1) by number of 1-bits"
    left.set_title(heading, fontsize=9)
    right = fig.add_axes((0.55, 0.2, 0.42, 0.66))
    line, marker = _loss_panel(right, history, params.train.loss, p.log_scale)
    last = int(history.epoch[-1]) if len(history) else int(epochs[-1])
    title = fig.text(0.5, 0.955, "", ha="center", va="center", fontsize=12, weight="bold")
    style.add_caption(fig, style.caption(params))
    # The map covers the inner half of the axes' frame: redraw the frame over it.
    changing = [*view.artists(), *(left.spines.values() if plane else ()), line, marker, title]
    for artist in changing:
        artist.set_animated(True)
    canvas = fig.canvas
    canvas.draw()  # everything that does not change, once
    background = canvas.copy_from_bbox(fig.bbox)

    def frame(index: int, palette: Image.Image | None = None) -> Image.Image:
        epoch = int(epochs[index])
        view.update(models[index])
        n = int(np.searchsorted(history.epoch, epoch, side="right"))  # epochs done
        line.set_data(history.epoch[:n], history.train_loss[:n])
        marker.set_data(history.epoch[n - 1 : n], history.train_loss[n - 1 : n])
        title.set_text(f"Training: epoch {epoch} of {last}")
        canvas.restore_region(background)
        for artist in changing:
            fig.draw_artist(artist)
        rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")
        return rgb if palette is None else rgb.quantize(palette=palette, dither=Image.Dither.NONE)

    # One palette for every frame, from the first, middle and last (colours stay put).
    n = len(models)
    samples = np.vstack([frame(i) for i in sorted({0, n // 2, n - 1})])
    palette = Image.fromarray(samples).quantize(255, method=Image.Quantize.MEDIANCUT)
    rest = (frame(i, palette) for i in range(1, n))
    buffer = io.BytesIO()
    gif = dict(save_all=True, append_images=rest, duration=1000 // p.fps, loop=0)
    frame(0, palette).save(buffer, format="GIF", **gif)
    return buffer.getvalue()
