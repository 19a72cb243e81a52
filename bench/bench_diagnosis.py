"""What the training diagnosis costs: training with its probes against training without.

The train stage probes the network :data:`~xornet.core.diagnosis.PROBES_PER_RUN`
times per run (gradient norms, saturated/dead units, twin units, output spread on
at most ``PROBE_SAMPLES`` training columns) and diagnoses the run at the end.
This times, in one process and interleaved, :func:`xornet.core.training.train` at
the sizes of ``bench_speed.py`` with the train stage's callback schedule, the
callback doing nothing (reference) or probing (diagnosis), plus the final
:func:`~xornet.core.diagnosis.diagnose`. Reports the best of ``--repeat`` runs and
the ratio.

    python bench/bench_diagnosis.py [--repeat 5] [--quick]
"""

import argparse
import importlib.metadata
import math
import platform
import time

# xornet is imported before NumPy (no `import numpy` here), so its package pins NumPy's
# kernels and threads as it does in the stages (xornet.core.determinism).
from xornet.core import diagnosis
from xornet.core.data import generate
from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture
from xornet.core.training import TrainConfig, train

# (n, hidden, epochs): bench_speed.py's sizes.
SIZES = [(1_000, 2, 5_000), (1_000, 64, 1_000), (100_000, 16, 20), (1_000_000, 16, 3)]


def timed(n: int, hidden: int, epochs: int, probing: bool) -> float:
    train_set, _ = generate("xor", n, 0.2, 0)
    model = MLP.create(Architecture(2, (hidden,), "sigmoid"), "xavier", 1.0, 0)
    config = TrainConfig(loss="bce", optimizer="gd", learning_rate=0.5, epochs=epochs)
    every = diagnosis.probe_every(epochs)
    probes: list = []
    loss = LOSSES["bce"]

    def callback(epoch, current, history):
        if probing and (epoch % every == 0 or epoch == epochs):
            probes.append(diagnosis.probe(epoch, current, train_set.X, train_set.y, loss))

    start = time.perf_counter()
    result = train(
        model,
        train_set.X,
        train_set.y,
        config,
        callback=callback,
        callback_every=math.gcd(every, max(1, epochs // 100)),
    )
    if probing:
        settings = diagnosis.RunSettings(
            "bce", 0.5, "sigmoid", (hidden,), "xavier", 1.0, 0.0, epochs
        )
        diagnosis.diagnose(result.history, probes, settings)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the two small sizes only")
    args = parser.parse_args()
    numpy = importlib.metadata.version("numpy")
    machine = platform.processor() or platform.machine()
    print(f"{machine}, numpy {numpy}, kernels pinned as in the stages")
    print("| n | hidden | epochs | without probes | with probes + diagnosis | ratio |")
    print("|--:|--:|--:|--:|--:|--:|")
    for n, hidden, epochs in SIZES[:2] if args.quick else SIZES:
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.repeat):  # interleaved, so load changes hit both alike
            for probing in (False, True):
                best[probing] = min(best[probing], timed(n, hidden, epochs, probing))
        print(
            f"| {n:,} | {hidden} | {epochs:,} | {best[False]:.3f} s | {best[True]:.3f} s "
            f"| {best[True] / best[False]:.3f}× |"
        )


if __name__ == "__main__":
    main()
