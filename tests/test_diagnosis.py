"""The training diagnosis: each verdict from a real training run chosen to produce it.

Runs go through the train stage's own logic (:func:`xornet.stages.train.run_train`,
probes and all) on data the generate stage's logic wrote, so what is checked
here is what ``metrics/diagnosis.json`` says after ``dvc repro``.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, base_env
from xornet.config.presets import PRESETS
from xornet.config.schema import load_params
from xornet.core import diagnosis
from xornet.core.training import History
from xornet.stages.common import NullLogger
from xornet.stages.generate import run_generate
from xornet.stages.train import TrainOutputs, run_train

PARAMS = REPO_ROOT / "params.yaml"
LN2 = math.log(2.0)


def trained(tmp_path, *overrides: str) -> tuple[diagnosis.Diagnosis, dict]:
    """Generate and train with ``overrides``; the diagnosis and the JSON the stage wrote."""
    params = load_params(PARAMS, overrides)
    train_path, test_path = tmp_path / "train.npz", tmp_path / "test.npz"
    run_generate(params, train_path, test_path)
    names = ("model.npz", "history.csv", "train.json", "snapshots.npz", "diagnosis.json")
    outputs = TrainOutputs(*(tmp_path / name for name in names))
    run = run_train(params, train_path, test_path, outputs, NullLogger())
    return run.diagnosis, json.loads(outputs.diagnosis.read_text())


def test_the_defaults_converge_at_the_epoch_they_solve_xor(tmp_path):
    found, written = trained(tmp_path)
    assert found.verdict == "converged" and written["verdict"] == "converged"
    train_metrics = json.loads((tmp_path / "train.json").read_text())
    assert written["evidence"]["converged_at_epoch"] == train_metrics["solved_at_epoch"] == 84
    assert written["evidence"]["final_train_loss"] == train_metrics["train_loss"]
    assert found.try_overrides == [] and written["try"] == []


def test_the_tutorial_sits_on_the_ln2_saddle_and_the_advice_solves_xor(tmp_path):
    found, written = trained(tmp_path / "stuck", *PRESETS["tutorial"])
    assert found.verdict == "plateau_ln2"
    assert set(found.reasons) == {"vanishing_gradient", "constant_output"}
    evidence = written["evidence"]
    assert abs(evidence["final_train_loss"] - LN2) < 0.01
    assert evidence["first_layer_gradient"] < diagnosis.THRESHOLDS["vanishing_gradient"]
    assert evidence["output_spread"] < 1e-3  # p is 0.5 on every sample, to 3 decimals
    assert written["try"] == [
        "model.init=xavier",
        "model.init_scale=1.0",
        "train.learning_rate=0.5",
        "model.hidden=[4]",
    ]
    (tmp_path / "fixed").mkdir()
    fixed, _ = trained(tmp_path / "fixed", *PRESETS["tutorial"], *found.try_overrides)
    assert fixed.verdict == "converged"


def test_a_tiny_learning_rate_is_too_small_and_ten_times_larger_converges(tmp_path):
    found, written = trained(tmp_path / "slow", "train.learning_rate=0.01")
    assert found.verdict == "lr_too_small"
    assert written["evidence"]["tail_relative_drop"] > diagnosis.THRESHOLDS["still_learning"]
    assert written["evidence"]["rising_share"] == 0.0
    assert found.try_overrides == ["train.learning_rate=0.1"]
    (tmp_path / "fixed").mkdir()
    fixed, _ = trained(tmp_path / "fixed", "train.learning_rate=0.1")
    assert fixed.verdict == "converged"


@pytest.mark.parametrize("optimizer", ["gd", "momentum"])
def test_a_huge_learning_rate_oscillates(tmp_path, optimizer):
    found, written = trained(tmp_path, "train.learning_rate=20", f"train.optimizer={optimizer}")
    assert found.verdict == "oscillating"
    evidence = written["evidence"]
    assert evidence["rising_share"] > diagnosis.THRESHOLDS["rising_share"]
    assert evidence["final_train_loss"] > evidence["min_train_loss"]
    assert found.try_overrides == ["train.learning_rate=2"]


def test_relus_killed_by_a_large_bias_init_are_named(tmp_path):
    # bias_scale 3: one of the two units starts with a bias so negative it is off
    # on every sample, and a unit that is off gets no gradient to turn it on.
    found, written = trained(
        tmp_path,
        "model.activation=relu",
        "model.init=he",
        "model.hidden=[2]",
        "model.bias_scale=3.0",
    )
    assert found.verdict == "plateau_ln2"
    assert "dead_relu" in found.reasons
    assert written["evidence"]["max_dead_share"] == 0.5
    assert {"model.activation=tanh", "model.bias_scale=0.0"} <= set(found.try_overrides)


def test_two_units_on_a_stalling_seed_stop_at_half_ln2(tmp_path):
    # Seed 1 of this setting fits two XOR patterns and leaves the other two at p = 0.5.
    stall = ("model.hidden=[2]", "model.init=normal", "model.init_scale=1.0")
    found, written = trained(tmp_path / "stall", *stall, "train.learning_rate=1.0", "model.seed=1")
    assert found.verdict == "plateau_half_ln2"
    assert abs(written["evidence"]["final_train_loss"] - LN2 / 2) < 0.01
    assert written["evidence"]["final_val_accuracy"] < 1.0
    assert found.try_overrides == ["model.hidden=[4]"]


def test_never_converged_below_full_test_accuracy(tmp_path):
    """Random settings, many of them bad: whatever else it says, the diagnosis never
    calls a run converged whose final test accuracy is below 100 %."""
    rng = np.random.default_rng(17)
    verdicts = []
    for i in range(14):
        overrides = (
            "data.kind=noisy_xor",
            f"data.noise={rng.uniform(0.0, 0.15):.3f}",
            "data.n_samples=300",
            f"model.hidden=[{rng.integers(1, 5)}]",
            f"model.activation={rng.choice(['sigmoid', 'tanh', 'relu'])}",
            f"model.init_scale={10 ** rng.uniform(-2, 0.5):.4g}",
            f"model.seed={i}",
            f"train.learning_rate={10 ** rng.uniform(-2.5, 1.3):.4g}",
            f"train.epochs={rng.integers(100, 600)}",
        )
        (tmp_path / str(i)).mkdir()
        found, written = trained(tmp_path / str(i), *overrides)
        accuracy = written["evidence"]["final_val_accuracy"]
        assert (found.verdict == "converged") == (accuracy == 1.0), (overrides, found.line())
        verdicts.append(found.verdict)
    assert "converged" in verdicts and len(set(verdicts)) >= 3  # the draw exercises the rules


def test_most_correlated_units_and_constant_units():
    A = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 5.0, 7.0], [3.0, 1.0, 0.0, 2.0]])
    assert diagnosis._most_correlated(A) == (pytest.approx(1.0), (1, 2))
    constant = np.array([[0.5, 0.5, 0.5], [0.2, 0.2, 0.2], [0.0, 1.0, 0.0]])
    assert diagnosis._most_correlated(constant) == (1.0, (1, 2))
    assert diagnosis._most_correlated(np.ones((1, 5))) == (0.0, (0, 0))


def test_probe_schedule_and_plateau_levels():
    assert diagnosis.probe_every(1000) == 50
    assert diagnosis.probe_every(20) == diagnosis.MIN_PROBE_GAP
    assert diagnosis.plateau_levels("bce") == {"ln2": LN2, "half_ln2": LN2 / 2}
    assert diagnosis.plateau_levels("mse") == {"ln2": 0.25, "half_ln2": 0.125}


def test_without_probes_a_flat_curve_at_ln2_is_a_plateau():
    epochs = 200
    history = History(
        np.arange(1, epochs + 1),
        np.full(epochs, LN2 - 1e-6),
        np.full(epochs, LN2),
        np.full(epochs, 0.5),
    )
    settings = diagnosis.RunSettings("bce", 0.01, "sigmoid", (2,), "normal", 0.01, 0.0, epochs)
    found = diagnosis.diagnose(history, [], settings)
    assert found.verdict == "plateau_ln2" and found.reasons == []
    out = found.to_json()
    assert json.dumps(out, allow_nan=False)  # NaN-free: dvc metrics and JSON readers accept it
    assert "diagnosis_final_train_loss" in found.numbers()


def test_the_train_stage_prints_the_diagnosis_as_its_last_line(tmp_path):
    env = base_env()
    for stage, extra in (("generate", []), ("train", ["--preset", "tutorial"])):
        outs = {
            "generate": ["--train-out", "train.npz", "--test-out", "test.npz"],
            "train": [
                "--train-data", "train.npz", "--test-data", "test.npz",
                "--model-out", "m.npz", "--snapshots-out", "s.npz", "--history-out", "h.csv",
                "--metrics-out", "t.json", "--diagnosis-out", "d.json",
            ],
        }[stage]  # fmt: skip
        proc = subprocess.run(
            [sys.executable, str(REPO_ROOT / "stages" / f"{stage}.py"), "--params", str(PARAMS)]
            + outs
            + extra,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("train: diagnosis: plateau_ln2: stuck at loss 0.692")
    assert last.endswith("try model.init=xavier model.init_scale=1.0 train.learning_rate=0.5 "
                         "model.hidden=[4]")  # fmt: skip
    assert json.loads((tmp_path / "d.json").read_text())["verdict"] == "plateau_ln2"


def test_a_plateau_over_seeds_with_two_units_is_a_capacity_verdict_in_the_study():
    """The study has what one run lacks: many seeds. Two tanh units from init scale 1
    stall on a good share of them; eight units do not."""
    from xornet.study import convergence

    params = load_params(
        PARAMS,
        (
            "model.init=normal",
            "model.init_scale=1.0",
            "train.learning_rate=1.0",
            "study.seeds=30",
            "study.grid={model.hidden: [[2], [8]]}",
        ),
    )
    two, eight = convergence.train_grid(params)
    stalled = two.summary["unsolved_ln2"] + two.summary["unsolved_half_ln2"]
    assert stalled >= 3, two.summary
    assert (two.summary["verdict"], two.summary["try"]) == ("capacity", "model.hidden=[4]")
    assert eight.summary["verdict"] == "converged" and eight.summary["try"] == ""


@pytest.mark.parametrize(
    ("hidden", "solved", "stalled", "diverged", "verdict"),
    [
        ((2,), 100, 0, 0, "converged"),
        ((2,), 70, 30, 0, "capacity"),
        ((2, 8), 70, 30, 0, "capacity"),
        ((8,), 70, 30, 0, "plateau"),
        ((8,), 50, 0, 50, "oscillating"),
        ((8,), 95, 5, 0, "not_converged"),
    ],
)
def test_verdicts_over_seeds(hidden, solved, stalled, diverged, verdict):
    assert diagnosis.diagnose_seeds(hidden, 100, solved, stalled, diverged)[0] == verdict


def test_a_very_short_run_is_not_judged_and_a_wide_layer_is_probed_in_bounded_memory(tmp_path):
    # 5 000 units: twin units among the first TWIN_UNITS only, probe columns cut so
    # that units x columns stays near PROBE_ELEMENTS.
    found, written = trained(tmp_path, "model.hidden=[5000]", "train.epochs=3")
    assert found.verdict == "not_converged" and "too few" in found.summary
    assert written["try"] == ["train.epochs=200"]
    assert 0.0 <= written["evidence"]["twin_correlation"] <= 1.0
