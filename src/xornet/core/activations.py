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
    f'(z) into ``out`` given the pre-activation ``z`` and ``a = f(z)``. Both
    work elementwise, so ``out`` may be ``z`` itself (the training loop
    overwrites Z with f'(Z) once backprop has no further use for Z).
    """

    name: str
    value: Callable[[Array, Array], Array]
    derivative: Callable[[Array, Array, Array], Array]


def sigmoid(z: Array, out: Array | None = None) -> Array:
    """Logistic function 1 / (1 + e^-z), accurate to a few ulps for every z.

    For z < -709, e^-z overflows to inf and 1 / (1 + inf) = 0 is the right
    answer (the true value is below the smallest double), so that overflow is
    expected and silenced. The (1 + tanh(z/2)) / 2 form would avoid it but
    loses the relative precision of small values: sigmoid(-30) ~ 9e-14 would
    come out with only ~4 correct digits.
    """
    if out is None:
        out = np.empty(np.shape(z), dtype=np.result_type(z, 1.0))  # floats keep their precision
    with np.errstate(over="ignore"):
        np.negative(z, out=out)
        np.exp(out, out=out)
    out += 1.0
    return np.divide(1.0, out, out=out)


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
