"""The decision view: P(y = 1 | x) over the input plane with the 0.5 contour, the data and
each first-layer hidden unit's line ``w·x + b = 0``; for more than two inputs (parity),
P of every distinct input against its number of 1-bits. A view builds its artists once
and :meth:`update` draws another model into them (the animation reuses them); an
``animated`` view is GIF-sized: 10 colour bands, smaller markers, no unit labels.

Arrays follow the library's convention: features are rows, X (n_inputs, n), y (1, n)."""

import numpy as np
from contourpy import contour_generator  # matplotlib's own contouring engine
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patheffects import withStroke

from xornet.config.schema import Params
from xornet.core.data import Dataset
from xornet.core.model import MLP
from xornet.figures import style

UNIT_LINE_COLOR = "#222222"
DENSE_POINTS = 40  # above this many distinct inputs, points are drawn smaller


def point_style(label: int, train: bool, dense: bool = False, scale: float = 1.0) -> dict:
    """Train points: dots in their class colour, white edge (dark if dense), on top. Test
    points: rings in their class colour outlined in black, wide enough to show a dot inside."""
    color = style.CLASS_COLORS[label]
    if train:
        edge, size, width = ("0.1", 16, 0.4) if dense else ("white", 50, 0.6)
        return dict(c=color, s=size * scale, edgecolors=edge, linewidths=width, zorder=4)
    size, width = (44, 0.8) if dense else (170, 1.6)
    outline = [withStroke(linewidth=width + (0.8 if dense else 1.2), foreground="black")]
    ring = dict(facecolors="none", edgecolors=color, path_effects=outline)
    return ring | dict(s=size * scale, linewidths=width, zorder=3)


def data_handles() -> list[Line2D]:
    """Legend entries for the train dots and test rings of both classes, as drawn."""
    handles = []
    for train, label in ((True, 0), (True, 1), (False, 0), (False, 1)):
        s = point_style(label, train)
        look = dict(markerfacecolor=s.get("c", "none"), markeredgecolor=s["edgecolors"])
        look |= dict(markersize=np.sqrt(s["s"]), markeredgewidth=s["linewidths"], ls="")
        name = f"{'train' if train else 'test'}, class {label}"
        handles.append(Line2D([], [], marker="o", path_effects=s.get("path_effects"), **look))
        handles[-1].set_label(name)
    return handles


def _scatter(ax: Axes, train: Dataset, test: Dataset, animated: bool, place) -> tuple[list, list]:
    """One scatter per (set, class) of distinct points, at ``place(X)``, and their inputs;
    test first, under the train points (drawing 800 copies of XOR's 4 corners only costs)."""
    dense = np.unique(np.hstack([train.X, test.X]), axis=1).shape[1] > DENSE_POINTS
    artists, inputs = [], []
    for data, is_train in ((test, False), (train, True)):
        stacked = np.unique(np.vstack([data.X, data.y.reshape(1, -1)]), axis=1)
        for label in (0, 1):
            inputs.append(stacked[:-1, stacked[-1] == label])
            look = point_style(label, is_train, dense, 0.6 if animated else 1.0)
            artists.append(ax.scatter(*place(inputs[-1]), **look))
    return artists, inputs


def plane_box(*datasets: Dataset) -> tuple[float, float]:
    """A square view ``(lo, hi)`` of the input plane holding every point with a margin."""
    values = np.concatenate([d.X.ravel() for d in datasets])
    lo, hi = float(values.min()), float(values.max())
    pad = 0.15 * (hi - lo) + 0.25
    return lo - pad, hi + pad


def unit_segment(w: np.ndarray, b: float, box: tuple[float, float]):
    """The part of the line ``w[0] x + w[1] y + b = 0`` inside the square ``box``, as
    ``(xs, ys)`` end points, or None when it misses the box (or w is zero)."""
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


