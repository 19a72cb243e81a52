"""Losses and activations: known values, the ln 2 start, and stability at extreme logits."""

import math
import warnings

import numpy as np
import pytest

from xornet.core.activations import ACTIVATIONS, sigmoid
from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture

LN2 = math.log(2.0)


@pytest.fixture
def strict_numerics():
    """Any NumPy floating-point warning (overflow, invalid, divide) fails the test."""
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        yield


def bce_reference(z: np.ndarray, y: np.ndarray) -> float:
    p = 1.0 / (1.0 + np.exp(-z))
    return float(-np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_known_values():
    z = np.array([[0.0, 2.0, -1.5, 0.3]])
    y = np.array([[1.0, 0.0, 0.0, 1.0]])
    assert LOSSES["bce"].total(z, y) == pytest.approx(bce_reference(z, y), rel=1e-14)
    p = 1.0 / (1.0 + np.exp(-z))
    assert LOSSES["mse"].total(z, y) == pytest.approx(float(np.sum((p - y) ** 2)), rel=1e-14)
    np.testing.assert_allclose(sigmoid(z), p, rtol=1e-15)


@pytest.mark.parametrize("loss_name", ["bce", "mse"])
def test_delta_is_the_derivative(loss_name):
    loss = LOSSES[loss_name]
    z = np.linspace(-6, 6, 13)[np.newaxis, :]
    for label in (0.0, 1.0):
        y = np.full_like(z, label)
        h = 1e-6
        numeric = np.array(
            [
                (loss.total(z[:, [i]] + h, y[:, [i]]) - loss.total(z[:, [i]] - h, y[:, [i]]))
                / (2 * h)
                for i in range(z.shape[1])
            ]
        )
        np.testing.assert_allclose(
            loss.delta(z, y, np.empty_like(z))[0], numeric, rtol=1e-6, atol=1e-9
        )


@pytest.mark.parametrize("scale", [0.01, 1e-4])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_tiny_weights_start_at_ln2(scale, activation):
    """All-near-zero weights: the output is p ~ 1/2 for every sample, so BCE ~ ln 2."""
    model = MLP.create(Architecture(2, (2,), activation), init="normal", scale=scale, seed=1)
    X = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])
    y = np.array([[0, 1, 1, 0]])
    assert model.loss(X, y, LOSSES["bce"]) == pytest.approx(LN2, abs=10 * scale)


@pytest.mark.parametrize("loss_name", ["bce", "mse"])
def test_extreme_logits_are_finite_and_warning_free(loss_name, strict_numerics):
    loss = LOSSES[loss_name]
    z = np.array([[1e4, -1e4, 1e4, -1e4, 800.0, -800.0, 0.0]])
    y = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]])
    total = loss.total(z, y)
    delta = loss.delta(z, y, np.empty_like(z))
    assert math.isfinite(total)
    assert np.all(np.isfinite(delta))
    if loss_name == "bce":
        # two confidently right (0), four confidently wrong (|z| each), one at 0 (ln 2)
        assert total == pytest.approx(2e4 + 1600 + LN2, rel=1e-15)
        np.testing.assert_array_equal(delta, [[0.0, 0.0, 1.0, -1.0, 1.0, -1.0, -0.5]])
    else:
        assert total == pytest.approx(4.25, rel=1e-15)  # four wrong (1 each), one at p = 1/2


def test_bce_is_accurate_for_confident_predictions():
    """softplus form: tiny losses keep their relative precision (no 1 - p cancellation)."""
    z = np.array([[40.0, -40.0]])
    y = np.array([[1.0, 0.0]])
    expected = 2 * math.log1p(math.exp(-40.0))  # ~8.5e-18
    assert LOSSES["bce"].total(z, y) == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
def test_activations_extreme_inputs(name, strict_numerics):
    act = ACTIVATIONS[name]
    z = np.array([[-1e4, -800.0, -1.0, 0.0, 1.0, 800.0, 1e4]])
    a = act.value(z, np.empty_like(z))
    d = act.derivative(z, a, np.empty_like(z))
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(d))
    assert np.all(d >= 0)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
def test_activation_derivatives(name):
    act = ACTIVATIONS[name]
    z = np.array([[-3.0, -0.7, -0.1, 0.2, 0.9, 2.5]])
    h = 1e-6
    numeric = (act.value(z + h, np.empty_like(z)) - act.value(z - h, np.empty_like(z))) / (2 * h)
    a = act.value(z, np.empty_like(z))
    np.testing.assert_allclose(
        act.derivative(z, a, np.empty_like(z)), numeric, rtol=1e-8, atol=1e-10
    )


def test_sigmoid_precision_in_the_tails():
    """sigmoid(-30) ~ 9.4e-14 must keep its relative precision (no 1 + tanh cancellation)."""
    z = np.array([-30.0, -700.0, 30.0])
    expected = np.array(
        [1 / (1 + math.exp(30.0)), 1 / (1 + math.exp(700.0)), 1 / (1 + math.exp(-30.0))]
    )
    np.testing.assert_allclose(sigmoid(z), expected, rtol=1e-14)


@pytest.mark.parametrize("loss_name", ["bce", "mse"])
def test_training_form_matches_the_definitions(loss_name, strict_numerics):
    """evaluate(z, encode(y, scale)) = (total, scale * delta), also where e^x overflows."""
    loss = LOSSES[loss_name]
    rng = np.random.default_rng(0)
    ordinary = rng.standard_normal((1, 50)) * 5
    extreme = np.array([[1e4, -1e4, 1e4, -1e4, 750.0, -750.0, 40.0, -40.0]])
    for z in (ordinary, extreme):
        y = rng.integers(0, 2, size=z.shape)
        y[0, :4] = [0, 0, 1, 1]
        scale = 1.0 / 7
        out, work = np.empty_like(z), np.empty_like(z)
        total = loss.evaluate(z, loss.encode(y, scale, np.float64), out, work)
        assert total == pytest.approx(loss.total(z, y), rel=1e-13, abs=1e-300)
        # atol: the definition's sigmoid(z) - y cancels for y = 1; the fused form does not
        reference = scale * loss.delta(z, y, np.empty_like(z))
        np.testing.assert_allclose(out, reference, rtol=1e-12, atol=2 * np.finfo(float).eps * scale)


def test_encode_rejects_soft_labels():
    with pytest.raises(ValueError, match="0 or 1"):
        LOSSES["bce"].encode(np.array([[0.0, 0.5, 1.0]]), 1.0, np.float64)
