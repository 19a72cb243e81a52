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
   and ``block``. With several blocks, ``THREADS`` threads can share them
   (NumPy releases the GIL in its loops and OpenBLAS is pinned to one thread
   of its own): block k still lands in row k, so the bytes do not depend on
   the thread count. By default there is one thread per CPU the process may
   run on (see ``THREADS``); a batch of one block runs on the caller's thread.
4. Validation columns can ride along (``MLP.batch(..., validation=...)``):
   they sit after the training columns in the same blocks, so one forward
   pass gives the training loss before this epoch's update and the
   validation loss and accuracy after the previous one; backprop sees the
   training columns only (copied to buffers of their own). Their forward
   products are shared with the validation columns, though, and OpenBLAS's
   kernels (Haswell's, measured) round a column of W @ A differently
   depending on how many columns the product has: the weights agree with a
   run without validation to the last bits (a few 1e-17 absolute after an
   epoch), not byte for byte. The bytes still depend only on the inputs and
   ``block``.

The fused BCE loss takes log1p(e^x) as log(u) + (e^x - (u - 1)) / u with
u = 1 + e^x rounded: the correction is u's rounding error, so the sum keeps
log1p's precision (a few ulps) for ~1/3 of its cost (glibc's log is much
faster than its log1p).
"""

import json
import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
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

# Threads that share a batch's blocks, when it has several (results do not depend
# on the count: tests run 1, 2 and 3). Each holds a workspace of its own.
MAX_THREADS = 8


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity: ``taskset`` narrows it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# One per CPU the process may use: on the idle 2-vCPU machine two threads train
# (125 000, 16) 1.47x faster than one; on a machine kept busy by other work they
# were measured ~5 % slower (34.3 vs 32.6 ms per epoch at (100 000, 16), load 3-9).
THREADS = min(MAX_THREADS, available_cpus())
_pool: ThreadPoolExecutor | None = None


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="xornet-block")
    return _pool


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
            self.work2 = np.empty((1, m), dtype)
            self.correct = np.empty((1, m), bool)


class _Columns:
    """What the loss and backprop see of a block whose last columns are validation
    columns: its first ``k`` columns. The matrix products of backprop get buffers
    of their own (contiguous, as without validation columns: OpenBLAS sums a
    strided operand in another order), the elementwise work views of ``ws``'s."""

    def __init__(self, ws: _Workspace, k: int):
        def cut(arrays: list) -> list:
            return [None if x is None else x[:, :k] for x in arrays]

        self.ws, self.k = ws, k
        self.a = [None] + [np.ones((a.shape[0], k), a.dtype) for a in ws.a[1:]]
        self.A = [None] + [a[:-1] for a in self.a[1:]]
        self.z = cut(ws.z)
        self.dz = [None] + [np.empty((dz.shape[0], k), dz.dtype) for dz in ws.dz[1:]]
        self.deriv = self.z if ws.deriv is ws.z else cut(ws.deriv)
        self.work, self.work2 = ws.work[:, :k], ws.work2[:, :k]

    def take(self, Xa_train: Array) -> None:
        """After the forward pass: the training columns' inputs and activations."""
        self.a[0] = Xa_train
        for full, own in zip(self.ws.A[1:], self.A[1:], strict=True):
            np.copyto(own, full[:, : self.k])


@dataclass
class _Block:
    """Columns of a batch computed together: the first ``k`` train, the rest validate."""

    Xa: Array  # [X; 1] of every column
    t: Array  # encoded targets of every column
    k: int
    positive: Array | None = None  # validation columns of class 1, (1, m - k) bool
    y_val: Array | None = None  # their 0/1 targets, for losses without a fused form
    Xa_train: Array | None = None  # Xa[:, :k], contiguous
    below: Array | None = None  # x = s z < below: classified right (see _bce_terms)

    @property
    def m(self) -> int:
        return self.Xa.shape[1]


_add = np.add.reduce  # what ndarray.sum() calls, without its Python layers


def _bce_terms(
    z: Array, t0: Array, e: Array, u: Array, work: Array, k: int = 0, right: Array | None = None,
    below: Array | None = None
) -> None:  # fmt: skip
    """log1p(e^x), x = z t0, into ``work``; e^x into ``e``, 1 + e^x into ``u``.

    With ``right``: whether columns k: are classified right, x < ``below``: x = z
    for class 0 (s = 1), right if z < 0; x = -z for class 1, right if z >= 0, i.e.
    x <= 0, i.e. x < 5e-324, the smallest positive double (-0 and 0 included).

    log1p(e) = log(u) + c / u + O(c^2), c = e - (u - 1) being u's rounding error
    (exact: u - 1 and e - (u - 1) are exact subtractions), so each term keeps
    log1p's relative precision, also for tiny e (u = 1, log u = 0, c = e).
    """
    np.multiply(z, t0, out=e)
    if right is not None:
        np.less(e[:, k:], below, out=right)
    np.exp(e, out=e)
    np.add(e, 1.0, out=u)
    np.subtract(u, 1.0, out=work)
    np.subtract(e, work, out=work)
    np.divide(work, u, out=work)
    work += np.log(u)


