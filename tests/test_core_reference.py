"""The fast model against ``xornet.core.reference``, the tutorial's plain network (the oracle).

Same initial weights and data in float64: single-step gradients, per-epoch
training losses and final weights must agree to 1e-12 relative, for every
activation, loss, depth and optimizer. The reference itself is checked
against finite differences and torch only through the fast model
(``test_core_gradients.py``, ``test_core_torch.py``), so it must stay
independent of it: it imports nothing from xornet.
"""

import ast
import inspect
import math
import sys

import numpy as np
import pytest

from xornet.core import reference
from xornet.core.data import generate
from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture
from xornet.core.training import TrainConfig, train

TOLERANCE = 1e-12
EPOCHS = 30
LEARNING_RATES = {"gd": 0.5, "momentum": 0.1, "adam": 0.02}

ACTIVATIONS = pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
LOSS_NAMES = pytest.mark.parametrize("loss", ["bce", "mse"])
DEPTHS = pytest.mark.parametrize("hidden", [(3,), (5, 4)], ids=["1-hidden", "2-hidden"])


def relative_error(ours: np.ndarray, oracle: np.ndarray) -> float:
    """max |ours - oracle| / max |oracle| over one array.

    Rounding errors are of the order of eps times the array's largest entries
    (they come from sums over samples and units), so an entry passing close to
    zero keeps an absolute error at that scale: an elementwise rtol would flag
    it, or need an arbitrary atol. Normalising by the array's magnitude is the
    meaningful measure (the one test_core_torch.py uses).
    """
    scale = max(np.max(np.abs(oracle)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(ours - oracle)) / scale)


def assert_arrays_match(ours: dict, oracle: dict, what: str) -> None:
    assert set(ours) == set(oracle)
    for name, value in oracle.items():
        assert np.shape(ours[name]) == np.shape(value), f"{what} {name}: shape"
        error = relative_error(np.asarray(ours[name]), value)
        assert error <= TOLERANCE, f"{what} {name}: relative error {error:.2e}"


def make_case(activation: str, hidden: tuple[int, ...], n: int = 64, seed: int = 5):
    """A network with non-zero biases and data with real-valued features (XOR of signs)."""
    model = MLP.create(Architecture(2, hidden, activation), scale=1.5, seed=seed, bias_scale=0.3)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2, n))
    y = (X[0] * X[1] > 0).astype(np.float64)[np.newaxis, :]
    return model, X, y


def plain(model: MLP) -> dict[str, np.ndarray]:
    """The model's parameters as fresh arrays, for the reference."""
    return {name: np.array(value) for name, value in model.params.items()}


@DEPTHS
@LOSS_NAMES
@ACTIVATIONS
def test_gradients_match_the_reference(activation, loss, hidden):
    model, X, y = make_case(activation, hidden)
    value, grads = model.loss_and_gradients(X, y, LOSSES[loss])
    ref_value, ref_grads = reference.loss_and_gradients(plain(model), X, y, activation, loss)
    assert value == pytest.approx(ref_value, rel=TOLERANCE, abs=0)
    assert_arrays_match(grads, ref_grads, "gradient")


def test_gradients_match_the_reference_on_many_blocks():
    """Per-block gradients, summed, are still the reference's full-batch gradient."""
    model, X, y = make_case("tanh", (8,), n=2_000)
    value, grads = model.loss_and_gradients(X, y, LOSSES["bce"], block=300)
    ref_value, ref_grads = reference.loss_and_gradients(plain(model), X, y, "tanh", "bce")
    assert value == pytest.approx(ref_value, rel=TOLERANCE, abs=0)
    assert_arrays_match(grads, ref_grads, "gradient")


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
@DEPTHS
@LOSS_NAMES
@ACTIVATIONS
def test_training_matches_the_reference(activation, loss, hidden, optimizer):
    model, X, y = make_case(activation, hidden)
    lr = LEARNING_RATES[optimizer]
    config = TrainConfig(loss=loss, optimizer=optimizer, learning_rate=lr, epochs=EPOCHS)
    result = train(model, X, y, config)
    ref_params, ref_losses = reference.train(
        plain(model), X, y, activation, loss, optimizer, lr, EPOCHS
    )
    np.testing.assert_allclose(result.history.train_loss, ref_losses, rtol=TOLERANCE, atol=0)
    assert_arrays_match(result.model.params, ref_params, f"{optimizer} weight")
    # the run did something: the loss went down and every array moved
    assert ref_losses[-1] < ref_losses[0]
    for name, value in ref_params.items():
        assert not np.array_equal(value, model.params[name]), f"{name} did not move"


def test_tutorial_setting_starts_at_ln2_in_the_reference():
    """2 sigmoid units, randn * 0.01, zero biases, BCE, plain GD, lr 0.01 (presets.py)."""
    train_set, _ = generate("xor", 402, 2 / 402, seed=0)
    X, y = train_set.X, train_set.y
    params = reference.init_params([2, 2, 1], scale=0.01, seed=0)
    # the reference's initialisation is the library's "normal" one, draw for draw
    model = MLP.create(Architecture(2, (2,), "sigmoid"), init="normal", scale=0.01, seed=0)
    assert_arrays_match(params, plain(model), "initial")
    assert not np.any(params["b1"]) and not np.any(params["b2"])

    epochs = 200
    ref_params, ref_losses = reference.train(params, X, y, "sigmoid", "bce", "gd", 0.01, epochs)
    assert ref_losses[0] == pytest.approx(math.log(2.0), abs=1e-3)
    assert np.all(np.abs(np.array(ref_losses) - math.log(2.0)) < 0.01)  # the plateau
    config = TrainConfig(loss="bce", optimizer="gd", learning_rate=0.01, epochs=epochs)
    result = train(model, X, y, config)
    np.testing.assert_allclose(result.history.train_loss, ref_losses, rtol=TOLERANCE, atol=0)
    assert_arrays_match(result.model.params, ref_params, "tutorial weight")


def test_the_reference_imports_numpy_and_the_standard_library_only():
    tree = ast.parse(inspect.getsource(reference))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module)
    roots = {name.split(".")[0] for name in imported}
    assert "numpy" in roots
    assert roots <= {"numpy"} | set(sys.stdlib_module_names), roots - {"numpy"}
    assert "xornet" not in roots
