"""What a stage will allocate, estimated from its params before it allocates anything.

Params are untrusted: ``train.epochs: 1000000000000`` or ``model.hidden: [10000000]``
would have a stage try to allocate terabytes and die with a traceback (or bring in
the OOM killer). Each ``*_estimate`` function adds up, per dimension that multiplies
into memory, the bytes the stage's arrays and tables will take at their peak; they
are upper estimates (several copies of the big arrays coexist while files are
written) and cheap to compute. :func:`check` compares the total with the memory the
process can get (:func:`available_memory`) and raises :class:`ParamsError` naming
the biggest dimension, the estimate and what is available.

Only memory is estimated; a long run (many epochs on small data) is allowed, and
stops cleanly on Ctrl-C or SIGTERM.
"""

import math
import os
import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from xornet.config.schema import Params, grid_size
from xornet.core.batched import MAX_ELEMENTS
from xornet.core.model import THREADS, Architecture, auto_block
from xornet.errors import ParamsError

FLOAT = 8  # bytes of a float64 / int64
# Peak bytes per scalar of data generated and written: bits, float copy, noise,
# the train/test copies and the .npz buffers of the writer.
GENERATE_COPIES = 6
# Per epoch of history: four arrays, the CSV rows as Python tuples of strings, the text.
HISTORY_BYTES_PER_EPOCH = 600
# Per saved weight: the recorder's copy, the stacked array and the .npz buffers.
SNAPSHOT_COPIES = 4
# Per weight of one network: theta, gradient, optimizer state, copies of the model.
PARAM_COPIES = 8
# Per sample of a data file read: the loaded arrays and their float64/int64 copies.
LOADED_COPIES = 2
# Per row of a CSV table written per sample or per seed (Python tuple and text).
ROW_BYTES = 250
# Per configuration of a study: its Params, overrides, summary and table rows.
CONFIG_BYTES = 20_000
# Figures: a canvas pixel (RGBA) is held in this many buffers at once.
CANVAS_COPIES = 12
# Figure sizes in inches (the largest the plot stage draws).
LARGEST_FIGURE_INCHES2 = 11.0 * 8.2
ANIMATION_INCHES2 = 8.0 * 4.0
GIB = 1 << 30
# Every stage: BLAS thread buffers, figure and file libraries, allocator slack.
FIXED_BYTES = 256 << 20
# The study keeps a loss curve of at most about twice this many points per seed
# (xornet.study.convergence.HISTORY_POINTS).
STUDY_HISTORY_POINTS = 2000


@dataclass(frozen=True)
class Estimate:
    """Bytes a stage will allocate, by the dimension that drives them."""

    stage: str
    parts: Mapping[str, int]

    @property
    def total(self) -> int:
        return FIXED_BYTES + sum(self.parts.values())

    @property
    def biggest(self) -> str:
        return max(self.parts, key=lambda k: self.parts[k])


def _gib(n: float) -> str:
    return f"{n / GIB:.3g} GiB" if n >= GIB / 100 else f"{n / (1 << 20):.3g} MiB"


def _network_bytes(arch: Architecture) -> int:
    return arch.n_params * FLOAT * PARAM_COPIES


def _data_bytes(n: int, n_features: int, copies: int = LOADED_COPIES) -> int:
    return n * (n_features + 1) * FLOAT * copies


def _split(params: Params) -> tuple[int, int]:
    """(n_train, n_test) of ``params.data``, as the generate stage splits them."""
    d = params.data
    n_test = round(d.n_samples * d.test_fraction)
    return d.n_samples - n_test, n_test


def _snapshots(epochs: int, every: int) -> int:
    return epochs // every + 2


def _architecture(params: Params, n_features: int | None = None) -> Architecture:
    features = params.data.n_features if n_features is None else n_features
    return Architecture(features, tuple(params.model.hidden), params.model.activation)


def generate_estimate(params: Params) -> Estimate:
    """The generate stage: the samples, in their intermediate and written copies."""
    d = params.data
    return Estimate(
        "generate", {"data.n_samples": _data_bytes(d.n_samples, d.n_features, GENERATE_COPIES)}
    )


def train_estimate(
    params: Params,
    n_train: int | None = None,
    n_val: int | None = None,
    n_features: int | None = None,
) -> Estimate:
    """The train stage on data of the given sizes (default: those ``params.data`` makes).

    - samples: the loaded data, the encoded batch ``[X; 1]`` and targets, one
      gradient row per block of columns, the per-block workspace of each thread (see
      ``xornet.core.model.THREADS``), the validation logits;
    - hidden sizes: weights, gradient, optimizer state and copies;
    - train.epochs: the history (arrays, CSV rows and text);
    - train.epochs / train.snapshot_every: the weight snapshots for the animation.
    """
    split = _split(params)
    n = split[0] if n_train is None else n_train
    v = split[1] if n_val is None else n_val
    arch = _architecture(params, n_features)
    t = params.train
    block = auto_block(arch)
    sizes = arch.layer_sizes
    batch = n if t.batch_size == 0 or t.batch_size >= n else t.batch_size
    blocks = math.ceil(batch / block)
    encoded = (arch.n_inputs + 3) * FLOAT * (n + batch + v)
    block_grads = (blocks if blocks > 1 else 0) * arch.n_params * FLOAT
    threads = min(THREADS, blocks) if blocks > 1 else 1  # a workspace each
    workspace = threads * 4 * sum(sizes) * min(block, max(batch, v)) * FLOAT
    samples = _data_bytes(n + v, arch.n_inputs) + encoded + workspace + v * FLOAT * 2
    return Estimate(
        "train",
        {
            "data samples (n_samples)": samples,
            "model.hidden (weights)": _network_bytes(arch) + block_grads,
            "train.epochs (history)": t.epochs * HISTORY_BYTES_PER_EPOCH,
            "train.epochs / train.snapshot_every (snapshots)": _snapshots(
                t.epochs, t.snapshot_every
            )
            * arch.n_params
            * FLOAT
            * SNAPSHOT_COPIES,
        },
    )


