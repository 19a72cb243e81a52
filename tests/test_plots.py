"""The plot stage's figures: valid PNG/GIF files for every kind of network and data,
deterministic bytes, one GIF frame per chosen snapshot, and no crash on parity data
or a single snapshot. Small synthetic runs made with the library itself."""

import io
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, base_env
from xornet.config.presets import PRESETS
from xornet.config.schema import load_params
from xornet.core.data import Dataset
from xornet.core.model import MLP, Architecture
from xornet.errors import DataFileError, InputMismatch, ModelFileError
from xornet.files.atomic import npz_bytes
from xornet.files.datasets import load_dataset
from xornet.files.models import load_model, load_snapshots
from xornet.files.tables import read_diagnosis, read_history, read_predictions
from xornet.stages.common import NullLogger
from xornet.stages.evaluate import run_evaluate
from xornet.stages.generate import run_generate
from xornet.stages.plot import PlotInputs, PlotOutputs, frame_indices, run_plot
from xornet.stages.train import TrainOutputs, run_train

plots = pytest.importorskip("xornet.figures.plots")
from xornet.figures import decision, style  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Small, quick runs; dpi and grid small so every figure renders in a fraction of a second.
SMALL = (
    "data.n_samples=200",
    "train.epochs=150",
    "train.snapshot_every=10",
    "train.learning_rate=0.5",
    "plot.dpi=40",
    "plot.grid_resolution=40",
    "plot.animation_frames=6",
)


class RecordingLogger(NullLogger):
    def __init__(self) -> None:
        self.artifacts: list[tuple[list[Path], str | None]] = []

    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        self.artifacts.append(([Path(p) for p in paths], folder))


def make_run(folder: Path, *overrides: str):
    """generate, train and evaluate with the library into ``folder``; returns params,
    plot inputs and plot outputs."""
    folder.mkdir(parents=True, exist_ok=True)
    params = load_params(REPO_ROOT / "params.yaml", (*SMALL, *overrides))
    log = NullLogger()
    train_path, test_path = folder / "train.npz", folder / "test.npz"
    run_generate(params, train_path, test_path)
    train_outputs = TrainOutputs(
        folder / "model.npz",
        folder / "history.csv",
        folder / "train.json",
        folder / "snap.npz",
        folder / "diagnosis.json",
    )
    run_train(params, train_path, test_path, train_outputs, log)
    run_evaluate(
        params, folder / "model.npz", test_path, folder / "eval.json", folder / "pred.csv", log
    )
    inputs = PlotInputs(
        folder / "history.csv",
        folder / "model.npz",
        folder / "snap.npz",
        train_path,
        test_path,
        folder / "pred.csv",
        folder / "diagnosis.json",
    )
    outputs = PlotOutputs(
        folder / "plots" / "learning_curves.png",
        folder / "plots" / "decision_boundary.png",
        folder / "plots" / "confusion_matrix.png",
        folder / "plots" / "training.gif",
    )
    return params, inputs, outputs


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which must come first."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def png_text_chunks(data: bytes) -> list[bytes]:
    """Every tEXt/iTXt/zTXt/tIME chunk type present (none should be)."""
    found, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind in (b"tEXt", b"iTXt", b"zTXt", b"tIME"):
            found.append(kind + b":" + data[pos + 8 : pos + 8 + min(length, 40)])
        pos += 12 + length
    return found


def check_png(path: Path, width_in: float, height_in: float, dpi: int) -> None:
    data = path.read_bytes()
    assert png_size(data) == (round(width_in * dpi), round(height_in * dpi))
    assert png_text_chunks(data) == []  # no Software, no timestamps
    with Image.open(path) as image:
        image.verify()


def gif_frames(path: Path) -> int:
    data = path.read_bytes()
    assert data[:6] == b"GIF89a"
    with Image.open(path) as image:
        assert image.format == "GIF"
        return image.n_frames


def expected_frames(inputs: PlotInputs, max_frames: int) -> int:
    snapshots = load_snapshots(inputs.snapshots)
    return len(frame_indices(len(snapshots), max_frames))


