"""What MLflow tracking costs the train stage: tracking on vs off, and the courier's work.

Usage::

    python bench/bench_tracking.py                      # 10 000 epochs, defaults, ~1-2 min
    python bench/bench_tracking.py --repeat 3 --set data.n_samples=20000

The issue's target: with 10 000 epochs, tracking adds at most 10% to the train
stage's time compared with tracking switched off.

Method. A temporary copy of the project (stages/, src/, params.yaml) gets its
data from the generate stage; then the real train stage command,
``python stages/train.py --set train.epochs=N [--set ...]``, runs as a fresh
process, alternately with ``XORNET_TRACKING=0`` and with tracking on (MLflow's
SQLite store ``mlflow.db`` in the copy). With tracking on the stage records
its run into the outbox and starts the background courier; the stage's wall
time is what counts (imports, training, writing outputs, recording). The
benchmark then waits until the courier has delivered the run into MLflow —
untimed for the ratio, reported as "in MLflow after" — so the courier never
competes with the next timed run. One untimed run of each first (it creates
the store). The fastest of ``--repeat`` runs is the estimate (the machine is
shared; the minimum is the least noisy); medians are shown too.

Breakdown. One more tracked run records an entry while the benchmark holds
the courier lock (so the stage's courier leaves it pending); a separate
process then times the courier's phases on it: ``import mlflow``, opening the
store and getting the experiment, delivering the entry (run, params, N x 3
curve values in ``log_batch`` of 1 000, files, pyfunc model).
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
sys.path.insert(0, str(ROOT / "src"))

from xornet.tracking.courier import courier_lock, lock_holder  # noqa: E402
from xornet.tracking.outbox import Outbox  # noqa: E402

BREAKDOWN = r"""
import json, sys, time
from pathlib import Path
t = time.perf_counter()
phases = []
def lap(name):
    global t
    now = time.perf_counter(); phases.append((name, now - t)); t = now
root = Path(sys.argv[1])
sys.path.insert(0, str(root / "src"))
from xornet.tracking import mlflow_writer as tracking
from xornet.tracking.outbox import ENTRY_FILE, Outbox
(entry,) = Outbox(root).pending()
header = json.loads((entry / ENTRY_FILE).read_text())
lap("start-up (xornet)")
import mlflow  # noqa: F401
lap("import mlflow")
courier = tracking.Courier(root)
courier.session(header)
lap("open store, get experiment")
courier.deliver(entry)
lap("deliver the entry")
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


def wait_for_courier(project: Path) -> float:
    """Seconds until the courier has delivered everything and released its lock."""
    outbox = Outbox(project)
    start = time.perf_counter()
    while outbox.pending() or lock_holder(outbox.lock_file) is not None:
        time.sleep(0.02)
    if outbox.failed():
        sys.exit(f"the courier could not deliver a run: see {outbox.log_file}")
    return time.perf_counter() - start


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
        for tracking in (False, True):  # warm-up; the first delivery creates the store
            timed(train, project, tracking)
        wait_for_courier(project)
        times: dict[bool, list[float]] = {False: [], True: []}
        delivered: list[float] = []
        for _ in range(args.repeat):
            for tracking in (False, True):
                times[tracking].append(timed(train, project, tracking))
            delivered.append(wait_for_courier(project))
        outbox = Outbox(project)
        with courier_lock(outbox, wait=True):  # the stage's courier finds it busy and exits
            timed(train, project, True)
            time.sleep(1.0)
        phases = subprocess.run(
            [sys.executable, "-c", BREAKDOWN, str(project)],
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
    print(f"{'':26}{'fastest':>10}{'median':>10}")
    for label, key in (("tracking off", False), ("tracking on", True)):
        print(f"{label:26}{min(times[key]):>9.2f}s{statistics.median(times[key]):>9.2f}s")
    label = "in MLflow after the stage"
    print(f"{label:26}{min(delivered):>9.2f}s{statistics.median(delivered):>9.2f}s")
    ratio = on / off
    verdict = "within" if ratio <= args.limit else "OVER"
    print(f"\nratio on/off: {ratio:.3f}  ({verdict} the {args.limit:.2f} target)")
    print(f"tracking adds {on - off:.3f} s to the stage")
    print("\nthe courier's work for one run (background, after the stage):")
    for line in phases.stdout.strip().splitlines():
        name, seconds = line.split("\t")
        print(f"  {name:34}{float(seconds):>7.2f}s")


if __name__ == "__main__":
    main()
