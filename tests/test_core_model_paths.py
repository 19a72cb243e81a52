"""The model's less-travelled paths, each pinned to the reference network or to exact values.

The hot path (``loss_and_gradients``, ``train``) is checked against the reference
in ``test_core_reference.py``; these are the other doors into the same maths:
``forward``/``backward`` with a cache (the framework-style API), a cache assembled
by hand, mini-batches filled by ``Batch.take``, float32 models, thresholds, the
architecture's JSON and the optimizers' refusal of mismatched lists.
"""

import json
import tracemalloc

import numpy as np
import pytest

from xornet.core import reference
from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture, Batch, ForwardCache
from xornet.core.optimizers import Adam, GradientDescent, Momentum
from xornet.core.training import History

TOLERANCE = 1e-12
ACTIVATIONS = pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
LOSS_NAMES = pytest.mark.parametrize("loss", ["bce", "mse"])
DEPTHS = pytest.mark.parametrize("hidden", [(3,), (5, 4)], ids=["1-hidden", "2-hidden"])


def make_case(activation="tanh", hidden=(5, 4), n=48, seed=3, dtype=np.float64):
    model = MLP.create(
        Architecture(2, hidden, activation), scale=1.5, seed=seed, bias_scale=0.3, dtype=dtype
    )
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2, n))
    y = (X[0] * X[1] > 0).astype(np.float64)[np.newaxis, :]
    return model, X, y


def plain(model: MLP) -> dict[str, np.ndarray]:
    return {name: np.array(value, dtype=np.float64) for name, value in model.params.items()}


def relative_error(ours: np.ndarray, oracle: np.ndarray) -> float:
    return float(np.max(np.abs(ours - oracle)) / max(np.max(np.abs(oracle)), 1e-300))


def assert_matches_reference(grads: dict, ref_grads: dict) -> None:
    assert set(grads) == set(ref_grads)
    for name, value in ref_grads.items():
        assert grads[name].shape == value.shape, name
        assert relative_error(grads[name], value) <= TOLERANCE, name


# ---------------------------------------------------------------- forward / backward
@DEPTHS
@ACTIVATIONS
def test_forward_cache_holds_every_layer_of_the_reference(activation, hidden):
    model, X, _ = make_case(activation, hidden)
    cache = model.forward(X)
    Zs, As = reference.forward(plain(model), X, activation)
    assert len(cache.inputs) == len(cache.pre_activations) == len(Zs) == len(hidden) + 1
    for ours, oracle in zip(cache.inputs, As[:-1], strict=True):
        assert ours.shape == oracle.shape
        assert relative_error(ours, oracle) <= TOLERANCE
    for ours, oracle in zip(cache.pre_activations, Zs, strict=True):
        assert ours.shape == oracle.shape
        assert relative_error(ours, oracle) <= TOLERANCE
    assert cache.logits.shape == (1, X.shape[1])


@DEPTHS
@LOSS_NAMES
@ACTIVATIONS
def test_backward_matches_the_reference_from_forwards_cache_and_from_one_made_by_hand(
    activation, loss, hidden
):
    model, X, y = make_case(activation, hidden)
    with np.errstate(divide="ignore"):  # the reference's log(p) of a saturated p
        _, ref_grads = reference.loss_and_gradients(plain(model), X, y, activation, loss)
    cache = model.forward(X)
    fast = model.backward(cache, y, LOSSES[loss])
    assert_matches_reference(fast, ref_grads)
    # The same cache's arrays, copied, without forward's workspace: backward lays
    # them out itself and must give the same bytes.
    by_hand = ForwardCache(
        [np.array(a) for a in cache.inputs], [np.array(z) for z in cache.pre_activations]
    )
    slow = model.backward(by_hand, y, LOSSES[loss])
    for name in fast:
        assert np.array_equal(slow[name], fast[name]), name


def test_backward_scale_multiplies_the_summed_loss_gradient():
    model, X, y = make_case()
    n = X.shape[1]
    mean = model.backward(model.forward(X), y, LOSSES["bce"])
    summed = model.backward(model.forward(X), y, LOSSES["bce"], scale=1.0)
    tripled = model.backward(model.forward(X), y, LOSSES["bce"], scale=3.0)
    for name in mean:
        assert relative_error(summed[name], n * mean[name]) <= TOLERANCE
        assert relative_error(tripled[name], 3 * summed[name]) <= TOLERANCE


def test_a_float32_model_computes_in_float32_whatever_it_is_given():
    model, X, y = make_case(dtype=np.float32)
    X_int = np.round(X * 3).astype(np.int64)
    cache = model.forward(X_int)
    for array in [*cache.inputs, *cache.pre_activations]:
        assert array.dtype == np.float32
    hand = ForwardCache(
        [np.array(a, dtype=np.float64) for a in cache.inputs],
        [np.array(z) for z in cache.pre_activations],
    )
    fast = model.backward(cache, y, LOSSES["mse"])
    slow = model.backward(hand, y, LOSSES["mse"])
    for name in fast:
        assert fast[name].dtype == slow[name].dtype == np.float32
        assert np.array_equal(slow[name], fast[name]), name
    # ... and agrees with the float64 reference to float32 precision.
    _, ref_grads = reference.loss_and_gradients(
        plain(model), X_int.astype(np.float64), y, "tanh", "mse"
    )
    for name, value in ref_grads.items():
        assert relative_error(fast[name].astype(np.float64), value) < 1e-5, name
    batch = Batch.empty(model, 7)
    assert batch.Xa.dtype == batch.targets.dtype == batch.grad.dtype == np.float32


