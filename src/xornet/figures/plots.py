"""Figures of a run, drawn headless with matplotlib's Agg backend.

This is the only module that imports matplotlib. Each figure function returns
the image's bytes; the pipeline writes them atomically.

- :func:`learning_curves_png` — train/validation loss (with the p = 0.5 plateau
  marked) and validation accuracy per epoch;
- :func:`decision_boundary_png` — P(y = 1 | x) over the input plane with the
  0.5 contour, the data, and each first-layer hidden unit's line
  ``w·x + b = 0``; for more than two inputs (parity), P by number of 1-bits;
- :func:`confusion_matrix_png` — test-set counts and rates;
- :func:`training_gif` — the decision view and the loss curve through
  training, one frame per weight snapshot;
- :func:`convergence_png` / :func:`save_convergence` — the convergence
  study's three panels over its configurations (see :mod:`xornet.study.convergence`).

Figures are :class:`~matplotlib.figure.Figure` objects on an Agg canvas with a
fixed size and layout (no pyplot: no GUI backend, no global state) and are
saved without timestamps or software versions, so the same inputs give the
same bytes.

The plot stage should cost little more than its imports, so the animation
does as little per frame as it can: its artists are created once and only
their data change; the static parts are rendered once and each frame restores
them and redraws only what changes (blitting); the probability map is written
straight into the canvas pixels, the static points on top of it are blended
in from a pre-rendered stamp, and only the epoch number is text. Frames are
mapped onto one palette and streamed into the GIF as changed rectangles.
``bench/bench_plots.py`` measures the stage against ``import matplotlib``.

Arrays follow the library's convention: features are rows, so inputs are
``X`` (n_inputs, n) and labels ``y`` (1, n).
"""

import io as _io
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from contourpy import contour_generator  # matplotlib's own contouring engine
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation
from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation
from PIL import GifImagePlugin, Image

from xornet.config.schema import Params
from xornet.core.data import Dataset
from xornet.core.losses import LOSSES
from xornet.core.model import MLP
from xornet.core.training import History
from xornet.files.atomic import write_bytes

if TYPE_CHECKING:  # xornet.study.convergence pulls in the training code: not needed to draw a run
    from xornet.study.convergence import ConfigResult

Array = np.ndarray

CLASS_COLORS = ("#2166ac", "#b2182b")  # class 0 blue, class 1 red, as in the colour map
CLASS_MARKERS = ("o", "s")
UNIT_LINE_COLOR = "#222222"
CAPTION_COLOR = "0.3"
# Reference levels (the p = 0.5 plateau, chance): dotted grey lines.
LEVEL_STYLE = {"color": "0.45", "ls": ":", "lw": 1.2}
PROBABILITY_CMAP = ListedColormap(
    matplotlib.colormaps["RdBu_r"](np.linspace(0.12, 0.88, 256)), name="xornet_probability"
)
# The animation shows P in 10 bands of flat colour (RGBA, one row per band), which
# keeps the GIF small.
N_BANDS = 10
BAND_COLORS = (
    (PROBABILITY_CMAP((np.arange(N_BANDS) + 0.5) / N_BANDS) * 255).round().astype(np.uint8)
)


# ---------------------------------------------------------------- captions
def caption(params: Params, model_seeds: int = 1) -> str:
    """The run's key hyperparameters in two lines, printed under every figure;
    ``model_seeds`` > 1 gives the range of model seeds (the convergence study's)."""
    d, m, t = params.data, params.model, params.train
    sizes = "-".join(str(s) for s in (d.n_features, *m.hidden, 1))
    optimizer = t.optimizer
    if optimizer == "momentum":
        optimizer += f" {t.momentum:g}"
    elif optimizer == "adam":
        optimizer += f" β=({t.beta1:g}, {t.beta2:g})"
    batch = "full batch" if t.batch_size == 0 else f"batch {t.batch_size}"
    data = d.kind
    if d.kind == "noisy_xor":
        data += f" (noise σ {d.noise:g})"
    elif d.kind == "parity":
        data += f" ({d.n_bits} bits)"
    return (
        f"net {sizes} {m.activation}  ·  init {m.init} ×{m.init_scale:g}  ·  {optimizer} "
        f"lr {t.learning_rate:g}  ·  {t.loss} loss  ·  {t.epochs} epochs, {batch}\n"
        f"data {data}, {d.n_samples} samples, {100 * d.test_fraction:g} % test  ·  "
        f"seeds: data {d.seed}, model {m.seed}"
        + (f"–{m.seed + model_seeds - 1}" if model_seeds > 1 else "")
    )


def plateau_level(loss: str) -> float:
    """The loss of a network that outputs p = 0.5 everywhere (ln 2 for bce, 0.25 for mse):
    where training sits while the weights are near zero."""
    zero = np.zeros((1, 1))
    return LOSSES[loss].total(zero, zero)


# ---------------------------------------------------------------- plumbing
def _figure(width: float, height: float, dpi: int) -> Figure:
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _add_caption(fig: Figure, text: str) -> None:
    fig.text(
        0.5, 0.012, text, ha="center", va="bottom", fontsize=7, color=CAPTION_COLOR, linespacing=1.5
    )


