"""Whole processes: the train stage (``python stages/train.py``) against a JAX script.

Usage::

    python bench/bench_stage_jax.py              # both sizes, 3 interleaved rounds
    python bench/bench_stage_jax.py --rounds 5 --sizes small

Both train the same network on the same data from the same initial weights: 2
inputs, one sigmoid hidden layer, a sigmoid output, binary cross-entropy,
full-batch gradient descent with lr 0.5, float64. Sizes (issue 18):

- ``small``: 1 250 samples (20 % held out for validation), 2 hidden, 100 000 epochs;
- ``large``: 125 000 samples (20 % validation), 16 hidden, 400 epochs.

- **stage**: ``stages/train.py`` with ``--set`` overrides, tracking off
  (``XORNET_TRACKING=0``), writing its model, history, metrics, snapshots and
  diagnosis into a temporary folder.
- **jax**: this file run with ``--jax``: ``jax.jit`` over a ``lax.scan`` of
  the epochs (x64 enabled, CPU), each epoch a gradient step plus the training
  loss and the validation loss and accuracy after the step, all kept per
  epoch, then the history CSV and the model written with NumPy. Its initial
  weights are xornet's ``init_params`` for the same params.

Each process is timed from start to exit (imports, data loading, JIT
compilation, training, writing), with Python's bytecode cache on (as in a
user's shell; ``PYTHONDONTWRITEBYTECODE`` would recompile xornet's modules in
every process, while installed packages such as JAX keep their cached
bytecode). The ways alternate in ``--rounds`` rounds; the fastest run of each
counts. The data are made once by ``stages/generate.py``. The load average is
printed before and after, and the final training losses of the stage and JAX
are compared (same network, same data).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATE = 0.5

# name: (n_samples, hidden, epochs)
SIZES = {"small": (1_250, 2, 100_000), "large": (125_000, 16, 400)}


def overrides(n_samples: int, hidden: int, epochs: int) -> list[str]:
    settings = {
        "data.kind": "xor",
        "data.n_samples": n_samples,
        "data.test_fraction": 0.2,
        "model.hidden": f"[{hidden}]",
        "model.activation": "sigmoid",
        "train.loss": "bce",
        "train.optimizer": "gd",
        "train.learning_rate": LEARNING_RATE,
        "train.epochs": epochs,
        "train.batch_size": 0,
        "train.dtype": "float64",
    }
    args = []
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return args


def env(root: Path = ROOT) -> dict[str, str]:
    environ = dict(os.environ, XORNET_TRACKING="0", MLFLOW_DISABLE_TELEMETRY="true")
    environ["PYTHONPATH"] = str(root / "src") + os.pathsep + environ.get("PYTHONPATH", "")
    # bytecode cached as in a user's shell (installed packages have theirs anyway)
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return environ


def timed(cmd: list[str], root: Path = ROOT) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env(root), cwd=root)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds


def final_train_loss(history_csv: Path) -> float:
    with history_csv.open() as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["train_loss"])


# ----------------------------------------------------------------------- JAX
def run_jax(folder: Path, n_samples: int, hidden: int, epochs: int, params_file: str) -> None:
    """Train with JAX on folder/train.npz, validate on folder/test.npz, write jax_*.{csv,npz}."""
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import jax.numpy as jnp
    import numpy as np

    from xornet import cli
    from xornet.core.model import Architecture, init_params

    params = cli.load(Path(params_file), tuple(pairs(overrides(n_samples, hidden, epochs))), None)
    m = params.model
    train, test = np.load(folder / "train.npz"), np.load(folder / "test.npz")
    X, y = np.asarray(train["X"], np.float64), np.asarray(train["y"], np.float64)
    Xv, yv = np.asarray(test["X"], np.float64), np.asarray(test["y"], np.float64)
    arch = Architecture(X.shape[0], tuple(m.hidden), m.activation)
    init = init_params(arch, m.init, m.init_scale, m.seed, m.bias_scale)
    lr = params.train.learning_rate

    def logits(p, X):
        return p["W2"] @ jax.nn.sigmoid(p["W1"] @ X + p["b1"]) + p["b2"]

    def bce(z, y):  # mean over samples, from logits
        return jnp.mean(jax.nn.softplus(z) - y * z)

    def loss(p, X, y):
        return bce(logits(p, X), y)

    @jax.jit
    def fit(p, X, y, Xv, yv):
        def epoch(p, _):
            value, grads = jax.value_and_grad(loss)(p, X, y)
            p = jax.tree_util.tree_map(lambda w, g: w - lr * g, p, grads)
            zv = logits(p, Xv)
            accuracy = jnp.mean((zv >= 0) == (yv == 1))
            return p, (value, bce(zv, yv), accuracy)

        return jax.lax.scan(epoch, p, None, length=epochs)

    p, (train_loss, val_loss, val_accuracy) = fit(
        {k: jnp.asarray(v) for k, v in init.items()}, X, y, Xv, yv
    )
    columns = [np.asarray(c, np.float64).tolist() for c in (train_loss, val_loss, val_accuracy)]
    with (folder / "jax_history.csv").open("w") as f:
        f.write("epoch,train_loss,val_loss,val_accuracy\n")
        for k, (t, v, a) in enumerate(zip(*columns, strict=True), start=1):
            f.write(f"{k},{t!r},{v!r},{a!r}\n")
    np.savez(folder / "jax_model.npz", **{k: np.asarray(v) for k, v in p.items()})


def pairs(args: list[str]):
    """The VALUE of each ``--set VALUE`` pair."""
    return args[1::2]


# -------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also time the train stage of another checkout (e.g. a clone of the previous commit)",
    )
    parser.add_argument("--jax", nargs=2, metavar=("FOLDER", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jax:
        folder, size = args.jax
        run_jax(Path(folder), *SIZES[size], args.params)
        return

    import jax
    import numpy as np

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(
        f"{cpu}, {os.cpu_count()} CPUs; python {platform.python_version()}, "
        f"numpy {np.__version__}, jax {jax.__version__}"
    )
    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}\n")
    baseline = Path(args.baseline).resolve() if args.baseline else None
    extra = " baseline s | baseline vs jax |" if baseline else ""
    print("| size | n train / val | hidden | epochs | stage s | jax s | stage vs jax |" + extra
          + " final train loss stage - jax |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if baseline else "") + "---:|")
    with tempfile.TemporaryDirectory(prefix="xornet-bench-") as tmp:
        for size in args.sizes:
            n_samples, hidden, epochs = SIZES[size]
            folder = Path(tmp) / size
            folder.mkdir()
            sets = overrides(n_samples, hidden, epochs)
            common = ["--params", args.params, *sets]
            timed([sys.executable, "stages/generate.py", *common,
                   "--train-out", str(folder / "train.npz"),
                   "--test-out", str(folder / "test.npz")])  # fmt: skip
            stage = [sys.executable, "stages/train.py", *common,
                     "--train-data", str(folder / "train.npz"),
                     "--test-data", str(folder / "test.npz")]  # fmt: skip
            for name in ("model", "snapshots"):
                stage += [f"--{name}-out", str(folder / f"{name}.npz")]
            for name in ("history", "metrics", "diagnosis"):
                suffix = "csv" if name == "history" else "json"
                stage += [f"--{name}-out", str(folder / f"{name}.{suffix}")]
            jax_cmd = [
                sys.executable,
                __file__,
                "--params",
                args.params,
                "--jax",
                str(folder),
                size,
            ]
            best = {"stage": float("inf"), "jax": float("inf"), "baseline": float("inf")}
            for _ in range(args.rounds):
                best["stage"] = min(best["stage"], timed(stage))
                best["jax"] = min(best["jax"], timed(jax_cmd))
                if baseline:
                    best["baseline"] = min(best["baseline"], timed(stage, baseline))
            delta = final_train_loss(folder / "history.csv") - final_train_loss(
                folder / "jax_history.csv"
            )
            n_val = round(n_samples * 0.2)
            print(
                f"| {size} | {n_samples - n_val:,} / {n_val:,} | {hidden} | {epochs:,} "
                f"| {best['stage']:.2f} | {best['jax']:.2f} "
                f"| {best['jax'] / best['stage']:.2f}x |"
                + (
                    f" {best['baseline']:.2f} | {best['jax'] / best['baseline']:.2f}x |"
                    if baseline
                    else ""
                )
                + f" {delta:.1e} |",
                flush=True,
            )
    print(f"\nload average (1 min) after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
