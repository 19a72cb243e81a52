"""Hidden-layer activations: each is a value and a derivative.

Both functions take an ``out`` buffer so the training loop can run without
allocating; every array is (units, n) and the result has the same shape.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity.

    ``value(z, out)`` writes f(z) into ``out``; ``derivative(z, a, out)`` writes
    f'(z) into ``out`` given the pre-activation ``z`` and ``a = f(z)``.
    """

    name: str
    value: Callable[[Array, Array], Array]
    derivative: Callable[[Array, Array, Array], Array]


def sigmoid(z: Array, out: Array | None = None) -> Array:
    """Logistic function 1 / (1 + e^-z), computed as (1 + tanh(z/2)) / 2.

    The tanh form never overflows, so it is warning-free for any finite z.
    """
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def _sigmoid_derivative(z: Array, a: Array, out: Array) -> Array:
    np.subtract(1.0, a, out=out)
    out *= a
    return out


def _tanh(z: Array, out: Array) -> Array:
    return np.tanh(z, out=out)


def _tanh_derivative(z: Array, a: Array, out: Array) -> Array:
    np.multiply(a, a, out=out)
    np.subtract(1.0, out, out=out)
    return out


def _relu(z: Array, out: Array) -> Array:
    return np.maximum(z, 0.0, out=out)


def _relu_derivative(z: Array, a: Array, out: Array) -> Array:
    return np.greater(z, 0.0, out=out)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", sigmoid, _sigmoid_derivative),
    "tanh": Activation("tanh", _tanh, _tanh_derivative),
    "relu": Activation("relu", _relu, _relu_derivative),
}