def _png_bytes(fig: Figure) -> bytes:
    """The figure as PNG: RGB (figures are opaque, an alpha channel would only cost), zlib
    level 3 (half the time of the default 6, files no bigger than matplotlib's RGBA ones),
    no text chunks, so nothing but the pixels varies."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    height, width = rgba.shape[:2]
    image = Image.frombytes("RGB", (width, height), rgba, "raw", "RGBX")  # drop alpha
    buffer = _io.BytesIO()
    image.save(buffer, format="png", compress_level=3, dpi=(fig.dpi, fig.dpi))
    return buffer.getvalue()


def _title(ax: Axes, text: str, **kwargs) -> None:
    """An axes title at the usual place. Given explicitly, ``y`` spares matplotlib
    measuring every tick label to check the title clears them (our axes have no
    ticks on top), a costly search done at each draw."""
    ax.set_title(text, y=1.0, **kwargs)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


class _LogLabels(LogFormatterSciNotation):
    """matplotlib's log-axis tick labels (10⁻², 2×10⁻³) as plain text instead of
    mathtext: the same look, without the mathtext parser's ~50 ms set-up per process
    and its extra layout cost per label."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        label = super().__call__(x, pos)
        math = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
        if math is None:
            return label
        text = math.group(1).replace(r"\times", "×")
        return re.sub(r"\^\{(-?\d+)\}", lambda m: m.group(1).translate(_SUPERSCRIPT), text)


def _log_scale(ax: Axes, which: str) -> None:
    """Log scale on the ``which`` ("x" or "y") axis of ``ax``, labelled by
    :class:`_LogLabels` (set after the scale, which brings its own formatters)."""
    if which == "x":
        ax.set_xscale("log")
        axis = ax.xaxis
    else:
        ax.set_yscale("log")
        axis = ax.yaxis
    axis.set_major_formatter(_LogLabels())
    axis.set_minor_formatter(_LogLabels(labelOnlyBase=False))


def _note(ax: Axes, text: str) -> None:
    """A message in the middle of an axes that has nothing to show."""
    ax.text(
        0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.35", wrap=True
    )


def _unique_points(X: Array, y: Array) -> tuple[Array, Array]:
    """Distinct (x, label) columns of X (features, n), y (1, n); drawing 800 copies of
    XOR's four corners would only cost time."""
    stacked = np.unique(np.vstack([X, y.reshape(1, -1)]), axis=1)
    return stacked[:-1], stacked[-1].astype(np.int64)


def _n_distinct(*datasets: Dataset) -> int:
    return int(np.unique(np.hstack([d.X for d in datasets]), axis=1).shape[1])


# Above this many distinct inputs, points are drawn smaller and thinner.
DENSE_POINTS = 40


def _point_style(label: int, filled: bool, dense: bool, scale: float) -> dict:
    """Scatter style: train points filled in their class colour, test points as black
    rings (bigger, so a test ring shows around a train point at the same input)."""
    size = (12 if dense else 30) if filled else (30 if dense else 90)
    style = {"marker": CLASS_MARKERS[label], "s": size * scale}
    if filled:
        return {
            **style,
            "c": CLASS_COLORS[label],
            "edgecolors": "white",
            "linewidths": 0.3 if dense else 0.8,
        }
    return {
        **style,
        "facecolors": "none",
        "edgecolors": "black",
        "linewidths": 0.6 if dense else 1.1,
    }


def _data_handles() -> list[Line2D]:
    """Legend entries for the train and test points of both classes."""
    filled = [
        Line2D(
            [],
            [],
            ls="",
            marker=CLASS_MARKERS[c],
            color=CLASS_COLORS[c],
            markeredgecolor="white",
            markersize=7,
            label=f"train, class {c}",
        )
        for c in (0, 1)
    ]
    rings = [
        Line2D(
            [],
            [],
            ls="",
            marker=CLASS_MARKERS[c],
            markerfacecolor="none",
            markeredgecolor="black",
            markersize=9,
            label=f"test, class {c}",
        )
        for c in (0, 1)
    ]
    return [*filled, *rings]


def _loss_scale(ax: Axes, values: Array, log_scale: bool) -> None:
    """Log y axis if asked; within less than a decade (a run stuck on the plateau) tick
    labels are plain numbers, not matplotlib's 6.93×10⁻¹ minor-tick labels."""
    if not log_scale:
        return
    _log_scale(ax, "y")
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size and positive.max() < 10 * positive.min():
        plain = FuncFormatter(lambda v, _: f"{v:.4g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)


def _is_binary(*arrays: Array) -> bool:
    return all(np.all((a == 0) | (a == 1)) for a in arrays)


# --------------------------------------------------------- learning curves
def _draw_loss(ax: Axes, history: History, loss: str, log_scale: bool) -> None:
    """Train and validation loss per epoch with the p = 0.5 plateau level."""
    style = {"marker": "o", "markersize": 3} if len(history) <= 30 else {}
    ax.plot(history.epoch, history.train_loss, color="C0", lw=1.6, label="train", **style)
    if history.has_validation:
        ax.plot(
            history.epoch,
            history.val_loss,
            color="C1",
            lw=1.2,
            ls="--",
            label="validation",
            **style,
        )
    level = plateau_level(loss)
    name = "ln 2 ≈ 0.693" if loss == "bce" else f"{level:g}"
    ax.axhline(level, **LEVEL_STYLE, label=f"{name}: p = 0.5 everywhere")
    _loss_scale(ax, np.concatenate([history.train_loss, history.val_loss, [level]]), log_scale)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"mean {loss} loss" + (" (log scale)" if log_scale else ""))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)


