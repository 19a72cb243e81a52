"""Seeded datasets with features as rows: X is (features, n) float, y is (1, n) int 0/1.

- ``xor``: two random bits and their XOR (the tutorial's construction);
- ``noisy_xor``: the four corners of the unit square plus Gaussian noise,
  labelled by the XOR of their corner;
- ``parity``: ``n_bits`` random bits and their parity.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class Dataset:
    X: Array  # (features, n) float64
    y: Array  # (1, n) int64, values 0/1

    @property
    def n(self) -> int:
        return self.X.shape[1]


def _random_bits(n_bits: int, n: int, rng: np.random.Generator) -> Array:
    return rng.integers(0, 2, size=(n_bits, n))


def make_xor(n: int, rng: np.random.Generator, noise: float = 0.0, n_bits: int = 2) -> Dataset:
    """n columns of two random bits; y = x1 XOR x2."""
    bits = _random_bits(2, n, rng)
    y = np.logical_xor(bits[0], bits[1]).astype(np.int64)[np.newaxis, :]
    return Dataset(bits.astype(np.float64), y)


def make_noisy_xor(
    n: int, rng: np.random.Generator, noise: float = 0.1, n_bits: int = 2
) -> Dataset:
    """XOR corners plus N(0, noise^2) on each coordinate; labels from the corner."""
    clean = make_xor(n, rng)
    return Dataset(clean.X + noise * rng.standard_normal(clean.X.shape), clean.y)


def make_parity(n: int, rng: np.random.Generator, noise: float = 0.0, n_bits: int = 3) -> Dataset:
    """n columns of ``n_bits`` random bits; y = their sum mod 2."""
    bits = _random_bits(n_bits, n, rng)
    y = (bits.sum(axis=0) % 2).astype(np.int64)[np.newaxis, :]
    return Dataset(bits.astype(np.float64), y)


GENERATORS: dict[str, Callable[..., Dataset]] = {
    "xor": make_xor,
    "noisy_xor": make_noisy_xor,
    "parity": make_parity,
}


def split(data: Dataset, test_fraction: float, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """Shuffle the columns and cut off ``round(n * test_fraction)`` of them as the test set."""
    n_test = round(data.n * test_fraction)
    if not 1 <= n_test <= data.n - 1:
        raise ValueError(
            f"{data.n} samples with test_fraction {test_fraction} leave an empty train or test set"
        )
    order = rng.permutation(data.n)
    test, train = order[:n_test], order[n_test:]
    return Dataset(data.X[:, train], data.y[:, train]), Dataset(data.X[:, test], data.y[:, test])


def generate(
    kind: str,
    n_samples: int,
    test_fraction: float,
    seed: int,
    noise: float = 0.0,
    n_bits: int = 2,
) -> tuple[Dataset, Dataset]:
    """Generate a dataset and split it into (train, test), all from one seed."""
    rng = np.random.default_rng(seed)
    data = GENERATORS[kind](n_samples, rng, noise=noise, n_bits=n_bits)
    return split(data, test_fraction, rng)