# -------------------------------------------------------------------- mini-batches
@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize("block", [0, 5], ids=["one-block", "blocks-of-5"])
def test_a_taken_minibatch_gives_the_mean_loss_gradient_over_its_columns(loss, block):
    model, X, y = make_case(n=40)
    source = model.batch(X, y, LOSSES[loss], scale=1.0)  # as train prepares it
    columns = np.array([3, 17, 0, 39, 22, 8, 31, 12, 5, 26, 1])
    minibatch = Batch.empty(model, len(columns), block=block)
    for _ in range(2):  # refilled: the second take must not compound the first
        minibatch.take(source, columns)
        with np.errstate(over="ignore"):
            total = model.batch_loss_and_gradient(minibatch, LOSSES[loss])
    ref_loss, ref_grads = reference.loss_and_gradients(
        plain(model), X[:, columns], y[:, columns], "tanh", loss
    )
    assert total / len(columns) == pytest.approx(ref_loss, rel=TOLERANCE, abs=0)
    # MLP.theta's layout: one (out, in + 1) matrix [W_l | b_l] per layer, row-major.
    layers = len(ref_grads) // 2
    flat = np.concatenate(
        [np.hstack([ref_grads[f"W{k}"], ref_grads[f"b{k}"]]).ravel() for k in range(1, layers + 1)]
    )
    assert minibatch.grad.shape == flat.shape
    assert relative_error(minibatch.grad, flat) <= TOLERANCE


# ------------------------------------------------------------------- predictions
def test_predict_is_one_at_the_threshold_and_returns_integers():
    model, X, _ = make_case()
    proba = model.predict_proba(X)
    for j in (0, 7, 21):
        at = model.predict(X, threshold=float(proba[0, j]))
        assert at.dtype == np.int64
        assert at[0, j] == 1  # P(y = 1) >= threshold
        assert np.array_equal(at, (proba >= proba[0, j]).astype(np.int64))


def test_loss_and_gradients_silence_overflow_whatever_the_callers_error_state():
    model, X, y = make_case(activation="sigmoid")
    for name in model.params:
        model.params[name][...] *= 400.0  # logits of order 1e3: e^x overflows
    with np.errstate(over="raise", invalid="raise"):
        value, grads = model.loss_and_gradients(X, y, LOSSES["bce"])
    assert np.isfinite(value) and value > 10.0
    assert all(np.all(np.isfinite(g)) for g in grads.values())


# ---------------------------------------------------------------- the fused losses
@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_the_fused_loss_works_in_the_arrays_it_is_given(loss):
    """evaluate allocates nothing per sample: it writes into ``out`` and ``work``."""
    n = 200_000
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1, n)) * 3
    t = LOSSES[loss].encode(rng.integers(0, 2, n), 1.0 / n)
    out, work = np.empty_like(z), np.empty_like(z)
    LOSSES[loss].evaluate(z, t, out, work)  # warm-up
    tracemalloc.start()
    try:
        LOSSES[loss].evaluate(z, t, out, work)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < z.nbytes / 4, f"{peak} bytes allocated for {z.nbytes}-byte arrays"


# ------------------------------------------------------ architecture, optimizers, history
def test_architecture_json_is_sorted_and_old_files_default_to_a_sigmoid_output():
    arch = Architecture(2, (4, 3), "relu")
    assert arch.to_json() == (
        '{"activation": "relu", "hidden": [4, 3], "n_inputs": 2, "output": "sigmoid"}'
    )
    old = json.dumps({"n_inputs": 2, "hidden": [4, 3], "activation": "relu"})
    assert Architecture.from_json(old) == arch


@pytest.mark.parametrize(
    "optimizer",
    [GradientDescent(0.1), Momentum(0.1), Adam(0.1)],
    ids=["gd", "momentum", "adam"],
)
def test_optimizers_refuse_gradients_that_do_not_match_the_parameters(optimizer):
    params = [np.zeros(3), np.zeros(2)]
    with pytest.raises(ValueError, match="zip"):
        optimizer.step(params, [np.ones(3)])
    fresh = type(optimizer)(0.1)
    fresh.step(params, [np.ones(3), np.ones(2)])  # matching lists: fine, then
    with pytest.raises(ValueError, match="zip"):
        fresh.step(params, [np.ones(3)])  # a short list later is refused too
    with pytest.raises(ValueError, match="zip"):
        fresh.step(params[:1], [np.ones(3), np.ones(2)])


def test_history_head_is_a_view_of_the_first_epochs_of_every_column():
    history = History.empty(6)
    history.train_loss[:] = np.arange(6.0)
    history.val_loss[:] = np.arange(6.0) * 2
    history.val_accuracy[:] = np.arange(6.0) / 10
    head = history.head(4)
    assert len(head) == 4
    for column in ("epoch", "train_loss", "val_loss", "val_accuracy"):
        full, part = getattr(history, column), getattr(head, column)
        assert np.array_equal(part, full[:4]), column
        assert np.shares_memory(part, full), column