def learning_curves_png(history: History, params: Params) -> bytes:
    """Loss (train, validation, plateau) and validation accuracy per epoch, side by side."""
    fig = _figure(10.0, 4.4, params.plot.dpi)
    loss_ax = fig.add_axes((0.085, 0.21, 0.385, 0.66))
    acc_ax = fig.add_axes((0.57, 0.21, 0.4, 0.66))
    fig.suptitle("Learning curves", fontsize=13, y=0.97)
    if len(history) == 0:
        _note(loss_ax, "no epochs recorded")
    else:
        _draw_loss(loss_ax, history, params.train.loss, params.plot.log_scale)
    _title(loss_ax, "Loss")

    _title(acc_ax, "Validation accuracy")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy (threshold 0.5)")
    acc_ax.set_ylim(-0.03, 1.03)
    acc_ax.grid(True, alpha=0.3)
    if history.has_validation:
        style = {"marker": "o", "markersize": 3} if len(history) <= 30 else {}
        acc_ax.plot(
            history.epoch, history.val_accuracy, color="C2", lw=1.6, label="validation", **style
        )
        acc_ax.axhline(0.5, **LEVEL_STYLE, label="chance (0.5)")
        solved = np.flatnonzero(history.val_accuracy >= 1.0)
        if solved.size:
            epoch = int(history.epoch[solved[0]])
            acc_ax.axvline(epoch, color="C3", ls="--", lw=1, label=f"first 100 %: epoch {epoch}")
        acc_ax.legend(loc="lower right", fontsize=8)
    else:
        _note(acc_ax, "no validation data in this run")
    _add_caption(fig, caption(params))
    return _png_bytes(fig)


# -------------------------------------------------------- decision views
def plane_box(*datasets: Dataset) -> tuple[float, float]:
    """A square view ``(lo, hi)`` of the input plane holding every point with a margin."""
    values = np.concatenate([d.X.ravel() for d in datasets])
    lo, hi = float(values.min()), float(values.max())
    pad = 0.15 * (hi - lo) + 0.25
    return lo - pad, hi + pad


def unit_segment(w: Array, b: float, box: tuple[float, float]) -> tuple[Array, Array] | None:
    """The part of the line ``w[0] x + w[1] y + b = 0`` inside the square ``box``,
    as ``(xs, ys)`` end points, or None when it misses the box (or w is zero)."""
    norm2 = float(w @ w)
    if norm2 < 1e-24:
        return None
    lo, hi = box
    point = -b * w / norm2
    direction = np.array([-w[1], w[0]]) / np.sqrt(norm2)
    t_lo, t_hi = -np.inf, np.inf
    for axis in range(2):
        if abs(direction[axis]) < 1e-12:
            if not lo <= point[axis] <= hi:
                return None
            continue
        a = (lo - point[axis]) / direction[axis]
        c = (hi - point[axis]) / direction[axis]
        t_lo, t_hi = max(t_lo, min(a, c)), min(t_hi, max(a, c))
    if not t_lo < t_hi:
        return None
    ends = point[:, None] + direction[:, None] * np.array([t_lo, t_hi])
    return ends[0], ends[1]


class PlaneView:
    """P(y = 1 | x) over the input plane of a 2-input network, with its 0.5 contour,
    the data points and every first-layer unit's line ``w·x + b = 0``.

    P is evaluated on a ``resolution`` × ``resolution`` grid. A static view shows it as
    an image (bilinear, continuous colours); a ``banded`` view (the animation) has no
    image artist: :meth:`paint` interpolates P to every pixel of the axes and writes
    its 10 band colours straight into the canvas, where an image would be resampled
    through matplotlib's colour pipeline for each frame.

    Artists are created once; :meth:`update` draws another model into them.
    """

    def __init__(
        self,
        ax: Axes,
        train: Dataset,
        test: Dataset,
        n_units: int,
        resolution: int,
        banded: bool = False,
        marker_scale: float = 1.0,
        unit_labels: bool = True,
    ) -> None:
        self.ax = ax
        self.box = plane_box(train, test)
        lo, hi = self.box
        axis = np.linspace(lo, hi, resolution)
        gx, gy = np.meshgrid(axis, axis)
        self.grid_axis = axis
        self.grid = np.vstack([gx.ravel(), gy.ravel()])  # (2, resolution**2)
        self.resolution = resolution
        self.P = np.full((resolution, resolution), 0.5)  # rows: x2, columns: x1
        self.image = None
        self._pixels: _PixelGrid | None = None
        if banded:
            ax.set_aspect("equal")
        else:
            self.image = ax.imshow(
                self.P,
                extent=(lo, hi, lo, hi),
                origin="lower",
                cmap=PROBABILITY_CMAP,
                vmin=0.0,
                vmax=1.0,
                interpolation="bilinear",
                aspect="equal",
            )
        # The 0.5 contour as one LineCollection whose segments each model replaces.
        self.contour = LineCollection([], colors="black", linewidths=2.0, zorder=2)
        ax.add_collection(self.contour, autolim=False)
        self.unit_lines = LineCollection(
            [], colors=UNIT_LINE_COLOR, linestyles="--", linewidths=1.0, alpha=0.85, zorder=2
        )
        ax.add_collection(self.unit_lines, autolim=False)
        self.n_units = n_units
        self.unit_labels = [
            ax.text(
                0,
                0,
                f"h{j + 1}",
                fontsize=7,
                color=UNIT_LINE_COLOR,
                ha="center",
                va="center",
                visible=False,
                zorder=4,  # above the points
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75},
            )
            for j in range(n_units if unit_labels else 0)
        ]
        self.points = []
        dense = _n_distinct(train, test) > DENSE_POINTS
        for data, filled in ((train, True), (test, False)):
            X, y = _unique_points(data.X, data.y)
            for label in (0, 1):
                mask = y == label
                self.points.append(
                    ax.scatter(
                        X[0, mask],
                        X[1, mask],
                        zorder=3,
                        **_point_style(label, filled, dense, marker_scale),
                    )
                )
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("x₁ (input 1)")
        ax.set_ylabel("x₂ (input 2)")

    def update(self, model: MLP) -> None:
        """Show ``model``: probability map, 0.5 contour and first-layer unit lines."""
        self.P = model.predict_proba(self.grid).reshape(self.resolution, self.resolution)
        if self.image is not None:
            self.image.set_data(self.P)
        self.contour.set_segments(
            contour_generator(self.grid_axis, self.grid_axis, self.P).lines(0.5)
        )
        W1, b1 = model.params["W1"], model.params["b1"]
        segments = []
        for j in range(self.n_units):
            label = self.unit_labels[j] if self.unit_labels else None
            segment = unit_segment(W1[j].astype(np.float64), float(b1[j, 0]), self.box)
            if segment is None:
                if label is not None:
                    label.set_visible(False)
                continue
            xs, ys = segment
            segments.append(np.column_stack([xs, ys]))
            if label is None:
                continue
            # Label near one end, staggered by unit so crossing lines' labels part.
            t = 0.1 + 0.08 * (j % 4)
            label.set_position((xs[0] + t * (xs[1] - xs[0]), ys[0] + t * (ys[1] - ys[0])))
            label.set_visible(True)
        self.unit_lines.set_segments(segments)

    def paint(self, canvas: FigureCanvasAgg) -> None:
        """Write the current P's band colours into every canvas pixel of the axes (banded
        views; call once the layout is final, i.e. after a first ``canvas.draw()``)."""
        pixels = np.asarray(canvas.buffer_rgba())
        if self._pixels is None:
            self._pixels = _PixelGrid(self.ax, self.box, self.resolution, pixels.shape[0])
        self._pixels.paint(pixels, self.P)

    def artists(self) -> list:
        """What changes between models, in drawing order (the points sit on the map)."""
        image = [] if self.image is None else [self.image]
        return [*image, self.contour, self.unit_lines, *self.unit_labels, *self.points]

    def legend_handles(self, hidden: Sequence[int]) -> list[Line2D]:
        layer = "" if len(hidden) == 1 else " of layer 1"
        return [
            *_data_handles(),
            Line2D([], [], color="black", lw=2, label="P = 0.5 (decision boundary)"),
            Line2D(
                [],
                [],
                color=UNIT_LINE_COLOR,
                ls="--",
                lw=1,
                label=f"hidden unit h{layer}: w·x + b = 0",
            ),
        ]


