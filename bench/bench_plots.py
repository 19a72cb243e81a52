"""Plot stage cost: how the wall time of ``stages/plot.py`` grows with the GIF's frames.

Usage::

    python bench/bench_plots.py            # frames 1 .. 500, about a minute on 2 cores
    python bench/bench_plots.py --quick    # fewer frame counts and repeats

A run is prepared once in a temporary folder with the default params.yaml
except ``train.snapshot_every=2`` (501 snapshots, so up to 500 frames can be
chosen) and tracking off: generate, train and evaluate, each by its stage
command. Then, each in a fresh process:

- ``import matplotlib`` alone, the reference the issue measures against;
- the stage's imports (click, ``xornet.cli``, ``xornet.stages.plot`` with the figures
  and matplotlib),
  i.e. the plot stage doing nothing;
- the plot stage itself, with ``--set plot.animation_frames=F`` for each F
  (all four figures; the defaults are 50 frames, dpi 100, grid 200).

Each command runs ``--repeat`` times; the fastest counts (the machine is
shared, so the minimum is the least noisy estimate), both in wall time and in
CPU time (user + system of the child process, which other load disturbs less).
The table also gives the GIF's size and, from least-squares lines through
(frames, time), the cost of one more frame. A second table times each figure
inside one process (after the imports; CPU time of the main thread), to show
where the default stage's time goes.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMES = (1, 10, 25, 50, 100, 200, 500)
QUICK_FRAMES = (1, 10, 50, 100)


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.update({"XORNET_TRACKING": "0", "MLFLOW_DISABLE_TELEMETRY": "true"})
    for key in ("DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME"):
        out.pop(key, None)
    return out


def timed(args: list[str], cwd: Path, repeat: int) -> tuple[float, float]:
    """Fastest wall time and fastest CPU time (user + system) of ``repeat`` runs, in s."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(args, cwd=cwd, env=env(), check=True, capture_output=True)
        best_wall = min(best_wall, time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best_cpu = min(best_cpu, cpu)
    return best_wall, best_cpu


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Intercept and slope of the least-squares line through (x, y) points."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum(
        (x - mean_x) ** 2 for x, _ in points
    )
    return mean_y - slope * mean_x, slope


def prepare(folder: Path) -> None:
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    for stage in ("generate", "train", "evaluate"):
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "stages" / f"{stage}.py"),
                "--set",
                "train.snapshot_every=2",
            ],
            cwd=folder,
            env=env(),
            check=True,
            capture_output=True,
        )


IN_PROCESS = """
import sys, time
sys.path.insert(0, {src!r})
from pathlib import Path
from xornet.files.datasets import load_dataset
from xornet.files.models import load_model, load_snapshots
from xornet.files.tables import read_history, read_predictions
from xornet.stages.plot import frame_indices
from xornet.figures import plots
from xornet.config.schema import load_params
params = load_params("params.yaml", ("train.snapshot_every=2",))
history = read_history(Path("metrics/history.csv"))
model = load_model("models/model.npz")
snapshots = load_snapshots(Path("models/snapshots.npz"))
train = load_dataset("data/train.npz")
test = load_dataset("data/test.npz")
actual, predicted = read_predictions(Path("metrics/predictions.csv"))
frames = frame_indices(len(snapshots), params.plot.animation_frames)
models = [snapshots.model(int(i)) for i in frames]
epochs = [int(snapshots.epochs[i]) for i in frames]
jobs = [
    ("learning curves", lambda: plots.learning_curves_png(history, params)),
    ("decision boundary", lambda: plots.decision_boundary_png(model, train, test, params, 1000)),
    ("confusion matrix", lambda: plots.confusion_matrix_png(actual, predicted, params)),
    (f"training GIF ({{len(frames)}} frames)",
     lambda: plots.training_gif(models, epochs, history, train, test, params)),
]
for name, job in jobs:
    start, cpu = time.perf_counter(), time.thread_time()
    job()
    print(f"{{name}}\\t{{time.perf_counter() - start:.4f}}\\t{{time.thread_time() - cpu:.4f}}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frame counts and repeats")
    parser.add_argument("--repeat", type=int, default=None, help="runs per command (default 3)")
    args = parser.parse_args()
    frames = QUICK_FRAMES if args.quick else FRAMES
    repeat = args.repeat or (2 if args.quick else 3)
    python = sys.executable
    stage = str(ROOT / "stages" / "plot.py")

    with tempfile.TemporaryDirectory(prefix="bench-plots-") as tmp:
        folder = Path(tmp)
        prepare(folder)
        reference = timed([python, "-c", "import matplotlib"], folder, repeat)
        imports = timed(
            [
                python,
                "-c",
                f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); "
                "import click; from xornet import cli; from xornet.stages import plot",
            ],
            folder,
            repeat,
        )
        rows = []
        for f in frames:
            seconds = timed(
                [
                    python,
                    stage,
                    "--set",
                    "train.snapshot_every=2",
                    "--set",
                    f"plot.animation_frames={f}",
                ],
                folder,
                repeat,
            )
            size = (folder / "plots" / "training.gif").stat().st_size
            rows.append((f, *seconds, size))
        breakdown = subprocess.run(
            [python, "-c", IN_PROCESS.format(src=str(ROOT / "src"))],
            cwd=folder,
            env=env(),
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    wall_0, wall_slope = fit([(f, w) for f, w, _, _ in rows])
    cpu_0, cpu_slope = fit([(f, c) for f, _, c, _ in rows])

    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; fastest of {repeat} runs each.\n"
    )
    print("| command | wall time (s) | CPU time (s) | GIF size (KiB) |")
    print("|---|---:|---:|---:|")
    for label, (wall_s, cpu_s) in (
        ("`python -c 'import matplotlib'` (reference)", reference),
        ("plot stage's imports only", imports),
    ):
        print(f"| {label} | {wall_s:.2f} | {cpu_s:.2f} | |")
    for f, wall_s, cpu_s, size in rows:
        label = f"plot stage, {f} frame{'s' if f > 1 else ''}" + (" (default)" if f == 50 else "")
        print(f"| {label} | {wall_s:.2f} | {cpu_s:.2f} | {size / 1024:.0f} |")
    print(
        f"\nLeast-squares fit: stage wall time ≈ {wall_0:.2f} s + {1000 * wall_slope:.1f} ms × "
        f"frames; CPU time ≈ {cpu_0:.2f} s + {1000 * cpu_slope:.1f} ms × frames.\n"
    )
    print("| figure, in one process after the imports | wall time (s) | CPU time (s) |")
    print("|---|---:|---:|")
    for line in breakdown.strip().splitlines():
        name, wall_s, cpu_s = line.split("\t")
        print(f"| {name} | {float(wall_s):.3f} | {float(cpu_s):.3f} |")


if __name__ == "__main__":
    main()
