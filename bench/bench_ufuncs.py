"""Is a tanh-form sigmoid a way to speed up the train stage? The elementwise cost.

Usage::

    python bench/bench_ufuncs.py              # 1.6 M float64 values, best of 7
    python bench/bench_ufuncs.py --n 200000 --repeat 11

Most of the train stage's time at issue 18's sizes is float64 ``exp`` / ``log``,
which NumPy runs as scalar C-library calls on AVX2 CPUs. ``0.5 + 0.5 * tanh(z / 2)``
is the same function written with ``tanh``, which NumPy vectorises on some CPUs. This
times, on the same array in the same run, xornet's sigmoid (``exp`` form) and the
tanh form, each into a preallocated output, and the bare ufuncs, and reports each
as a ratio to xornet's sigmoid (below 1 is faster). It also prints the tanh form's
worst relative error against xornet's on z in [-40, 0], the precision the
``exp`` form keeps for small sigmoid values (see ``xornet.core.activations``).
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable

import numpy as np
from bench_speed import cpu_model

from xornet.core.activations import sigmoid


def tanh_form(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    return min(timeit.repeat(fn, number=10, repeat=repeat)) / 10 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_600_000, help="values per array")
    parser.add_argument("--repeat", type=int, default=7, help="timing rounds (best counts)")
    args = parser.parse_args()

    z = np.random.default_rng(0).normal(0.0, 4.0, args.n)
    out = np.empty_like(z)
    ways = {
        "xornet sigmoid (exp form)": lambda: sigmoid(z, out),
        "tanh form 0.5 + 0.5 tanh(z/2)": lambda: tanh_form(z, out),
        "np.exp": lambda: np.exp(z, out=out),
        "np.tanh": lambda: np.tanh(z, out=out),
        "np.log1p": lambda: np.log1p(np.abs(z, out=out), out=out),
        "np.multiply (memory-bound floor)": lambda: np.multiply(z, z, out=out),
    }
    times = {name: best_ms(fn, args.repeat) for name, fn in ways.items()}
    reference = times["xornet sigmoid (exp form)"]
    load = os.getloadavg()[0]
    print(f"{cpu_model()}, numpy {np.__version__}, n = {args.n:,} float64, load {load:.1f}")
    for name, ms in times.items():
        print(f"  {name:34s} {ms:8.2f} ms  {ms / reference:5.2f}x xornet sigmoid")

    small = np.linspace(-40.0, 0.0, 4001)
    exact = sigmoid(small)
    relative = np.abs(tanh_form(small, np.empty_like(small)) - exact) / exact
    print(f"  tanh form's worst relative error on z in [-40, 0]: {relative.max():.1e}")


if __name__ == "__main__":
    main()