# ----------------------------------------------------------------- every kind
@pytest.mark.parametrize("kind", ["xor", "noisy_xor"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("hidden", ["[4]", "[3,3]"])
def test_every_figure_renders(tmp_path, kind, activation, hidden):
    params, inputs, outputs = make_run(
        tmp_path, f"data.kind={kind}", f"model.activation={activation}", f"model.hidden={hidden}"
    )
    logger = RecordingLogger()
    written = run_plot(params, inputs, outputs, logger)
    dpi = params.plot.dpi
    check_png(outputs.learning_curves, 10.0, 4.4, dpi)
    check_png(outputs.decision_boundary, 6.4, 6.6, dpi)
    check_png(outputs.confusion_matrix, 5.6, 5.4, dpi)
    n_frames = expected_frames(inputs, params.plot.animation_frames)
    assert n_frames == params.plot.animation_frames  # 16 snapshots, 6 chosen
    assert gif_frames(outputs.animation) == n_frames
    with Image.open(outputs.animation) as gif:
        assert gif.size == (round(8.0 * dpi), round(4.0 * dpi))
        assert gif.info["duration"] == 1000 // params.plot.fps
        assert gif.info["loop"] == 0  # loops forever
    assert logger.artifacts == [(written, "plots")]
    assert set(written) == {
        outputs.learning_curves,
        outputs.decision_boundary,
        outputs.confusion_matrix,
        outputs.animation,
    }


@pytest.mark.parametrize("n_bits", [3, 5])
def test_parity_gets_a_bit_count_view(tmp_path, n_bits):
    params, inputs, outputs = make_run(
        tmp_path, "data.kind=parity", f"data.n_bits={n_bits}", "model.hidden=[6]"
    )
    run_plot(params, inputs, outputs, NullLogger())
    check_png(outputs.decision_boundary, 6.4, 6.6, params.plot.dpi)
    assert gif_frames(outputs.animation) == expected_frames(inputs, params.plot.animation_frames)


def test_parity_with_two_bits_is_drawn_on_the_plane(tmp_path):
    params, inputs, outputs = make_run(tmp_path, "data.kind=parity", "data.n_bits=2")
    run_plot(params, inputs, outputs, NullLogger())
    check_png(outputs.decision_boundary, 6.4, 6.6, params.plot.dpi)


# ------------------------------------------------------------- determinism
@pytest.fixture(scope="module")
def xor_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("xor"), "model.hidden=[4]")


def test_outputs_are_byte_identical_when_nothing_changed(xor_run):
    params, inputs, outputs = xor_run
    paths = run_plot(params, inputs, outputs, NullLogger())
    first = [p.read_bytes() for p in paths]
    run_plot(params, inputs, outputs, NullLogger())
    assert [p.read_bytes() for p in paths] == first


def test_decision_boundary_changes_with_the_model_only(xor_run):
    params, inputs, _ = xor_run
    model = load_model(inputs.model)
    train_set = load_dataset(inputs.train_data)
    test_set = load_dataset(inputs.test_data)

    def render(m: MLP) -> bytes:
        return plots.decision_boundary_png(m, train_set, test_set, params, 150)

    same = render(model)
    assert render(load_model(inputs.model)) == same
    changed = model.copy()
    changed.params["W1"][0, 0] += 0.5
    assert render(changed) != same
    earlier = load_snapshots(inputs.snapshots).model(3)
    assert render(earlier) != same


def test_gif_frame_count_follows_animation_frames(xor_run):
    params, inputs, _ = xor_run
    snapshots = load_snapshots(inputs.snapshots)
    history = read_history(inputs.history)
    data = load_dataset(inputs.train_data), load_dataset(inputs.test_data)
    for frames in (1, 2, 7, len(snapshots), 500):
        chosen = frame_indices(len(snapshots), frames)
        gif = plots.training_gif(
            [snapshots.model(int(i)) for i in chosen],
            [int(snapshots.epochs[i]) for i in chosen],
            history,
            *data,
            params,
        )
        with Image.open(io.BytesIO(gif)) as image:
            assert image.n_frames == len(chosen) == min(frames, len(snapshots))


# --------------------------------------------------------------- edge cases
def test_one_snapshot_run(xor_run, tmp_path):
    params, inputs, outputs = xor_run
    with np.load(inputs.snapshots, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    single = {name: (v if name == "architecture" else v[-1:]) for name, v in arrays.items()}
    one = tmp_path / "one.npz"
    one.write_bytes(npz_bytes(single))
    inputs_one = PlotInputs(
        inputs.history, inputs.model, one, inputs.train_data, inputs.test_data,
        inputs.predictions, inputs.diagnosis,
    )  # fmt: skip
    run_plot(params, inputs_one, outputs, NullLogger())
    assert gif_frames(outputs.animation) == 1


def test_one_epoch_history_and_missing_classes(tmp_path):
    """A run of a single epoch, and predictions with one class only, still draw."""
    params, inputs, outputs = make_run(tmp_path, "train.epochs=1", "train.snapshot_every=1")
    inputs.predictions.write_text("actual,predicted\n1,1\n1,0\n")
    run_plot(params, inputs, outputs, NullLogger())
    assert gif_frames(outputs.animation) == 2  # epochs 0 and 1
    check_png(outputs.confusion_matrix, 5.6, 5.4, params.plot.dpi)


def test_history_without_validation_still_draws(xor_run):
    params, inputs, _ = xor_run
    history = read_history(inputs.history)
    history.val_loss[:] = np.nan
    history.val_accuracy[:] = np.nan
    assert plots.learning_curves_png(history, params)[:8] == PNG_SIGNATURE


def test_failed_render_writes_nothing(xor_run, tmp_path):
    """A snapshots file of another architecture is refused before any figure is written."""
    params, inputs, outputs = xor_run
    run_plot(params, inputs, outputs, NullLogger())
    before = {p: p.read_bytes() for p in vars(outputs).values()}
    other = MLP.create(Architecture(2, (5,), "tanh"))
    stacked = {k: v[None] for k, v in other.params.items()}
    bad = tmp_path / "bad.npz"
    architecture = other.to_arrays()["architecture"]
    bad.write_bytes(npz_bytes({"epoch": np.array([0]), **stacked, "architecture": architecture}))
    bad_inputs = PlotInputs(
        inputs.history, inputs.model, bad, inputs.train_data, inputs.test_data,
        inputs.predictions, inputs.diagnosis,
    )  # fmt: skip
    with pytest.raises(InputMismatch, match="bad.npz"):
        run_plot(params, bad_inputs, outputs, NullLogger())
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("history.csv", "epoch,train_loss\n1,0.5\n", "missing column"),
        ("history.csv", "epoch,train_loss,val_loss,val_accuracy\n1,abc,,\n", "history"),
        ("pred.csv", "actual,predicted\n0,7\n", "0/1"),
        ("pred.csv", "", "missing column"),
    ],
)
def test_bad_csv_inputs_are_one_line_errors(xor_run, tmp_path, name, text, error):
    path = tmp_path / name
    path.write_text(text)
    reader = read_history if name == "history.csv" else read_predictions
    with pytest.raises(DataFileError, match=error):
        reader(path)