def _bit_count_positions(train: Dataset, test: Dataset, binary: bool) -> dict[tuple, float]:
    """Horizontal position of every distinct input (a column of X): its number of 1-bits
    (its sum, if not binary), spread evenly within that count. The same input gets the
    same place in train and test, so a test ring sits around its train dot."""
    patterns = np.unique(np.hstack([train.X, test.X]), axis=1)
    counts = patterns.sum(axis=0)
    position = counts.astype(np.float64)
    if binary:
        for count in np.unique(counts):
            members = np.flatnonzero(counts == count)
            if len(members) > 1:
                position[members] += ((np.arange(len(members)) + 0.5) / len(members) - 0.5) * 0.7
    else:  # deterministic spread (golden-ratio sequence)
        position += ((np.arange(1, len(counts) + 1) * 0.6180339887498949) % 1.0 - 0.5) * 0.5
    return {tuple(col): float(x) for col, x in zip(patterns.T, position, strict=True)}


class BitCountView:
    """For more than two inputs: P(y = 1 | x) of every distinct sample against its
    number of 1-bits (its sum, for non-binary inputs). Parity is odd counts, so a
    network that learnt it puts those above 0.5 and even counts below.

    Artists are created once; :meth:`update` draws another model into them.
    """

    def __init__(
        self,
        ax: Axes,
        train: Dataset,
        test: Dataset,
        marker_scale: float = 1.0,
        short: bool = False,
    ):
        self.ax = ax
        self.sets = []
        binary = _is_binary(train.X, test.X)
        position = _bit_count_positions(train, test, binary)
        dense = _n_distinct(train, test) > DENSE_POINTS
        self.points = []
        top = 0.0
        for data, filled in ((train, True), (test, False)):
            X, y = _unique_points(data.X, data.y)
            top = max(top, float(X.sum(axis=0).max()))
            for label in (0, 1):
                Xc = X[:, y == label]
                x = np.array([position[tuple(col)] for col in Xc.T])
                artist = ax.scatter(
                    x,
                    np.full(x.shape, 0.5),
                    zorder=3,
                    **_point_style(label, filled, dense, marker_scale),
                )
                self.points.append(artist)
                self.sets.append((Xc, x))
        if binary:
            for count in range(int(top) + 1):
                ax.axvspan(
                    count - 0.5, count + 0.5, color=CLASS_COLORS[count % 2], alpha=0.08, lw=0
                )
            ax.set_xticks(range(int(top) + 1))
            ax.set_xlabel(
                "number of 1-bits"
                if short
                else "number of 1-bits in the input (background: parity)"
            )
        else:
            ax.set_xlabel("sum of the inputs")
        ax.axhline(0.5, color="black", lw=1.5)
        ax.set_xlim(-0.6, top + 0.6)
        ax.set_ylim(-0.04, 1.04)
        ax.set_ylabel("P(y = 1 | x)")
        ax.grid(True, axis="y", alpha=0.3)

    def update(self, model: MLP) -> None:
        for artist, (X, x) in zip(self.points, self.sets, strict=True):
            if X.shape[1]:
                artist.set_offsets(np.column_stack([x, model.predict_proba(X).ravel()]))

    def artists(self) -> list:
        return list(self.points)

    def legend_handles(self, hidden: Sequence[int]) -> list[Line2D]:
        return [*_data_handles(), Line2D([], [], color="black", lw=1.5, label="P = 0.5")]


def _decision_view(
    ax: Axes, model: MLP, train: Dataset, test: Dataset, resolution: int, animated: bool = False
) -> PlaneView | BitCountView:
    """The plane for 2 inputs, else P by bit count; ``animated`` makes it GIF-sized
    (banded colours, smaller markers, no unit labels)."""
    marker_scale = 0.6 if animated else 1.0
    if model.arch.n_inputs == 2:
        return PlaneView(
            ax,
            train,
            test,
            model.arch.hidden[0],
            resolution,
            banded=animated,
            marker_scale=marker_scale,
            unit_labels=not animated,
        )
    return BitCountView(ax, train, test, marker_scale, short=animated)


