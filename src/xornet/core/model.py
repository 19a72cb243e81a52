"""The multilayer perceptron: forward pass, loss, backpropagation.

Conventions follow the tutorial: features are rows, so the input ``X`` is
(n_inputs, n) and every layer's activations are (units, n). Layer ``l`` has
weights ``Wl`` of shape (out, in) and bias ``bl`` of shape (out, 1):

    Z_l = W_l @ A_{l-1} + b_l,   A_l = f(Z_l)   (A_0 = X)

Hidden layers use the chosen activation; the single output unit is a sigmoid,
and losses are computed from its logit Z_L for numerical stability.
Backpropagation runs the chain backwards from dZ_L, which the loss supplies:

    dW_l = dZ_l @ A_{l-1}^T,   db_l = dZ_l summed over samples,
    dZ_{l-1} = (W_l^T @ dZ_l) * f'(Z_{l-1})

Three layout choices make this fast without changing the arithmetic:

1. All parameters live in one flat vector ``theta``. Layer l is the
   (out, in + 1) matrix [W_l | b_l], a view of theta, and ``params["Wl"]``,
   ``params["bl"]`` are views of that. Gradients share the layout, so an
   optimizer updates every parameter in a couple of NumPy calls.
2. The input of every layer carries an extra row of ones, so W_l @ A + b_l is
   one product [W_l | b_l] @ [A; 1], and [dW_l | db_l] = dZ_l @ [A; 1]^T is
   another.
3. A batch is processed in blocks of ``block`` columns (by default sized to
   the network, see :func:`auto_block`), with buffers that are allocated once
   and stay in cache. Each block's gradient goes to a row of its own and the
   rows are summed in block order, so the result depends only on the inputs
   and ``block``. (Sharing blocks among two threads was measured and dropped:
   on the 2-vCPU machine NumPy's calls are too short to outrun GIL hand-offs,
   and concurrent OpenBLAS calls slowed each other down.)
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from xornet.core.activations import ACTIVATIONS, Activation, sigmoid
from xornet.core.initializers import INITIALIZERS
from xornet.core.losses import Loss
from xornet.errors import ModelFileError

Array = np.ndarray
ParamArrays = dict[str, Array]

# Blocks are sized in elements of the widest layer's buffers: big enough to
# amortise NumPy's per-call overhead, small enough to stay in cache and to keep
# each block's first matrix product under OpenBLAS's multithreading threshold
# (2^18 multiply-adds; on a busy 2-core machine its threads made h=64 blocks
# of 8192 columns 4x slower). Measured on a 2-core AMD EPYC VM:
# h=2 -> 32768 columns per block, h=16 -> 4096, h=64 -> 1024.
BLOCK_ELEMENTS = 1 << 16
MIN_BLOCK = 256

# ``block=DEFAULT_BLOCK`` (0) means: columns per block from :func:`auto_block`.
DEFAULT_BLOCK = 0


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

    @property
    def n_params(self) -> int:
        """Number of scalar parameters (weights and biases)."""
        sizes = self.layer_sizes
        return sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=False))

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
) -> ParamArrays:
    """Fresh parameters drawn layer by layer (W1, b1, W2, b2, ...) from one seeded RNG.

    Weights come from the named initialiser times ``scale``; biases are zero
    unless ``bias_scale`` > 0, then unit normal times ``bias_scale``.
    """
    initializer = INITIALIZERS[init]
    rng = np.random.default_rng(seed)
    params: ParamArrays = {}
    for name, (fan_out, fan_in) in arch.param_shapes().items():
        if name.startswith("W"):
            value = initializer(fan_out, fan_in, scale, rng)
        elif bias_scale > 0:
            value = rng.standard_normal((fan_out, 1)) * bias_scale
        else:
            value = np.zeros((fan_out, 1))
        params[name] = np.ascontiguousarray(value, dtype=dtype)
    return params


def auto_block(arch: Architecture) -> int:
    """Columns per block for ``arch``: BLOCK_ELEMENTS over the widest layer, at least MIN_BLOCK."""
    return max(MIN_BLOCK, BLOCK_ELEMENTS // max(arch.layer_sizes))


def _layer_views(flat: Array, sizes: tuple[int, ...]) -> list[Array]:
    """Consecutive (out, in + 1) matrices [W_l | b_l] viewed in a flat vector, one per layer."""
    views, start = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=False):
        stop = start + n_out * (n_in + 1)
        views.append(flat[start:stop].reshape(n_out, n_in + 1))
        start = stop
    return views


def _as_params(layers: list[Array]) -> ParamArrays:
    """``{"W1": ..., "b1": ..., ...}`` as views of the [W_l | b_l] matrices."""
    params: ParamArrays = {}
    for layer, Wb in enumerate(layers, start=1):
        params[f"W{layer}"] = Wb[:, :-1]
        params[f"b{layer}"] = Wb[:, -1:]
    return params


def _with_ones(X: Array) -> Array:
    """[X; 1]: X (features, n) with a row of ones appended, (features + 1, n)."""
    Xa = np.empty((X.shape[0] + 1, X.shape[1]), dtype=X.dtype)
    Xa[:-1] = X
    Xa[-1] = 1.0
    return Xa


class _Workspace:
    """Buffers for one block of ``m`` columns, allocated once and reused.

    Lists are indexed by layer l = 0 .. L (entries a layer lacks are None):
    ``a[l]`` is [A_l; 1], shape (sizes[l] + 1, m), with ``A[l]`` the view of
    its activation rows; ``a[0]`` is the input block, set by the caller.
    ``z[l]`` is Z_l and ``dz[l]`` is dZ_l, (sizes[l], m); ``deriv[l]`` receives
    f'(Z_l) for the hidden layers - by default in Z_l's own buffer, which
    backprop no longer needs (one array fewer to keep in cache); ``keep_z``
    gives it buffers of its own. ``work`` is scratch space for the loss.
    """

    def __init__(
        self,
        sizes: tuple[int, ...],
        m: int,
        dtype: np.dtype,
        backward: bool = True,
        keep_z: bool = False,
    ):
        hidden = range(1, len(sizes) - 1)
        every = range(1, len(sizes))
        self.a: list = [None] + [np.ones((sizes[i] + 1, m), dtype) for i in hidden]
        self.A: list = [None] + [a[:-1] for a in self.a[1:]]
        self.z: list = [None] + [np.empty((sizes[i], m), dtype) for i in every]
        if backward:
            self.dz: list = [None] + [np.empty((sizes[i], m), dtype) for i in every]
            self.deriv: list = (
                [None] + [np.empty((sizes[i], m), dtype) for i in hidden] if keep_z else self.z
            )
            self.work = np.empty((1, m), dtype)


@dataclass
class ForwardCache:
    """What backprop needs from the forward pass.

    ``inputs[l]`` is the input to weight layer l+1 (``inputs[0]`` is X), shape
    (layer_sizes[l], n); ``pre_activations[l]`` is Z_{l+1}, shape
    (layer_sizes[l+1], n). The last pre-activation is the output logit (1, n).
    """

    inputs: list[Array]
    pre_activations: list[Array]
    workspace: _Workspace | None = None

    @property
    def logits(self) -> Array:
        return self.pre_activations[-1]


class Batch:
    """Columns X (n_inputs, n) and 0/1 targets prepared for repeated gradient evaluation.

    ``Xa`` is [X; 1], (n_inputs + 1, n); ``targets`` is ``loss.encode(y, scale)``,
    (2, n), usually with scale 1/n. :meth:`MLP.batch_loss_and_gradient` writes
    the gradient of ``scale`` times the summed loss into ``grad`` (the layout
    of ``MLP.theta``). With several blocks, each block's gradient has its own
    row in ``block_grads`` first.
    """

    def __init__(self, model: "MLP", Xa: Array, targets: Array, block: int = DEFAULT_BLOCK):
        if block < 0:
            raise ValueError(f"block must be positive (or 0: automatic), got {block}")
        block = block or auto_block(model.arch)
        n = Xa.shape[1]
        sizes = model.arch.layer_sizes
        self.Xa, self.targets = Xa, targets
        self.grad = np.empty(model.arch.n_params, dtype=model.dtype)
        self.grad_layers = _layer_views(self.grad, sizes)
        self.blocks = [
            (Xa[:, start : start + block], targets[:, start : start + block])
            for start in range(0, n, block)
        ]
        if len(self.blocks) > 1:
            self.block_grads = np.empty((len(self.blocks), self.grad.size), dtype=model.dtype)
            self.block_grad_layers = [_layer_views(row, sizes) for row in self.block_grads]
            self.block_totals = [0.0] * len(self.blocks)

    @property
    def n(self) -> int:
        return self.Xa.shape[1]

    @classmethod
    def empty(cls, model: "MLP", n: int, block: int = DEFAULT_BLOCK) -> "Batch":
        """A batch of n columns to be filled by :meth:`take`."""
        Xa = np.empty((model.arch.n_inputs + 1, n), dtype=model.dtype)
        return cls(model, Xa, np.empty((2, n), dtype=model.dtype), block)

    def take(self, source: "Batch", columns: Array) -> None:
        """Fill this batch with the given columns of ``source``, rescaling the targets to 1/n.

        ``source`` must have been encoded with scale 1.
        """
        np.take(source.Xa, columns, axis=1, out=self.Xa, mode="clip")
        np.take(source.targets, columns, axis=1, out=self.targets, mode="clip")
        self.targets[1] *= 1.0 / len(columns)


class MLP:
    """A fully connected network with sigmoid output for binary classification.

    ``params`` maps ``"W1", "b1", ...`` to arrays (``Wl`` is (out, in), ``bl`` is
    (out, 1)). They are read-only-mapped views of the flat vector ``theta``:
    change values in place (``model.params["W1"][...] = W``), never rebind
    them. All share ``theta``'s float dtype, which computations use.
    """

    def __init__(self, arch: Architecture, params: Mapping[str, Array]) -> None:
        expected = arch.param_shapes()
        if set(params) != set(expected):
            raise ValueError(f"parameters {sorted(params)} do not match {sorted(expected)}")
        for name, shape in expected.items():
            if np.shape(params[name]) != shape:
                raise ValueError(f"{name} has shape {np.shape(params[name])}, expected {shape}")
        dtype = np.result_type(*(params[name] for name in expected))
        if dtype.kind != "f":
            dtype = np.dtype(np.float64)
        self.arch = arch
        self.activation: Activation = ACTIVATIONS[arch.activation]
        self.theta = np.empty(arch.n_params, dtype=dtype)
        self.layers = _layer_views(self.theta, arch.layer_sizes)  # [W_l | b_l], one per layer
        views = _as_params(self.layers)
        for name, view in views.items():
            view[...] = params[name]
        self.params: Mapping[str, Array] = MappingProxyType(views)
        # W_l^T for backprop, indexed by layer l (entry 0 unused)
        self._weights_T = [None] + [Wb[:, :-1].T for Wb in self.layers]
        self._workspaces: dict[tuple, _Workspace] = {}

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
        return self.theta.dtype

    def copy(self, dtype: type | None = None) -> "MLP":
        """A deep copy, optionally cast to another float dtype."""
        target = dtype or self.dtype
        return MLP(self.arch, {k: np.array(v, dtype=target) for k, v in self.params.items()})

    def param_list(self) -> list[Array]:
        """The parameter arrays in layer order: [W1, b1, W2, b2, ...] (views of ``theta``)."""
        return list(self.params.values())

    def _workspace(self, m: int, backward: bool = True) -> _Workspace:
        key = (m, backward)
        ws = self._workspaces.get(key)
        if ws is None:
            if len(self._workspaces) > 16:  # odd batch widths come and go; stay bounded
                self._workspaces.clear()
            ws = self._workspaces[key] = _Workspace(self.arch.layer_sizes, m, self.dtype, backward)
        return ws

    # ------------------------------------------------------------- the maths
    def _forward(self, ws: _Workspace) -> None:
        """Z_l = [W_l | b_l] @ [A_{l-1}; 1] and A_l = f(Z_l), layer by layer; ws.a[0] is [X; 1]."""
        # np.dot is the same product as @ with less call overhead on small arrays
        L = self.arch.n_layers
        for layer in range(1, L):
            np.dot(self.layers[layer - 1], ws.a[layer - 1], out=ws.z[layer])
            self.activation.value(ws.z[layer], ws.A[layer])
        np.dot(self.layers[L - 1], ws.a[L - 1], out=ws.z[L])  # the output logits

    def _backward(self, ws: _Workspace, grad_layers: list[Array]) -> None:
        """From dZ_L in ws.dz[L], write [dW_l | db_l] into grad_layers[l - 1] for every layer."""
        for layer in range(self.arch.n_layers, 0, -1):
            dZ = ws.dz[layer]
            # [dW_l | db_l] = dZ_l @ [A_{l-1}; 1]^T
            np.dot(dZ, ws.a[layer - 1].T, out=grad_layers[layer - 1])
            if layer > 1:
                W_T, dA = self._weights_T[layer], ws.dz[layer - 1]
                if dZ.shape[0] == 1:  # dA = W_l^T @ dZ_l is an outer product: broadcast it
                    np.multiply(W_T, dZ, out=dA)
                else:
                    np.dot(W_T, dZ, out=dA)
                deriv = self.activation.derivative(
                    ws.z[layer - 1], ws.A[layer - 1], ws.deriv[layer - 1]
                )
                dA *= deriv  # dZ_{l-1} = dA_{l-1} * f'(Z_{l-1})

    def _block(
        self, ws: _Workspace, Xa: Array, t: Array, loss: Loss, grad_layers: list[Array]
    ) -> float:
        """Loss summed over one block of columns; its scaled gradient goes to ``grad_layers``."""
        ws.a[0] = Xa
        self._forward(ws)
        total = loss.evaluate(ws.z[-1], t, ws.dz[-1], ws.work)
        self._backward(ws, grad_layers)
        return total

    # --------------------------------------------------------------- forward
    def forward(self, X: Array, workspace: _Workspace | None = None) -> ForwardCache:
        """Run X (n_inputs, n) through the network, keeping what backprop needs."""
        X = np.asarray(X, dtype=self.dtype)
        ws = workspace or _Workspace(self.arch.layer_sizes, X.shape[1], self.dtype, keep_z=True)
        ws.a[0] = _with_ones(X)
        self._forward(ws)
        return ForwardCache([X, *ws.A[1:]], ws.z[1:], ws)

    def logits(self, X: Array, block: int = DEFAULT_BLOCK) -> Array:
        """Output logits Z_L for X (n_inputs, n), shape (1, n); computed block by block."""
        block = block or auto_block(self.arch)
        Xa = _with_ones(np.asarray(X, dtype=self.dtype))
        out = np.empty((1, Xa.shape[1]), dtype=self.dtype)
        for start in range(0, Xa.shape[1], block):
            block_in = Xa[:, start : start + block]
            ws = self._workspace(block_in.shape[1], backward=False)
            ws.a[0] = block_in
            self._forward(ws)
            out[:, start : start + block] = ws.z[-1]
        return out

    def predict_proba(self, X: Array) -> Array:
        """P(y = 1 | x) for every column of X (n_inputs, n); shape (1, n)."""
        return sigmoid(self.logits(X))

    def predict(self, X: Array, threshold: float = 0.5) -> Array:
        """0/1 predictions, shape (1, n)."""
        return (self.predict_proba(X) >= threshold).astype(np.int64)

    def loss(self, X: Array, y: Array, loss: Loss) -> float:
        """Mean loss over the n columns of X (n_inputs, n) with targets y (1, n)."""
        z = self.logits(X)
        return loss.total(z, np.asarray(y, dtype=z.dtype)) / z.shape[1]

    # -------------------------------------------------------------- backward
    def backward(
        self,
        cache: ForwardCache,
        y: Array,
        loss: Loss,
        scale: float | None = None,
        workspace: _Workspace | None = None,
    ) -> ParamArrays:
        """Gradients of ``scale * sum_i loss_i`` wrt every parameter.

        ``cache`` comes from :meth:`forward`; ``scale`` defaults to 1/n (the mean
        loss over the batch). Returns a dict with the same keys and shapes as
        ``params``. (``workspace`` is accepted for compatibility and unused.)
        """
        ws = cache.workspace
        if ws is None:  # a cache assembled by hand: lay its arrays out as forward does
            ws = _Workspace(self.arch.layer_sizes, cache.logits.shape[1], self.dtype, keep_z=True)
            for layer, A in enumerate(cache.inputs):
                ws.a[layer] = _with_ones(np.asarray(A, dtype=self.dtype))
            ws.z = [None, *cache.pre_activations]
            ws.A = [None] + [a[:-1] for a in ws.a[1:]]
        n = cache.logits.shape[1]
        dZ = loss.delta(cache.logits, y, ws.dz[-1])
        dZ *= 1.0 / n if scale is None else scale
        grad = np.empty_like(self.theta)
        self._backward(ws, _layer_views(grad, self.arch.layer_sizes))
        return _as_params(_layer_views(grad, self.arch.layer_sizes))

    def batch(
        self, X: Array, y: Array, loss: Loss, block: int = DEFAULT_BLOCK, scale: float | None = None
    ) -> Batch:
        """X (n_inputs, n) and 0/1 targets y (1, n) prepared for :meth:`batch_loss_and_gradient`.

        ``scale`` multiplies the summed loss's gradient; the default 1/n gives the mean's.
        """
        Xa = _with_ones(np.asarray(X, dtype=self.dtype))
        scale = 1.0 / Xa.shape[1] if scale is None else scale
        return Batch(self, Xa, loss.encode(y, scale, self.dtype), block)

    def batch_loss_and_gradient(self, batch: Batch, loss: Loss) -> float:
        """The loss summed over the batch; the gradient of the mean loss lands in ``batch.grad``.

        With several blocks, each block's gradient fills its own row of
        ``batch.block_grads`` and the rows are added in block order.
        """
        blocks = batch.blocks
        if len(blocks) == 1:
            Xa, t = blocks[0]
            return self._block(self._workspace(Xa.shape[1]), Xa, t, loss, batch.grad_layers)
        for k, (Xa, t) in enumerate(blocks):
            ws = self._workspace(Xa.shape[1])
            batch.block_totals[k] = self._block(ws, Xa, t, loss, batch.block_grad_layers[k])
        np.sum(batch.block_grads, axis=0, out=batch.grad)
        return sum(batch.block_totals)

    def loss_and_gradients(
        self, X: Array, y: Array, loss: Loss, block: int = DEFAULT_BLOCK
    ) -> tuple[float, ParamArrays]:
        """Mean loss over the n columns of X (n_inputs, n), 0/1 targets y (1, n), and its gradients.

        The gradients are fresh arrays keyed like ``params``. The batch is
        processed in blocks of ``block`` columns (see the module docstring).
        """
        batch = self.batch(X, y, loss, block)
        total = self.batch_loss_and_gradient(batch, loss)
        return total / batch.n, _as_params(batch.grad_layers)

    # ------------------------------------------------------------------ file io
    def to_arrays(self) -> dict[str, Array]:
        """Weights plus an ``architecture`` JSON string: the content of a model file."""
        arrays: dict[str, Array] = dict(self.params)
        arrays["architecture"] = np.array(self.arch.to_json())
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, Array], source: str = "model") -> "MLP":
        """Build a model from :meth:`to_arrays` output, validating everything."""
        if "architecture" not in arrays:
            raise ModelFileError(f"{source}: no 'architecture' entry")
        try:
            arch = Architecture.from_json(str(arrays["architecture"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{source}: bad architecture description ({exc})") from None
        params: ParamArrays = {}
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
