"""Backpropagation agrees with central finite differences, for every parameter array.

float64, h = 1e-5: a correct network gives relative errors around 1e-9, so
1e-7 is a strict bound (DESIGN.md §5). The error of an array is norm-wise:
max|analytic - numeric| / max|numeric|.
"""

import numpy as np
import pytest

from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture

H = 1e-5
TOLERANCE = 1e-7
RELU_MARGIN = 0.05  # no ReLU pre-activation closer than this to its kink


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    scale = max(np.max(np.abs(numeric)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(analytic - numeric)) / scale)


def numeric_gradient(model: MLP, X: np.ndarray, y: np.ndarray, loss_name: str) -> dict:
    loss = LOSSES[loss_name]
    grads = {}
    for name, p in model.params.items():
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + H
            up = model.loss(X, y, loss)
            p[idx] = old - H
            down = model.loss(X, y, loss)
            p[idx] = old
            g[idx] = (up - down) / (2 * H)
        grads[name] = g
    return grads


def hidden_pre_activations(model: MLP, X: np.ndarray) -> list[np.ndarray]:
    """Z_1 .. Z_{L-1} computed independently of the library's forward pass."""
    out, A = [], X
    for layer in range(1, model.arch.n_layers):
        Z = model.params[f"W{layer}"] @ A + model.params[f"b{layer}"]
        out.append(Z)
        A = model.activation.value(Z, np.empty_like(Z))
    return out


def make_case(activation: str, hidden: tuple[int, ...], seed: int = 3, n: int = 9):
    arch = Architecture(n_inputs=3, hidden=hidden, activation=activation)
    model = MLP.create(arch, init="xavier", scale=1.0, seed=seed, bias_scale=0.5)
    rng = np.random.default_rng(seed)
    candidates = rng.standard_normal((3, 400))
    if activation == "relu":
        # Keep only samples whose every hidden pre-activation is far from the kink,
        # so that +-h perturbations never cross it.
        Zs = hidden_pre_activations(model, candidates)
        safe = np.all([np.min(np.abs(Z), axis=0) > RELU_MARGIN for Z in Zs], axis=0)
        candidates = candidates[:, safe]
    X = candidates[:, :n]
    assert X.shape == (3, n)
    y = rng.integers(0, 2, size=(1, n)).astype(np.float64)
    y[0, :2] = [0, 1]  # both classes present
    return model, X, y


@pytest.mark.parametrize("hidden", [(4,), (4, 3)], ids=["1-hidden", "2-hidden"])
@pytest.mark.parametrize("loss_name", ["bce", "mse"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_backprop_matches_finite_differences(activation, loss_name, hidden):
    model, X, y = make_case(activation, hidden)
    _, analytic = model.loss_and_gradients(X, y, LOSSES[loss_name])
    numeric = numeric_gradient(model, X, y, loss_name)
    assert list(analytic) == list(model.params)
    for name in model.params:
        assert analytic[name].shape == model.params[name].shape
        assert np.max(np.abs(numeric[name])) > 1e-6, f"{name}: degenerate test case"
        error = relative_error(analytic[name], numeric[name])
        assert error <= TOLERANCE, f"{activation}/{loss_name} {name}: relative error {error:.2e}"


@pytest.mark.parametrize("block", [1, 4, 1000])
def test_blocked_gradients_equal_unblocked(block):
    """Processing the batch in column blocks changes only the summation order."""
    model, X, y = make_case("tanh", (5, 3), n=9)
    loss_ref, ref = model.loss_and_gradients(X, y, LOSSES["bce"], block=9)
    loss_blk, blk = model.loss_and_gradients(X, y, LOSSES["bce"], block=block)
    assert loss_blk == pytest.approx(loss_ref, rel=1e-14)
    for name in ref:
        assert relative_error(blk[name], ref[name]) < 1e-14


def test_forward_backward_match_loss_and_gradients():
    """The step-by-step API (forward, then backward) gives the same gradients."""
    model, X, y = make_case("sigmoid", (4, 3))
    loss = LOSSES["mse"]
    cache = model.forward(X)
    grads = model.backward(cache, y, loss)
    _, fused = model.loss_and_gradients(X, y, loss)
    for name in fused:
        assert relative_error(grads[name], fused[name]) < 1e-14
    assert cache.logits.shape == (1, X.shape[1])
    # backward leaves the cache as forward made it
    fresh = model.forward(X)
    for mine, theirs in zip(cache.pre_activations, fresh.pre_activations, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    for mine, theirs in zip(cache.inputs, fresh.inputs, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_gradients_are_fresh_arrays():
    """Returned gradients are not overwritten by the next call."""
    model, X, y = make_case("tanh", (4,))
    _, first = model.loss_and_gradients(X, y, LOSSES["bce"])
    kept = {k: v.copy() for k, v in first.items()}
    model.params["W1"][...] += 0.1
    model.loss_and_gradients(X, y, LOSSES["bce"])
    for name in kept:
        np.testing.assert_array_equal(first[name], kept[name])