def label_positions(segments: list[np.ndarray], avoid: np.ndarray) -> list[np.ndarray]:
    """A point on each segment (2, 2) for its label, chosen in turn as far as it can be
    from the labels already placed and from the points ``avoid`` (k, 2)."""
    t = np.linspace(0.08, 0.92, 22)[:, None]
    placed: list[np.ndarray] = []
    for segment in segments:
        candidates = segment[0] + t * (segment[1] - segment[0])
        others = np.vstack([avoid, *placed])
        gaps = np.linalg.norm(candidates[:, None] - others[None], axis=2).min(axis=1)
        placed.append(candidates[int(np.argmax(gaps))])
    return placed


class PlaneView:
    """P(y = 1 | x) of a 2-input network on a ``resolution``² grid as an image, its 0.5
    contour, the data and every first-layer unit's line (labelled h1, h2, ...)."""

    def __init__(self, ax: Axes, train: Dataset, test: Dataset, resolution: int, animated: bool):
        self.ax, self.box, self.animated = ax, plane_box(train, test), animated
        lo, hi = self.box
        self.axis = np.linspace(lo, hi, resolution)
        self.grid = np.vstack([g.ravel() for g in np.meshgrid(self.axis, self.axis)])
        cmap = style.PROBABILITY_CMAP.resampled(10) if animated else style.PROBABILITY_CMAP
        look = dict(cmap=cmap, vmin=0, vmax=1, interpolation="bilinear", interpolation_stage="data")
        self.image = ax.imshow(np.zeros((2, 2)), extent=(lo, hi) * 2, origin="lower", **look)
        self.contour = LineCollection([], colors="black", linewidths=2.0, zorder=2)
        dashed = dict(colors=UNIT_LINE_COLOR, linestyles="--", linewidths=1.0, alpha=0.85)
        self.unit_lines = LineCollection([], zorder=2, **dashed)
        for lines in (self.contour, self.unit_lines):
            ax.add_collection(lines, autolim=False)
        self.labels: list = []
        self.points, _ = _scatter(ax, train, test, animated, lambda X: X)
        self.avoid = np.unique(np.hstack([train.X, test.X]), axis=1).T
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="x₁ (input 1)", ylabel="x₂ (input 2)")

    def update(self, model: MLP) -> None:
        """Show ``model``: probability map, 0.5 contour and first-layer unit lines."""
        P = model.predict_proba(self.grid).reshape(len(self.axis), -1)
        self.image.set_data(P)
        self.contour.set_segments(contour_generator(self.axis, self.axis, P).lines(0.5))
        W1, b1 = model.params["W1"].astype(np.float64), model.params["b1"]
        ends = [unit_segment(W1[j], float(b1[j, 0]), self.box) for j in range(len(W1))]
        shown = [j for j, end in enumerate(ends) if end is not None]
        segments = [np.column_stack(ends[j]) for j in shown]
        self.unit_lines.set_segments(segments)
        if self.animated:
            return
        for text in self.labels:
            text.remove()
        box = dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8)
        look = dict(ha="center", va="center", fontsize=7, color=UNIT_LINE_COLOR, bbox=box)
        self.labels = [
            self.ax.text(x, y, f"h{j + 1}", zorder=5, **look)
            for (x, y), j in zip(label_positions(segments, self.avoid), shown, strict=True)
        ]

    def artists(self) -> list:
        """What a frame redraws, bottom up."""
        return [self.image, self.contour, self.unit_lines, *self.labels, *self.points]

    def legend_handles(self, hidden: tuple[int, ...]) -> list[Line2D]:
        unit = f"hidden unit h{'' if len(hidden) == 1 else ' of layer 1'}: w·x + b = 0"
        return [
            *data_handles(),
            Line2D([], [], color="black", lw=2, label="P = 0.5 (decision boundary)"),
            Line2D([], [], color=UNIT_LINE_COLOR, ls="--", lw=1, label=unit),
        ]


