"""Train S copies of one architecture at once, one per model seed, as one NumPy computation.

Seed ``s`` of the batch starts from exactly the weights ``MLP.create(arch, init,
scale, seed=s, bias_scale)`` gives and follows the full-batch updates of
:func:`xornet.core.training.train`, with the same activations, losses and optimizers.
The weights of the S networks are stacked: ``Wl`` is (S, out, in) and ``bl``
(S, out, 1); the data ``X`` (features, n) is shared, so layer 1 is one matrix
product ``(S*out, in) @ (in, n)`` and deeper layers are batched products
``(S, out, in) @ (S, in, n)``. Every activation is (S, units, n).

Two things make it fast:

- one set of NumPy calls per epoch serves all S networks, so the Python
  overhead of an epoch is paid once, not S times;
- *compression*: a dataset with repeated columns (XOR of random bits has only
  4 distinct inputs among its n samples) is trained on its distinct (x, y)
  columns weighted by their counts. The mean loss and its gradient are
  mathematically the same sums, grouped; results agree with the uncompressed
  computation up to rounding (relative ~1e-15 per step).

A seed whose loss or weights become non-finite is marked diverged at that
epoch and frozen at its last weights with a finite loss (its initial weights
if the very first loss is non-finite); the other seeds go on, and no warning
is raised. (The single-network :func:`~xornet.core.training.train` raises instead.)
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xornet.core.activations import ACTIVATIONS, sigmoid
from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture, init_params
from xornet.core.optimizers import OPTIMIZERS, OptimizerSettings
from xornet.core.training import DTYPES, Progress, TrainConfig

Array = np.ndarray

# Per-sample losses from logits z and 0/1 targets y (broadcastable shapes), the
# elementwise forms of xornet.core.losses' summed ``total``s; a test checks that they
# sum to the same values and that every registered loss has one. With s = 1 - 2y,
# s z is the logit of the wrong class, so BCE = softplus(s z) and MSE =
# sigmoid(s z)^2: no cancellation, small losses keep their relative precision.
PER_SAMPLE_LOSSES: dict[str, Callable[[Array, Array], Array]] = {
    "bce": lambda z, y: np.logaddexp(0.0, (1.0 - 2.0 * y) * z),
    "mse": lambda z, y: np.square(sigmoid((1.0 - 2.0 * y) * z)),
}

# Upper bound on elements of one activation array (S_chunk, units, columns):
# seeds are trained in chunks below it. 2**18 doubles (2 MB) keeps the arrays
# near cache size and the layer-1 product below OpenBLAS's multithreading
# threshold, which on a busy 2-core machine made big chunks 5x slower.
MAX_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class Columns:
    """A dataset as the columns the computation uses.

    ``X`` is (features, u), ``y`` (1, u) float. When compressed, the u columns
    are the distinct (x, y) pairs of the n samples and ``count`` (1, u) their
    multiplicities; otherwise ``count`` is None and u == n.
    """

    X: Array
    y: Array
    count: Array | None
    n: int

    @classmethod
    def of(cls, X: Array, y: Array, dtype: type, compress: bool = True) -> "Columns":
        """Columns of X (features, n) with 0/1 targets y (1, n), in ``dtype``."""
        X = np.asarray(X)
        y = np.asarray(y).reshape(1, -1)
        n = X.shape[1]
        if compress:
            stacked = np.vstack([X.astype(np.float64), y.astype(np.float64)])
            distinct, count = np.unique(stacked, axis=1, return_counts=True)
            if distinct.shape[1] < n:
                return cls(
                    np.ascontiguousarray(distinct[:-1], dtype=dtype),
                    np.ascontiguousarray(distinct[-1:], dtype=dtype),
                    count.reshape(1, -1).astype(dtype),
                    n,
                )
        return cls(
            np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(y, dtype=dtype), None, n
        )

    @property
    def width(self) -> int:
        return self.X.shape[1]

    def total(self, per_sample: Array) -> Array:
        """Sum of (S, 1, u) per-column values over the n samples: shape (S,)."""
        if self.count is not None:
            per_sample = per_sample * self.count
        return per_sample.sum(axis=(1, 2))


@dataclass
class BatchedResult:
    """What training S networks produced; every per-seed array has length S.

    - ``seeds``: the model seeds, in batch order.
    - ``params``: final weights, ``Wl`` (S, out, in) and ``bl`` (S, out, 1); a
      diverged seed keeps its last weights with a finite loss.
    - ``train_loss``: mean training loss of the last epoch (before its update,
      as ``History.train_loss[-1]``); NaN for diverged seeds.
    - ``test_loss``, ``test_accuracy``: of the final weights on the validation
      data (NaN without validation or for diverged seeds).
    - ``solved_epoch``: first epoch after whose update validation accuracy was
      1.0 (as the train stage's ``solved_at_epoch``); -1 if never.
    - ``diverged_epoch``: epoch at which the loss or weights became non-finite;
      -1 if never.
    - ``history_epoch`` (k,) and ``loss_history`` (k, S): training loss at
      every ``history_every``-th epoch and the last one.
    """

    arch: Architecture
    seeds: Array
    params: dict[str, Array]
    train_loss: Array
    test_loss: Array
    test_accuracy: Array
    solved_epoch: Array
    diverged_epoch: Array
    history_epoch: Array
    loss_history: Array

    @property
    def diverged(self) -> Array:
        return self.diverged_epoch >= 0

    @property
    def success(self) -> Array:
        """Seeds ending at 100 % validation accuracy without diverging."""
        return (self.test_accuracy == 1.0) & ~self.diverged

    def model(self, index: int) -> MLP:
        """The trained network at position ``index`` of the batch."""
        return MLP(self.arch, {k: v[index].copy() for k, v in self.params.items()})


class _Stack:
    """S networks of one architecture with stacked weights (see module docstring)."""

    def __init__(self, arch: Architecture, params: dict[str, Array]) -> None:
        self.arch = arch
        self.activation = ACTIVATIONS[arch.activation]
        self.params = params
        self.names = list(arch.param_shapes())
        self.S = params["W1"].shape[0]
        self.buffers: dict[tuple[str, int, int], Array] = {}

    def _buffer(self, kind: str, layer: int, width: int) -> Array:
        key = (kind, layer, width)
        buf = self.buffers.get(key)
        if buf is None:
            units = self.arch.layer_sizes[layer]
            buf = self.buffers[key] = np.empty((self.S, units, width), self.params["W1"].dtype)
        return buf

    def forward(self, X: Array) -> tuple[list[Array], list[Array]]:
        """Inputs to each weight layer (after X) and pre-activations, each (S, units, u)."""
        width = X.shape[1]
        inputs: list[Array] = []
        pre: list[Array] = []
        A: Array | None = None
        n_layers = self.arch.n_layers
        for layer in range(1, n_layers + 1):
            W = self.params[f"W{layer}"]
            Z = self._buffer(f"z{width}", layer, width)
            if layer == 1:
                S, out, fan_in = W.shape
                np.matmul(W.reshape(S * out, fan_in), X, out=Z.reshape(S * out, width))
            else:
                np.matmul(W, A, out=Z)
            Z += self.params[f"b{layer}"]
            pre.append(Z)
            if layer < n_layers:
                A = self.activation.value(Z, self._buffer(f"a{width}", layer, width))
                inputs.append(A)
        return inputs, pre

    def gradients(self, X: Array, inputs: list[Array], pre: list[Array], dZ: Array) -> list[Array]:
        """Gradients [gW1, gb1, ...] from the output delta dZ (S, 1, u), already scaled."""
        grads: dict[str, Array] = {}
        width = X.shape[1]
        for layer in range(self.arch.n_layers, 0, -1):
            if layer == 1:
                S, out, _ = dZ.shape
                grads["W1"] = (dZ.reshape(S * out, width) @ X.T).reshape(S, out, X.shape[0])
            else:
                grads[f"W{layer}"] = dZ @ inputs[layer - 2].transpose(0, 2, 1)
            grads[f"b{layer}"] = dZ.sum(axis=2, keepdims=True)
            if layer > 1:
                W = self.params[f"W{layer}"]
                dA = np.matmul(W.transpose(0, 2, 1), dZ, out=self._buffer("d", layer - 1, width))
                deriv = self.activation.derivative(
                    pre[layer - 2], inputs[layer - 2], self._buffer("t", layer - 1, width)
                )
                dA *= deriv
                dZ = dA
        return [grads[name] for name in self.names]


def stacked_init(
    arch: Architecture,
    seeds: Array,
    init: str = "xavier",
    scale: float = 1.0,
    bias_scale: float = 0.0,
    dtype: type = np.float64,
) -> dict[str, Array]:
    """Initial weights of every seed, stacked: entry s is ``init_params(..., seed=seeds[s])``."""
    each = [init_params(arch, init, scale, int(seed), bias_scale, dtype) for seed in seeds]
    return {name: np.stack([p[name] for p in each]) for name in arch.param_shapes()}


def train_batched(
    arch: Architecture,
    seeds: Array | list[int] | range,
    X: Array,
    y: Array,
    config: TrainConfig,
    init: str = "xavier",
    scale: float = 1.0,
    bias_scale: float = 0.0,
    validation: tuple[Array, Array] | None = None,
    history_every: int = 1,
    compress: bool = True,
    progress: Progress | None = None,
    max_elements: int = MAX_ELEMENTS,
) -> BatchedResult:
    """Train one network per seed on X (features, n) and 0/1 targets y (1, n), full batch.

    ``validation`` is an optional (X_val, y_val) pair of the same layout.
    ``config`` is the single-network :class:`~xornet.core.training.TrainConfig`; its
    ``batch_size`` must be 0 (full batch) and ``block`` is ignored.
    ``progress(epoch)`` is called about a hundred times over the run.
    """
    if 0 < config.batch_size < np.asarray(X).shape[1]:
        raise ValueError("train_batched trains full batch only (train.batch_size must be 0)")
    seeds = np.asarray(list(seeds), dtype=np.int64)
    if seeds.ndim != 1 or seeds.size == 0:
        raise ValueError("need at least one seed")
    dtype = DTYPES[config.dtype]
    data = Columns.of(X, y, dtype, compress)
    val = None if validation is None else Columns.of(*validation, dtype, compress)
    widest = max(data.width, val.width if val else 0) * max(arch.layer_sizes)
    chunk = max(1, max_elements // widest)
    parts = []
    for start in range(0, seeds.size, chunk):
        part_progress = progress if start == 0 else None
        parts.append(
            _train_chunk(
                arch,
                seeds[start : start + chunk],
                data,
                val,
                config,
                stacked_init(arch, seeds[start : start + chunk], init, scale, bias_scale, dtype),
                history_every,
                part_progress,
            )
        )
    if len(parts) == 1:
        return parts[0]
    return BatchedResult(
        arch,
        seeds,
        {k: np.concatenate([p.params[k] for p in parts]) for k in parts[0].params},
        *(
            np.concatenate([getattr(p, f) for p in parts], axis=-1)
            for f in (
                "train_loss",
                "test_loss",
                "test_accuracy",
                "solved_epoch",
                "diverged_epoch",
            )
        ),
        parts[0].history_epoch,
        np.concatenate([p.loss_history for p in parts], axis=1),
    )


def _train_chunk(
    arch: Architecture,
    seeds: Array,
    data: Columns,
    val: Columns | None,
    config: TrainConfig,
    params: dict[str, Array],
    history_every: int,
    progress: Progress | None,
) -> BatchedResult:
    S = seeds.size
    net = _Stack(arch, params)
    plist = [params[name] for name in net.names]
    loss_fn = LOSSES[config.loss]
    per_sample = PER_SAMPLE_LOSSES[config.loss]
    settings = OptimizerSettings(
        config.learning_rate, config.momentum, config.beta1, config.beta2, config.eps
    )
    optimizer = OPTIMIZERS[config.optimizer](settings)
    # The output delta is scaled by 1/n (the mean loss), times the column counts
    # when compressed; the same grouping the model's gradient uses, summed per column.
    scale: float | Array = 1.0 / data.n if data.count is None else data.count * (1.0 / data.n)

    epochs = config.epochs
    every = max(1, history_every)
    history_epoch = np.array(sorted({*range(every, epochs + 1, every), epochs}), dtype=np.int64)
    loss_history = np.full((history_epoch.size, S), np.nan)
    row = 0
    active = np.ones(S, dtype=bool)
    diverged_epoch = np.full(S, -1, dtype=np.int64)
    solved_epoch = np.full(S, -1, dtype=np.int64)
    previous = [p.copy() for p in plist]  # weights before the last update
    frozen = [p.copy() for p in plist]  # weights of diverged seeds
    loss = np.full(S, np.nan)
    tick = max(1, epochs // 100)

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(1, epochs + 1):
            inputs, pre = net.forward(data.X)
            logits = pre[-1]
            loss = data.total(per_sample(logits, data.y)) / data.n
            bad = active & ~np.isfinite(loss)
            if bad.any():
                _freeze(bad, epoch, active, diverged_epoch, plist, previous, frozen)
                inputs, pre = net.forward(data.X)
                logits = pre[-1]
            dZ = loss_fn.delta(logits, data.y, net._buffer("d", arch.n_layers, data.width))
            dZ *= scale
            grads = net.gradients(data.X, inputs, pre, dZ)
            for p, keep in zip(plist, previous, strict=True):
                np.copyto(keep, p)
            optimizer.step(plist, grads)
            if not active.all():
                for p, f in zip(plist, frozen, strict=True):
                    p[~active] = f[~active]
            if epoch == history_epoch[row]:
                loss_history[row] = np.where(active, loss, np.nan)
                row += 1
            if val is not None:
                solved = _all_correct(net, val)
                solved_epoch[(solved_epoch < 0) & solved & active] = epoch
            if progress is not None and (epoch % tick == 0 or epoch == epochs):
                progress(epoch)

        # Weights that became non-finite in the last update never reached a loss check.
        finite = np.ones(S, dtype=bool)
        for p in plist:
            finite &= np.isfinite(p).reshape(S, -1).all(axis=1)
        bad = active & ~finite
        if bad.any():
            _freeze(bad, epochs, active, diverged_epoch, plist, previous, frozen)
        train_loss = np.where(active, loss, np.nan)
        test_loss = np.full(S, np.nan)
        test_accuracy = np.full(S, np.nan)
        if val is not None:
            _, pre = net.forward(val.X)
            z = pre[-1]
            test_loss = val.total(per_sample(z, val.y)) / val.n
            correct = ((z >= 0) == (val.y == 1)).astype(np.float64)
            test_accuracy = val.total(correct) / val.n
            test_loss[~active] = np.nan
            test_accuracy[~active] = np.nan
            solved_epoch[~active] = -1

    return BatchedResult(
        arch,
        seeds,
        {name: p.astype(np.float64) for name, p in zip(net.names, plist, strict=True)},
        train_loss,
        test_loss,
        test_accuracy,
        solved_epoch,
        diverged_epoch,
        history_epoch,
        loss_history,
    )


def _freeze(
    bad: Array,
    epoch: int,
    active: Array,
    diverged_epoch: Array,
    plist: list[Array],
    previous: list[Array],
    frozen: list[Array],
) -> None:
    """Mark seeds ``bad`` diverged at ``epoch`` and pin them to their previous weights."""
    diverged_epoch[bad] = epoch
    active &= ~bad
    for p, keep, f in zip(plist, previous, frozen, strict=True):
        p[bad] = keep[bad]
        f[bad] = keep[bad]


def _all_correct(net: _Stack, val: Columns) -> Array:
    """Per seed: is every validation column classified right (logit >= 0 means 1)?"""
    _, pre = net.forward(val.X)
    return ((pre[-1] >= 0) == (val.y == 1)).all(axis=(1, 2))
