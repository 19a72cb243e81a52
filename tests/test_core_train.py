"""The training loop: divergence, determinism, mini-batches, float32, the tutorial's plateau."""

import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from xornet.core.data import generate
from xornet.core.losses import LOSSES
from xornet.core.model import MAX_THREADS, MLP, Architecture
from xornet.core.training import History, TrainConfig, train
from xornet.errors import DivergenceError
from xornet.files.models import save_model

LN2 = math.log(2.0)


def xor_data(n: int = 200, seed: int = 0):
    train_set, _ = generate("xor", n + 2, 2 / (n + 2), seed)
    return train_set.X, train_set.y


def make_model(activation="sigmoid", hidden=(4,), seed=0, scale=1.0, init="xavier"):
    return MLP.create(Architecture(2, hidden, activation), init=init, scale=scale, seed=seed)


def assert_identical(a, b):
    for name in a.model.params:
        assert np.array_equal(a.model.params[name], b.model.params[name]), name
    for field in ("epoch", "train_loss", "val_loss", "val_accuracy"):
        assert np.array_equal(getattr(a.history, field), getattr(b.history, field), equal_nan=True)


def test_learns_xor():
    X, y = xor_data()
    config = TrainConfig(learning_rate=1.0, epochs=1000)
    result = train(make_model(hidden=(4,), seed=2), X, y, config, validation=(X, y))
    assert result.history.train_loss[-1] < 0.05
    assert result.history.val_accuracy[-1] == 1.0
    np.testing.assert_array_equal(result.model.predict(X), y)


def test_history_shape_and_meaning():
    X, y = xor_data()
    model = make_model()
    result = train(model, X, y, TrainConfig(epochs=7), validation=(X, y))
    h = result.history
    assert isinstance(h, History) and len(h) == 7
    np.testing.assert_array_equal(h.epoch, np.arange(1, 8))
    # train_loss[0] is the loss before the first update; val_loss[i] after update i+1
    assert h.train_loss[0] == pytest.approx(model.loss(X, y, LOSSES["bce"]), rel=1e-14)
    assert h.val_loss[-1] == pytest.approx(result.model.loss(X, y, LOSSES["bce"]), rel=1e-14)
    assert h.has_validation


def test_train_does_not_mutate_its_input_model():
    X, y = xor_data()
    model = make_model()
    before = {k: v.copy() for k, v in model.params.items()}
    train(model, X, y, TrainConfig(epochs=5))
    for name, value in before.items():
        np.testing.assert_array_equal(model.params[name], value)


def test_callback_schedule():
    X, y = xor_data()
    seen = []

    def callback(epoch, model, history):
        seen.append((epoch, len(history)))

    train(make_model(), X, y, TrainConfig(epochs=10), callback=callback, callback_every=4)
    assert seen == [(0, 0), (4, 4), (8, 8), (10, 10)]


# ---------------------------------------------------------------- divergence
def check_divergence(model, X, y, config, epoch, what):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported by the exception, not by RuntimeWarnings
        with pytest.raises(DivergenceError) as info:
            train(model, X, y, config)
    error = info.value
    assert (error.epoch, error.what) == (epoch, what)
    assert str(error) == f"training diverged at epoch {epoch}: {what} became non-finite"


@pytest.mark.parametrize(
    ("activation", "loss", "batch_size"),
    [("sigmoid", "bce", 0), ("relu", "mse", 0), ("tanh", "bce", 16)],
)
def test_infinite_learning_rate_blames_the_first_update(activation, loss, batch_size):
    """The first update makes W1 non-finite: epoch 1 is blamed, not the epoch whose loss shows."""
    X, y = xor_data()
    config = TrainConfig(loss=loss, learning_rate=math.inf, epochs=50, batch_size=batch_size)
    check_divergence(make_model(activation, hidden=(8,)), X, y, config, 1, "parameter W1")


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_overflowing_logits_give_a_non_finite_loss(activation):
    """lr 1e308: the weights stay finite, but the logits of epoch 2 overflow."""
    X, y = xor_data()
    config = TrainConfig(loss="bce", learning_rate=1e308, epochs=50)
    check_divergence(make_model(activation, hidden=(8,)), X, y, config, 2, "train loss")


