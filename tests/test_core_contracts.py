"""Exact contracts of the core's small doors: layer-size bounds and error messages,
defaults that callers rely on, and dtypes that must survive target encoding.

Found by mutmut's survivors (bench/mutation.sh): each test pins a value a mutant changed.
"""

import json

import numpy as np
import pytest

from xornet.core.activations import ACTIVATIONS
from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture, init_params
from xornet.errors import ModelFileError


def test_smallest_valid_architecture_is_one_input_one_unit():
    arch = Architecture(n_inputs=1, hidden=(1,), activation="tanh")
    assert arch.layer_sizes == (1, 1, 1)
    assert arch.n_params == 4


@pytest.mark.parametrize(
    ("n_inputs", "hidden", "sizes"),
    [(0, (2,), "(0, 2, 1)"), (2, (3, 0), "(2, 3, 0, 1)"), (2, (), "(2, 1)")],
)
def test_invalid_layer_sizes_are_named(n_inputs, hidden, sizes):
    with pytest.raises(ValueError) as info:
        Architecture(n_inputs=n_inputs, hidden=hidden, activation="tanh")
    assert str(info.value) == f"invalid layer sizes: {sizes}"


def test_unknown_activation_lists_the_registry():
    with pytest.raises(ValueError) as info:
        Architecture(n_inputs=2, hidden=(2,), activation="softmax")
    names = list(ACTIVATIONS)
    assert len(names) >= 3
    assert str(info.value) == f"unknown activation 'softmax' (allowed: {', '.join(names)})"


def test_unknown_output_is_named():
    with pytest.raises(ValueError) as info:
        Architecture(n_inputs=2, hidden=(2,), activation="tanh", output="relu")
    assert str(info.value) == "unknown output 'relu' (allowed: sigmoid)"


def test_from_json_reads_the_output_and_defaults_it_to_sigmoid():
    spec = {"n_inputs": 2, "hidden": [3], "activation": "relu"}
    assert Architecture.from_json(json.dumps(spec)).output == "sigmoid"
    with pytest.raises(ValueError, match="unknown output 'linear'"):
        Architecture.from_json(json.dumps(spec | {"output": "linear"}))


def test_init_defaults_are_unit_scale_and_seed_zero():
    arch = Architecture(n_inputs=2, hidden=(4,), activation="tanh")
    implicit = init_params(arch, "xavier")
    explicit = init_params(arch, "xavier", scale=1.0, seed=0)
    assert implicit.keys() == explicit.keys()
    for name in implicit:
        assert implicit[name].tobytes() == explicit[name].tobytes()
    model = MLP.create(arch)
    for name, value in model.params.items():
        assert value.tobytes() == explicit[name].tobytes()


def test_model_file_errors_name_the_model_by_default():
    with pytest.raises(ModelFileError) as info:
        MLP.from_arrays({})
    assert str(info.value) == "model: no 'architecture' entry"


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_encoded_targets_keep_the_requested_dtype(loss, dtype):
    y = np.array([[0, 1, 1, 0]])
    encoded = LOSSES[loss].encode(y, 0.25, dtype)
    assert encoded.dtype == dtype
    assert encoded.shape == (2, 4)
    c = {"bce": 1.0, "mse": 2.0}[loss]
    s = np.array([1.0, -1.0, -1.0, 1.0])
    np.testing.assert_array_equal(encoded, np.stack([s, c * 0.25 * s]).astype(dtype))


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_targets_other_than_zero_and_one_are_refused(loss):
    with pytest.raises(ValueError) as info:
        LOSSES[loss].encode(np.array([0.0, 0.5]), 1.0, np.float64)
    assert str(info.value) == "targets must be 0 or 1"


def test_float32_model_batches_hold_float32_targets():
    arch = Architecture(n_inputs=2, hidden=(3,), activation="tanh")
    model = MLP.create(arch, seed=1, dtype=np.float32)
    X = np.array([[0.0, 0, 1, 1], [0, 1, 0, 1]])  # float64 in, float32 inside
    y = np.array([[0, 1, 1, 0]])
    batch = model.batch(X, y, LOSSES["bce"], validation=(X, y))
    assert batch.targets.dtype == np.float32
    assert batch.Xa.dtype == np.float32
    s = np.array([1.0, -1.0, -1.0, 1.0], dtype=np.float32)
    # training columns carry the 1/n gradient scale, validation columns scale 1
    np.testing.assert_array_equal(batch.targets[:, :4], np.stack([s, s / 4]))
    np.testing.assert_array_equal(batch.targets[:, 4:], np.stack([s, s]))
