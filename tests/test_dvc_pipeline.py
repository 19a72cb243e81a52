"""The pipeline driven by the real `dvc` CLI in temporary git clones (tracking off here;
tests/test_tracking*.py cover MLflow)."""

import json
from pathlib import Path

import pytest
import yaml

from conftest import LIGHT_PLOTS, OUTPUTS, exp_rows, make_clone, run, set_params

pytestmark = pytest.mark.slow


def lock_outs(repo: Path) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
    }


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    repo = make_clone(tmp_path_factory.mktemp("repro") / "xornet")
    run(["dvc", "repro"], repo)
    return repo


def test_repro_runs_every_stage_then_has_nothing_to_do(reproduced):
    for path in OUTPUTS:
        assert (reproduced / path).is_file(), path
    again = run(["dvc", "repro"], reproduced)
    assert "Running stage" not in again.stdout
    status = run(["dvc", "status"], reproduced)
    assert "up to date" in status.stdout
    # Outputs are git-ignored (by the committed per-folder .gitignore files DVC keeps):
    # nothing but dvc.lock can show up in git status.
    porcelain = run(["git", "status", "--porcelain"], reproduced).stdout.splitlines()
    assert [line for line in porcelain if not line.endswith("dvc.lock")] == []


def test_two_clones_give_byte_identical_outputs(reproduced, tmp_path):
    other = make_clone(tmp_path / "other")
    run(["dvc", "repro"], other)
    assert lock_outs(other) == lock_outs(reproduced)
    assert (other / "dvc.lock").read_bytes() == (reproduced / "dvc.lock").read_bytes()


def test_metrics_params_and_plots_commands_work(reproduced):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], reproduced).stdout)
    workspace = {path: entry["data"] for path, entry in shown[""]["data"].items()}
    declared = yaml.safe_load((reproduced / "dvc.yaml").read_text())["stages"]
    metric_files = {m for stage in declared.values() for m in stage.get("metrics", [])}
    assert set(workspace) == metric_files
    for path, values in workspace.items():  # what DVC shows is what the stages wrote
        written = json.loads((reproduced / path).read_text())
        # (DVC leaves out empty lists, e.g. a converged run's reasons.)
        assert values == {k: v for k, v in written.items() if v != []}, path
    assert set(workspace["metrics/evaluate.json"]) >= {"accuracy", "precision", "recall", "f1"}
    assert workspace["metrics/diagnosis.json"]["verdict"] == "converged"
    # Nothing changed since the commit: both diffs are empty.
    assert run(["dvc", "params", "diff"], reproduced).stdout == ""
    assert run(["dvc", "metrics", "diff"], reproduced).stdout == ""


def test_plot_params_never_retrain(reproduced):
    set_params(reproduced, plot={"dpi": 80})
    try:
        out = run(["dvc", "repro"], reproduced).stdout
        assert "Running stage 'plot'" in out
        for other in ("generate", "train", "evaluate"):
            assert f"Running stage '{other}'" not in out
    finally:
        set_params(reproduced, plot={"dpi": 100})
        run(["dvc", "repro"], reproduced)


def test_exp_run_with_set_param_changes_metrics(tmp_path):
    repo = make_clone(tmp_path / "xornet")
    set_params(repo, train={"epochs": 200}, plot=LIGHT_PLOTS)
    run(["git", "commit", "-qam", "short training"], repo)
    run(["dvc", "exp", "run", "-n", "slow-lr"], repo)  # ensure a baseline result
    run(["dvc", "exp", "run", "-n", "fast-lr", "-S", "train.learning_rate=1.5"], repo)
    rows = {row["name"]: row for row in exp_rows(repo)}
    assert {"slow-lr", "fast-lr"} <= set(rows)
    slow = rows["slow-lr"]["metrics"]["metrics/train.json"]["train_loss"]
    fast = rows["fast-lr"]["metrics"]["metrics/train.json"]["train_loss"]
    assert fast != slow
