"""Training speed and memory: xornet vs a plain tutorial-style NumPy loop vs PyTorch.

Usage::

    python bench/bench_speed.py            # all sizes, a few minutes on 2 cores
    python bench/bench_speed.py --quick    # small sizes only, seconds

Every way trains the same network on the same data from the same initial
weights: a 2-input MLP with one sigmoid hidden layer and a sigmoid output,
binary cross-entropy, full-batch gradient descent, float64 throughout. The
data are ``n`` random bit pairs labelled by XOR; the weights are xornet's
``init_params(init="normal", scale=0.5, seed=0)`` (big enough that the
network actually learns during the timed epochs).

- **xornet**: ``xornet.core.training.train`` (history and divergence checks included).
- **numpy loop**: the classic tutorial loop written out inline - forward,
  loss, backward, update as whole-batch NumPy expressions, the loss of every
  epoch kept in a list.
- **jax**: the same network as a ``jax.jit``-compiled ``lax.scan`` over the
  epochs (x64 enabled, CPU): each step the loss and its gradient
  (``jax.value_and_grad``), the update, and the loss kept in the scan's
  per-epoch output. The warm-up runs all ``epochs`` once, so the timed runs
  exclude compilation. Skipped with a note if jax is not importable (it is
  a bench-only extra).
- **pytorch**: the same network with ``torch.float64`` tensors on the CPU,
  ``torch.nn.functional.binary_cross_entropy_with_logits`` and
  ``torch.optim.SGD``, with its default thread count unless
  ``--torch-threads`` says otherwise; ``loss.item()`` every
  epoch, as the other two record the loss. Skipped with a note if torch is
  not importable.

xornet runs as the train stage runs it: its worker imports ``xornet`` before
NumPy, so the kernels are pinned (``xornet.core.determinism``: OpenBLAS's
Haswell kernels on one thread, NumPy's AVX2 loops); the other ways run with
their libraries' defaults.

Each (way, size) runs in a fresh subprocess: a short warm-up run, then
``--repeat`` timed runs of ``epochs`` epochs from the same initial weights.
This is done in ``--rounds`` rounds that alternate the ways, so that a
change in machine load does not favour one of them; the fastest run of each
way counts (on a shared machine the minimum is the least noisy estimate).
epochs/s is epochs / time, samples/s is epochs * n / time. The load average
before and after is printed with the table.

Peak memory: the extra resident memory (RSS) that training needs, beyond
what the process holds once the libraries are imported and X, y exist as
NumPy arrays. The worker resets the kernel's RSS high-water mark after that
setup (``echo 5 > /proc/self/clear_refs``), runs the warm-up and the timed
repeats, and reports ``VmHWM - baseline RSS`` from ``/proc/self/status``.
This counts everything a way allocates while training - its copies of the
data, activations, gradients, autograd graphs, allocator caches - whichever
allocator it uses, which tracemalloc (NumPy only) would not. Where
``clear_refs`` is unavailable the worker falls back to ``ru_maxrss``, which
also includes the setup peak.

Each worker also reports its final training loss; the table's last column is
its difference from xornet's, a check that all three trained the same network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
INIT_SCALE = 0.5
LEARNING_RATE = 1.0

# (n, hidden, epochs per timed repeat): about a second for the slowest way.
FULL_SIZES = [(1_000, 2, 5_000), (1_000, 64, 1_000), (100_000, 16, 20), (1_000_000, 16, 3)]
QUICK_SIZES = [(1_000, 2, 2_000), (1_000, 64, 300)]
WAYS = ["xornet", "numpy loop", "jax", "pytorch"]


# --------------------------------------------------------------------- setup
def make_problem(n: int, hidden: int):
    """X (2, n) float64 random bits, y (1, n) float64 XOR labels, initial params."""
    import numpy as np

    from xornet.core.model import Architecture, init_params

    rng = np.random.default_rng(SEED)
    X = rng.integers(0, 2, size=(2, n)).astype(np.float64)
    y = np.logical_xor(X[0], X[1]).astype(np.float64)[np.newaxis, :]
    arch = Architecture(n_inputs=2, hidden=(hidden,), activation="sigmoid")
    params = init_params(arch, init="normal", scale=INIT_SCALE, seed=SEED)
    return arch, X, y, params


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------- ways
def run_xornet(arch, X, y, params, epochs):
    from xornet.core.model import MLP
    from xornet.core.training import TrainConfig, train

    model = MLP(arch, params)
    config = TrainConfig(loss="bce", optimizer="gd", learning_rate=LEARNING_RATE, epochs=epochs)
    result = train(model, X, y, config)
    return float(result.history.train_loss[-1])


def run_numpy_loop(arch, X, y, params, epochs):
    import numpy as np

    W1, b1 = params["W1"].copy(), params["b1"].copy()
    W2, b2 = params["W2"].copy(), params["b2"].copy()
    Y = y
    m = X.shape[1]
    lr = LEARNING_RATE
    costs = []
    for _ in range(epochs):
        # forward
        Z1 = W1 @ X + b1
        A1 = 1 / (1 + np.exp(-Z1))
        Z2 = W2 @ A1 + b2
        A2 = 1 / (1 + np.exp(-Z2))
        cost = -np.sum(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)) / m
        costs.append(float(cost))
        # backward
        dZ2 = A2 - Y
        dW2 = dZ2 @ A1.T / m
        db2 = np.sum(dZ2, axis=1, keepdims=True) / m
        dZ1 = (W2.T @ dZ2) * A1 * (1 - A1)
        dW1 = dZ1 @ X.T / m
        db1 = np.sum(dZ1, axis=1, keepdims=True) / m
        # update
        W1 = W1 - lr * dW1
        b1 = b1 - lr * db1
        W2 = W2 - lr * dW2
        b2 = b2 - lr * db2
    return costs[-1]


def run_pytorch(arch, X, y, params, epochs):
    import torch
    import torch.nn.functional as F

    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    W1, b1, W2, b2 = (
        torch.tensor(params[k], dtype=torch.float64, requires_grad=True)
        for k in ("W1", "b1", "W2", "b2")
    )
    optimizer = torch.optim.SGD([W1, b1, W2, b2], lr=LEARNING_RATE)
    losses = []
    for _ in range(epochs):
        optimizer.zero_grad()
        z = W2 @ torch.sigmoid(W1 @ Xt + b1) + b2
        loss = F.binary_cross_entropy_with_logits(z, yt)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[-1]


_jax_fits: dict = {}


def run_jax(arch, X, y, params, epochs):
    import jax
    import jax.numpy as jnp

    fit = _jax_fits.get(epochs)
    if fit is None:

        def loss(p, X, y):
            z = p["W2"] @ jax.nn.sigmoid(p["W1"] @ X + p["b1"]) + p["b2"]
            return jnp.mean(jax.nn.softplus(z) - y * z)  # BCE from logits

        def epoch(carry, _):
            p, X, y = carry
            value, grads = jax.value_and_grad(loss)(p, X, y)
            p = jax.tree_util.tree_map(lambda w, g: w - LEARNING_RATE * g, p, grads)
            return (p, X, y), value

        @jax.jit
        def fit(p, X, y):
            (p, _, _), losses = jax.lax.scan(epoch, (p, X, y), None, length=epochs)
            return p, losses

        _jax_fits[epochs] = fit
    p = {k: jnp.asarray(v) for k, v in params.items()}
    p, losses = fit(p, jnp.asarray(X), jnp.asarray(y))
    jax.block_until_ready(p)
    return float(losses[-1])


RUNNERS = {
    "xornet": run_xornet,
    "numpy loop": run_numpy_loop,
    "jax": run_jax,
    "pytorch": run_pytorch,
}


def worker(way: str, n: int, hidden: int, epochs: int, repeat: int, torch_threads: int) -> dict:
    """Time one way on one size in this (fresh) process; returns a JSON-able dict."""
    if way == "xornet":
        import xornet  # noqa: F401  (before NumPy: pins the kernels, as in the stages)
    import numpy as np  # noqa: F401  (imported before the baseline on purpose)

    import xornet.core.training  # noqa: F401

    if way == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_platforms", "cpu")
        import jax.numpy  # noqa: F401
    if way == "pytorch":
        import torch
        import torch.nn.functional  # noqa: F401

        if torch_threads:
            torch.set_num_threads(torch_threads)
    arch, X, y, params = make_problem(n, hidden)
    run = RUNNERS[way]
    exact_peak = _reset_peak()
    baseline = _status_kib("VmRSS") if exact_peak else 0
    # warm-up: first-call costs, lazy imports (and JAX's compilation for these epochs)
    run(arch, X, y, params, epochs if way == "jax" else min(epochs, 3))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        final_loss = run(arch, X, y, params, epochs)
        best = min(best, time.perf_counter() - start)
    peak = (
        _status_kib("VmHWM") if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    return {
        "seconds": best,
        "peak_kib": max(peak - baseline, 0),
        "final_loss": final_loss,
        "exact_peak": exact_peak,
    }


# -------------------------------------------------------------------- driver
def torch_version(threads: int) -> str | None:
    code = "import sys, torch; torch.set_num_threads(int(sys.argv[1]) or torch.get_num_threads())"
    code += "; print(torch.__version__, torch.get_num_threads())"
    result = subprocess.run(
        [sys.executable, "-c", code, str(threads)], capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else None


def jax_version() -> str | None:
    code = "import jax; print(jax.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def spawn(way: str, n: int, hidden: int, epochs: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", way, str(n), str(hidden), str(epochs)]
    cmd += ["--repeat", str(args.repeat), "--torch-threads", str(args.torch_threads)]
    env = dict(
        os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{way} n={n} hidden={hidden} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.1f}"


def fmt_mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument(
        "--sizes", nargs="+", metavar="N:HIDDEN", help="only these of the full sizes, e.g. 1000:2"
    )
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per worker")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of workers")
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)"
    )
    parser.add_argument(
        "--worker", nargs=4, metavar=("WAY", "N", "HIDDEN", "EPOCHS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.worker:
        way, n, hidden, epochs = args.worker
        result = worker(way, int(n), int(hidden), int(epochs), args.repeat, args.torch_threads)
        print(json.dumps(result))
        return

    load_before = os.getloadavg()[0]
    torch_info = torch_version(args.torch_threads)
    jax_info = jax_version()
    ways = [w for w in WAYS if (w != "pytorch" or torch_info) and (w != "jax" or jax_info)]
    print(cpu_model() + ", ", end="")
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    if args.sizes:
        sizes = [size for size in FULL_SIZES if f"{size[0]}:{size[1]}" in args.sizes]
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, ", end="")
    import numpy as np

    print(f"numpy {np.__version__}, ", end="")
    print(f"jax {jax_info}, " if jax_info else "jax not importable: JAX rows skipped, ", end="")
    print(
        f"torch {torch_info.split()[0]} ({torch_info.split()[1]} threads)"
        if torch_info
        else "torch not importable: PyTorch column skipped"
    )
    print()
    header = (
        "| n | hidden | epochs | way | epochs/s | samples/s | peak MiB "
        "| speed vs PyTorch | memory vs PyTorch | speed vs JAX | final loss - xornet's |"
    )
    print(header)
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    exact = True
    for n, hidden, epochs in sizes:
        results: dict[str, dict] = {}
        for _ in range(args.rounds):
            for way in ways:
                r = spawn(way, n, hidden, epochs, args)
                best = results.setdefault(way, r)
                best["seconds"] = min(best["seconds"], r["seconds"])
                best["peak_kib"] = max(best["peak_kib"], r["peak_kib"])
                exact = exact and r["exact_peak"]
        ref, jax_ref = results.get("pytorch"), results.get("jax")
        for way in ways:
            r = results[way]
            rate = epochs / r["seconds"]
            speed = f"{(ref['seconds'] / r['seconds']):.2f}x" if ref else "-"
            memory = f"{r['peak_kib'] / max(ref['peak_kib'], 1):.2f}x" if ref else "-"
            vs_jax = f"{(jax_ref['seconds'] / r['seconds']):.2f}x" if jax_ref else "-"
            delta = r["final_loss"] - results["xornet"]["final_loss"]
            cells = [f"{n:,}", str(hidden), f"{epochs:,}", way, fmt_rate(rate), fmt_rate(rate * n)]
            cells += [fmt_mib(r["peak_kib"]), speed, memory, vs_jax, f"{delta:.1e}"]
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nload average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    if not exact:
        print("note: /proc/self/clear_refs unavailable; peak memory includes setup (ru_maxrss).")


if __name__ == "__main__":
    main()
