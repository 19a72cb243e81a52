"""What every figure shares: colours, the hyperparameter caption, the p = 0.5 plateau,
a headless figure and its deterministic PNG bytes."""

import io

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from xornet.config.schema import Params
from xornet.core.losses import LOSSES

CLASS_COLORS = ("#2166ac", "#b2182b")  # class 0 blue, class 1 red, as in the colour map
CAPTION_COLOR = "0.3"
# Reference levels (the p = 0.5 plateau, chance): dotted grey lines.
LEVEL_STYLE = {"color": "0.45", "ls": ":", "lw": 1.2}
PROBABILITY_CMAP = ListedColormap(
    matplotlib.colormaps["RdBu_r"](np.linspace(0.12, 0.88, 256)), name="xornet_probability"
)


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


def plateau_name(loss: str) -> str:
    return "ln 2" if loss == "bce" else f"{plateau_level(loss):g}"


def new_figure(width: float, height: float, dpi: int) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no GUI backend, no global state."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def add_caption(fig: Figure, text: str) -> None:
    fig.text(
        0.5, 0.012, text, ha="center", va="bottom", fontsize=7, color=CAPTION_COLOR, linespacing=1.5
    )


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG at its own size and dpi, without the Software text chunk (the
    only thing besides the pixels that could vary): same figure, same bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, metadata={"Software": None})
    return buffer.getvalue()


def note(ax: Axes, text: str) -> None:
    """A message in the middle of an axes that has nothing to show."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.35")


def loss_scale(ax: Axes, values: np.ndarray, log_scale: bool) -> None:
    """Log y axis if asked; within less than a decade (a run stuck on the plateau) tick
    labels are plain numbers rather than 6.93×10⁻¹."""
    if not log_scale:
        return
    ax.set_yscale("log")
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size and positive.max() < 10 * positive.min():
        plain = FuncFormatter(lambda v, _: f"{v:.4g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
