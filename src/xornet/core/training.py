"""The training loop: full-batch or mini-batch descent with a per-epoch history.

``train`` never mutates the model it is given and never returns non-finite
weights: a non-finite loss or parameter raises :class:`DivergenceError`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xornet.core.losses import LOSSES
from xornet.core.model import DEFAULT_BLOCK, MLP, Batch
from xornet.core.optimizers import OPTIMIZERS, OptimizerSettings
from xornet.errors import DivergenceError

Array = np.ndarray

DTYPES: dict[str, type] = {"float64": np.float64, "float32": np.float32}


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``batch_size`` 0 means full batch (the tutorial's).

    ``block`` is the number of columns computed at a time (0: sized to the
    network, see :func:`xornet.core.model.auto_block`); results depend on it only
    through rounding.
    """

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
# Called with the number of epochs done so far, for a progress bar.
Progress = Callable[[int], None]


@dataclass
class TrainResult:
    model: MLP
    history: History


def _check_finite(model: MLP, epoch: int) -> None:
    """Raise DivergenceError naming the first non-finite parameter array, if there is one."""
    if not np.isfinite(model.theta).all():
        for name, value in model.params.items():
            if not np.all(np.isfinite(value)):
                raise DivergenceError(epoch, f"parameter {name}")


def _diverged(model: MLP, epoch: int, updated_in: int) -> None:
    """A loss came out non-finite in ``epoch``: blame the weights if the last update broke them."""
    _check_finite(model, updated_in)
    raise DivergenceError(epoch, "train loss")


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

    Raises :class:`DivergenceError` when a loss or parameter becomes
    non-finite, naming the epoch whose computation produced it; floating-point
    warnings along the way are silenced, since the exception reports them.
    """
    dtype = DTYPES[config.dtype]
    model = model.copy(dtype)
    for name, value in model.params.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"initial parameter {name} holds non-finite values")
    loss_fn = LOSSES[config.loss]
    settings = OptimizerSettings(
        config.learning_rate, config.momentum, config.beta1, config.beta2, config.eps
    )
    optimizer = OPTIMIZERS[config.optimizer](settings)
    history = History.empty(config.epochs)
    n = X.shape[1]
    batch_size = config.batch_size if 0 < config.batch_size < n else n
    # Full batch with validation: the validation columns ride along in the training
    # pass (see xornet.core.model), which measures them before this epoch's update,
    # i.e. after the previous one; the last epoch's are measured on their own.
    fused = batch_size == n and validation is not None and config.epochs > 0
    if batch_size == n:
        full = model.batch(X, y, loss_fn, config.block, validation=validation if fused else None)
    else:
        # Encoded once with scale 1; each mini-batch takes its columns and rescales.
        source = model.batch(X, y, loss_fn, config.block, scale=1.0)
        widths = {batch_size, n % batch_size} - {0}
        minibatches = {w: Batch.empty(model, w, config.block) for w in widths}
        rng = np.random.default_rng(config.shuffle_seed)
    if validation is not None:
        X_val = np.asarray(validation[0], dtype=dtype)
        n_val = X_val.shape[1]
        no_columns = (X_val[:, :0], np.zeros((1, 0)))
        only_val = model.batch(*no_columns, loss_fn, config.block, 1.0, (X_val, validation[1]))
    caller_errstate = np.geterr()

    def report(epoch: int) -> None:
        if callback is not None:
            with np.errstate(**caller_errstate):
                callback(epoch, model, history.head(epoch))

    def due(epoch: int) -> bool:
        return callback is not None and bool(callback_every) and epoch % callback_every == 0

    def record_validation(epoch: int, batch: Batch) -> None:
        history.val_loss[epoch - 1] = batch.val_total / n_val
        history.val_accuracy[epoch - 1] = batch.val_correct / n_val

    report(0)
    theta = [model.theta]
    updated_in = 0  # the epoch of the latest optimizer step
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, config.epochs + 1):
            if fused:
                epoch_loss = model.batch_loss_and_gradient(full, loss_fn) / n
                if epoch > 1:  # the model is still the one after epoch - 1's update
                    record_validation(epoch - 1, full)
                    if due(epoch - 1):
                        _check_finite(model, updated_in)
                        report(epoch - 1)
                if not math.isfinite(epoch_loss):
                    _diverged(model, epoch, updated_in)
                history.train_loss[epoch - 1] = epoch_loss
                optimizer.step(theta, [full.grad])
                updated_in = epoch
                continue
            if batch_size == n:
                epoch_loss = model.batch_loss_and_gradient(full, loss_fn) / n
                if not math.isfinite(epoch_loss):
                    _diverged(model, epoch, updated_in)
                optimizer.step(theta, [full.grad])
                updated_in = epoch
            else:
                order = rng.permutation(n)
                total = 0.0
                for start in range(0, n, batch_size):
                    columns = order[start : start + batch_size]
                    batch = minibatches[len(columns)]
                    batch.take(source, columns)
                    batch_total = model.batch_loss_and_gradient(batch, loss_fn)
                    if not math.isfinite(batch_total):
                        _diverged(model, epoch, updated_in)
                    optimizer.step(theta, [batch.grad])
                    updated_in = epoch
                    total += batch_total
                epoch_loss = total / n
            history.train_loss[epoch - 1] = epoch_loss
            if validation is not None:
                model.batch_loss_and_gradient(only_val, loss_fn)
                record_validation(epoch, only_val)
            if epoch < config.epochs and due(epoch):
                _check_finite(model, updated_in)
                report(epoch)
        if fused:
            model.batch_loss_and_gradient(only_val, loss_fn)
            record_validation(config.epochs, only_val)
        _check_finite(model, updated_in)
        if callback is not None:
            report(config.epochs)
    # A copy without the training buffers the model has cached.
    return TrainResult(model.copy(), history)
