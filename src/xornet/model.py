"""The multilayer perceptron: forward pass, loss, backpropagation.

Conventions follow the tutorial: features are rows, so the input ``X`` is
(n_inputs, n) and every layer's activations are (units, n). Layer ``l`` has
weights ``Wl`` of shape (out, in) and bias ``bl`` of shape (out, 1):

    Z_l = W_l @ A_{l-1} + b_l,   A_l = f(Z_l)   (A_0 = X)

Hidden layers use the chosen activation; the single output unit is a sigmoid,
and losses are computed from its logit Z_L for numerical stability.
"""

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xornet.activations import ACTIVATIONS, Activation, sigmoid
from xornet.initializers import INITIALIZERS
from xornet.losses import Loss

Array = np.ndarray
Params = dict[str, Array]

# Columns per block in :meth:`MLP.loss_and_gradients`: big enough to amortise
# the per-call overhead, small enough that a block's activations stay in cache.
DEFAULT_BLOCK = 2048


class ModelFileError(ValueError):
    """A model file is missing, unreadable or does not describe a valid network."""


@dataclass(frozen=True)
class Architecture:
    """The shape of a network: ``n_inputs -> hidden[0] -> ... -> 1``."""

    n_inputs: int
    hidden: tuple[int, ...]
    activation: str
    output: str = "sigmoid"

    def __post_init__(self) -> None:
        if self.n_inputs < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"invalid layer sizes: {self.layer_sizes}")
        if self.activation not in ACTIVATIONS:
            allowed = ", ".join(ACTIVATIONS)
            raise ValueError(f"unknown activation {self.activation!r} (allowed: {allowed})")
        if self.output != "sigmoid":
            raise ValueError(f"unknown output {self.output!r} (allowed: sigmoid)")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_inputs, *self.hidden, 1)

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + the output layer)."""
        return len(self.hidden) + 1

    def param_shapes(self) -> dict[str, tuple[int, int]]:
        """``{"W1": (h1, n_inputs), "b1": (h1, 1), ...}`` in layer order."""
        sizes = self.layer_sizes
        shapes: dict[str, tuple[int, int]] = {}
        for layer in range(1, len(sizes)):
            shapes[f"W{layer}"] = (sizes[layer], sizes[layer - 1])
            shapes[f"b{layer}"] = (sizes[layer], 1)
        return shapes

    def to_json(self) -> str:
        return json.dumps(
            {
                "n_inputs": self.n_inputs,
                "hidden": list(self.hidden),
                "activation": self.activation,
                "output": self.output,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        spec = json.loads(text)
        return cls(
            n_inputs=int(spec["n_inputs"]),
            hidden=tuple(int(h) for h in spec["hidden"]),
            activation=str(spec["activation"]),
            output=str(spec.get("output", "sigmoid")),
        )


def init_params(
    arch: Architecture,
    init: str = "xavier",
    scale: float = 1.0,
    seed: int = 0,
    bias_scale: float = 0.0,
    dtype: type = np.float64,
) -> Params:
    """Fresh parameters drawn layer by layer (W1, b1, W2, b2, ...) from one seeded RNG.

    Weights come from the named initialiser times ``scale``; biases are zero
    unless ``bias_scale`` > 0, then unit normal times ``bias_scale``.
    """
    initializer = INITIALIZERS[init]
    rng = np.random.default_rng(seed)
    params: Params = {}
    for name, (fan_out, fan_in) in arch.param_shapes().items():
        if name.startswith("W"):
            value = initializer(fan_out, fan_in, scale, rng)
        elif bias_scale > 0:
            value = rng.standard_normal((fan_out, 1)) * bias_scale
        else:
            value = np.zeros((fan_out, 1))
        params[name] = np.ascontiguousarray(value, dtype=dtype)
    return params


@dataclass
class ForwardCache:
    """What backprop needs from the forward pass.

    ``inputs[l]`` is the input to weight layer l+1 (``inputs[0]`` is X), shape
    (layer_sizes[l], n); ``pre_activations[l]`` is Z_{l+1}, shape
    (layer_sizes[l+1], n). The last pre-activation is the output logit (1, n).
    """

    inputs: list[Array]
    pre_activations: list[Array]

    @property
    def logits(self) -> Array:
        return self.pre_activations[-1]


@dataclass
class _Workspace:
    """Reusable flat buffers, one set per layer, for blocks of up to ``cols`` columns."""

    sizes: tuple[int, ...]
    cols: int
    dtype: np.dtype
    buffers: dict[tuple[str, int], Array] = field(default_factory=dict)

    def get(self, kind: str, layer: int, n: int) -> Array:
        key = (kind, layer)
        buf = self.buffers.get(key)
        if buf is None:
            buf = np.empty(self.sizes[layer] * self.cols, dtype=self.dtype)
            self.buffers[key] = buf
        return buf[: self.sizes[layer] * n].reshape(self.sizes[layer], n)


class MLP:
    """A fully connected network with sigmoid output for binary classification.

    ``params`` maps ``"W1", "b1", ...`` to arrays (``Wl`` is (out, in), ``bl`` is
    (out, 1)); all share one float dtype, which is the dtype computations use.
    """

    def __init__(self, arch: Architecture, params: Params) -> None:
        expected = arch.param_shapes()
        if set(params) != set(expected):
            raise ValueError(f"parameters {sorted(params)} do not match {sorted(expected)}")
        for name, shape in expected.items():
            if params[name].shape != shape:
                raise ValueError(f"{name} has shape {params[name].shape}, expected {shape}")
        self.arch = arch
        self.params = {name: params[name] for name in expected}
        self.activation: Activation = ACTIVATIONS[arch.activation]
        self._workspace: _Workspace | None = None

    @classmethod
    def create(
        cls,
        arch: Architecture,
        init: str = "xavier",
        scale: float = 1.0,
        seed: int = 0,
        bias_scale: float = 0.0,
        dtype: type = np.float64,
    ) -> "MLP":
        """A freshly initialised network (see :func:`init_params`)."""
        return cls(arch, init_params(arch, init, scale, seed, bias_scale, dtype))

    @property
    def dtype(self) -> np.dtype:
        return self.params["W1"].dtype

    def copy(self, dtype: type | None = None) -> "MLP":
        """A deep copy, optionally cast to another float dtype."""
        target = dtype or self.dtype
        return MLP(self.arch, {k: np.array(v, dtype=target) for k, v in self.params.items()})

    def param_list(self) -> list[Array]:
        """The parameter arrays in layer order: [W1, b1, W2, b2, ...] (same objects)."""
        return list(self.params.values())

    # ------------------------------------------------------------------ forward
    def forward(self, X: Array, workspace: _Workspace | None = None) -> ForwardCache:
        """Run X (n_inputs, n) through the network, keeping what backprop needs."""
        n = X.shape[1]
        n_layers = self.arch.n_layers
        inputs = [X]
        pre_activations = []
        A = X
        for layer in range(n_layers):
            W = self.params[f"W{layer + 1}"]
            b = self.params[f"b{layer + 1}"]
            if workspace is None:
                Z = W @ A
            else:
                Z = np.matmul(W, A, out=workspace.get("z", layer + 1, n))
            Z += b
            pre_activations.append(Z)
            if layer < n_layers - 1:
                out = None if workspace is None else workspace.get("a", layer + 1, n)
                A = self.activation.value(Z, out if out is not None else np.empty_like(Z))
                inputs.append(A)
        return ForwardCache(inputs, pre_activations)

    def logits(self, X: Array) -> Array:
        """Output logits Z_L, shape (1, n)."""
        return self.forward(np.asarray(X, dtype=self.dtype)).logits

    def predict_proba(self, X: Array) -> Array:
        """P(y = 1 | x) for every column of X (n_inputs, n); shape (1, n)."""
        return sigmoid(self.logits(X))

    def predict(self, X: Array, threshold: float = 0.5) -> Array:
        """0/1 predictions, shape (1, n)."""
        return (self.predict_proba(X) >= threshold).astype(np.int64)

    def loss(self, X: Array, y: Array, loss: Loss) -> float:
        """Mean loss over the n columns of X (n_inputs, n) with targets y (1, n)."""
        z = self.logits(X)
        return loss.total(z, np.asarray(y, dtype=z.dtype)) / X.shape[1]

    # ----------------------------------------------------------------- backward
    def backward(
        self,
        cache: ForwardCache,
        y: Array,
        loss: Loss,
        scale: float | None = None,
        workspace: _Workspace | None = None,
    ) -> Params:
        """Gradients of ``scale * sum_i loss_i`` wrt every parameter.

        ``scale`` defaults to 1/n (the mean loss over the batch). Returns a dict
        with the same keys and shapes as ``params``.
        """
        n = cache.logits.shape[1]
        scale = 1.0 / n if scale is None else scale
        n_layers = self.arch.n_layers
        out = None if workspace is None else workspace.get("d", n_layers, n)
        dZ = loss.delta(cache.logits, y, out if out is not None else np.empty_like(cache.logits))
        dZ *= scale
        grads: Params = {}
        for layer in range(n_layers, 0, -1):
            A_prev = cache.inputs[layer - 1]
            grads[f"W{layer}"] = dZ @ A_prev.T
            grads[f"b{layer}"] = dZ.sum(axis=1, keepdims=True)
            if layer > 1:
                W = self.params[f"W{layer}"]
                if workspace is None:
                    dA = W.T @ dZ
                    deriv = np.empty_like(dA)
                else:
                    dA = np.matmul(W.T, dZ, out=workspace.get("d", layer - 1, n))
                    deriv = workspace.get("t", layer - 1, n)
                self.activation.derivative(cache.pre_activations[layer - 2], A_prev, deriv)
                dA *= deriv
                dZ = dA
        return {name: grads[name] for name in self.params}

    def loss_and_gradients(
        self, X: Array, y: Array, loss: Loss, block: int = DEFAULT_BLOCK
    ) -> tuple[float, Params]:
        """Mean loss over all n columns of X (n_inputs, n) and its gradients.

        The batch is processed in blocks of ``block`` columns with reused
        buffers; per-block gradients are summed in block order, so the result
        depends only on the inputs and ``block``, never on timing.
        """
        n = X.shape[1]
        if self._workspace is None or self._workspace.dtype != self.dtype:
            self._workspace = _Workspace(self.arch.layer_sizes, block, self.dtype)
        workspace = self._workspace
        if workspace.cols < min(block, n):
            workspace = self._workspace = _Workspace(self.arch.layer_sizes, block, self.dtype)
        scale = 1.0 / n
        total = 0.0
        grads: Params | None = None
        for start in range(0, n, block):
            stop = min(start + block, n)
            X_block = X[:, start:stop] if stop - start < n else X
            y_block = y[:, start:stop] if stop - start < n else y
            cache = self.forward(X_block, workspace)
            total += loss.total(cache.logits, y_block)
            block_grads = self.backward(cache, y_block, loss, scale, workspace)
            if grads is None:
                grads = block_grads
            else:
                for name, g in block_grads.items():
                    grads[name] += g
        assert grads is not None
        return total / n, grads

    # ------------------------------------------------------------------ file io
    def to_arrays(self) -> dict[str, Array]:
        """Weights plus an ``architecture`` JSON string: the content of a model file."""
        arrays: dict[str, Array] = dict(self.params)
        arrays["architecture"] = np.array(self.arch.to_json())
        return arrays

    def save(self, path: str | Path) -> None:
        """Write a self-describing, pickle-free ``.npz`` atomically."""
        from xornet.io import write_npz

        write_npz(path, self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> "MLP":
        """Read a model written by :meth:`save`; raises ModelFileError naming the file."""
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: model file not found")
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelFileError(f"{path}: not a readable .npz model file ({exc})") from None
        return cls.from_arrays(arrays, source=str(path))

    @classmethod
    def from_arrays(cls, arrays: dict[str, Array], source: str = "model") -> "MLP":
        """Build a model from :meth:`to_arrays` output, validating everything."""
        if "architecture" not in arrays:
            raise ModelFileError(f"{source}: no 'architecture' entry")
        try:
            arch = Architecture.from_json(str(arrays["architecture"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{source}: bad architecture description ({exc})") from None
        params: Params = {}
        for name, shape in arch.param_shapes().items():
            if name not in arrays:
                raise ModelFileError(f"{source}: missing array {name}")
            value = arrays[name]
            if value.shape != shape or value.dtype.kind != "f":
                raise ModelFileError(
                    f"{source}: {name} is {value.dtype} {value.shape}, expected float {shape}"
                )
            if not np.all(np.isfinite(value)):
                raise ModelFileError(f"{source}: {name} holds non-finite values")
            params[name] = value
        return cls(arch, params)
