"""The tutorial's network, written as plainly as the tutorial writes it. Read this first.

"Build a neural network from scratch with NumPy and teach it XOR": a forward
pass, a loss, backpropagation by the chain rule and a gradient step, nothing
more. ``model.py`` and ``training.py`` compute the same numbers, only general,
overflow-safe and fast; ``tests/test_core_reference.py`` holds them to this
file to 1e-12. This file imports NumPy only.

Shapes: X is (n_inputs, n) - features are rows, one column per sample - and y
is (1, n) with 0/1 labels. Layer l has weights Wl (out, in) and bias bl
(out, 1); hidden layers use the chosen activation, the single output unit is a
sigmoid p = sigmoid(z), and the loss is the mean over the n samples.
"""

import numpy as np

Array = np.ndarray


def sigmoid(z: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-z))


# activation name -> (f(z), f'(z))
ACTIVATIONS = {
    "sigmoid": (sigmoid, lambda z: sigmoid(z) * (1.0 - sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0.0).astype(float)),
}

# loss name -> (mean loss, dloss_i/dz_i for each sample), from p = sigmoid(z) and y
LOSSES = {
    "bce": (lambda p, y: -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), lambda p, y: p - y),
    "mse": (lambda p, y: np.mean((p - y) ** 2), lambda p, y: 2 * (p - y) * p * (1 - p)),
}


def init_params(sizes: list[int], scale: float = 0.01, seed: int = 0) -> dict[str, Array]:
    """The tutorial's start: Wl = randn(out, in) * scale, bl = zeros (out, 1).

    ``sizes`` is [n_inputs, hidden..., 1], e.g. [2, 2, 1].
    """
    rng = np.random.default_rng(seed)
    params = {}
    for layer in range(1, len(sizes)):
        params[f"W{layer}"] = rng.standard_normal((sizes[layer], sizes[layer - 1])) * scale
        params[f"b{layer}"] = np.zeros((sizes[layer], 1))
    return params


def forward(params: dict[str, Array], X: Array, activation: str) -> tuple[list, list]:
    """Z_l = Wl @ A_{l-1} + bl and A_l = f(Z_l), layer by layer, from A_0 = X (n_inputs, n).

    Returns (Zs, As): Zs[l - 1] is Z_l and As[l] is A_l, each (units_l, n);
    As[0] is X. The last Z is the output logit z (1, n), the last A is p = sigmoid(z).
    """
    f = ACTIVATIONS[activation][0]
    L = len(params) // 2
    Zs, As = [], [X]
    for layer in range(1, L + 1):
        Z = params[f"W{layer}"] @ As[-1] + params[f"b{layer}"]
        Zs.append(Z)
        As.append(f(Z) if layer < L else sigmoid(Z))
    return Zs, As


def loss_and_gradients(
    params: dict[str, Array], X: Array, y: Array, activation: str, loss: str
) -> tuple[float, dict[str, Array]]:
    """The mean loss over the n columns of X (n_inputs, n), y (1, n), and its gradients.

    The gradients are keyed and shaped like ``params``: dWl (out, in), dbl (out, 1).
    """
    df = ACTIVATIONS[activation][1]
    loss_value, loss_delta = LOSSES[loss]
    Zs, As = forward(params, X, activation)
    p, n = As[-1], X.shape[1]
    dZ = loss_delta(p, y) / n  # dloss/dz (1, n); / n because the loss is a mean
    grads = {}
    for layer in range(len(Zs), 0, -1):
        grads[f"W{layer}"] = dZ @ As[layer - 1].T
        grads[f"b{layer}"] = np.sum(dZ, axis=1, keepdims=True)
        if layer > 1:  # the chain rule, one layer back: dZ_{l-1} = (Wl^T @ dZ_l) * f'(Z_{l-1})
            dZ = (params[f"W{layer}"].T @ dZ) * df(Zs[layer - 2])
    return float(loss_value(p, y)), {name: grads[name] for name in params}


def train(
    params: dict[str, Array],
    X: Array,
    y: Array,
    activation: str,
    loss: str,
    optimizer: str,
    learning_rate: float,
    epochs: int,
    momentum: float = 0.9,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[dict[str, Array], list[float]]:
    """Full-batch training of a copy of ``params``; X (n_inputs, n), y (1, n).

    ``optimizer`` is "gd", "momentum" or "adam". Returns the trained params and
    the loss of each epoch, measured before that epoch's step.
    """
    params = {name: value.copy() for name, value in params.items()}
    m = {name: np.zeros_like(value) for name, value in params.items()}  # Adam's mean
    v = {name: np.zeros_like(value) for name, value in params.items()}  # velocity / Adam's g^2
    losses = []
    for t in range(1, epochs + 1):
        value, grads = loss_and_gradients(params, X, y, activation, loss)
        losses.append(value)
        for name, g in grads.items():
            if optimizer == "gd":
                params[name] -= learning_rate * g
            elif optimizer == "momentum":  # v starts at 0, so the first velocity is g
                v[name] = momentum * v[name] + g
                params[name] -= learning_rate * v[name]
            elif optimizer == "adam":
                m[name] = beta1 * m[name] + (1 - beta1) * g
                v[name] = beta2 * v[name] + (1 - beta2) * g**2
                m_hat, v_hat = m[name] / (1 - beta1**t), v[name] / (1 - beta2**t)
                params[name] -= learning_rate * m_hat / (np.sqrt(v_hat) + eps)
            else:
                raise ValueError(f"unknown optimizer {optimizer!r}")
    return params, losses
