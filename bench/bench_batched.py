"""Batched training of S seeds vs a Python loop over seeds of ``xornet.core.training.train``.

Usage::

    python bench/bench_batched.py                  # params.yaml defaults, S = 100, ~1 min
    python bench/bench_batched.py --seeds 20 --repeat 1
    python bench/bench_batched.py --set data.kind=noisy_xor   # no repeated columns

Every way trains the configuration of ``params.yaml`` (plus ``--preset`` /
``--set``) on the data the generate stage makes from it, for ``train.epochs``
epochs, once per model seed ``model.seed .. model.seed + S - 1``, validating
on the test set every epoch (as the train stage and the study do):

- **loop**: ``train(MLP.create(..., seed=s), X, y, config, validation=...)``
  for each seed in turn: what a study costs without batching.
- **batched**: ``xornet.core.batched.train_batched(..., compress=False)``: the S
  networks' weights stacked, one set of NumPy calls per epoch for all seeds.
- **batched + compressed**: the same on the distinct (x, y) columns weighted
  by their counts (``compress=True``, what the study uses). XOR of random bits
  has 4 distinct columns among its n samples; noisy_xor has none to merge.

Timing: a warm-up, then ``--repeat`` timed runs; the fastest counts (the
machine is shared, so the minimum is the least noisy estimate). The last
column compares every seed's final training loss with the loop's.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from xornet.config.presets import PRESETS  # noqa: E402
from xornet.config.schema import (
    load_params,  # noqa: E402
    train_config,  # noqa: E402
)
from xornet.core.batched import train_batched  # noqa: E402
from xornet.core.data import generate  # noqa: E402
from xornet.core.model import MLP, Architecture  # noqa: E402
from xornet.core.training import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="S, networks per way")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per way (min counts)")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    params = load_params(args.params, (*PRESETS.get(args.preset or "", ()), *args.overrides))
    d, m = params.data, params.model
    train_set, test_set = generate(d.kind, d.n_samples, d.test_fraction, d.seed, d.noise, d.n_bits)
    arch = Architecture(train_set.X.shape[0], tuple(m.hidden), m.activation)
    config = train_config(params)
    seeds = list(range(m.seed, m.seed + args.seeds))
    validation = (test_set.X, test_set.y)

    def loop() -> np.ndarray:
        losses = []
        for seed in seeds:
            model = MLP.create(arch, m.init, m.init_scale, seed, m.bias_scale)
            result = train(model, train_set.X, train_set.y, config, validation=validation)
            losses.append(result.history.train_loss[-1])
        return np.array(losses)

    def batched(compress: bool):
        def run() -> np.ndarray:
            result = train_batched(
                arch,
                seeds,
                train_set.X,
                train_set.y,
                config,
                init=m.init,
                scale=m.init_scale,
                bias_scale=m.bias_scale,
                validation=validation,
                compress=compress,
            )
            return result.train_loss

        return run

    ways = [
        ("loop over seeds of `train()`", loop),
        ("batched", batched(False)),
        ("batched + compressed", batched(True)),
    ]
    rows = []
    reference = None
    for name, fn in ways:
        fn_warm = fn if name.startswith("batched") else None
        if fn_warm is not None:
            fn_warm()
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            losses = fn()
            best = min(best, time.perf_counter() - start)
        if reference is None:
            reference = losses
        diff = float(np.max(np.abs(losses - reference) / np.abs(reference)))
        rows.append((name, best, diff))

    distinct = np.unique(np.vstack([train_set.X, train_set.y]), axis=1).shape[1]
    print(
        f"S = {args.seeds} seeds, {config.epochs} epochs, {describe(arch)}, {m.init} x "
        f"{m.init_scale:g}, {config.optimizer} lr {config.learning_rate:g}; data {d.kind}: "
        f"{train_set.n} train columns ({distinct} distinct), {test_set.n} test; "
        f"best of {args.repeat}"
    )
    print(
        f"numpy {np.__version__}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
    )
    print()
    print("| way | time (s) | µs per seed-epoch | speed-up vs loop | max rel. diff of final loss |")
    print("|---|--:|--:|--:|--:|")
    loop_time = rows[0][1]
    per = args.seeds * config.epochs
    for name, seconds, diff in rows:
        print(
            f"| {name} | {seconds:.3f} | {seconds / per * 1e6:.2f} | {loop_time / seconds:.1f}× "
            f"| {diff:.1e} |"
        )


def describe(arch: Architecture) -> str:
    return "-".join(map(str, arch.layer_sizes)) + f" {arch.activation}"


if __name__ == "__main__":
    main()
