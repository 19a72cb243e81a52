"""The training loop: full-batch or mini-batch descent with a per-epoch history.

``train`` never mutates the model it is given and never returns non-finite
weights: a non-finite loss or parameter raises :class:`DivergenceError`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xornet.losses import LOSSES
from xornet.model import DEFAULT_BLOCK, MLP
from xornet.optim import OPTIMIZERS, OptimizerSettings

Array = np.ndarray

DTYPES: dict[str, type] = {"float64": np.float64, "float32": np.float32}


class DivergenceError(ArithmeticError):
    """Training produced a non-finite loss or parameter."""

    def __init__(self, epoch: int, what: str) -> None:
        super().__init__(f"training diverged at epoch {epoch}: {what} became non-finite")
        self.epoch = epoch
        self.what = what


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``batch_size`` 0 means full batch (the tutorial's)."""

    loss: str = "bce"
    optimizer: str = "gd"
    learning_rate: float = 1.0
    epochs: int = 2000
    batch_size: int = 0
    shuffle_seed: int = 0
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    dtype: str = "float64"
    block: int = DEFAULT_BLOCK


@dataclass
class History:
    """Per-epoch records, each an array of length ``epochs``.

    ``train_loss[i]`` is the mean training loss seen during epoch ``i + 1``
    (before that epoch's updates, averaged over its batches); the validation
    entries are measured after the epoch's updates and are NaN when no
    validation data was given.
    """

    epoch: Array
    train_loss: Array
    val_loss: Array
    val_accuracy: Array

    @classmethod
    def empty(cls, epochs: int) -> "History":
        nan = np.full(epochs, np.nan)
        return cls(np.arange(1, epochs + 1), nan.copy(), nan.copy(), nan.copy())

    def __len__(self) -> int:
        return len(self.epoch)

    def head(self, n: int) -> "History":
        """The first ``n`` epochs (views, not copies)."""
        return History(
            self.epoch[:n], self.train_loss[:n], self.val_loss[:n], self.val_accuracy[:n]
        )

    @property
    def has_validation(self) -> bool:
        return len(self) > 0 and not np.isnan(self.val_loss[-1])


Callback = Callable[[int, MLP, History], None]


@dataclass
class TrainResult:
    model: MLP
    history: History


def _check_finite(model: MLP, epoch: int) -> None:
    for name, value in model.params.items():
        if not np.all(np.isfinite(value)):
            raise DivergenceError(epoch, f"parameter {name}")


def train(
    model: MLP,
    X: Array,
    y: Array,
    config: TrainConfig,
    validation: tuple[Array, Array] | None = None,
    callback: Callback | None = None,
    callback_every: int = 0,
) -> TrainResult:
    """Train a copy of ``model`` on X (n_inputs, n) and 0/1 targets y (1, n).

    ``validation`` is an optional (X_val, y_val) pair of the same layout.
    ``callback(epoch, model, history_so_far)`` is called with epoch 0 before
    training, then every ``callback_every`` epochs (0: never) and after the
    last epoch; it must not modify the model.
    """
    dtype = DTYPES[config.dtype]
    model = model.copy(dtype)
    X = np.ascontiguousarray(X, dtype=dtype)
    y = np.ascontiguousarray(y, dtype=dtype)
    loss_fn = LOSSES[config.loss]
    settings = OptimizerSettings(
        config.learning_rate, config.momentum, config.beta1, config.beta2, config.eps
    )
    optimizer = OPTIMIZERS[config.optimizer](settings)
    params = model.param_list()
    history = History.empty(config.epochs)
    n = X.shape[1]
    batch = config.batch_size if 0 < config.batch_size < n else n
    rng = np.random.default_rng(config.shuffle_seed)
    if validation is not None:
        X_val = np.ascontiguousarray(validation[0], dtype=dtype)
        y_val = np.asarray(validation[1])
    if callback is not None:
        callback(0, model, history.head(0))

    for epoch in range(1, config.epochs + 1):
        if batch == n:
            epoch_loss, grads = model.loss_and_gradients(X, y, loss_fn, config.block)
            optimizer.step(params, list(grads.values()))
        else:
            order = rng.permutation(n)
            epoch_loss = 0.0
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                batch_loss, grads = model.loss_and_gradients(X[:, idx], y[:, idx], loss_fn)
                optimizer.step(params, list(grads.values()))
                epoch_loss += batch_loss * len(idx) / n
        if not math.isfinite(epoch_loss):
            _check_finite(model, epoch)
            raise DivergenceError(epoch, "train loss")
        history.train_loss[epoch - 1] = epoch_loss
        if validation is not None:
            z_val = model.logits(X_val)
            history.val_loss[epoch - 1] = loss_fn.total(z_val, y_val) / X_val.shape[1]
            history.val_accuracy[epoch - 1] = np.mean((z_val >= 0) == (y_val == 1))
        last = epoch == config.epochs
        if callback is not None and (last or (callback_every and epoch % callback_every == 0)):
            _check_finite(model, epoch)
            callback(epoch, model, history.head(epoch))
    _check_finite(model, config.epochs)
    return TrainResult(model, history)
