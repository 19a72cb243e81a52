"""The training loop's paths against hand-written loops over the reference network.

``test_core_reference.py`` pins full-batch training to ``reference.train``; here the
other paths get their own oracle: shuffled mini-batches (with a remainder of one
column, and batches of one), validation measured after every epoch, the callback's
schedule on each path, optimizer settings away from their defaults, the epoch a
divergence is blamed on, and the activations' ``out`` contract.
"""

import math

import numpy as np
import pytest

from xornet.core import reference
from xornet.core.activations import ACTIVATIONS, sigmoid
from xornet.core.model import MLP, Architecture
from xornet.core.training import TrainConfig, _check_finite, train
from xornet.errors import DivergenceError

TOLERANCE = 1e-12


def make_case(n=50, activation="tanh", hidden=(4,), seed=2):
    model = MLP.create(Architecture(2, hidden, activation), scale=1.0, seed=seed, bias_scale=0.2)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2, n))
    y = (X[0] * X[1] > 0).astype(np.float64)[np.newaxis, :]
    return model, X, y


def plain(model: MLP) -> dict[str, np.ndarray]:
    return {name: np.array(value) for name, value in model.params.items()}


def relative_error(ours, oracle) -> float:
    ours, oracle = np.asarray(ours, dtype=np.float64), np.asarray(oracle, dtype=np.float64)
    return float(np.max(np.abs(ours - oracle)) / max(np.max(np.abs(oracle)), 1e-300))


def minibatch_gd_by_hand(params, X, y, config, activation, validation):
    """Shuffled mini-batch gradient descent, as TrainConfig documents it, on the reference."""
    n = X.shape[1]
    rng = np.random.default_rng(config.shuffle_seed)
    train_loss, val_loss, val_accuracy = [], [], []
    for _ in range(config.epochs):
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, config.batch_size):
            columns = order[start : start + config.batch_size]
            value, grads = reference.loss_and_gradients(
                params, X[:, columns], y[:, columns], activation, config.loss
            )
            total += value * len(columns)
            for name, g in grads.items():
                params[name] -= config.learning_rate * g
        train_loss.append(total / n)
        X_val, y_val = validation
        val_loss.append(
            reference.loss_and_gradients(params, X_val, y_val, activation, config.loss)[0]
        )
        p = reference.forward(params, X_val, activation)[1][-1]
        val_accuracy.append(np.mean((p >= 0.5) == (y_val == 1)))
    return params, train_loss, val_loss, val_accuracy


@pytest.mark.parametrize(
    ("n", "batch_size", "loss"),
    [(50, 16, "bce"), (49, 16, "mse"), (12, 1, "bce"), (40, 39, "mse")],
    ids=["remainder-2", "remainder-1", "batches-of-1", "one-short-of-full"],
)
def test_minibatch_training_matches_a_hand_written_loop_over_the_reference(n, batch_size, loss):
    model, X, y = make_case(n)
    X_val, y_val = make_case(30, seed=9)[1:]
    config = TrainConfig(
        loss=loss, learning_rate=0.7, epochs=6, batch_size=batch_size, shuffle_seed=11
    )
    result = train(model, X, y, config, validation=(X_val, y_val))
    params, train_loss, val_loss, val_accuracy = minibatch_gd_by_hand(
        plain(model), X, y, config, "tanh", (X_val, y_val)
    )
    for name, value in params.items():
        assert relative_error(result.model.params[name], value) <= 1e-11, name
    assert relative_error(result.history.train_loss, train_loss) <= TOLERANCE
    assert relative_error(result.history.val_loss, val_loss) <= TOLERANCE
    assert np.array_equal(result.history.val_accuracy, val_accuracy)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_optimizer_settings_away_from_their_defaults_reach_the_optimizer(optimizer):
    model, X, y = make_case()
    settings = dict(momentum=0.5, beta1=0.7, beta2=0.95, eps=0.3)
    config = TrainConfig(optimizer=optimizer, learning_rate=0.2, epochs=8, **settings)
    result = train(model, X, y, config)
    params, losses = reference.train(
        plain(model), X, y, "tanh", "bce", optimizer, 0.2, 8, **settings
    )
    assert relative_error(result.history.train_loss, losses) <= TOLERANCE
    for name, value in params.items():
        assert relative_error(result.model.params[name], value) <= TOLERANCE, name


# ------------------------------------------------------------------ the callback
def schedule(config, every=None, validation=None, n=50):
    model, X, y = make_case(n)
    seen = []

    def callback(epoch, at, history):
        seen.append(epoch)
        assert len(history) == epoch
        assert not np.any(np.isnan(history.train_loss))
        if validation is not None:
            assert not np.any(np.isnan(history.val_loss))  # measured for every epoch so far
        # The model handed over is the one after `epoch` epochs of this very run
        # (validation columns change the products' rounding, so they come along).
        alone = train(model, X, y, TrainConfig(**{**config.__dict__, "epochs": epoch}), validation)
        assert np.array_equal(at.theta, alone.model.theta)

    kwargs = {} if every is None else {"callback_every": every}
    train(model, X, y, config, validation=validation, callback=callback, **kwargs)
    return seen


