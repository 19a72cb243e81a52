"""What MLflow tracking costs the train stage: tracking on vs off, and where the time goes.

Usage::

    python bench/bench_tracking.py                      # 10 000 epochs, defaults, ~1-2 min
    python bench/bench_tracking.py --repeat 3 --set data.n_samples=20000

The issue's target: with 10 000 epochs, tracking adds at most 10% to the train
stage's time compared with tracking switched off.

Method. A temporary copy of the project (stages/, src/, params.yaml) gets its
data from the generate stage; then the real train stage command,
``python stages/train.py --set train.epochs=N [--set ...]``, runs as a fresh
process, alternately with ``XORNET_TRACKING=0`` and with tracking on (MLflow's
SQLite store ``mlflow.db`` in the copy). One untimed run of each first (it
creates the store: a one-off ~2 s). Wall time of the whole process counts —
imports, training, writing outputs and, with tracking, everything MLflow
does. The fastest of ``--repeat`` runs is the estimate (the machine is
shared; the minimum is the least noisy), medians are shown too.

Breakdown. A second process times tracking's phases on their own, with the
same store: ``import mlflow``; opening the store and getting the experiment;
starting the run and logging params; logging N epochs x 3 curves (buffered,
``log_batch`` of 1 000); logging the output files and the pyfunc model;
ending the run. Tracking's cost is this fixed part plus ~3 logged values per
epoch; the training it is compared with costs whatever an epoch of the
chosen data size costs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BREAKDOWN = r"""
import sys, time
from pathlib import Path
t = time.perf_counter()
phases = []
def lap(name):
    global t
    now = time.perf_counter(); phases.append((name, now - t)); t = now
root = Path(sys.argv[1]); epochs = int(sys.argv[2]); overrides = tuple(sys.argv[3:])
sys.path.insert(0, str(root / "src"))
import numpy as np
from xornet import tracking
from xornet.model import MLP
from xornet.params import load_params
from xornet.train import History
params = load_params(root / "params.yaml", overrides)
lap("start-up (xornet, numpy)")
import mlflow  # noqa: F401
lap("import mlflow")
session = tracking.open_session(params, root)
lap("open store, get experiment")
with tracking._owned_run(session, tracking.context_tags("train"), None) as run_id:
    logger = tracking.MlflowLogger(session, run_id)
    flat = params.flat(tracking.TRAINING_SECTIONS)
    logger.log_params({k: tracking.param_value(v) for k, v in flat.items()})
    lap("start run, log params")
    history = History.empty(epochs)
    history.train_loss[:] = np.linspace(0.7, 0.01, epochs)
    history.val_loss[:] = history.train_loss
    history.val_accuracy[:] = 1.0
    logger.log_history(history)
    lap(f"log {epochs} epochs x 3 curves")
    files = [root / "models/model.npz", root / "metrics/history.csv", root / "metrics/train.json"]
    logger.log_artifacts(files, folder="train")
    logger.log_model(MLP.load(files[0]), files[0])
    lap("log files and pyfunc model")
lap("end run")
for name, seconds in phases:
    print(f"{name}\t{seconds}")
"""


def make_project(dest: Path) -> Path:
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "params.yaml", dest / "params.yaml")
    return dest


def env(tracking: bool) -> dict[str, str]:
    out = dict(os.environ)
    for key in ("DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        out.pop(key, None)
    out.pop("MLFLOW_TRACKING_URI", None)
    out["XORNET_TRACKING"] = "1" if tracking else "0"
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    return out


def timed(command: list[str], cwd: Path, tracking: bool) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env(tracking), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs each way")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE"
    )
    parser.add_argument("--limit", type=float, default=1.10, help="target ratio (report only)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="xornet-bench-tracking-") as tmp:
        project = make_project(Path(tmp))
        overrides = [*(f"--set={o}" for o in args.overrides), f"--set=train.epochs={args.epochs}"]
        timed([sys.executable, "stages/generate.py", *overrides[:-1]], project, False)
        train = [sys.executable, "stages/train.py", *overrides]
        for tracking in (False, True):  # warm-up; the first tracked run creates the store
            timed(train, project, tracking)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeat):
            for tracking in (False, True):
                times[tracking].append(timed(train, project, tracking))
        phases = subprocess.run(
            [sys.executable, "-c", BREAKDOWN, str(project), str(args.epochs), *args.overrides],
            env=env(True),
            capture_output=True,
            text=True,
        )
        if phases.returncode != 0:
            sys.exit(f"breakdown failed:\n{phases.stderr}")

    off, on = min(times[False]), min(times[True])
    print(f"train stage, {args.epochs} epochs, {' '.join(args.overrides) or 'params.yaml'}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; fastest of {args.repeat}")
    print()
    print(f"{'':22}{'fastest':>10}{'median':>10}")
    for label, key in (("tracking off", False), ("tracking on", True)):
        print(f"{label:22}{min(times[key]):>9.2f}s{statistics.median(times[key]):>9.2f}s")
    ratio = on / off
    verdict = "within" if ratio <= args.limit else "OVER"
    print(f"\nratio on/off: {ratio:.2f}  ({verdict} the {args.limit:.2f} target)")
    print(f"tracking adds {on - off:.2f} s ({(on - off) / args.epochs * 1e3:.3f} ms per epoch)")
    print("\nwhere tracking's time goes (one run, same store):")
    for line in phases.stdout.strip().splitlines():
        name, seconds = line.split("\t")
        print(f"  {name:34}{float(seconds):>7.2f}s")


if __name__ == "__main__":
    main()