def test_bad_snapshots_files(tmp_path):
    missing = tmp_path / "none.npz"
    with pytest.raises(ModelFileError, match="not found"):
        load_snapshots(missing)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="garbage.npz"):
        load_snapshots(garbage)
    ragged = tmp_path / "ragged.npz"
    model = MLP.create(Architecture(2, (3,), "tanh"))
    arrays = {"epoch": np.array([0, 10])} | {k: v[None] for k, v in model.params.items()}
    ragged.write_bytes(npz_bytes(arrays | {"architecture": model.to_arrays()["architecture"]}))
    with pytest.raises(ModelFileError, match="2 snapshots"):
        load_snapshots(ragged)


# ------------------------------------------------------------ small helpers
@pytest.mark.parametrize(("k", "m"), [(1, 1), (1, 50), (2, 1), (5, 5), (101, 50), (101, 2), (7, 3)])
def test_frame_indices_are_even_distinct_and_end_at_the_last(k, m):
    idx = frame_indices(k, m)
    assert len(idx) == min(k, m)
    assert np.all(np.diff(idx) > 0)
    assert idx[-1] == k - 1
    if len(idx) > 1:
        assert idx[0] == 0
        steps = np.diff(idx)
        assert steps.max() - steps.min() <= 1


def test_unit_segment_lies_on_the_line_inside_the_box():
    box = (-0.5, 1.5)
    rng = np.random.default_rng(0)
    for _ in range(200):
        w, b = rng.standard_normal(2), float(rng.standard_normal())
        segment = decision.unit_segment(w, b, box)
        if segment is None:
            # No point of a fine grid of the box is on both sides of the line.
            g = np.linspace(*box, 50)
            values = w[0] * g[:, None] + w[1] * g[None, :] + b
            assert values.min() > 0 or values.max() < 0
            continue
        xs, ys = segment
        assert np.allclose(w[0] * xs + w[1] * ys + b, 0, atol=1e-9)
        assert np.all((xs >= box[0] - 1e-9) & (xs <= box[1] + 1e-9))
        assert np.all((ys >= box[0] - 1e-9) & (ys <= box[1] + 1e-9))
    assert decision.unit_segment(np.zeros(2), 1.0, box) is None
    assert decision.unit_segment(np.array([1.0, 0.0]), -5.0, box) is None  # x = 5 misses


