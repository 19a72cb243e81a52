"""Batched training: seed s of the batch is the single network train() gives for seed s."""

import warnings

import numpy as np
import pytest

from xornet.core.batched import PER_SAMPLE_LOSSES, Columns, stacked_init, train_batched
from xornet.core.data import generate
from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture, init_params
from xornet.core.training import TrainConfig, train
from xornet.errors import DivergenceError

RTOL = 1e-10


@pytest.fixture(scope="module")
def xor():
    return generate("xor", 200, 0.25, 0)


@pytest.fixture(scope="module")
def noisy():
    return generate("noisy_xor", 120, 0.25, 1, noise=0.2)


def relative(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def test_every_loss_has_a_per_sample_form_summing_to_its_total():
    assert set(PER_SAMPLE_LOSSES) == set(LOSSES)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1, 50)) * 5
    y = rng.integers(0, 2, (1, 50)).astype(float)
    for name, loss in LOSSES.items():
        assert np.sum(PER_SAMPLE_LOSSES[name](z, y)) == pytest.approx(loss.total(z, y), rel=1e-12)


def test_stacked_init_is_init_params_of_each_seed():
    arch = Architecture(3, (4, 2), "tanh")
    stacked = stacked_init(arch, np.array([5, 0, 7]), "normal", 0.3, bias_scale=0.1)
    for i, seed in enumerate([5, 0, 7]):
        single = init_params(arch, "normal", 0.3, seed, 0.1)
        for name, value in single.items():
            assert np.array_equal(stacked[name][i], value)


def test_compression_keeps_counts(xor):
    train_set, _ = xor
    cols = Columns.of(train_set.X, train_set.y, np.float64)
    assert cols.width == 4 and cols.n == train_set.n
    assert cols.count.sum() == train_set.n
    plain = Columns.of(train_set.X, train_set.y, np.float64, compress=False)
    assert plain.count is None and plain.width == train_set.n


CASES = [
    # (hidden, activation, optimizer, learning rate, init, init scale, loss)
    ((8,), "tanh", "gd", 0.5, "xavier", 1.0, "bce"),
    ((2,), "sigmoid", "gd", 1.0, "normal", 0.01, "bce"),
    ((4, 3), "relu", "momentum", 0.1, "he", 1.0, "bce"),
    ((3,), "tanh", "adam", 0.05, "xavier", 1.0, "bce"),
    ((4,), "sigmoid", "gd", 2.0, "normal", 1.0, "mse"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[6]}")
@pytest.mark.parametrize("compress", [True, False], ids=["compressed", "plain"])
def test_each_seed_matches_single_network_training(xor, case, compress):
    hidden, activation, optimizer, lr, init, scale, loss = case
    train_set, test_set = xor
    arch = Architecture(2, hidden, activation)
    config = TrainConfig(loss=loss, optimizer=optimizer, learning_rate=lr, epochs=300)
    seeds = [3, 0, 11]
    batch = train_batched(
        arch,
        seeds,
        train_set.X,
        train_set.y,
        config,
        init=init,
        scale=scale,
        validation=(test_set.X, test_set.y),
        compress=compress,
    )
    assert batch.history_epoch.tolist() == list(range(1, 301))
    for i, seed in enumerate(seeds):
        model = MLP.create(arch, init, scale, seed)
        single = train(model, train_set.X, train_set.y, config, (test_set.X, test_set.y))
        for name, value in single.model.params.items():
            assert relative(batch.params[name][i], value) < RTOL, name
        h = single.history
        assert np.allclose(batch.loss_history[:, i], h.train_loss, rtol=RTOL, atol=0)
        assert batch.train_loss[i] == pytest.approx(h.train_loss[-1], rel=RTOL)
        assert batch.test_loss[i] == pytest.approx(h.val_loss[-1], rel=RTOL)
        assert batch.test_accuracy[i] == h.val_accuracy[-1]
        solved = np.flatnonzero(h.val_accuracy >= 1.0)
        assert batch.solved_epoch[i] == (h.epoch[solved[0]] if solved.size else -1)
        assert batch.model(i).params.keys() == single.model.params.keys()
    assert not batch.diverged.any()


def test_data_without_repeats_trains_the_same(noisy):
    train_set, test_set = noisy
    arch = Architecture(2, (4,), "tanh")
    config = TrainConfig(learning_rate=0.5, epochs=200)
    batch = train_batched(arch, [1, 2], train_set.X, train_set.y, config)
    for i, seed in enumerate([1, 2]):
        single = train(MLP.create(arch, seed=seed), train_set.X, train_set.y, config)
        assert relative(batch.params["W1"][i], single.model.params["W1"]) < RTOL
    assert np.all(np.isnan(batch.test_accuracy))  # no validation data given


def test_chunks_of_seeds_give_the_same_result(xor):
    train_set, test_set = xor
    arch = Architecture(2, (4,), "tanh")
    config = TrainConfig(learning_rate=0.5, epochs=50)
    args = (arch, range(7), train_set.X, train_set.y, config)
    whole = train_batched(*args, validation=(test_set.X, test_set.y), history_every=10)
    chunked = train_batched(
        *args, validation=(test_set.X, test_set.y), history_every=10, max_elements=8
    )
    assert chunked.history_epoch.tolist() == [10, 20, 30, 40, 50]
    for field in ("train_loss", "test_loss", "solved_epoch", "loss_history"):
        assert np.array_equal(getattr(whole, field), getattr(chunked, field)), field
    assert np.array_equal(whole.params["W2"], chunked.params["W2"])


def test_a_diverging_seed_is_frozen_and_the_others_go_on():
    # relu, lr 1e100: seeds 2 and 9 overflow at epoch 3, the rest stay finite.
    train_set, test_set = generate("xor", 40, 0.25, 0)
    arch = Architecture(2, (4,), "relu")
    config = TrainConfig(learning_rate=1e100, epochs=20)
    seeds = list(range(10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow in one seed must not warn either
        batch = train_batched(
            arch, seeds, train_set.X, train_set.y, config, init="he",
            validation=(test_set.X, test_set.y),
        )  # fmt: skip
    assert 0 < batch.diverged.sum() < len(seeds)
    for i, seed in enumerate(seeds):
        model = MLP.create(arch, "he", 1.0, seed)
        with np.errstate(all="ignore"):
            try:
                single = train(model, train_set.X, train_set.y, config)
            except DivergenceError as exc:
                assert batch.diverged_epoch[i] == exc.epoch
                assert np.isnan(batch.train_loss[i]) and not batch.success[i]
                assert all(np.isfinite(p[i]).all() for p in batch.params.values())
                continue
        assert batch.diverged_epoch[i] == -1
        assert relative(batch.params["W1"][i], single.model.params["W1"]) < RTOL


def test_float32_and_options_are_checked(xor):
    train_set, _ = xor
    arch = Architecture(2, (4,), "tanh")
    f32 = train_batched(
        arch, [0, 1], train_set.X, train_set.y, TrainConfig(epochs=20, dtype="float32")
    )
    f64 = train_batched(arch, [0, 1], train_set.X, train_set.y, TrainConfig(epochs=20))
    assert np.allclose(f32.train_loss, f64.train_loss, rtol=1e-4)
    with pytest.raises(ValueError, match="full batch"):
        train_batched(arch, [0], train_set.X, train_set.y, TrainConfig(batch_size=10))
    with pytest.raises(ValueError, match="seed"):
        train_batched(arch, [], train_set.X, train_set.y, TrainConfig())
