"""Weight initialisers: each maps (fan_out, fan_in, scale, rng) to W (fan_out, fan_in).

``normal`` with scale 0.01 is the tutorial's ``np.random.randn(out, in) * 0.01``;
``xavier`` and ``he`` scale unit normals by sqrt(2 / (fan_in + fan_out)) and
sqrt(2 / fan_in), then by ``scale``.
"""

from collections.abc import Callable

import numpy as np

Initializer = Callable[[int, int, float, np.random.Generator], np.ndarray]


def normal(fan_out: int, fan_in: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Unit normal weights times ``scale``."""
    return rng.standard_normal((fan_out, fan_in)) * scale


def xavier(fan_out: int, fan_in: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Glorot/Xavier normal: std = scale * sqrt(2 / (fan_in + fan_out))."""
    return rng.standard_normal((fan_out, fan_in)) * (scale * np.sqrt(2.0 / (fan_in + fan_out)))


def he(fan_out: int, fan_in: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """He/Kaiming normal: std = scale * sqrt(2 / fan_in)."""
    return rng.standard_normal((fan_out, fan_in)) * (scale * np.sqrt(2.0 / fan_in))


INITIALIZERS: dict[str, Initializer] = {"normal": normal, "xavier": xavier, "he": he}