def test_caption_names_the_key_hyperparameters():
    params = load_params(
        REPO_ROOT / "params.yaml",
        (
            "model.hidden=[2]",
            "model.activation=sigmoid",
            "train.optimizer=adam",
            "train.learning_rate=0.01",
            "train.epochs=321",
            "data.kind=noisy_xor",
        ),
    )
    text = style.caption(params)
    for word in (
        "2-2-1",
        "sigmoid",
        params.model.init,
        "adam",
        "lr 0.01",
        "321 epochs",
        "noisy_xor",
        params.train.loss,
    ):
        assert word in text, word


def test_plateau_level_is_the_loss_at_p_one_half():
    assert style.plateau_level("bce") == pytest.approx(np.log(2))
    assert style.plateau_level("mse") == pytest.approx(0.25)


def test_animated_plane_view_shows_p_in_ten_bands(xor_run):
    """The GIF's map is the model's P on the grid, coloured by a 10-colour map (the bands),
    under the points; the static view's map is continuous."""
    params, inputs, _ = xor_run
    model = load_model(inputs.model)
    data = load_dataset(inputs.train_data), load_dataset(inputs.test_data)
    for animated, n_colors in ((True, 10), (False, 256)):
        ax = style.new_figure(4.0, 4.0, 50).add_axes((0.1, 0.1, 0.8, 0.8))
        view = decision.PlaneView(ax, *data, 30, animated)
        view.update(model)
        assert np.allclose(view.image.get_array(), model.predict_proba(view.grid).reshape(30, 30))
        assert len(view.image.get_cmap().colors) == n_colors
        assert view.artists().index(view.image) < view.artists().index(view.points[0])
        assert (view.labels == []) == animated  # unit labels on the static figure only


# ------------------------------------------------------------ mended looks
def captured_figures(monkeypatch) -> list:
    """Every figure the figure functions create, kept for inspection."""
    figures = []

    def keep(*args):
        figures.append(new_figure(*args))
        return figures[-1]

    new_figure = style.new_figure
    monkeypatch.setattr(style, "new_figure", keep)
    return figures


def test_legend_shows_train_dots_and_test_rings_for_both_classes():
    """README: train points are dots, test points rings; both classes alike but in colour."""
    handles = decision.data_handles()
    labels = ["train, class 0", "train, class 1", "test, class 0", "test, class 1"]
    assert [h.get_label() for h in handles] == labels
    assert {h.get_marker() for h in handles} == {"o"}
    train, test = handles[:2], handles[2:]
    assert [h.get_markerfacecolor() for h in train] == list(style.CLASS_COLORS)
    assert all(h.get_markerfacecolor() == "none" for h in test)
    assert [h.get_markeredgecolor() for h in test] == list(style.CLASS_COLORS)


def test_train_points_are_drawn_over_smaller_than_the_test_rings():
    """A train dot at the same input as a test point shows inside its ring."""
    for dense in (False, True):
        for label in (0, 1):
            dot = decision.point_style(label, True, dense)
            ring = decision.point_style(label, False, dense)
            assert dot["zorder"] > ring["zorder"]
            assert ring["facecolors"] == "none" and ring["s"] >= 2.5 * dot["s"]


