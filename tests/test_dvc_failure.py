"""A stage that fails under DVC says how to get its outputs back.

DVC deletes a stage's outputs before running its command, so a failed `dvc repro`
leaves none (run by hand, a failing stage leaves the previous outputs untouched:
tests/test_stages.py). Every failure line of :func:`xornet.cli.run` then names the
`dvc checkout` that restores the last good outputs, and following it does, byte for
byte. Outside DVC the lines stay as they are."""

import re
import signal
import sys
from pathlib import Path

import click
import pytest

from conftest import LIGHT_PLOTS, make_clone, run, set_params
from xornet import cli
from xornet.errors import BadInput, DivergenceError, Failure, Terminated

HINT = (
    "(DVC removed this stage's outputs before running it;"
    " `dvc checkout train` restores the last good ones)"
)
TRAIN_OUTPUTS = [
    "models/model.npz",
    "models/snapshots.npz",
    "metrics/history.csv",
    "metrics/train.json",
]


# ------------------------------------------------------------- the line, in process
def test_error_line_names_dvc_checkout_only_under_dvc(monkeypatch):
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert cli.error_line("train", "boom") == "train: error: boom"
    monkeypatch.setenv("DVC_STAGE", "train")
    assert cli.error_line("train", "boom") == f"train: error: boom {HINT}"
    # A stage of a dvc.yaml in a subfolder is addressed by path: quoted for the shell.
    monkeypatch.setenv("DVC_STAGE", "sub dir/dvc.yaml:train")
    assert cli.error_line("train", "boom").endswith(
        "`dvc checkout 'sub dir/dvc.yaml:train'` restores the last good ones)"
    )


def raising(exc: BaseException) -> click.Command:
    @click.command()
    def command() -> None:
        raise exc

    return command


FAILURES = [
    pytest.param(BadInput("train.learning_rate = -1"), 2, id="bad-input"),
    pytest.param(click.BadParameter("nope"), 2, id="bad-option"),
    pytest.param(DivergenceError(3, "loss"), 1, id="divergence"),
    pytest.param(Failure("tracking server down"), 1, id="failure"),
    pytest.param(OSError("disk full"), 1, id="os-error"),
    pytest.param(KeyboardInterrupt(), 130, id="ctrl-c"),
    pytest.param(click.exceptions.Abort(), 130, id="abort"),
    pytest.param(Terminated(), 143, id="sigterm"),
]


@pytest.mark.parametrize("under_dvc", [False, True], ids=["by-hand", "dvc"])
@pytest.mark.parametrize(("exc", "code"), FAILURES)
def test_every_failure_exit_of_run_gets_the_hint_under_dvc(
    exc, code, under_dvc, monkeypatch, capsys
):
    if under_dvc:
        monkeypatch.setenv("DVC_STAGE", "train")
    else:
        monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.setattr(sys, "argv", ["stages/train.py"])
    previous = signal.getsignal(signal.SIGTERM)  # cli.run installs its own handler
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.run(raising(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exit_.value.code == code
    # (click ends the line a Ctrl-C interrupted first: a blank line before ours)
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert line.startswith("train: error: ")
    assert line.endswith(HINT) == under_dvc
    assert ("dvc checkout" in line) == under_dvc


# ------------------------------------------------------------- the real dvc CLI
@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    """A clone (short training) in which `dvc repro` ran and was committed."""
    repo = make_clone(tmp_path_factory.mktemp("failure") / "xornet")
    set_params(repo, train={"epochs": 200}, plot=LIGHT_PLOTS)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "reproduced"], repo)
    return repo


@pytest.mark.slow
@pytest.mark.parametrize(
    ("train", "code", "words"),
    [
        pytest.param({"learning_rate": -1}, 2, "train.learning_rate = -1", id="refused-params"),
        # The loss, from the logits, stays finite however wrong the network is: only a
        # step near the float64 limit overflows it (the default network: at epoch 3).
        pytest.param(
            {"learning_rate": 1e306, "optimizer": "momentum"},
            1,
            "training diverged at epoch",
            id="divergence",
        ),
    ],
)
def test_failed_repro_names_dvc_checkout_which_restores_the_outputs(reproduced, train, code, words):
    repo = reproduced
    before = {path: (repo / path).read_bytes() for path in TRAIN_OUTPUTS}
    set_params(repo, train=train)
    try:
        proc = run(["dvc", "repro", "train"], repo, check=False)
        assert proc.returncode != 0, proc.stdout
        assert "Traceback" not in proc.stderr, proc.stderr
        # DVC's own summary gives the stage command's exit code.
        assert re.search(rf"failed to run: .*, exited with {code}\b", proc.stderr), proc.stderr
        (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("train: error: ")]
        assert words in line
        assert line.endswith(HINT)
        # What the hint is for: DVC removed the outputs before running the command.
        assert not any((repo / path).exists() for path in TRAIN_OUTPUTS)
    finally:
        run(["git", "checkout", "--", "params.yaml"], repo)
    run(["dvc", "checkout", "train"], repo)
    assert {path: (repo / path).read_bytes() for path in TRAIN_OUTPUTS} == before
    assert "up to date" in run(["dvc", "status"], repo).stdout
