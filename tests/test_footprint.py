"""The memory estimate made from the params before a stage allocates anything: one test
per dimension that multiplies into memory, the refusal's one line, and that legitimate
large runs (a 1e6-sample benchmark) still pass."""

import subprocess
import sys
from pathlib import Path

import pytest

from xornet.config import footprint
from xornet.config.schema import load_params
from xornet.core.model import Architecture
from xornet.errors import ParamsError

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
GIB = 1 << 30
# What a modest machine has free: the checks below must not depend on this one's load.
ROOM = (2 * GIB, "MemAvailable")


def params(*overrides: str):
    return load_params(PARAMS, overrides)


def grows(estimate, part: str, small: tuple[str, ...], big: tuple[str, ...]) -> None:
    """``part`` of the estimate grows (at least 10x) from ``small`` to ``big`` overrides."""
    a, b = estimate(params(*small)), estimate(params(*big))
    assert part in a.parts, sorted(a.parts)
    assert b.parts[part] >= 10 * max(a.parts[part], 1)
    assert b.total > a.total


def refused(estimate, *overrides: str, words=()) -> str:
    with pytest.raises(ParamsError) as info:
        footprint.check(estimate(params(*overrides)), ROOM)
    message = str(info.value)
    assert "\n" not in message
    for word in ("would allocate about", "GiB", "available (MemAvailable)", *words):
        assert word in message, f"{word!r} not in {message!r}"
    return message


def test_shipped_params_fit_every_stage():
    p = params()
    arch = Architecture(2, tuple(p.model.hidden), p.model.activation)
    for estimate in (
        footprint.generate_estimate(p),
        footprint.train_estimate(p),
        footprint.evaluate_estimate(p, 200, 2, arch),
        footprint.plot_estimate(p),
        footprint.study_grid_estimate(p),
        footprint.study_estimate(p, [p]),
    ):
        footprint.check(estimate, ROOM)
        assert estimate.total < 512 << 20, (estimate.stage, estimate.parts)


def test_a_million_samples_with_16_hidden_units_still_run():
    p = params("data.n_samples=1000000", "model.hidden=[16]")
    footprint.check(footprint.generate_estimate(p), ROOM)
    footprint.check(footprint.train_estimate(p), ROOM)
    assert footprint.train_estimate(p).total < GIB


def test_samples_generate():
    grows(
        footprint.generate_estimate,
        "data.n_samples",
        ("data.n_samples=1000",),
        ("data.n_samples=100000",),
    )
    refused(footprint.generate_estimate, "data.n_samples=10000000000", words=["data.n_samples"])


def test_samples_train():
    part = "data samples (n_samples)"
    grows(footprint.train_estimate, part, ("data.n_samples=1000",), ("data.n_samples=100000",))
    refused(footprint.train_estimate, "data.n_samples=10000000000", words=[part])


def test_samples_train_from_the_data_files_sizes():
    p = params()
    small, big = (
        footprint.train_estimate(p, 800, 200, 2),
        footprint.train_estimate(p, 10**9, 200, 2),
    )
    assert big.total > 1000 * small.parts["data samples (n_samples)"]


def test_each_thread_sharing_the_blocks_adds_a_workspace(monkeypatch):
    """A batch of several blocks is shared by THREADS threads, each with its workspace
    (4 buffers of every layer's units by block columns); a one-block batch uses one."""
    part = "data samples (n_samples)"
    many_blocks = params("data.n_samples=125000", "model.hidden=[16]")
    arch = Architecture(2, (16,), "tanh")
    workspace = 4 * sum(arch.layer_sizes) * footprint.auto_block(arch) * footprint.FLOAT
    sizes = {}
    for threads in (1, 2, 3):
        monkeypatch.setattr(footprint, "THREADS", threads)
        sizes[threads] = footprint.train_estimate(many_blocks).parts[part]
        one_block = footprint.train_estimate(params()).parts[part]
        assert one_block == sizes.setdefault("one block", one_block)
    assert sizes[2] - sizes[1] == sizes[3] - sizes[2] == workspace


def test_hidden_sizes():
    part = "model.hidden (weights)"
    grows(footprint.train_estimate, part, ("model.hidden=[8]",), ("model.hidden=[800]",))
    grows(footprint.train_estimate, part, ("model.hidden=[8]",), ("model.hidden=[8, 800, 8]",))
    refused(footprint.train_estimate, "model.hidden=[10000000]", words=["reduce"])