def evaluate_estimate(params: Params, n_test: int, n_features: int, arch: Architecture) -> Estimate:
    """The evaluate stage: the test set, its logits and the per-sample predictions table."""
    return Estimate(
        "evaluate",
        {
            "test samples": _data_bytes(n_test, n_features)
            + (n_features + 4) * FLOAT * n_test
            + n_test * ROW_BYTES,
            "model.hidden (weights)": _network_bytes(arch)
            + 4 * sum(arch.layer_sizes) * min(auto_block(arch), n_test) * FLOAT,
        },
    )


def plot_estimate(params: Params, history_length: int | None = None) -> Estimate:
    """The plot stage: history and snapshots read back, the data, the figures' canvases,
    the decision grid (``plot.grid_resolution``²) and the animation's frames."""
    n_train, n_test = _split(params)
    arch = _architecture(params)
    t, p = params.train, params.plot
    epochs = t.epochs if history_length is None else history_length
    canvas = LARGEST_FIGURE_INCHES2 * p.dpi**2 * 4 * CANVAS_COPIES
    frame_pixels = ANIMATION_INCHES2 * p.dpi**2
    grid = p.grid_resolution**2 * (max(arch.layer_sizes) + 8) * FLOAT * 3
    snapshots = _snapshots(t.epochs, t.snapshot_every)
    return Estimate(
        "plot",
        {
            "data samples (n_samples)": _data_bytes(n_train + n_test, arch.n_inputs) * 2,
            "train.epochs (history, curves)": epochs * HISTORY_BYTES_PER_EPOCH,
            "snapshots (train.epochs / train.snapshot_every × weights)": snapshots
            * arch.n_params
            * FLOAT
            * LOADED_COPIES,
            "plot.grid_resolution² (decision grid)": int(grid),
            "plot.dpi² (canvases)": int(canvas),
            "plot.animation_frames × plot.dpi² (GIF frames)": int(
                min(p.animation_frames, snapshots) * frame_pixels
            ),
        },
    )


def study_grid_estimate(params: Params) -> Estimate:
    """The study's grid alone (``study.grid`` configurations × ``study.seeds`` rows),
    checked before the grid is expanded."""
    configs = grid_size(params.study.grid)
    return Estimate(
        "study",
        {
            "study.grid (configurations)": configs * CONFIG_BYTES,
            "study.grid × study.seeds (per-seed results)": configs * params.study.seeds * ROW_BYTES,
        },
    )


def study_estimate(params: Params, configs: Sequence[Params]) -> Estimate:
    """The study over its configurations (each a validated :class:`Params`).

    Kept to the end, per configuration: its generated data (one copy per distinct
    ``data`` section), its S seeds' final weights, loss curves and table rows. While
    one configuration trains: every seed's weights, optimizer state and gradients,
    and the activations of a chunk of seeds (at most MAX_ELEMENTS per array)."""
    seeds = params.study.seeds
    data: dict[str, int] = {}
    kept = training = activations = 0
    for config in configs:
        arch = _architecture(config)
        d = config.data
        data[d.model_dump_json()] = _data_bytes(d.n_samples, d.n_features, GENERATE_COPIES)
        points = min(config.train.epochs, 2 * STUDY_HISTORY_POINTS) + 1
        kept += seeds * (2 * arch.n_params * FLOAT + points * FLOAT + ROW_BYTES)
        training = max(training, seeds * arch.n_params * FLOAT * 6)
        activations = max(activations, MAX_ELEMENTS * FLOAT * 4 * arch.n_layers)
    canvas = LARGEST_FIGURE_INCHES2 * params.plot.dpi**2 * 4 * CANVAS_COPIES
    return Estimate(
        "study",
        {
            "data.n_samples (generated data)": sum(data.values()),
            "study.grid × study.seeds (weights, curves, rows)": kept + len(configs) * CONFIG_BYTES,
            "study.seeds × model.hidden (training state)": training,
            "activations (a chunk of seeds)": activations,
            "plot.dpi² (figure)": int(canvas),
        },
    )


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _cgroup_room() -> int | None:
    """Memory left under this process's cgroup limit (v2 or v1), if there is one."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit == "max" or int(limit) >= 1 << 60:
                return None
            return int(limit) - int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def _address_space_room() -> int | None:
    """Address space left under ``RLIMIT_AS`` (``ulimit -v``), if it is limited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return soft - int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return soft


def available_memory() -> tuple[int | None, str]:
    """(bytes, where from): the least of MemAvailable, the room under the cgroup's
    memory limit and under the address-space limit; (None, "unknown") if none is known."""
    candidates = [
        (room, name)
        for room, name in (
            (_meminfo_available(), "MemAvailable"),
            (_cgroup_room(), "cgroup memory limit"),
            (_address_space_room(), "address-space limit"),
        )
        if room is not None
    ]
    if not candidates:
        return None, "unknown"
    return min(candidates)


def check(estimate: Estimate, available: tuple[int | None, str] | None = None) -> None:
    """Raise ParamsError (one line) if ``estimate`` will not fit in the available memory."""
    room, source = available_memory() if available is None else available
    if room is None or estimate.total <= room:
        return
    biggest = estimate.biggest
    raise ParamsError(
        f"{estimate.stage} would allocate about {_gib(estimate.total)}, "
        f"{_gib(estimate.parts[biggest])} of it for {biggest}, but only "
        f"{_gib(max(room, 0))} is available ({source}); reduce {biggest.split(' (')[0]}"
    )