def test_hidden_unit_labels_do_not_overlap(xor_run, monkeypatch):
    """Eight hidden units, several of whose lines run close together: every label apart."""
    params, *_ = xor_run
    figures = captured_figures(monkeypatch)
    model = MLP.create(Architecture(2, (8,), "tanh"), seed=3)
    data = Dataset(np.array([[0, 0, 1, 1], [0, 1, 0, 1]], float), np.array([[0, 1, 1, 0]]))
    plots.decision_boundary_png(model, data, data, params)
    (fig,) = figures
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 8
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1 :]), ax.texts[i].get_text()


def test_label_positions_spread_labels_along_their_lines():
    """Two identical lines get their labels far apart, and away from the points."""
    segment = np.array([[0.0, 0.0], [1.0, 1.0]])
    avoid = np.array([[0.5, 0.5]])
    first, second = decision.label_positions([segment, segment], avoid)
    assert np.linalg.norm(first - avoid[0]) > 0.35
    assert np.linalg.norm(first - second) > 0.5


def test_animation_title_and_loss_legend(xor_run, monkeypatch):
    """The title reads "Training: epoch <e> of <last>" with no padding, and the loss
    legend keeps clear of the ln 2 line."""
    params, inputs, _ = xor_run
    figures = captured_figures(monkeypatch)
    snapshots = load_snapshots(inputs.snapshots)
    history = read_history(inputs.history)
    data = load_dataset(inputs.train_data), load_dataset(inputs.test_data)
    models = [snapshots.model(i) for i in (0, len(snapshots) - 1)]
    epochs = [int(snapshots.epochs[0]), int(snapshots.epochs[-1])]
    gif = plots.training_gif(models, epochs, history, *data, params)
    assert gif[:6] == b"GIF89a"
    (fig,) = figures
    titles = [t.get_text() for t in fig.texts if t.get_text().startswith("Training")]
    assert titles == [f"Training: epoch {epochs[-1]} of {int(history.epoch[-1])}"]
    loss_ax = fig.axes[1]
    assert loss_ax.get_yscale() == "log"  # plot.log_scale
    legend = loss_ax.get_legend().get_window_extent()
    ln2 = loss_ax.transData.transform((1.0, np.log(2)))[1]
    assert not legend.y0 <= ln2 <= legend.y1


def test_learning_curves_use_a_log_loss_axis_when_asked(xor_run, monkeypatch):
    params, inputs, _ = xor_run
    figures = captured_figures(monkeypatch)
    history = read_history(inputs.history)
    plots.learning_curves_png(history, params)
    linear = load_params(REPO_ROOT / "params.yaml", (*SMALL, "plot.log_scale=false"))
    plots.learning_curves_png(history, linear)
    assert [f.axes[0].get_yscale() for f in figures] == ["log", "linear"]
    assert [f.axes[0].get_title() for f in figures] == ["Loss", "Loss"]


def test_learning_curves_show_the_diagnosis_and_shade_the_plateau_it_found(
    xor_run, tmp_path, monkeypatch
):
    """The tutorial's run: its verdict under the title (red) and ln 2 ± the plateau
    tolerance shaded; a converged run: its verdict in green and nothing shaded."""
    figures = captured_figures(monkeypatch)
    params, inputs, _ = make_run(tmp_path / "stuck", "train.epochs=300", *PRESETS["tutorial"])
    stuck = read_diagnosis(inputs.diagnosis)
    plots.learning_curves_png(read_history(inputs.history), params, stuck)
    good_params, good_inputs, _ = xor_run
    good = read_diagnosis(good_inputs.diagnosis)
    plots.learning_curves_png(read_history(good_inputs.history), good_params, good)
    (stuck_fig, good_fig) = figures
    texts = [
        [t.get_text() for t in fig.texts if t.get_text().startswith("Diagnosis")] for fig in figures
    ]
    assert texts[0][0].startswith("Diagnosis: plateau_ln2: stuck at loss")
    assert texts[1][0].startswith("Diagnosis: converged: 100 % validation accuracy")
    bands = [p for p in stuck_fig.axes[0].patches if p.get_label() == "plateau found"]
    (band,) = bands
    low, high = band.get_y(), band.get_y() + band.get_height()
    tol = stuck["evidence"]["plateau_tol"]
    assert (low, high) == pytest.approx((np.log(2) - tol, np.log(2) + tol))
    assert not [p for p in good_fig.axes[0].patches if p.get_label() == "plateau found"]


