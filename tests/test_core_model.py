"""The MLP object: layout, prediction, save/load round trip and a strict model-file loader."""

import json
import zipfile

import numpy as np
import pytest

from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture, init_params
from xornet.errors import ModelFileError
from xornet.files.atomic import npz_bytes
from xornet.files.models import load_model, save_model


def small_model(activation="tanh", hidden=(3, 2), dtype=np.float64):
    arch = Architecture(n_inputs=2, hidden=hidden, activation=activation)
    return MLP.create(arch, init="xavier", seed=4, bias_scale=0.2, dtype=dtype)


def test_architecture_validation():
    for bad in [
        dict(hidden=()),
        dict(hidden=(0,)),
        dict(activation="softmax"),
        dict(output="relu"),
    ]:
        kwargs = dict(n_inputs=2, hidden=(2,), activation="tanh") | bad
        with pytest.raises(ValueError):
            Architecture(**kwargs)
    arch = Architecture(3, (4, 5), "relu")
    assert arch.layer_sizes == (3, 4, 5, 1)
    assert arch.n_layers == 3
    assert arch.param_shapes() == {
        "W1": (4, 3), "b1": (4, 1), "W2": (5, 4), "b2": (5, 1), "W3": (1, 5), "b3": (1, 1)
    }  # fmt: skip
    assert arch.n_params == sum(r * c for r, c in arch.param_shapes().values())
    assert Architecture.from_json(arch.to_json()) == arch


def test_init_params():
    arch = Architecture(2, (2,), "sigmoid")
    params = init_params(arch, init="normal", scale=0.01, seed=0)
    assert list(params) == ["W1", "b1", "W2", "b2"]
    assert not np.any(params["b1"]) and not np.any(params["b2"])
    assert np.max(np.abs(params["W1"])) < 0.05
    # the tutorial's np.random.randn(out, in) * 0.01, drawn from one seeded generator
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(params["W1"], rng.standard_normal((2, 2)) * 0.01)
    for init in ("xavier", "he"):
        a, b = init_params(arch, init, seed=1), init_params(arch, init, seed=1)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


def test_params_are_views_of_theta():
    model = small_model()
    assert model.theta.size == model.arch.n_params
    model.params["b2"][...] = 7.0
    assert 7.0 in model.theta
    with pytest.raises(TypeError):
        model.params["W1"] = np.zeros((3, 2))  # rebinding would detach it from theta
    assert model.param_list()[0] is model.params["W1"]


def test_constructor_copies_and_validates():
    arch = Architecture(2, (2,), "sigmoid")
    params = init_params(arch, seed=0)
    model = MLP(arch, params)
    params["W1"][...] = 0.0  # the model owns its copy
    assert np.any(model.params["W1"])
    with pytest.raises(ValueError, match="do not match"):
        MLP(arch, {k: v for k, v in params.items() if k != "b2"})
    with pytest.raises(ValueError, match="shape"):
        MLP(arch, params | {"W2": np.zeros((2, 1))})


def test_predictions():
    model = small_model()
    X = np.random.default_rng(0).standard_normal((2, 50))
    z = model.logits(X)
    p = model.predict_proba(X)
    assert z.shape == p.shape == (1, 50)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)), rtol=1e-15)
    np.testing.assert_array_equal(model.predict(X), (p >= 0.5).astype(int))
    # block by block equals all at once, up to BLAS choosing other kernels for other widths
    np.testing.assert_allclose(model.logits(X, block=7), z, rtol=1e-14)
    # an independent forward pass
    A = X
    for layer in (1, 2):
        A = np.tanh(model.params[f"W{layer}"] @ A + model.params[f"b{layer}"])
    np.testing.assert_allclose(z, model.params["W3"] @ A + model.params["b3"], rtol=1e-13)


def test_copy_and_dtype():
    model = small_model()
    single = model.copy(np.float32)
    assert single.dtype == np.float32 and model.dtype == np.float64
    single.params["W1"][...] = 0
    assert np.any(model.params["W1"])
    X = np.random.default_rng(1).standard_normal((2, 10))
    assert single.logits(X).dtype == np.float32


# ---------------------------------------------------------------------- files
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_save_load_round_trip(tmp_path, activation):
    model = small_model(activation)
    path = tmp_path / "model.npz"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.arch == model.arch
    for name in model.params:
        np.testing.assert_array_equal(loaded.params[name], model.params[name])
    X = np.random.default_rng(2).standard_normal((2, 20))
    y = np.random.default_rng(3).integers(0, 2, size=(1, 20))
    assert loaded.loss(X, y, LOSSES["bce"]) == model.loss(X, y, LOSSES["bce"])