def decision_boundary_png(
    model: MLP, train: Dataset, test: Dataset, params: Params, epoch: int | None = None
) -> bytes:
    """The decision view of ``model`` (see :class:`PlaneView`, :class:`BitCountView`)."""
    fig = _figure(6.4, 6.6, params.plot.dpi)
    plane = model.arch.n_inputs == 2
    ax = fig.add_axes((0.11, 0.25, 0.68, 0.66) if plane else (0.11, 0.25, 0.84, 0.66))
    view = _decision_view(ax, model, train, test, params.plot.grid_resolution)
    view.update(model)
    after = "" if epoch is None else f" after {epoch} epochs"
    if plane:
        _title(ax, f"Decision boundary{after}", fontsize=12)
        cax = fig.add_axes((0.83, 0.25, 0.03, 0.66))
        fig.colorbar(view.image, cax=cax, label="P(y = 1 | x)")
        note = "Each dashed line is one hidden unit's boundary; the output combines them."
    else:
        _title(
            ax,
            f"{model.arch.n_inputs}-bit inputs: P(y = 1) by number of 1-bits{after}",
            fontsize=11,
        )
        note = (
            f"{model.arch.n_inputs} inputs do not fit a plane: each distinct sample is one "
            "point, spread sideways."
        )
    fig.legend(
        handles=view.legend_handles(model.arch.hidden),
        loc="lower center",
        bbox_to_anchor=(0.5, 0.085),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    fig.text(0.5, 0.062, note, ha="center", va="bottom", fontsize=7.5, color="0.2")
    _add_caption(fig, caption(params))
    return _png_bytes(fig)


# --------------------------------------------------------- confusion matrix
def confusion_matrix_png(actual: Array, predicted: Array, params: Params) -> bytes:
    """2×2 counts of (actual, predicted) on the test set, each with its share of the
    actual class (row rate: true negative/positive rates on the diagonal)."""
    actual = np.asarray(actual).ravel().astype(np.int64)
    predicted = np.asarray(predicted).ravel().astype(np.int64)
    counts = np.zeros((2, 2), dtype=np.int64)
    np.add.at(counts, (actual, predicted), 1)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    n = int(counts.sum())
    accuracy = np.trace(counts) / n if n else float("nan")

    fig = _figure(5.6, 5.4, params.plot.dpi)
    ax = fig.add_axes((0.16, 0.2, 0.6, 0.64))
    cax = fig.add_axes((0.8, 0.2, 0.035, 0.64))
    image = ax.imshow(np.nan_to_num(rates), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, cax=cax, label="share of the actual class")
    names = ("0 (even)", "1 (odd)") if params.data.kind == "parity" else ("0", "1")
    for i in range(2):
        for j in range(2):
            rate = "–" if np.isnan(rates[i, j]) else f"{100 * rates[i, j]:.1f} %"
            kind = ("TN", "FP", "FN", "TP")[2 * i + j]
            dark = not np.isnan(rates[i, j]) and rates[i, j] > 0.55
            ax.text(
                j,
                i,
                f"{kind}\n{counts[i, j]}\n{rate}",
                ha="center",
                va="center",
                fontsize=12,
                color="white" if dark else "black",
                linespacing=1.4,
            )
    ax.set_xticks((0, 1), labels=names)
    ax.set_yticks((0, 1), labels=names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("actual class")
    title = f"Confusion matrix — test set, n = {n}"
    subtitle = f"accuracy {100 * accuracy:.1f} %" if n else "no test predictions"
    _title(ax, f"{title}\n{subtitle}", fontsize=11)
    _add_caption(fig, caption(params))
    return _png_bytes(fig)


# -------------------------------------------------------------- animation
# Animation frames evaluate P every few pixels and interpolate bilinearly in between. P is
# smooth: 3 pixels apart it is off by < 0.01 (a tenth of a band) even late in training.
PIXELS_PER_GRID_STEP = 3


def _bilinear(values: Array, lo: float, hi: float, n: int) -> tuple[Array, Array]:
    """For positions ``values`` on the grid ``np.linspace(lo, hi, n)``: the index of the
    grid point at or below each (at most n - 2) and the weight of the one above."""
    position = np.clip((values - lo) / (hi - lo) * (n - 1), 0, n - 1)
    below = np.minimum(position.astype(np.intp), n - 2)
    return below, position - below


# The band colours as one 32-bit word per pixel (the canvas is RGBA, 8 bits each), by
# floor(10 P); P = 1 exactly gives 10, coloured as band 9.
BAND_WORDS = np.append(BAND_COLORS.view(np.uint32).ravel(), BAND_COLORS.view(np.uint32)[-1])


class _PixelGrid:
    """The pixels of a plane view's axes (those with their centre inside its box) and
    where they fall on the grid of P, to interpolate P bilinearly at every pixel.
    Built once the layout is final. (Gathers, no matrix products: BLAS threads cost
    more than they give on arrays this small.)"""

    def __init__(self, ax: Axes, box: tuple[float, float], n: int, canvas_height: int):
        bbox = ax.bbox  # in display pixels, origin at the bottom left
        lo, hi = box
        c0, c1 = math.ceil(bbox.x0 - 0.5), math.floor(bbox.x1 - 0.5) + 1
        r0 = math.ceil(canvas_height - bbox.y1 - 0.5)  # buffer rows run top down
        r1 = math.floor(canvas_height - bbox.y0 - 0.5) + 1
        self.window = (slice(r0, r1), slice(c0, c1), 0)
        x = lo + (np.arange(c0, c1) + 0.5 - bbox.x0) / bbox.width * (hi - lo)
        y = lo + (canvas_height - np.arange(r0, r1) - 0.5 - bbox.y0) / bbox.height * (hi - lo)
        self.ix, wx = _bilinear(x, lo, hi, n)
        self.iy, wy = _bilinear(y, lo, hi, n)
        self.wx, self.wy = wx.astype(np.float32), wy.astype(np.float32)[:, None]

    def paint(self, pixels: Array, P: Array) -> None:
        """Band colours of P (n, n; rows x2, columns x1) into ``pixels`` (H, W, 4) uint8."""
        scaled = (N_BANDS * P).astype(np.float32)
        below = scaled[self.iy]
        rows = below + (scaled[self.iy + 1] - below) * self.wy  # (pixel rows, n)
        values = np.take(rows, self.ix, axis=1)  # 10 P at every pixel
        values += np.take(np.diff(rows, axis=1), self.ix, axis=1) * self.wx
        pixels.view(np.uint32)[self.window] = BAND_WORDS[values.astype(np.uint8)]


class _GifWriter:
    """A looping GIF, encoded frame by frame on one shared palette.

    The palette, at most 255 colours by median cut over a few sample frames, is fixed
    up front: mapping pixels onto it is far cheaper than quantizing each frame. Each
    frame after the first maps and stores only the rectangle that changed, with the
    unchanged pixels in it set to the free 256th index, declared transparent: the
    previous frame shows through, and Pillow's LZW coder sees long runs. Frames are
    encoded as they come, so memory does not grow with their number.
    """

    TRANSPARENT = 255

    def __init__(self, samples: Sequence[Array], fps: int) -> None:
        # Every other row and column: the same colours in about the same proportions,
        # at a quarter of the median cut's cost.
        mosaic = Image.fromarray(np.concatenate([s[::2, ::2, :3] for s in samples]))
        self.palette = mosaic.quantize(self.TRANSPARENT, method=Image.Quantize.MEDIANCUT)
        self.duration = int(1000 / fps)
        self.chunks: list[bytes] = []
        self.previous: Array | None = None  # the last frame's pixels (H, W) uint32
        self.index = np.zeros((0, 0), np.uint8)  # and their palette indices

    def add(self, rgba: Array) -> None:
        """Append a frame from an (H, W, 4) RGBA array (the canvas buffer)."""
        height, width = rgba.shape[:2]
        pixels = rgba.view(np.uint32)[..., 0]  # one word per pixel, to compare frames
        if self.previous is None:
            self.chunks.append(self._header(width, height))
            self.index = self._indices(rgba)
            self._frame(self.index, 0, 0)
        else:
            changed = pixels != self.previous
            rows, columns = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(0))
            if rows.size == 0:  # nothing changed: one transparent pixel keeps the frame
                self._frame(np.full((1, 1), self.TRANSPARENT, np.uint8), 0, 0)
            else:  # map and store only the rectangle that changed
                window = np.s_[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
                index = self._indices(np.ascontiguousarray(rgba[window]))
                same = index == self.index[window]
                self.index[window] = index
                index[same] = self.TRANSPARENT
                self._frame(index, int(columns[0]), int(rows[0]))
        self.previous = pixels.copy()

    def _indices(self, rgba: Array) -> Array:
        """Palette indices (H, W) uint8 of an RGBA array, all below TRANSPARENT."""
        height, width = rgba.shape[:2]
        image = Image.frombytes("RGB", (width, height), rgba, "raw", "RGBX")  # drop alpha
        return np.array(image.quantize(palette=self.palette, dither=Image.Dither.NONE))

    def _header(self, width: int, height: int) -> bytes:
        colors = bytes(self.palette.getpalette("RGB")[: 3 * self.TRANSPARENT])
        return (
            b"GIF89a"
            + struct.pack("<HHBBB", width, height, 0xF7, 0, 0)  # 256-entry global palette
            + colors.ljust(3 * 256, b"\0")
            + b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
        )

    def _frame(self, index: Array, x: int, y: int) -> None:
        # getdata: Pillow's public helper for one frame's control block, descriptor
        # and LZW data.
        self.chunks += GifImagePlugin.getdata(
            Image.fromarray(index),
            offset=(x, y),
            duration=self.duration,
            transparency=self.TRANSPARENT,
            disposal=1,  # keep the frame: the next one draws over it
        )

    def gif(self) -> bytes:
        return b"".join(self.chunks) + b";"


class _Stamp:
    """Static artists that sit on top of changing ones (the plane's data points and
    frame), rendered once onto a transparent canvas and alpha-blended onto each frame
    with NumPy: far cheaper than drawing them through matplotlib every frame. Call it
    after the static draw: it leaves the canvas cleared (restore the background)."""

    def __init__(self, fig: Figure, artists: Sequence) -> None:
        rgba = np.zeros((0, 4), np.uint8)
        if artists:
            fig.canvas.get_renderer().clear()  # transparent
            for artist in artists:
                fig.draw_artist(artist)
            rgba = np.asarray(fig.canvas.buffer_rgba()).reshape(-1, 4)
        self.where = np.flatnonzero(rgba[:, 3])
        self.color = rgba[self.where, :3].astype(np.uint32)
        self.alpha = rgba[self.where, 3:].astype(np.uint32)

    def paint(self, pixels: Array) -> None:
        """Blend onto ``pixels`` (H, W, 4), as Agg would draw the artists there."""
        flat = pixels.reshape(-1, 4)
        under = flat[self.where, :3]
        flat[self.where, :3] = (self.color * self.alpha + under * (255 - self.alpha) + 127) // 255


@dataclass
class _LossProgress:
    """The right panel of the animation: the whole loss curve faint, the part up to
    the frame's epoch bold, and a marker at that epoch."""

    ax: Axes
    history: History
    line: Line2D
    marker: Line2D
    cursor: Line2D

    @classmethod
    def create(cls, ax: Axes, history: History, loss: str, log_scale: bool) -> "_LossProgress":
        ax.plot(history.epoch, history.train_loss, color="C0", lw=1.2, alpha=0.3, label="whole run")
        ax.axhline(
            plateau_level(loss),
            **LEVEL_STYLE,
            label="ln 2: p = 0.5 plateau" if loss == "bce" else "p = 0.5 plateau",
        )
        (line,) = ax.plot([], [], color="C0", lw=2, label="so far", animated=True)
        (marker,) = ax.plot([], [], "o", color="C0", markersize=5, animated=True)
        cursor = ax.axvline(0, color="0.5", lw=0.8, animated=True)
        _loss_scale(ax, np.append(history.train_loss, plateau_level(loss)), log_scale)
        last = int(history.epoch[-1]) if len(history) else 1
        ax.set_xlim(-0.02 * last, 1.02 * last)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{loss} loss" + (" (log)" if log_scale else ""))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=7)
        return cls(ax, history, line, marker, cursor)

    def update(self, epoch: int) -> None:
        """Show training up to ``epoch`` (0: before training, nothing drawn yet)."""
        n = int(np.searchsorted(self.history.epoch, epoch, side="right"))
        self.line.set_data(self.history.epoch[:n], self.history.train_loss[:n])
        self.cursor.set_xdata([epoch, epoch])
        if n == 0:
            self.marker.set_data([], [])
        else:
            self.marker.set_data([self.history.epoch[n - 1]], [self.history.train_loss[n - 1]])

    def artists(self) -> list:
        return [self.line, self.cursor, self.marker]


def _epoch_header(fig: Figure, last: int, digits: int) -> Annotation:
    """The animation's header, "Training  epoch ___ of <last>", drawn once but for the
    epoch number: that is right-aligned in a slot ``digits`` digits wide (digits are all
    as wide as each other), so a frame lays out and draws only those few glyphs; text is
    the costliest thing a frame draws. Returns the number's artist."""
    size = 12
    space = 0.32 * size  # a space, in points
    fig.text(0.5, 0.955, "Training", ha="right", va="center", fontsize=size, weight="bold")
    word = fig.text(0.51, 0.955, "epoch", ha="left", va="center", fontsize=size)
    after = {"textcoords": "offset points", "xytext": (space, 0), "ha": "left", "va": "center"}
    slot = Annotation("0" * digits, (1, 0.5), xycoords=word, fontsize=size, color="none", **after)
    fig.add_artist(slot)
    fig.add_artist(Annotation(f"of {last}", (1, 0.5), xycoords=slot, fontsize=size, **after))
    number = Annotation(
        "", (1, 0.5), xycoords=slot, ha="right", va="center", fontsize=size, parse_math=False
    )
    number.set_animated(True)
    fig.add_artist(number)
    return number


def training_gif(
    models: Sequence[MLP],
    epochs: Sequence[int],
    history: History,
    train: Dataset,
    test: Dataset,
    params: Params,
) -> bytes:
    """One GIF frame per (model, epoch): the decision view and the loss so far.

    The figure and its artists are built and the static parts drawn once; each
    frame updates the artists' data, restores the static background and redraws
    only what changes over it (blitting). The probability map is painted straight
    into the canvas pixels (:meth:`PlaneView.paint`).
    """
    if not models or len(models) != len(epochs):
        raise ValueError("training_gif needs one epoch per model and at least one model")
    p = params.plot
    fig = _figure(8.0, 4.0, p.dpi)
    left_box = (0.07, 0.2, 0.36, 0.66)
    left = fig.add_axes(left_box)
    # P on a grid a few pixels apart, interpolated to every pixel; 10 flat colour bands
    # keep the GIF small.
    pixels = min(left_box[2] * 8.0, left_box[3] * 4.0) * p.dpi
    resolution = max(10, min(p.grid_resolution, math.ceil(pixels / PIXELS_PER_GRID_STEP) + 1))
    right = fig.add_axes((0.55, 0.2, 0.42, 0.66))
    view = _decision_view(left, models[0], train, test, resolution, animated=True)
    if isinstance(view, PlaneView):
        _title(left, "P(y = 1 | x) in 10 bands, 0.5 contour", fontsize=9)
    else:
        _title(left, "P(y = 1) by number of 1-bits", fontsize=9)
    progress = _LossProgress.create(right, history, params.train.loss, p.log_scale)
    _title(right, f"train loss ({params.train.loss})", fontsize=9)
    last = int(history.epoch[-1]) if len(history) else int(epochs[-1])
    number = _epoch_header(fig, last, len(str(max(last, *epochs))))
    _add_caption(fig, caption(params))
    # On the plane only the map, contour and unit lines change: the points and the
    # axes frame on top of them are stamped on each frame (see _Stamp).
    on_top = [*view.points, *left.spines.values()] if isinstance(view, PlaneView) else []
    for artist in [*view.artists(), *on_top]:
        artist.set_animated(True)
    canvas = fig.canvas
    canvas.draw()  # everything static, once
    background = canvas.copy_from_bbox(fig.bbox)
    stamp = _Stamp(fig, on_top)
    changing = [a for a in view.artists() if a not in on_top]
    changing += [*progress.artists(), number, *([] if on_top else left.spines.values())]

    def render(index: int) -> Array:
        view.update(models[index])
        progress.update(int(epochs[index]))
        number.set_text(str(int(epochs[index])))
        canvas.restore_region(background)
        if isinstance(view, PlaneView):
            view.paint(canvas)
        for artist in changing:
            fig.draw_artist(artist)
        pixels = np.asarray(canvas.buffer_rgba())
        stamp.paint(pixels)
        return pixels

    n = len(models)
    samples = {i: render(i).copy() for i in sorted({0, n // 2, n - 1})}  # for the palette
    gif = _GifWriter(list(samples.values()), p.fps)
    for i in range(n):
        gif.add(samples[i] if i in samples else render(i))
    return gif.gif()


# ------------------------------------------------------- convergence study
# Log-scale loss axes: losses below this (a seed that fitted XOR exactly) are drawn at it.
LOSS_FLOOR = 1e-8


def _series_colors(count: int) -> list[tuple[float, float, float, float]]:
    """One colour per configuration: matplotlib's tab10 (C0, C1, ...), tab20 beyond 10."""
    cmap = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def _study_levels(ax: Axes) -> None:
    """The two levels where unsolved XOR seeds stall, labelled at the right edge: ln 2
    (nothing fitted, p = 0.5 everywhere) and ln 2 / 2 (two of four patterns fitted)."""
    ln2 = plateau_level("bce")
    for value, text in ((ln2, "ln 2"), (ln2 / 2, "ln 2 / 2")):
        ax.axhline(value, **LEVEL_STYLE)
        ax.annotate(
            text,
            (1.0, value),
            xycoords=("axes fraction", "data"),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
            color=LEVEL_STYLE["color"],
        )


def study_caption(params: Params) -> str:
    """The convergence figure's caption: seeds per configuration, then the base setting
    (:func:`caption`) that each configuration's overrides change."""
    seeds = params.study.seeds
    if params.study.grid in ({}, []):
        head = f"{seeds} model seeds of this setting:"
    else:
        head = f"{seeds} model seeds per configuration; each configuration changes this base:"
    return f"{head}\n{caption(params, model_seeds=seeds)}"


def convergence_png(results: "Sequence[ConfigResult]", params: Params) -> bytes:
    """Three panels over the configurations of a convergence study (``params`` is the
    study's base: caption and ``plot.dpi``).

    (a) share of seeds solved (100 % test accuracy) by each epoch;
    (b) training loss per epoch: median over seeds and the 10–90 % band;
    (c) final training loss of every seed, solved seeds as dots, failures as
        crosses, with the solved count above each configuration.

    The sideways jitter of (c) is seeded per configuration, so identical results
    give identical bytes.
    """
    if not results:
        raise ValueError("convergence_png needs at least one configuration")
    count = len(results)
    colors = _series_colors(count)
    # Bottom up, in figure fractions: the caption, the legend of configurations, the panels.
    text = study_caption(params)
    line = 7 * 1.5 / 72 / 8.2  # one caption line: 7 pt at line spacing 1.5, figure 8.2 in high
    caption_top = 0.012 + line * (text.count("\n") + 1)
    columns = 1 if count <= 3 else 2 if count <= 8 else 3
    legend_top = caption_top + 0.012 + 0.024 * (math.ceil(count / columns) + 1)
    fig = _figure(11.0, 8.2, params.plot.dpi)
    grid = fig.add_gridspec(
        2, 2, left=0.07, right=0.94, top=0.9, bottom=legend_top + 0.07, hspace=0.5
    )
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
        ax_solved.step(epochs, share * 100, where="post", color=color, lw=1.5, label=name)

        with np.errstate(all="ignore"):
            loss = np.clip(b.loss_history, LOSS_FLOOR, None)
            keep = np.isfinite(loss).any(axis=1)
            if keep.any():
                low, mid, high = np.nanquantile(loss[keep], [0.1, 0.5, 0.9], axis=1)
                x = b.history_epoch[keep]
                ax_loss.plot(x, mid, color=color, lw=1.5)
                ax_loss.fill_between(x, low, high, color=color, alpha=0.15, lw=0)

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

    _log_scale(ax_solved, "x")
    ax_solved.set_xlim(1, max_epochs)
    ax_solved.set_ylim(-2, 102)
    ax_solved.set_xlabel("epoch")
    ax_solved.set_ylabel("seeds solved (%)")
    _title(ax_solved, "(a) Seeds at 100 % test accuracy by epoch", fontsize=10)
    ax_solved.grid(True, alpha=0.3)

    _log_scale(ax_loss, "x")
    _log_scale(ax_loss, "y")
    ax_loss.set_xlim(1, max_epochs)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel(f"training loss ({params.train.loss})")
    _title(ax_loss, "(b) Training loss: median and 10–90 % of seeds", fontsize=10)
    ax_loss.grid(True, alpha=0.3)
    _study_levels(ax_loss)

    _log_scale(ax_final, "y")
    ax_final.set_xlim(0.4, count + 0.6)
    ax_final.set_xticks(range(1, count + 1))
    ax_final.set_xlabel("configuration (numbered as in the legend)")
    ax_final.set_ylabel("final training loss")
    _title(
        ax_final,
        "(c) Final training loss per seed (dot: solved, cross: not solved; solved/seeds on top)",
        fontsize=10,
        pad=16,
    )
    ax_final.grid(True, axis="y", alpha=0.3)
    _study_levels(ax_final)

    handles, labels = ax_solved.get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower left",
        bbox_to_anchor=(0.07, caption_top + 0.006),
        ncol=columns,
        fontsize=8,
        frameon=False,
        title="configurations",
        title_fontsize=8,
        alignment="left",
    )
    fig.suptitle("Convergence study: XOR over model seeds", fontsize=13, y=0.97)
    _add_caption(fig, text)
    return _png_bytes(fig)


def save_convergence(results: "Sequence[ConfigResult]", path: Path, params: Params) -> None:
    """Write :func:`convergence_png` to ``path`` atomically."""
    write_bytes(path, convergence_png(results, params))
