"""Binary-classification losses, computed from the output logits.

The network's output unit is a sigmoid, p = sigmoid(z); every loss here takes
the logits ``z`` (1, n) and the targets ``y`` (1, n) and stays finite and
warning-free for |z| up to at least 1e4. Each loss comes in two forms.

The definitions, for evaluation and as the reference:

- ``total(z, y)``: the loss summed over samples;
- ``delta(z, y, out)``: the per-sample derivative dL_i/dz_i, written into ``out``.

The training form, which computes both in one pass:

- ``encode(y, scale, dtype)``: 0/1 targets turned, once per dataset, into the
  (2, n) array ``[s, c * s * scale]`` with s = 1 - 2y (+1 for class 0, -1 for
  class 1) and c a constant of the loss;
- ``evaluate(z, t, out, work)``: returns ``total`` and writes
  ``scale * delta`` into ``out``; ``work`` is a scratch array like ``z``.

It rests on one identity. For a 0/1 target, x = s z is the logit of the
*wrong* class, and sigmoid(x) = |p - y| is the probability the network gives
to it. Then

    BCE_i = -[y log p + (1 - y) log(1 - p)] = softplus(x) = log(1 + e^x),
                                                  dBCE_i/dz = s sigmoid(x)
    MSE_i = (p - y)^2 = sigmoid(x)^2,             dMSE_i/dz = 2 s sigmoid(x)^2 (1 - sigmoid(x))

Every term is a non-negative function of x alone, so nothing cancels: the
loss of a confident, correct prediction keeps its relative precision.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xornet.core.activations import sigmoid

Array = np.ndarray


@dataclass(frozen=True)
class Loss:
    """A loss as a value (summed over samples) and its gradient wrt the logits.

    ``encode`` and ``evaluate`` are the same quantities in the fused form the
    training loop uses (see the module docstring).
    """

    name: str
    total: Callable[[Array, Array], float]
    delta: Callable[[Array, Array, Array], Array]
    encode: Callable[[Array, float, type], Array]
    evaluate: Callable[[Array, Array, Array, Array], float]


def _encode_targets(c: float, y: Array, scale: float, dtype: type) -> Array:
    """``[s, c * s * scale]`` with s = 1 - 2y, shape (2, n) for y of shape (1, n) or (n,)."""
    y = np.asarray(y).reshape(1, -1)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("targets must be 0 or 1")
    s = (1.0 - 2.0 * y).astype(dtype)
    return np.concatenate([s, s * (c * scale)])


# ------------------------------------------------------------------------ BCE
def _bce_encode(y: Array, scale: float, dtype: type = np.float64) -> Array:
    return _encode_targets(1.0, y, scale, dtype)


def _bce_total(z: Array, y: Array) -> float:
    # -[y log p + (1-y) log(1-p)] = softplus(z) - y z with p = sigmoid(z), written
    # as log(1 + e^-|z|) + (max(z, 0) - y z): e^-|z| never overflows, and for
    # 0/1 labels the bracket is exactly 0 or |z|, so no large terms cancel.
    tail = np.abs(z)
    np.negative(tail, out=tail)
    np.exp(tail, out=tail)
    np.log1p(tail, out=tail)
    tail += np.maximum(z, 0.0) - y * z
    return float(np.sum(tail))


def _bce_delta(z: Array, y: Array, out: Array) -> Array:
    sigmoid(z, out=out)
    out -= y
    return out


def _bce_evaluate(z: Array, t: Array, out: Array, work: Array) -> float:
    with np.errstate(over="ignore"):
        e = np.exp(np.multiply(z, t[0], out=out), out=out)  # e^x, x = logit of the wrong class
    total = float(np.log1p(e, out=work).sum())  # sum of softplus(x)
    if not math.isfinite(total):
        # A very confident mistake (x > 709) overflowed e^x, or the logits are
        # not finite: redo this block the slow, overflow-free way.
        x = np.multiply(z, t[0], out=out)
        total = float(np.logaddexp(0.0, x, out=work).sum())
        sigmoid(x, out=out)
    else:
        np.add(e, 1.0, out=work)
        np.divide(e, work, out=out)  # sigmoid(x) = e^x / (1 + e^x)
    out *= t[1]
    return total


# ------------------------------------------------------------------------ MSE
def _mse_encode(y: Array, scale: float, dtype: type = np.float64) -> Array:
    return _encode_targets(2.0, y, scale, dtype)


def _mse_total(z: Array, y: Array) -> float:
    residual = sigmoid(z)
    residual -= y
    return float(np.vdot(residual, residual))


def _mse_delta(z: Array, y: Array, out: Array) -> Array:
    # d/dz (p - y)^2 = 2 (p - y) p (1 - p)
    p = sigmoid(z)
    np.subtract(p, y, out=out)
    out *= p
    out *= 1.0 - p
    out *= 2.0
    return out


def _mse_evaluate(z: Array, t: Array, out: Array, work: Array) -> float:
    q = sigmoid(np.multiply(z, t[0], out=out), out=out)  # |p - y|
    total = float(np.vdot(q, q))
    np.subtract(1.0, q, out=work)
    work *= q
    work *= q
    np.multiply(work, t[1], out=out)  # 2 s q^2 (1 - q), scaled
    return total


LOSSES: dict[str, Loss] = {
    "bce": Loss("bce", _bce_total, _bce_delta, _bce_encode, _bce_evaluate),
    "mse": Loss("mse", _mse_total, _mse_delta, _mse_encode, _mse_evaluate),
}