def test_model_file_is_plain_npz(tmp_path):
    model = small_model()
    path = tmp_path / "model.npz"
    save_model(model, path)
    with np.load(path, allow_pickle=False) as archive:
        assert archive.files == ["W1", "b1", "W2", "b2", "W3", "b3", "architecture"]
        for name in model.params:
            assert archive[name].shape == model.params[name].shape
            assert archive[name].dtype == np.float64
        spec = json.loads(str(archive["architecture"]))
    assert spec == {"n_inputs": 2, "hidden": [3, 2], "activation": "tanh", "output": "sigmoid"}


def test_save_is_byte_deterministic(tmp_path):
    save_model(small_model(), tmp_path / "a.npz")
    save_model(small_model(), tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_float32_model_round_trip(tmp_path):
    model = small_model(dtype=np.float32)
    save_model(model, tmp_path / "m.npz")
    assert load_model(tmp_path / "m.npz").dtype == np.float32


def model_arrays(**changes):
    arrays = dict(small_model(hidden=(3,)).to_arrays())
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def corrupt_model_files(tmp_path):
    good = tmp_path / "good.npz"
    good.write_bytes(npz_bytes(model_arrays()))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:100])
    npy = tmp_path / "array.npz"
    with open(npy, "wb") as handle:
        np.save(handle, np.zeros(3))
    text = tmp_path / "text.npz"
    text.write_text("W1 = [[1, 2]]")
    pickled = tmp_path / "pickled.npz"
    with zipfile.ZipFile(pickled, "w") as archive, archive.open("W1.npy", "w") as member:
        np.lib.format.write_array(member, np.array([None], dtype=object), allow_pickle=True)

    def npz(name, **changes):
        path = tmp_path / name
        path.write_bytes(npz_bytes(model_arrays(**changes)))
        return path

    bad_arch = np.array(json.dumps({"n_inputs": 2, "hidden": [3], "activation": "swish"}))
    return [
        (tmp_path / "missing.npz", ["not found"]),
        (truncated, ["not a readable"]),
        (npy, ["not a readable"]),
        (text, ["not a readable"]),
        (pickled, ["not a readable"]),
        (npz("no_arch.npz", architecture=None), ["architecture"]),
        (npz("bad_json.npz", architecture=np.array("{not json")), ["bad architecture"]),
        (npz("bad_act.npz", architecture=bad_arch), ["bad architecture", "swish"]),
        (npz("arch_number.npz", architecture=np.array(5)), ["bad architecture"]),
        (npz("no_b2.npz", b2=None), ["missing array b2"]),
        (npz("w_shape.npz", W1=np.zeros((2, 3))), ["W1", "(2, 3)", "expected float (3, 2)"]),
        (npz("w_int.npz", W2=np.zeros((1, 3), dtype=np.int64)), ["W2", "int64"]),
        (npz("w_nan.npz", b1=np.full((3, 1), np.nan)), ["b1", "non-finite"]),
    ]


def test_load_rejects_bad_model_files(tmp_path):
    for path, words in corrupt_model_files(tmp_path):
        with pytest.raises(ModelFileError) as info:
            load_model(path)
        message = str(info.value)
        assert message.startswith(str(path)), message
        for word in words:
            assert word in message, (path.name, message)


def test_fused_softplus_sum_keeps_log1p_precision():
    """log1p(e) as log(1 + e) plus its rounding correction: a few ulps, also for tiny e."""
    from xornet.core.model import _bce_softplus_sum

    rng = np.random.default_rng(0)
    for lo, hi in ((-745.0, -30.0), (-40.0, 0.0), (-1.0, 1.0), (0.0, 40.0), (30.0, 700.0)):
        x = rng.uniform(lo, hi, (1, 5_000))
        e, u, work = np.empty_like(x), np.empty_like(x), np.empty_like(x)
        ours = _bce_softplus_sum(x, np.ones_like(x), e, u, work)
        terms = np.logaddexp(0.0, x)
        assert ours == pytest.approx(float(np.sum(terms)), rel=1e-14, abs=0), (lo, hi)
        for i in range(0, 5_000, 97):  # term by term, against log1p
            one = x[:, i : i + 1]
            got = _bce_softplus_sum(one, np.ones_like(one), e[:, :1], u[:, :1], work[:, :1])
            assert got == pytest.approx(float(np.log1p(np.exp(one[0, 0]))), rel=4e-16, abs=0)
