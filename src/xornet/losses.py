"""Binary-classification losses, computed from the output logits.

The network's output unit is a sigmoid; every loss here takes the logits
``z`` (1, n) and the 0/1 targets ``y`` (1, n) and works in a form that stays
finite and warning-free for |z| up to at least 1e4. ``total`` returns the sum
over samples; ``delta`` writes the per-sample derivative dL_i/dz_i into
``out`` — the model divides both by n.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xornet.activations import sigmoid

Array = np.ndarray


@dataclass(frozen=True)
class Loss:
    """A loss as a value (summed over samples) and its gradient wrt the logits."""

    name: str
    total: Callable[[Array, Array], float]
    delta: Callable[[Array, Array, Array], Array]


def _bce_total(z: Array, y: Array) -> float:
    # -[y log p + (1-y) log(1-p)] with p = sigmoid(z) equals softplus(z) - y z,
    # and softplus(z) = logaddexp(0, z) never overflows.
    return float(np.sum(np.logaddexp(0.0, z)) - np.vdot(y, z))


def _bce_delta(z: Array, y: Array, out: Array) -> Array:
    sigmoid(z, out=out)
    out -= y
    return out


def _mse_total(z: Array, y: Array) -> float:
    residual = sigmoid(z) - y
    return float(np.sum(residual * residual))


def _mse_delta(z: Array, y: Array, out: Array) -> Array:
    # d/dz (p - y)^2 = 2 (p - y) p (1 - p)
    p = sigmoid(z)
    np.subtract(p, y, out=out)
    out *= p
    out *= 1.0 - p
    out *= 2.0
    return out


LOSSES: dict[str, Loss] = {
    "bce": Loss("bce", _bce_total, _bce_delta),
    "mse": Loss("mse", _mse_total, _mse_delta),
}