def test_the_callback_runs_before_and_after_training_by_default():
    assert schedule(TrainConfig(epochs=5)) == [0, 5]


def test_the_callback_schedule_with_validation_riding_along():
    X_val, y_val = make_case(20, seed=9)[1:]
    seen = schedule(TrainConfig(epochs=7), every=2, validation=(X_val, y_val))
    assert seen == [0, 2, 4, 6, 7]


def test_the_fused_validation_path_reports_the_epoch_it_measured():
    # validation rides along one epoch late: epoch e's report happens in epoch e + 1
    X_val, y_val = make_case(20, seed=9)[1:]
    seen = schedule(TrainConfig(epochs=8), every=3, validation=(X_val, y_val))
    assert seen == [0, 3, 6, 8]


def test_no_epochs_with_validation_returns_the_initial_model_and_an_empty_history():
    model, X, y = make_case()
    result = train(model, X, y, TrainConfig(epochs=0), validation=make_case(20, seed=9)[1:])
    assert np.array_equal(result.model.theta, model.theta)
    assert len(result.history) == 0 and not result.history.has_validation


def test_the_last_epoch_is_reported_once_when_it_is_also_due():
    assert schedule(TrainConfig(epochs=9), every=3) == [0, 3, 6, 9]
    assert schedule(TrainConfig(epochs=6, batch_size=16), every=3) == [0, 3, 6]


# ------------------------------------------------------------------ divergence
def divergence(config, validation=None, **kwargs):
    model, X, y = make_case(hidden=(8,))
    with pytest.raises(DivergenceError) as info:
        train(model, X, y, config, validation=validation, **kwargs)
    return info.value.epoch, info.value.what


def test_an_overflowing_loss_is_blamed_on_its_epoch_on_every_path():
    val = make_case(20, seed=9)[1:]
    overflow = dict(learning_rate=1e308, epochs=20)
    # Full batch: the weights stay finite; the logits overflow at the third epoch,
    # with or without validation columns riding along.
    assert divergence(TrainConfig(**overflow)) == (3, "train loss")
    assert divergence(TrainConfig(**overflow), validation=val) == (3, "train loss")
    # The first mini-batch's step leaves finite weights whose next logits overflow.
    assert divergence(TrainConfig(**overflow, batch_size=16)) == (1, "train loss")


@pytest.mark.parametrize("batch_size", [0, 16])
@pytest.mark.parametrize("with_validation", [False, True])
def test_weights_broken_by_the_last_update_are_caught_at_the_end(batch_size, with_validation):
    val = make_case(20, seed=9)[1:] if with_validation else None
    config = TrainConfig(learning_rate=math.inf, epochs=1, batch_size=batch_size)
    assert divergence(config, validation=val) == (1, "parameter W1")


def test_weights_broken_mid_run_are_blamed_on_the_update_that_broke_them():
    val = make_case(20, seed=9)[1:]
    config = TrainConfig(learning_rate=math.inf, epochs=5)
    assert divergence(config) == (1, "parameter W1")
    assert divergence(config, validation=val) == (1, "parameter W1")


def test_a_callback_never_sees_broken_weights():
    seen = []
    config = TrainConfig(learning_rate=math.inf, epochs=5)
    callback = lambda epoch, model, history: seen.append(epoch)  # noqa: E731
    assert divergence(config, callback=callback, callback_every=1) == (1, "parameter W1")
    assert seen == [0]


def test_the_first_non_finite_parameter_is_named():
    model = make_case(hidden=(3, 2))[0]
    _check_finite(model, 4)  # all finite: nothing raised
    model.params["b2"][1, 0] = np.inf
    model.params["W3"][0, 0] = np.nan
    with pytest.raises(DivergenceError) as info:
        _check_finite(model, 4)
    assert (info.value.epoch, info.value.what) == (4, "parameter b2")


# ------------------------------------------------------------------ activations
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_write_into_the_buffers_they_are_given(name):
    activation = ACTIVATIONS[name]
    z = np.linspace(-3, 3, 13).reshape(1, 13)
    out = np.empty_like(z)
    assert activation.value(z, out) is out
    f, df = reference.ACTIVATIONS[name]
    np.testing.assert_allclose(out, f(z), rtol=1e-15, atol=0)
    deriv = np.empty_like(z)
    assert activation.derivative(z, out, deriv) is deriv
    np.testing.assert_allclose(deriv, df(z), rtol=1e-14, atol=0)


def test_sigmoid_keeps_float32_and_turns_integers_into_float64():
    z32 = np.array([-2.0, 0.0, 3.0], dtype=np.float32)
    assert sigmoid(z32).dtype == np.float32
    ints = np.array([-2, 0, 3])
    got = sigmoid(ints)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-ints.astype(np.float64))), rtol=1e-15)
