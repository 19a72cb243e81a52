"""What the same-bytes guarantee costs: training speed with the kernels pinned and not.

Usage::

    python bench/bench_determinism.py             # the four sizes of bench_speed.py + the study
    python bench/bench_determinism.py --quick     # the two small sizes only

``xornet.core.determinism`` pins OpenBLAS's kernels (Haswell on AVX2 CPUs) and
thread count (1) and caps NumPy's SIMD dispatch at AVX2 (X86_V3), before NumPy
loads. Every (way, size) runs in a fresh process, in ``--rounds`` interleaved
rounds (so a change in machine load favours no way), each a warm-up and
``--repeat`` timed runs; the fastest run counts (on a shared machine the
minimum is the least noisy estimate). Ways:

- **unpinned**: NumPy imported before xornet, so nothing is pinned: what
  OpenBLAS and NumPy pick on this machine (today's speed before the guarantee);
- **pinned**: xornet imported first, as every stage does (the guarantee);
- **pinned, NumPy baseline**: pinned, and NumPy's dispatch also held at its
  baseline (X86_V2, no AVX2 loops): the stricter alternative that would make
  NumPy's loops the same on x86-64 CPUs without AVX2 too.

The sizes, network and data are bench_speed.py's (``xornet.core.training.train``,
full batch, sigmoid hidden layer, float64); the study row trains 100 seeds of
the default 2-8-1 tanh network with ``xornet.core.batched.train_batched`` as
the study stage does. The last column names the ways whose final weights and
losses are bit for bit the unpinned ones; the kernels each way ran are listed
under the table (OpenBLAS's via threadpoolctl, when it is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_speed import FULL_SIZES, QUICK_SIZES  # noqa: E402  (no NumPy imported)

STUDY = ("study", 100, 1_000)  # (label, seeds, epochs): 2-8-1 tanh on 800 XOR samples
WAYS = ["unpinned", "pinned", "pinned, NumPy baseline"]


def load_libraries(way: str) -> None:
    """Import NumPy and xornet in the order (and environment) of ``way``."""
    if way == "unpinned":
        import numpy  # noqa: F401  (first: xornet's pin comes too late and does nothing)

    import xornet  # noqa: F401  (pins the kernels unless NumPy is loaded)

    if way == "pinned, NumPy baseline":
        held = os.environ.get("NPY_DISABLE_CPU_FEATURES", "")
        os.environ["NPY_DISABLE_CPU_FEATURES"] = f"{held} X86_V3".strip()
    import numpy  # noqa: F401, F811


def kernels() -> str:
    """The OpenBLAS core type and threads, and NumPy's highest dispatch level, in use."""
    from numpy._core._multiarray_umath import __cpu_features__ as features

    from xornet.core import determinism

    levels = [f for f in ("X86_V4", "X86_V3") if features.get(f)] or ["baseline"]
    described = f"NumPy {levels[0]}"
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return described
    for lib in threadpool_info():
        if lib.get("internal_api") == "openblas":
            described += f", OpenBLAS {lib['architecture']}, {lib['num_threads']} thread(s)"
    return described + (", pinned" if determinism.applied else "")


def train_once(n: int, hidden: int, epochs: int) -> str:
    """Train once; returns a digest of the final weights and losses."""
    import hashlib

    from xornet.core.model import MLP
    from xornet.core.training import TrainConfig, train

    if n == 0:  # the study row: ``hidden`` seeds of the default network
        return study_once(hidden, epochs)
    from bench_speed import LEARNING_RATE, make_problem

    arch, X, y, params = make_problem(n, hidden)
    config = TrainConfig(loss="bce", optimizer="gd", learning_rate=LEARNING_RATE, epochs=epochs)
    result = train(MLP(arch, params), X, y, config)
    digest = hashlib.md5(result.model.theta.tobytes())
    digest.update(result.history.train_loss.tobytes())
    return digest.hexdigest()


def study_once(seeds: int, epochs: int) -> str:
    import hashlib

    from xornet.core.batched import train_batched
    from xornet.core.data import generate
    from xornet.core.model import Architecture
    from xornet.core.training import TrainConfig

    train_set, test_set = generate("xor", 1_000, 0.2, 0, 0.1, 3)
    arch = Architecture(2, (8,), "tanh")
    config = TrainConfig(learning_rate=0.5, epochs=epochs)
    result = train_batched(
        arch, range(seeds), train_set.X, train_set.y, config, validation=(test_set.X, test_set.y)
    )
    digest = hashlib.md5(result.loss_history.tobytes())
    for weights in result.params.values():
        digest.update(weights.tobytes())
    return digest.hexdigest()


def worker(way: str, n: int, hidden: int, epochs: int, repeat: int) -> dict:
    load_libraries(way)
    train_once(n, hidden, min(epochs, 3))  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        digest = train_once(n, hidden, epochs)
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "digest": digest, "kernels": kernels()}


def spawn(way: str, size: tuple[int, int, int], repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", way, *map(str, size), "--repeat", str(repeat)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{way} {size} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the two small sizes only")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per worker")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of workers")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        way, *size = args.worker
        print(json.dumps(worker(way, *map(int, size), args.repeat)))
        return

    sizes = [*QUICK_SIZES] if args.quick else [*FULL_SIZES, (0, STUDY[1], STUDY[2])]
    load = os.getloadavg()[0]
    print(f"{cpu_model()}, {os.cpu_count()} CPUs; min of {args.rounds} x {args.repeat} runs")
    print()
    print("| n | hidden | epochs | " + " | ".join(f"{w} (s)" for w in WAYS), end=" | ")
    print(" | ".join(f"{w} / unpinned" for w in WAYS[1:]) + " | same bytes as unpinned |")
    print("|---:|---:|---:|" + "---:|" * (2 * len(WAYS) - 1) + "---|")
    seen: dict[str, set[str]] = {}
    for size in sizes:
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for way in WAYS:
                r = spawn(way, size, args.repeat)
                if way not in best or r["seconds"] < best[way]["seconds"]:
                    best[way] = r
                seen.setdefault(way, set()).add(r["kernels"])
        n, hidden, epochs = size
        label = [f"{n:,}", str(hidden), f"{epochs:,}"] if n else ["study", f"{hidden} seeds", ""]
        base = best["unpinned"]["seconds"]
        cells = label + [f"{best[w]['seconds']:.3f}" for w in WAYS]
        cells += [f"{best[w]['seconds'] / base:.2f}" for w in WAYS[1:]]
        same = [w for w in WAYS[1:] if best[w]["digest"] == best["unpinned"]["digest"]]
        cells.append(", ".join(same) if same else "none")
        print("| " + " | ".join(cells) + " |", flush=True)
    print()
    for way in WAYS:
        print(f"- {way}: {'; '.join(sorted(seen[way]))}")
    print(f"\nload average (1 min) before: {load:.2f}, after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
