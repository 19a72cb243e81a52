"""xornet-search: seeded sampling, validation before queueing, and a real DVC queue."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import (
    REPO_ROOT,
    base_env,
    exp_rows,
    make_clone,
    run,
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


# The search below: --log-uniform train.learning_rate=0.1:1.5 --choice model.hidden=...
DIMENSIONS = [
    Dimension("train.learning_rate", "log-uniform", 0.1, 1.5),
    Dimension("model.hidden", "choice", choices=([4], [3, 3])),
]


@pytest.mark.slow
def test_random_search_queues_named_experiments_with_the_sampled_params(tmp_path):
    """What the search hands DVC: one queued experiment per sample, named for the seed,
    whose params (as `dvc exp show` reads them from the queued commit) are the sampled
    values, the rest as committed. The queue running queued experiments is
    tests/test_tracking_dvc.py's (a 2 x 2 grid; a sweep against a real server)."""
    repo = make_clone(tmp_path / "xornet")
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
    assert proc.stdout.splitlines()[-1] == (
        "queued 2 experiments; run them with: dvc queue start -j 2"
    )
    status = run(["dvc", "queue", "status"], repo).stdout
    queued = [line.split()[1] for line in status.splitlines() if line.endswith("Queued")]
    assert queued == ["search-1-0", "search-1-1"], status
    expected = dict(zip(queued, sample_configs(DIMENSIONS, 2, seed=1), strict=True))
    commands = [line for line in proc.stdout.splitlines() if line.startswith("dvc exp run")]
    assert len(commands) == 2
    committed = yaml.safe_load((repo / "params.yaml").read_text())
    rows = {row["name"]: row for row in exp_rows(repo)}
    assert set(rows) == set(queued)
    for name, command in zip(queued, commands, strict=True):
        params = rows[name]["params"]
        assert f"--name {name} " in command
        lr, hidden = expected[name]["train.learning_rate"], expected[name]["model.hidden"]
        assert params["train"]["learning_rate"] == pytest.approx(lr, rel=1e-5)
        assert params["model"]["hidden"] == hidden
        assert (
            params["train"] | {"learning_rate": committed["train"]["learning_rate"]}
            == (committed["train"])
        )
        assert params["data"] == committed["data"] and params["plot"] == committed["plot"]
