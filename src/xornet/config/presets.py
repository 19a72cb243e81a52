"""Named parameter presets: ``section.key=value`` overrides applied before ``--set``.

``tutorial`` is the classic from-scratch tutorial's own setting — two sigmoid
hidden units, weights ``randn * 0.01``, zero biases, cross-entropy and plain
gradient descent with a small learning rate. It starts on the saddle at loss
ln 2 ≈ 0.693 and stays there: the "not converging" of the tutorial's text.
"""

PRESETS: dict[str, tuple[str, ...]] = {
    "tutorial": (
        "model.hidden=[2]",
        "model.activation=sigmoid",
        "model.init=normal",
        "model.init_scale=0.01",
        "model.bias_scale=0.0",
        "train.loss=bce",
        "train.optimizer=gd",
        "train.learning_rate=0.01",
        "train.batch_size=0",
    ),
}