class BitCountView:
    """For more than two inputs: P(y = 1 | x) of every distinct input against its number of
    1-bits (its sum, for non-binary inputs), spread evenly within that count so a test ring
    sits around the train dot of the same input. Parity is odd counts, so a network that
    learnt it puts those above 0.5 and even counts below."""

    def __init__(self, ax: Axes, train: Dataset, test: Dataset, animated: bool):
        both = np.hstack([train.X, test.X])
        binary = bool(np.all((both == 0) | (both == 1)))
        patterns = np.unique(both, axis=1)
        counts = patterns.sum(axis=0)
        x = counts.astype(np.float64)
        if binary:
            for count in np.unique(counts):
                members = np.flatnonzero(counts == count)
                x[members] += ((np.arange(len(members)) + 0.5) / len(members) - 0.5) * 0.7
        else:  # a deterministic spread (golden-ratio sequence)
            x += ((np.arange(1, len(counts) + 1) * 0.6180339887498949) % 1.0 - 0.5) / 2
        where = {tuple(p): v for p, v in zip(patterns.T, x, strict=True)}
        place = lambda X: ([where[tuple(c)] for c in X.T], [0.5] * X.shape[1])  # noqa: E731
        self.points, self.inputs = _scatter(ax, train, test, animated, place)
        top = int(counts.max())
        if binary:
            for count in range(top + 1):
                color = style.CLASS_COLORS[count % 2]
                ax.axvspan(count - 0.5, count + 0.5, color=color, alpha=0.08, lw=0)
            ax.set(xticks=range(top + 1), xlim=(-0.6, top + 0.6))
        else:
            ax.set_xlim(x.min() - 0.6, x.max() + 0.6)
        xlabel = "number of 1-bits" + ("" if animated else " in the input (background: parity)")
        ax.set(xlabel=xlabel if binary else "sum of the inputs", ylabel="P(y = 1 | x)")
        ax.set_ylim(-0.04, 1.04)
        ax.axhline(0.5, color="black", lw=1.5)
        ax.grid(True, axis="y", alpha=0.3)

    def update(self, model: MLP) -> None:
        for artist, X in zip(self.points, self.inputs, strict=True):
            if X.shape[1]:
                P = model.predict_proba(X).ravel()
                artist.set_offsets(np.column_stack([artist.get_offsets()[:, 0], P]))

    def artists(self) -> list:
        return list(self.points)

    def legend_handles(self, hidden: tuple[int, ...]) -> list[Line2D]:
        return [*data_handles(), Line2D([], [], color="black", lw=1.5, label="P = 0.5")]


def decision_view(
    ax: Axes, model: MLP, train: Dataset, test: Dataset, resolution: int, animated: bool = False
) -> PlaneView | BitCountView:
    """The plane for 2 inputs, else P by number of 1-bits."""
    if model.arch.n_inputs == 2:
        return PlaneView(ax, train, test, resolution, animated)
    return BitCountView(ax, train, test, animated)


def decision_boundary_png(
    model: MLP, train: Dataset, test: Dataset, params: Params, epoch: int | None = None
) -> bytes:
    """The decision view of ``model`` (see :class:`PlaneView`, :class:`BitCountView`)."""
    fig = style.new_figure(6.4, 6.6, params.plot.dpi)
    n, plane = model.arch.n_inputs, model.arch.n_inputs == 2
    ax = fig.add_axes((0.11, 0.25, 0.68 if plane else 0.84, 0.66))
    view = decision_view(ax, model, train, test, params.plot.grid_resolution)
    view.update(model)
    after = "" if epoch is None else f" after {epoch} epochs"
    if isinstance(view, PlaneView):
        ax.set_title(f"Decision boundary{after}", fontsize=12)
        fig.colorbar(view.image, cax=fig.add_axes((0.83, 0.25, 0.03, 0.66)), label="P(y = 1 | x)")
        text = "Each dashed line is one hidden unit's boundary; the output combines them."
    else:
        ax.set_title(f"{n}-bit inputs: P(y = 1) by number of 1-bits{after}", fontsize=11)
        text = f"{n} inputs do not fit a plane: each distinct sample is one point, spread sideways."
    place = dict(loc="lower center", bbox_to_anchor=(0.5, 0.085), ncol=3, fontsize=8)
    fig.legend(handles=view.legend_handles(model.arch.hidden), frameon=False, **place)
    fig.text(0.5, 0.062, text, ha="center", va="bottom", fontsize=7.5, color="0.2")
    style.add_caption(fig, style.caption(params))
    return style.png_bytes(fig)