@pytest.mark.parametrize(
    ("activation", "loss"), [("relu", "mse"), ("sigmoid", "mse"), ("relu", "bce")]
)
def test_saturation_is_not_divergence(activation, loss):
    """lr 1e6 drives units into saturation (MSE's gradient vanishes, ReLUs die or fit
    exactly): the weights stay finite, so train returns them rather than raising."""
    X, y = xor_data()
    config = TrainConfig(loss=loss, learning_rate=1e6, epochs=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = train(make_model(activation, hidden=(8,), seed=4), X, y, config)
    assert np.all(np.isfinite(result.model.theta))
    assert np.all(np.isfinite(result.history.train_loss))


def test_non_finite_initial_weights_are_rejected():
    X, y = xor_data()
    model = make_model()
    model.params["b1"][0, 0] = np.nan
    with pytest.raises(ValueError, match="initial parameter b1"):
        train(model, X, y, TrainConfig(epochs=1))


def test_no_non_finite_weights_are_returned():
    """Whatever the learning rate, train either raises or returns finite weights."""
    X, y = xor_data()
    for lr in (1e3, 1e6, 1e9):
        for activation in ("sigmoid", "tanh", "relu"):
            for loss in ("bce", "mse"):
                config = TrainConfig(loss=loss, learning_rate=lr, epochs=200)
                try:
                    result = train(make_model(activation, seed=1), X, y, config)
                except DivergenceError:
                    continue
                for value in result.model.params.values():
                    assert np.all(np.isfinite(value))
                assert np.all(np.isfinite(result.history.train_loss))


# --------------------------------------------------------------- determinism
@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
@pytest.mark.parametrize("batch_size", [0, 16])
def test_same_seeds_give_bit_identical_results(optimizer, batch_size):
    X, y = xor_data(300)
    config = TrainConfig(optimizer=optimizer, learning_rate=0.1, epochs=30, batch_size=batch_size)
    runs = [train(make_model("tanh", seed=7), X, y, config, validation=(X, y)) for _ in range(2)]
    assert_identical(*runs)


def test_large_batches_are_bit_identical_run_to_run():
    """Many blocks: per-block gradients are summed in a fixed order."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(2, 60_000)).astype(np.float64)
    y = np.logical_xor(X[0], X[1])[np.newaxis, :].astype(np.int64)
    config = TrainConfig(learning_rate=1.0, epochs=3, block=1024)
    runs = [train(make_model(hidden=(16,), seed=3), X, y, config) for _ in range(3)]
    assert_identical(runs[0], runs[1])
    assert_identical(runs[0], runs[2])


def test_saved_models_are_byte_identical(tmp_path):
    X, y = xor_data()
    config = TrainConfig(optimizer="adam", learning_rate=0.05, epochs=20)
    paths = []
    for i in range(2):
        result = train(make_model(seed=11), X, y, config)
        paths.append(tmp_path / f"model{i}.npz")
        save_model(result.model, paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_different_shuffle_seeds_differ():
    X, y = xor_data()
    a, b = (
        train(make_model(), X, y, TrainConfig(epochs=3, batch_size=10, shuffle_seed=s))
        for s in (0, 1)
    )
    assert not np.array_equal(a.model.params["W1"], b.model.params["W1"])


# ------------------------------------------------------------ batches, dtype
def test_minibatch_with_batch_size_n_equals_full_batch():
    X, y = xor_data()
    full = train(make_model(), X, y, TrainConfig(epochs=10))
    same = train(make_model(), X, y, TrainConfig(epochs=10, batch_size=X.shape[1]))
    assert_identical(full, same)


def test_minibatch_epoch_loss_is_the_sample_weighted_mean():
    X, y = xor_data(10)
    model = make_model()
    config = TrainConfig(epochs=1, batch_size=4, learning_rate=0.0)
    result = train(model, X, y, config)  # lr 0: every batch sees the initial weights
    assert result.history.train_loss[0] == pytest.approx(model.loss(X, y, LOSSES["bce"]), rel=1e-14)


def test_float32_trains():
    X, y = xor_data()
    config64 = TrainConfig(learning_rate=1.0, epochs=1000)
    config32 = TrainConfig(learning_rate=1.0, epochs=1000, dtype="float32")
    r64 = train(make_model(hidden=(4,), seed=2), X, y, config64)
    r32 = train(make_model(hidden=(4,), seed=2), X, y, config32)
    assert r32.model.theta.dtype == np.float32
    for value in r32.model.params.values():
        assert value.dtype == np.float32
    assert r32.history.train_loss[-1] < 0.05
    # the same trajectory, up to float32 rounding
    np.testing.assert_allclose(
        r32.history.train_loss[:100], r64.history.train_loss[:100], rtol=1e-4
    )
    np.testing.assert_array_equal(r32.model.predict(X), y)


# ------------------------------------------------------------ the tutorial
def test_tutorial_setting_stays_on_the_ln2_plateau():
    """2 sigmoid units, normal init * 0.01, zero biases, BCE, GD, lr 0.01 (DESIGN.md §5)."""
    X, y = xor_data(400)
    model = make_model("sigmoid", hidden=(2,), seed=0, scale=0.01, init="normal")
    assert all(not np.any(model.params[b]) for b in ("b1", "b2"))
    result = train(
        model, X, y, TrainConfig(loss="bce", optimizer="gd", learning_rate=0.01, epochs=5000)
    )
    loss = result.history.train_loss
    assert loss[0] == pytest.approx(LN2, abs=1e-3)
    assert np.all(np.abs(loss - LN2) < 0.01)


# ------------------------------------------------- validation in the training pass
def split_xor(n_train: int, n_val: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2, n_train + n_val))
    y = (X[0] * X[1] > 0).astype(np.float64)[np.newaxis, :]
    return (X[:, :n_train], y[:, :n_train]), (X[:, n_train:], y[:, n_train:])


@pytest.mark.parametrize(
    ("activation", "loss", "hidden", "n_train", "n_val", "block"),
    [
        ("sigmoid", "bce", (2,), 300, 75, 0),  # one block holds both
        ("tanh", "mse", (5, 3), 300, 75, 0),
        ("relu", "bce", (8,), 1_000, 2_500, 512),  # validation spills into blocks of its own
        ("sigmoid", "bce", (16,), 5_000, 1_250, 1024),  # threads share the blocks
        ("tanh", "bce", (4,), 50, 20, 0),  # block widths 50 and 70 round W @ A apart
    ],
)
def test_validation_columns_leave_training_unchanged(
    activation, loss, hidden, n_train, n_val, block
):
    """The validation columns ride along in the training pass: weights and training
    losses are those of a run without validation (to rounding: a product's width
    changes how OpenBLAS rounds it, see xornet.core.model), and every epoch's
    validation loss and accuracy are those of the model after that epoch's update."""
    (X, y), (Xv, yv) = split_xor(n_train, n_val)
    config = TrainConfig(loss=loss, learning_rate=0.3, epochs=6, block=block)
    model = make_model(activation, hidden=hidden, seed=4, scale=1.5)
    seen = {}

    def callback(epoch, current, history):
        seen[epoch] = current.copy()

    fused = train(model, X, y, config, validation=(Xv, yv), callback=callback, callback_every=1)
    plain = train(model, X, y, config)
    for name, value in plain.model.params.items():
        tolerance = 1e-13 * np.max(np.abs(value))
        np.testing.assert_allclose(fused.model.params[name], value, rtol=0, atol=tolerance)
    np.testing.assert_allclose(fused.history.train_loss, plain.history.train_loss, rtol=1e-14)
    assert sorted(seen) == list(range(7))
    for epoch in range(1, 7):
        after = seen[epoch]
        expected = after.loss(Xv, yv, LOSSES[loss])
        assert fused.history.val_loss[epoch - 1] == pytest.approx(expected, rel=1e-13, abs=0)
        accuracy = np.mean((after.logits(Xv) >= 0) == (yv == 1))
        assert fused.history.val_accuracy[epoch - 1] == accuracy


def test_the_callback_schedule_does_not_change_the_history():
    (X, y), (Xv, yv) = split_xor(400, 100)
    config = TrainConfig(learning_rate=0.5, epochs=9)
    runs = [
        train(make_model(seed=1), X, y, config, validation=(Xv, yv), callback=cb, callback_every=k)
        for cb, k in ((None, 0), (lambda *a: None, 1), (lambda *a: None, 4))
    ]
    assert_identical(runs[0], runs[1])
    assert_identical(runs[0], runs[2])


def test_thread_count_does_not_change_the_bytes(monkeypatch):
    from xornet.core import model as model_module

    (X, y), (Xv, yv) = split_xor(6_000, 1_500)
    config = TrainConfig(learning_rate=0.5, epochs=3, block=512)
    runs = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(model_module, "THREADS", threads)
        monkeypatch.setattr(model_module, "_pool", None)
        runs.append(train(make_model(hidden=(6,), seed=2), X, y, config, validation=(Xv, yv)))
    assert_identical(runs[0], runs[1])
    assert_identical(runs[0], runs[2])


THREADS_IN_CHILD = """
import os, sys
if sys.argv[1] != "all":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from xornet.core import model
print(model.THREADS, len(os.sched_getaffinity(0)))
"""


@pytest.mark.parametrize("cpus", ["all", "one"])
def test_blocks_get_one_thread_per_cpu_the_process_may_use(cpus):
    """The default thread count follows the process's CPU affinity (`taskset` narrows it)."""
    out = subprocess.run(
        [sys.executable, "-c", THREADS_IN_CHILD, cpus],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    threads, allowed = int(out[0]), int(out[1])
    assert threads == min(allowed, MAX_THREADS)
    if cpus == "one":
        assert threads == 1
    else:
        assert allowed == len(os.sched_getaffinity(0))


def test_divergence_with_validation_reports_the_epoch_before():
    """The callback of the last finite epoch still runs before the divergence is raised."""
    X, y = xor_data()
    seen = []
    config = TrainConfig(learning_rate=math.inf, epochs=5)
    with pytest.raises(DivergenceError) as info:
        train(
            make_model(hidden=(8,)),
            X,
            y,
            config,
            validation=(X, y),
            callback=lambda epoch, model, history: seen.append(epoch),
            callback_every=1,
        )
    assert (info.value.epoch, info.value.what) == (1, "parameter W1")
    assert seen == [0]