def _bce_softplus_sum(z: Array, t0: Array, e: Array, u: Array, work: Array) -> float:
    """sum log1p(e^x) over every column (see :func:`_bce_terms`)."""
    _bce_terms(z, t0, e, u, work)
    return float(_add(work, axis=None))


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

    The first ``n_train`` columns (default: all) are trained on; the others are
    validation columns, only run forward: each pass leaves their summed loss
    in ``val_total`` and the number classified right in ``val_correct``. They
    fill the last training block up to ``block`` columns, then blocks of their own.
    """

    def __init__(
        self,
        model: "MLP",
        Xa: Array,
        targets: Array,
        block: int = DEFAULT_BLOCK,
        n_train: int | None = None,
    ):
        if block < 0:
            raise ValueError(f"block must be positive (or 0: automatic), got {block}")
        block = block or auto_block(model.arch)
        n = Xa.shape[1] if n_train is None else n_train
        sizes = model.arch.layer_sizes
        self.Xa, self.targets = Xa, targets
        self.n_train, self.n_val = n, Xa.shape[1] - n
        self.grad = np.empty(model.arch.n_params, dtype=model.dtype)
        self.grad_layers = _layer_views(self.grad, sizes)
        bounds = [(start, min(start + block, n)) for start in range(0, n, block)]
        start = n
        if bounds and self.n_val:  # validation columns fill up the last training block
            last = bounds.pop()
            start = min(last[0] + block, Xa.shape[1])
            bounds.append((last[0], start))
        bounds += [(s, min(s + block, Xa.shape[1])) for s in range(start, Xa.shape[1], block)]
        self.blocks: list[_Block] = []
        for lo, hi in bounds:
            b = _Block(Xa[:, lo:hi], targets[:, lo:hi], max(0, min(n, hi) - lo))
            if b.k < b.m:
                b.positive = targets[:1, lo + b.k : hi] < 0  # s = 1 - 2y
                b.y_val = (1.0 - targets[:1, lo + b.k : hi]) / 2
                b.Xa_train = np.ascontiguousarray(b.Xa[:, : b.k])
                smallest = np.finfo(targets.dtype).smallest_subnormal
                b.below = np.where(b.positive, smallest, 0.0).astype(targets.dtype)
            self.blocks.append(b)
        self.block_totals = [0.0] * len(self.blocks)
        self.block_val = [(0.0, 0)] * len(self.blocks)
        self.val_total, self.val_correct = math.nan, 0
        if len(self.blocks) > 1:
            self.block_grads = np.zeros((len(self.blocks), self.grad.size), dtype=model.dtype)
            self.block_grad_layers = [_layer_views(row, sizes) for row in self.block_grads]
            self.train_rows = [k for k, b in enumerate(self.blocks) if b.k]
        else:
            self.block_grad_layers = [self.grad_layers]

    @property
    def n(self) -> int:
        """The number of training columns."""
        return self.n_train

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
        self._columns: dict[tuple, _Columns] = {}

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

    def _workspace(self, m: int, backward: bool = True, slot: int = 0) -> _Workspace:
        """Buffers for m columns; ``slot`` tells the threads sharing a batch apart."""
        key = (m, backward, slot)
        ws = self._workspaces.get(key)
        if ws is None:
            if len(self._workspaces) > 16:  # odd batch widths come and go; stay bounded
                self._workspaces.clear()
                self._columns.clear()
            ws = self._workspaces[key] = _Workspace(self.arch.layer_sizes, m, self.dtype, backward)
        return ws

    # ------------------------------------------------------------- the maths
    def _forward(self, ws: _Workspace, quiet: bool = False) -> None:
        """Z_l = [W_l | b_l] @ [A_{l-1}; 1] and A_l = f(Z_l), layer by layer; ws.a[0] is [X; 1].

        ``quiet``: the caller silences overflow (np.errstate), so the sigmoid need not.
        """
        # np.dot is the same product as @ with less call overhead on small arrays
        L = self.arch.n_layers
        inline_sigmoid = quiet and self.activation.value is sigmoid
        for layer in range(1, L):
            np.dot(self.layers[layer - 1], ws.a[layer - 1], out=ws.z[layer])
            if inline_sigmoid:  # sigmoid()'s operations, without its np.errstate
                A = ws.A[layer]
                np.negative(ws.z[layer], out=A)
                np.exp(A, out=A)
                A += 1.0
                np.divide(1.0, A, out=A)
            else:
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
        self, b: _Block, loss: Loss, grad_layers: list[Array], slot: int = 0
    ) -> tuple[float, tuple[float, int]]:
        """The training loss summed over a block's first b.k columns, its scaled gradient
        into ``grad_layers``; returns it, and (loss sum, number right) of the validation
        columns, if any, as a second value."""
        ws = self._workspace(b.m, slot=slot)
        ws.a[0] = b.Xa
        self._forward(ws, quiet=True)
        k, m = b.k, b.m
        bce = loss.name == "bce"
        right = ws.correct[:, k:]
        if bce:  # the loss terms of every column in one pass; the gradient follows
            below = b.below if k < m else None
            _bce_terms(ws.z[-1], b.t[0], ws.dz[-1], ws.work, ws.work2, k, right, below)
            train_total = float(_add(ws.work2[:, :k], axis=None))
        val = (0.0, 0)
        if k < m:  # validation columns: measured before backprop reuses the buffers
            z = ws.z[-1][:, k:]
            val_total = float(_add(ws.work2[:, k:], axis=None)) if bce else math.nan
            if not bce:  # right: (z >= 0) == (class 1)
                np.greater_equal(z, 0.0, out=right)
                np.equal(right, b.positive, out=right)
            if not math.isfinite(val_total):
                val_total = loss.total(z, b.y_val)
            val = (val_total, int(np.count_nonzero(right)))
        if k == 0:
            return 0.0, val
        cols = ws
        if k < m:
            cols = self._columns.get((id(ws), k))
            if cols is None:
                cols = self._columns[(id(ws), k)] = _Columns(ws, k)
            cols.take(b.Xa_train)
        t = b.t[:, :k] if k < m else b.t
        if bce and math.isfinite(train_total):
            # loss.evaluate's gradient, the same operations: sigmoid(x) = e^x / (1 + e^x), scaled
            np.divide(ws.dz[-1][:, :k], ws.work[:, :k], out=cols.dz[-1])
            cols.dz[-1] *= t[1]
        else:  # not BCE; or e^x overflowed, or non-finite logits: the careful way
            train_total = loss.evaluate(cols.z[-1], t, cols.dz[-1], cols.work)
        self._backward(cols, grad_layers)
        return train_total, val

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
        self,
        X: Array,
        y: Array,
        loss: Loss,
        block: int = DEFAULT_BLOCK,
        scale: float | None = None,
        validation: tuple[Array, Array] | None = None,
    ) -> Batch:
        """X (n_inputs, n) and 0/1 targets y (1, n) prepared for :meth:`batch_loss_and_gradient`.

        ``scale`` multiplies the summed loss's gradient; the default 1/n gives the mean's.
        ``validation`` (X_val, y_val) adds columns that are only measured (see :class:`Batch`).
        """
        X = np.asarray(X, dtype=self.dtype)
        scale = 1.0 / X.shape[1] if scale is None else scale
        targets = loss.encode(y, scale, self.dtype)
        if validation is None:
            return Batch(self, _with_ones(X), targets, block)
        X_val = np.asarray(validation[0], dtype=self.dtype)
        Xa = _with_ones(np.concatenate([X, X_val], axis=1))
        targets = np.concatenate([targets, loss.encode(validation[1], 1.0, self.dtype)], axis=1)
        return Batch(self, Xa, targets, block, n_train=X.shape[1])

    def batch_loss_and_gradient(self, batch: Batch, loss: Loss) -> float:
        """The loss summed over the batch; the gradient of the mean loss lands in ``batch.grad``.

        With several blocks, threads share them; each block's gradient fills its own
        row of ``batch.block_grads`` and the rows are added in block order.
        Validation columns' results go to ``batch.val_total`` and ``batch.val_correct``.
        Expects overflow silenced (``np.errstate(over="ignore")``, as ``train`` and
        :meth:`loss_and_gradients` do): e^x overflowing is handled, not an error.
        """
        blocks = batch.blocks
        if len(blocks) == 1:
            total, batch.block_val[0] = self._block(blocks[0], loss, batch.grad_layers)
        else:
            threads = min(THREADS, len(blocks))
            if threads > 1:
                errstate = np.geterr()  # np.errstate is per thread: pass the caller's on
                parts = [(batch, loss, j, threads, errstate) for j in range(threads)]
                list(_thread_pool().map(self._blocks_part, parts))
            else:
                self._blocks_part((batch, loss, 0, 1, None))
            total = sum(batch.block_totals)
            if len(batch.train_rows) == len(blocks):
                np.sum(batch.block_grads, axis=0, out=batch.grad)
            elif batch.train_rows:
                np.sum(batch.block_grads[batch.train_rows], axis=0, out=batch.grad)
        if batch.n_val:
            batch.val_total = sum(v[0] for v in batch.block_val)
            batch.val_correct = sum(v[1] for v in batch.block_val)
        return total

    def _blocks_part(self, part: tuple) -> None:
        """Blocks j, j + threads, ... of a batch, on thread slot j."""
        batch, loss, j, threads, errstate = part
        with np.errstate(**(errstate or np.geterr())):
            for k in range(j, len(batch.blocks), threads):
                batch.block_totals[k], batch.block_val[k] = self._block(
                    batch.blocks[k], loss, batch.block_grad_layers[k], slot=j
                )

    def loss_and_gradients(
        self, X: Array, y: Array, loss: Loss, block: int = DEFAULT_BLOCK
    ) -> tuple[float, ParamArrays]:
        """Mean loss over the n columns of X (n_inputs, n), 0/1 targets y (1, n), and its gradients.

        The gradients are fresh arrays keyed like ``params``. The batch is
        processed in blocks of ``block`` columns (see the module docstring).
        """
        batch = self.batch(X, y, loss, block)
        with np.errstate(over="ignore", invalid="ignore"):
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
