"""xornet against PyTorch autograd, an independent reference (micrograd's lesson).

The same network is built in torch float64 from the same initial weights:
gradients, and weights after a few steps of each optimizer, must agree to
1e-10 (norm-wise relative error per array). torch is a test-only dependency.
"""

import numpy as np
import pytest

from xornet.core.losses import LOSSES
from xornet.core.model import MLP, Architecture
from xornet.core.training import TrainConfig, train

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOLERANCE = 1e-10
TORCH_ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    scale = max(np.max(np.abs(reference)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(ours - reference)) / scale)


def torch_loss(model_arch: Architecture, tensors: dict, X, y, loss_name: str):
    """Mean loss of the network given by ``tensors`` ("W1", "b1", ...) in torch."""
    act = TORCH_ACTIVATIONS[model_arch.activation]
    A = X
    for layer in range(1, model_arch.n_layers + 1):
        Z = tensors[f"W{layer}"] @ A + tensors[f"b{layer}"]
        A = act(Z) if layer < model_arch.n_layers else Z
    if loss_name == "bce":
        return F.binary_cross_entropy_with_logits(A, y)
    return F.mse_loss(torch.sigmoid(A), y)


def make_case(activation: str, hidden: tuple[int, ...], n: int = 64, seed: int = 5):
    arch = Architecture(n_inputs=2, hidden=hidden, activation=activation)
    model = MLP.create(arch, init="xavier", scale=1.5, seed=seed, bias_scale=0.3)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2, n))
    y = (X[0] * X[1] > 0).astype(np.float64)[np.newaxis, :]
    return model, X, y


def leaf_tensors(model: MLP) -> dict:
    return {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in model.params.items()
    }


@pytest.mark.parametrize("hidden", [(3,), (5, 4)], ids=["1-hidden", "2-hidden"])
@pytest.mark.parametrize("loss_name", ["bce", "mse"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_gradients_match_torch(activation, loss_name, hidden):
    model, X, y = make_case(activation, hidden)
    loss, grads = model.loss_and_gradients(X, y, LOSSES[loss_name])

    tensors = leaf_tensors(model)
    reference = torch_loss(model.arch, tensors, torch.from_numpy(X), torch.from_numpy(y), loss_name)
    reference.backward()

    assert loss == pytest.approx(reference.item(), rel=TOLERANCE)
    for name, t in tensors.items():
        error = relative_error(grads[name], t.grad.numpy())
        assert error <= TOLERANCE, f"{name}: relative error {error:.2e}"


def test_gradients_match_torch_on_many_blocks():
    """A batch much larger than a block: per-block sums add up to torch's gradient."""
    model, X, y = make_case("sigmoid", (16,), n=10_007)
    loss, grads = model.loss_and_gradients(X, y, LOSSES["bce"], block=1000)
    tensors = leaf_tensors(model)
    torch_loss(model.arch, tensors, torch.from_numpy(X), torch.from_numpy(y), "bce").backward()
    for name, t in tensors.items():
        assert relative_error(grads[name], t.grad.numpy()) <= TOLERANCE


def torch_optimizer(name: str, tensors: list, lr: float):
    if name == "gd":
        return torch.optim.SGD(tensors, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(tensors, lr=lr, momentum=0.9)
    return torch.optim.Adam(tensors, lr=lr, betas=(0.9, 0.999), eps=1e-8)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
def test_training_steps_match_torch(optimizer, activation):
    steps, lr = 5, 0.3
    model, X, y = make_case(activation, (4, 3))
    config = TrainConfig(loss="bce", optimizer=optimizer, learning_rate=lr, epochs=steps)
    result = train(model, X, y, config)

    tensors = leaf_tensors(model)
    opt = torch_optimizer(optimizer, list(tensors.values()), lr)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch_loss(model.arch, tensors, Xt, yt, "bce")
        loss.backward()
        opt.step()
        losses.append(loss.item())

    np.testing.assert_allclose(result.history.train_loss, losses, rtol=TOLERANCE, atol=0)
    for name, t in tensors.items():
        trained = result.model.params[name]
        error = relative_error(trained, t.detach().numpy())
        assert error <= TOLERANCE, f"{optimizer} {name}: relative error {error:.2e}"
        assert not np.array_equal(trained, model.params[name]), f"{name} did not move"


def test_mse_training_matches_torch():
    steps, lr = 5, 0.5
    model, X, y = make_case("tanh", (6,))
    config = TrainConfig(loss="mse", optimizer="adam", learning_rate=lr, epochs=steps)
    result = train(model, X, y, config)
    tensors = leaf_tensors(model)
    opt = torch_optimizer("adam", list(tensors.values()), lr)
    for _ in range(steps):
        opt.zero_grad()
        torch_loss(model.arch, tensors, torch.from_numpy(X), torch.from_numpy(y), "mse").backward()
        opt.step()
    for name, t in tensors.items():
        assert relative_error(result.model.params[name], t.detach().numpy()) <= TOLERANCE
