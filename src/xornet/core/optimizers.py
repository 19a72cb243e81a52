"""Optimizers: each updates a list of parameter arrays in place from their gradients.

The update rules match the textbook (and PyTorch's ``SGD``/``Adam``) forms:

- ``gd``:       p -= lr * g                                   (the tutorial's)
- ``momentum``: v = mu * v + g;  p -= lr * v
- ``adam``:     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
                p -= lr * m_hat / (sqrt(v_hat) + eps)
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray


@dataclass
class GradientDescent:
    """Plain (full- or mini-batch) gradient descent."""

    learning_rate: float

    def step(self, params: list[Array], grads: list[Array]) -> None:
        for p, g in zip(params, grads, strict=True):
            g *= self.learning_rate
            p -= g


@dataclass
class Momentum:
    """Heavy-ball momentum; the velocity starts at the first gradient."""

    learning_rate: float
    momentum: float = 0.9
    velocity: list[Array] = field(default_factory=list)

    def step(self, params: list[Array], grads: list[Array]) -> None:
        if not self.velocity:
            self.velocity = [g.copy() for g in grads]
        else:
            for v, g in zip(self.velocity, grads, strict=True):
                v *= self.momentum
                v += g
        for p, v in zip(params, self.velocity, strict=True):
            p -= self.learning_rate * v


@dataclass
class Adam:
    """Adam with bias-corrected first and second moment estimates."""

    learning_rate: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    t: int = 0
    m: list[Array] = field(default_factory=list)
    v: list[Array] = field(default_factory=list)

    def step(self, params: list[Array], grads: list[Array]) -> None:
        if not self.m:
            self.m = [np.zeros_like(g) for g in grads]
            self.v = [np.zeros_like(g) for g in grads]
        self.t += 1
        correction1 = 1.0 - self.beta1**self.t
        correction2 = 1.0 - self.beta2**self.t
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * (g * g)
            denom = np.sqrt(v / correction2)
            denom += self.eps
            p -= (self.learning_rate / correction1) * m / denom


@dataclass(frozen=True)
class OptimizerSettings:
    """Hyperparameters for every optimizer; each one reads the fields it needs."""

    learning_rate: float
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


OPTIMIZERS: dict[str, Callable[[OptimizerSettings], object]] = {
    "gd": lambda s: GradientDescent(s.learning_rate),
    "momentum": lambda s: Momentum(s.learning_rate, s.momentum),
    "adam": lambda s: Adam(s.learning_rate, s.beta1, s.beta2, s.eps),
}