def test_a_bad_diagnosis_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "diagnosis.json"
    for content in ("not json", '{"verdict": 1}', "[]"):
        path.write_text(content)
        with pytest.raises(DataFileError, match="diagnosis.json"):
            read_diagnosis(path)


def test_bit_count_view_handles_non_binary_inputs(xor_run):
    """Three real-valued features (not produced by the pipeline, but loadable) still draw."""
    params, *_ = xor_run
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 40))
    y = (X.sum(axis=0) > 0).astype(np.int64)[None]
    data = Dataset(X, y)
    model = MLP.create(Architecture(3, (4,), "tanh"))
    assert plots.decision_boundary_png(model, data, data, params)[:8] == PNG_SIGNATURE


# ---------------------------------------------------------------- the stage
def stage(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages" / f"{name}.py"), *args],
        cwd=cwd,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "extra",
    [
        ("--set", "data.kind=parity", "--set", "data.n_bits=4"),
        ("--set", "train.epochs=1", "--set", "plot.animation_frames=1"),
    ],
    ids=["parity", "one-snapshot"],
)
def test_plot_stage_on_parity_and_one_snapshot(tmp_path, extra):
    (tmp_path / "params.yaml").write_bytes((REPO_ROOT / "params.yaml").read_bytes())
    args = ("--set", "data.n_samples=200", "--set", "train.epochs=50", "--set", "plot.dpi=40")
    for name in ("generate", "train", "evaluate", "plot"):
        proc = stage(name, *args, *extra, cwd=tmp_path)
        assert proc.returncode == 0, (name, proc.stderr)
    n_snapshots = len(load_snapshots(tmp_path / "models/snapshots.npz"))
    params = load_params(tmp_path / "params.yaml", tuple(extra[1::2]))
    frames = min(n_snapshots, params.plot.animation_frames)
    assert gif_frames(tmp_path / "plots/training.gif") == frames
    for name in ("learning_curves", "decision_boundary", "confusion_matrix"):
        assert (tmp_path / f"plots/{name}.png").read_bytes()[:8] == PNG_SIGNATURE


def test_plot_stage_bad_history_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_bytes((REPO_ROOT / "params.yaml").read_bytes())
    args = ("--set", "data.n_samples=200", "--set", "train.epochs=20")
    for name in ("generate", "train", "evaluate"):
        assert stage(name, *args, cwd=tmp_path).returncode == 0
    (tmp_path / "metrics/history.csv").write_text("epoch,oops\n1,2\n")
    proc = stage("plot", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "metrics/history.csv" in proc.stderr
    assert not (tmp_path / "plots").exists()


def test_default_gif_is_small(tmp_path):
    """The default params (1000 epochs, 50 frames, dpi 100) give a GIF well under 2 MB."""
    (tmp_path / "params.yaml").write_bytes((REPO_ROOT / "params.yaml").read_bytes())
    for name in ("generate", "train", "evaluate", "plot"):
        proc = stage(name, cwd=tmp_path)
        assert proc.returncode == 0, (name, proc.stderr)
    gif = tmp_path / "plots/training.gif"
    assert gif.stat().st_size <= 2 * 1024 * 1024
    params = load_params(tmp_path / "params.yaml")
    n_snapshots = len(load_snapshots(tmp_path / "models/snapshots.npz"))
    assert gif_frames(gif) == min(n_snapshots, params.plot.animation_frames)
    assert gif_frames(gif) >= 10


def test_two_clones_draw_byte_identical_figures(tmp_path):
    """The plot stage in two folders, in processes with different hash seeds, from the same
    inputs: the same bytes in every figure."""
    args = ("--set", "data.n_samples=200", "--set", "train.epochs=60", "--set", "plot.dpi=40")
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    (first / "params.yaml").write_bytes((REPO_ROOT / "params.yaml").read_bytes())
    for name in ("generate", "train", "evaluate"):
        assert stage(name, *args, cwd=first).returncode == 0
    shutil.copytree(first, second)
    for folder, seed in ((first, "1"), (second, "2")):
        proc = subprocess.run(
            [sys.executable, str(REPO_ROOT / "stages" / "plot.py"), *args],
            cwd=folder,
            env=base_env(PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (first / "plots").iterdir())
    assert len(names) == 4
    for name in names:
        assert (first / "plots" / name).read_bytes() == (second / "plots" / name).read_bytes(), name
