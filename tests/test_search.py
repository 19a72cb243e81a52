"""xornet-search: seeded sampling, validation before queueing, and a real DVC queue."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    LIGHT_PLOTS,
    REPO_ROOT,
    base_env,
    exp_rows,
    make_clone,
    queue_workers,
    run,
    set_params,
    unmeasured,
    wait_for_queue,
)
from xornet.search import Dimension, sample_configs

SEARCH = [sys.executable, "-c", "from xornet.search import entry_point; entry_point()"]


def search(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEARCH, *args], cwd=cwd, env=base_env(), capture_output=True, text=True, timeout=300
    )


def test_log_uniform_samples_stay_in_range_and_spread_over_decades():
    dim = Dimension("train.learning_rate", "log-uniform", 0.001, 10.0)
    values = [c["train.learning_rate"] for c in sample_configs([dim], 2000, seed=1)]
    assert min(values) >= 0.001 and max(values) <= 10.0
    decades = np.histogram(np.log10(values), bins=[-3, -2, -1, 0, 1])[0]
    assert decades.min() > 350  # ~500 per decade when log-uniform


def test_same_seed_same_configs_other_seed_other_configs():
    dims = [
        Dimension("train.learning_rate", "log-uniform", 0.01, 2.0),
        Dimension("model.hidden", "choice", choices=([2], [4], [8])),
    ]
    assert sample_configs(dims, 5, 3) == sample_configs(dims, 5, 3)
    assert sample_configs(dims, 5, 3) != sample_configs(dims, 5, 4)


def test_dry_run_prints_the_queue_commands(tmp_path):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path)
    args = (
        "--dry-run",
        "-n",
        "3",
        "--seed",
        "7",
        "--log-uniform",
        "train.learning_rate=0.1:2",
        "--choice",
        "model.hidden=[[2], [4, 4]]",
    )
    first = search(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("dvc exp run --queue --name search-7-") for line in lines)
    assert all("-S train.learning_rate=" in line for line in lines)
    assert search(*args, cwd=tmp_path).stdout == first.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--log-uniform", "train.learning_rate=0:1"), ["log-uniform bounds must be > 0"]),
        (("--uniform", "train.momentum=0.9:0.1"), ["LOW < HIGH"]),
        (("--int", "train.epochs=-5:0"), ["train.epochs", "greater than or equal to 1"]),
        (("--choice", "model.activation=[swish]"), ["model.activation", "'swish'"]),
        (("--choice", "model.activation=tanh"), ["section.key=[choice"]),
        (("--log-uniform", "train.learning_rte=0.1:1"), ["unknown key", "learning_rte"]),
        ((), ["nothing to search"]),
    ],
)
def test_bad_search_options_queue_nothing(tmp_path, args, words):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path)
    proc = search("-n", "2", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr
    assert proc.stdout == ""


@pytest.mark.slow
def test_random_search_runs_on_the_dvc_queue(tmp_path):
    repo = make_clone(tmp_path / "xornet")
    set_params(repo, train={"epochs": 150}, plot=LIGHT_PLOTS)
    run(["git", "commit", "-qam", "short training"], repo)
    proc = search(
        "-n",
        "2",
        "--seed",
        "1",
        "--log-uniform",
        "train.learning_rate=0.1:1.5",
        "--choice",
        "model.hidden=[[4], [3, 3]]",
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    with queue_workers(repo, unmeasured(base_env()), jobs=2):  # tracking off: the queue alone
        wait_for_queue(repo)
    status = run(["dvc", "queue", "status"], repo).stdout
    assert status.count("Success") == 2 and "Failed" not in status, status
    rows = {row["name"]: row for row in exp_rows(repo)}
    assert set(rows) == {"search-1-0", "search-1-1"}
    queued = [line for line in proc.stdout.splitlines() if line.startswith("dvc exp run")]
    for line, name in zip(queued, ("search-1-0", "search-1-1"), strict=True):
        hidden = rows[name]["params"]["model"]["hidden"]
        assert f"model.hidden={hidden}".replace(" ", "") in line.replace(" ", "").replace("'", "")
        assert rows[name]["metrics"]["metrics/evaluate.json"]["accuracy"] >= 0