def test_epochs_history():
    part = "train.epochs (history)"
    grows(footprint.train_estimate, part, ("train.epochs=1000",), ("train.epochs=100000",))
    refused(
        footprint.train_estimate,
        "train.epochs=1000000000000",
        "train.snapshot_every=1000000000000",
        words=[part, "reduce train.epochs"],
    )


def test_epochs_times_snapshot_rate():
    part = "train.epochs / train.snapshot_every (snapshots)"
    grows(
        footprint.train_estimate, part, ("train.snapshot_every=1000",), ("train.snapshot_every=1",)
    )
    grows(footprint.train_estimate, part, ("train.epochs=1000",), ("train.epochs=100000",))
    refused(
        footprint.train_estimate,
        "model.hidden=[1000]",
        "train.epochs=1000000",
        "train.snapshot_every=1",
        words=[part],
    )


def test_evaluate_test_samples_and_weights():
    p = params()
    arch = Architecture(2, (8,), "tanh")
    small = footprint.evaluate_estimate(p, 1000, 2, arch)
    big = footprint.evaluate_estimate(p, 10**8, 2, arch)
    assert big.parts["test samples"] > 1000 * small.parts["test samples"]
    wide = footprint.evaluate_estimate(p, 1000, 2, Architecture(2, (10**7,), "tanh"))
    assert wide.parts["model.hidden (weights)"] > 1000 * small.parts["model.hidden (weights)"]
    with pytest.raises(ParamsError, match="evaluate would allocate"):
        footprint.check(big, ROOM)


def test_plot_grid_resolution():
    part = "plot.grid_resolution² (decision grid)"
    grows(
        footprint.plot_estimate, part, ("plot.grid_resolution=20",), ("plot.grid_resolution=1000",)
    )


def test_plot_frames_and_dpi():
    part = "plot.animation_frames × plot.dpi² (GIF frames)"
    grows(
        footprint.plot_estimate, part, ("plot.animation_frames=5",), ("plot.animation_frames=500",)
    )
    grows(footprint.plot_estimate, "plot.dpi² (canvases)", ("plot.dpi=30",), ("plot.dpi=300",))


def test_plot_history_and_snapshots():
    grows(
        footprint.plot_estimate,
        "train.epochs (history, curves)",
        ("train.epochs=1000",),
        ("train.epochs=100000",),
    )
    refused(footprint.plot_estimate, "train.epochs=100000000", words=["reduce train.epochs"])


def test_study_seeds_times_weights():
    def estimate(p):
        return footprint.study_estimate(p, [p])

    part = "study.seeds × model.hidden (training state)"
    grows(estimate, part, ("study.seeds=10",), ("study.seeds=1000",))
    grows(estimate, part, ("model.hidden=[8]",), ("model.hidden=[800]",))
    refused(estimate, "study.seeds=100000", "model.hidden=[100000]", words=[part])


def test_study_grid_configurations():
    part = "study.grid × study.seeds (per-seed results)"
    grid = "study.grid={model.hidden: [[2], [4]], train.learning_rate: [0.1, 0.5, 1.0]}"
    seeds, scales = list(range(100)), list(range(1, 101))
    big = f"study.grid={{data.seed: {seeds}, model.init_scale: {scales}}}"
    grows(footprint.study_grid_estimate, part, (grid,), (big,))
    assert footprint.grid_size(params(grid).study.grid) == 6
    assert footprint.grid_size(params("study.grid=[{model.hidden: [2]}]").study.grid) == 1
    refused(footprint.study_grid_estimate, big, "study.seeds=100000", words=["study.grid"])


def test_grid_size_is_bounded_by_the_schema():
    values = list(range(1, 101))
    with pytest.raises(ParamsError, match="expands to 1000000 configurations.*at most 10000"):
        params(f"study.grid={{data.seed: {values}, train.epochs: {values}, model.seed: {values}}}")


def test_available_memory_is_known_and_positive():
    room, source = footprint.available_memory()
    assert room is not None and room > 0
    assert source in {"MemAvailable", "cgroup memory limit", "address-space limit"}


def test_available_memory_sees_the_address_space_limit():
    code = (
        "from xornet.config.footprint import available_memory; "
        "room, source = available_memory(); print(room, source)"
    )
    out = subprocess.run(
        ["prlimit", "--as=3000000000", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert int(out[0]) < 3_000_000_000
    assert " ".join(out[1:]) == "address-space limit"


def test_unknown_memory_does_not_refuse():
    footprint.check(
        footprint.generate_estimate(params("data.n_samples=10000000000")), (None, "unknown")
    )
