"""Why is my loss not converging? A diagnosis of a training run from what it recorded.

The tutorial ends on that question. A loss curve alone does not answer it, so
the train stage also takes cheap :class:`Probe` measurements of the network
every :func:`probe_every` epochs (on at most :data:`PROBE_SAMPLES` training
columns), and
:func:`diagnose` reads the curve, the probes and the final accuracy against
the rules below, first match wins. Every threshold is in :data:`THRESHOLDS`
with the reason for its value.

=================  =============================================================
verdict            recognised by
=================  =============================================================
converged          validation accuracy 100 % at the end; reports the epoch from
                   which it stayed there and the final loss
oscillating        the loss went up in more than ``rising_share`` of the last
                   ``tail`` epochs, or ended above ``rise_factor`` × its minimum
plateau_ln2        final loss within ``plateau_tol`` of the all-at-0.5 level
                   (ln 2 for BCE) and a vanishing gradient (norm below
                   ``vanishing_gradient``; without probes: a loss that fell by
                   less than ``flat_loss`` over the tail)
plateau_half_ln2   the same at half that level: some XOR patterns fitted, the
                   others sharing p ≈ 0.5
lr_too_small       the loss still falls in at least ``falling_share`` of the
                   tail epochs, by more than ``still_learning`` over the tail
not_converged      anything else (accuracy below 100 %, no pattern recognised)
=================  =============================================================

Over many seeds (the convergence study, :func:`diagnose_seeds`) one more verdict
can be measured: ``capacity``, a plateau that persists over seeds with at most
two hidden units.

A plateau carries the reasons the last probe can show: ``vanishing_gradient``
(first-layer gradient norm below ``vanishing_gradient``), ``symmetry`` (two first-layer
units whose outputs correlate above ``twin_correlation``), ``constant_output``
(outputs spread over less than ``flat_output``: the same answer everywhere), ``saturated``
(more than ``saturated_share`` of sigmoid/tanh unit outputs on a flat part of
the curve), ``dead_relu`` (ReLU units inactive on every probed sample).
Each verdict comes with ``try``: ``section.key=value`` overrides to apply.
NumPy only; features are rows: X is (features, n).
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from xornet.core.activations import sigmoid
from xornet.core.model import MLP
from xornet.core.training import History

Array = np.ndarray

# Probes look at this many training columns at most (the first ones: the data
# are shuffled by the split): all of the default 800, so the gradient norms are
# the full batch's (a subsample's gradient has a noise floor that would hide a
# vanishing one), and a small share of an epoch at 1e6 samples.
PROBE_SAMPLES = 4096
# ... and fewer in very wide layers, so that a probe's buffers (a few of
# units x columns each) stay near the training's own block buffers in size.
PROBE_ELEMENTS = 1 << 20
MIN_PROBE_SAMPLES = 16
# At most this many probes per run, at least MIN_PROBE_GAP epochs apart (plus the
# first and last epoch): the verdict reads the last, the rest show the way there.
PROBES_PER_RUN = 20
MIN_PROBE_GAP = 10
# Twin units are looked for among the first this many units of the first layer: the
# pairwise correlations cost units^2 memory (a 50 000-unit layer would need 20 GB),
# and symmetry stalls matter in narrow layers, where every unit is looked at.
TWIN_UNITS = 64
# Below this many epochs the tail of a curve is too short to tell a shape from noise.
MIN_EPOCHS = 20


def probe_every(epochs: int) -> int:
    """Epochs between two probes of a run of ``epochs`` epochs."""
    return max(MIN_PROBE_GAP, epochs // PROBES_PER_RUN)


THRESHOLDS: dict[str, float] = {
    # Share of the run, at its end, that the shape rules look at: long enough to
    # smooth mini-batch noise, short enough to describe where the run ended.
    "tail": 0.2,
    # A loss rising in over a third of the tail epochs is bouncing, not descending
    # (plain descent on a smooth loss rises in none).
    "rising_share": 1 / 3,
    # Ending 50 % above the best loss seen means the run lost ground.
    "rise_factor": 1.5,
    # The study's default: unsolved seeds end within 0.03 of their plateau level.
    "plateau_tol": 0.03,
    # Without probes, a plateau is recognised by its flatness: the loss fell by
    # less than 0.1 % over the tail.
    "flat_loss": 1e-3,
    # Outputs spread over less than 0.1: the network says the same for every sample.
    "flat_output": 0.1,
    # The gradient reaching the first layer (norm of dW1 and db1 of the mean loss)
    # below 2e-3: at lr 0.5 the first layer then moves by < 1e-3 per epoch.
    # Measured: tutorial saddle 3e-4, dead ReLUs 0, a run merely too slow (lr 0.001)
    # 2e-2. (The output layer's gradient is no guide on a probe subsample: the
    # output bias fits the whole training set's class balance, not the subsample's.)
    "vanishing_gradient": 2e-3,
    # Two units whose outputs correlate above 0.99 compute the same feature.
    "twin_correlation": 0.99,
    # f'(z) below 10 % of its peak (|z| > 3.6 for sigmoid, > 1.8 for tanh):
    # the unit passes back a tenth of the gradient or less.
    "saturated_derivative": 0.1,
    # Saturated for most of its (unit, sample) pairs.
    "saturated_share": 0.5,
    # Still falling: in 90 % of the tail epochs ...
    "falling_share": 0.9,
    # ... and by at least 0.01 % over the tail (a saddle falls by far less).
    "still_learning": 1e-4,
    # Over seeds (the study): a failure mode on a tenth of the seeds is the
    # configuration's, not one seed's bad luck.
    "capacity_share": 0.1,
}


@dataclass(frozen=True)
class Probe:
    """The network at one epoch, measured on the probed training columns.

    ``gradient_norms[l]`` is the 2-norm of layer l+1's gradient (W and b together)
    of the mean loss; ``saturated[l]`` and ``dead[l]`` are hidden layer l+1's share
    of saturated (unit, sample) pairs and of units inactive on every sample
    (ReLU only, else 0); ``twin_correlation`` is the largest |correlation| between
    two of the first :data:`TWIN_UNITS` first-layer units' outputs (0 with one
    unit); ``output_spread`` is max p - min p over the samples.
    """

    epoch: int
    gradient_norms: tuple[float, ...]
    saturated: tuple[float, ...]
    dead: tuple[float, ...]
    twin_correlation: float
    twin_units: tuple[int, int]
    output_spread: float


def probe(epoch: int, model: MLP, X: Array, y: Array, loss: Any) -> Probe:
    """Measure ``model`` on the first :data:`PROBE_SAMPLES` columns of X (features, n), y (1, n)
    (fewer when a hidden layer is wider than :data:`PROBE_ELEMENTS` / PROBE_SAMPLES units).

    One forward and one backward pass on fresh buffers (the model's own training
    buffers are left alone). Everything read from the forward pass is measured
    before the backward pass, which reuses those buffers.
    """
    columns = min(PROBE_SAMPLES, max(MIN_PROBE_SAMPLES, PROBE_ELEMENTS // max(model.arch.hidden)))
    X, y = X[:, :columns], y[:, :columns]
    cache = model.forward(X)
    activation = model.arch.activation
    hidden = cache.inputs[1:]  # (units, n) outputs of each hidden layer
    saturated = tuple(_saturated_share(a, activation) for a in hidden)
    dead = tuple(
        float(np.mean(np.all(z <= 0, axis=1))) if activation == "relu" else 0.0
        for z in cache.pre_activations[:-1]
    )
    twin, pair = _most_correlated(np.asarray(hidden[0][:TWIN_UNITS], dtype=np.float64))
    logits = cache.logits
    spread = float(sigmoid(np.max(logits)) - sigmoid(np.min(logits)))  # sigmoid is monotone
    grads = model.backward(cache, np.asarray(y, dtype=model.dtype), loss)
    norms = tuple(
        math.hypot(float(np.linalg.norm(grads[f"W{k}"])), float(np.linalg.norm(grads[f"b{k}"])))
        for k in range(1, model.arch.n_layers + 1)
    )
    return Probe(epoch, norms, saturated, dead, twin, pair, spread)


# |a - centre| beyond these bounds means f'(z) < saturated_derivative x its peak:
# 4 a (1 - a) < d for sigmoid, 1 - a^2 < d for tanh.
_SATURATION_BOUNDS = {
    "sigmoid": (0.5, math.sqrt(0.25 - THRESHOLDS["saturated_derivative"] / 4)),
    "tanh": (0.0, math.sqrt(1.0 - THRESHOLDS["saturated_derivative"])),
}


def _saturated_share(a: Array, activation: str) -> float:
    """Share of the unit outputs a (units, n) on a flat part of the activation's curve.
    ReLU does not saturate above 0; below it is inactive (see ``Probe.dead``)."""
    if activation not in _SATURATION_BOUNDS:
        return 0.0
    centre, bound = _SATURATION_BOUNDS[activation]
    return float(np.count_nonzero(np.abs(a - centre) > bound) / a.size)


def _most_correlated(A: Array) -> tuple[float, tuple[int, int]]:
    """Largest |correlation| between two rows of A (units, n), and the two units (1-based).
    A constant row computes nothing: it counts as a copy of any other constant row."""
    units = A.shape[0]
    if units < 2:
        return 0.0, (0, 0)
    centred = A - A.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    constant = norms <= 1e-12 * max(1.0, float(np.max(np.abs(A))))
    safe = np.where(constant, 1.0, norms)
    unit = centred / safe[:, None]
    corr = np.abs(unit @ unit.T)  # OpenBLAS runs on one thread (core.determinism)
    corr[np.ix_(constant, constant)] = 1.0
    np.fill_diagonal(corr, 0.0)
    i, j = np.unravel_index(int(np.argmax(corr)), corr.shape)
    return float(corr[i, j]), (int(min(i, j)) + 1, int(max(i, j)) + 1)


@dataclass
class Diagnosis:
    """A verdict, the measurements behind it and what to try (``section.key=value``)."""

    verdict: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    advice: str = ""
    try_overrides: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become null)."""
        out = asdict(self)
        out["try"] = out.pop("try_overrides")
        out["line"] = self.line()
        out["evidence"] = {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in self.evidence.items()
        }
        return out

    def numbers(self) -> dict[str, float]:
        """The finite numeric evidence as ``diagnosis_<name>`` metrics."""
        return {
            f"diagnosis_{key}": float(value)
            for key, value in self.evidence.items()
            if isinstance(value, int | float) and math.isfinite(value)
        }

    def line(self) -> str:
        """One line for the stage's output."""
        text = f"{self.verdict}: {self.summary}"
        return f"{text}; try {' '.join(self.try_overrides)}" if self.try_overrides else text


@dataclass(frozen=True)
class RunSettings:
    """The settings the advice adjusts (so it can name concrete values)."""

    loss: str
    learning_rate: float
    activation: str
    hidden: tuple[int, ...]
    init: str
    init_scale: float
    bias_scale: float
    epochs: int


def plateau_levels(loss: str) -> dict[str, float]:
    """Mean loss when every output is 0.5 (``ln2``) and when half the XOR patterns are
    fitted and the rest share p = 0.5 (``half_ln2``): ln 2 and ln 2 / 2 for BCE,
    1/4 and 1/8 for MSE."""
    full = math.log(2.0) if loss == "bce" else 0.25
    return {"ln2": full, "half_ln2": full / 2}


def diagnose(history: History, probes: list[Probe], settings: RunSettings) -> Diagnosis:
    """The verdict for a run from its per-epoch ``history`` and its ``probes``."""
    T = THRESHOLDS
    loss = history.train_loss
    epochs = len(loss)
    accuracy = float(history.val_accuracy[-1]) if history.has_validation else math.nan
    final = float(loss[-1])
    evidence: dict[str, Any] = {
        "epochs": epochs,
        "final_train_loss": final,
        "final_val_accuracy": accuracy,
    }
    if probes:
        last = probes[-1]
        evidence.update(
            probe_epoch=last.epoch,
            first_layer_gradient=last.gradient_norms[0],
            max_saturated_share=max(last.saturated, default=0.0),
            max_dead_share=max(last.dead, default=0.0),
            twin_correlation=last.twin_correlation,
            output_spread=last.output_spread,
        )
    solved = history.val_accuracy >= 1.0 if history.has_validation else np.zeros(epochs, bool)
    if solved.size and solved[-1]:
        unsolved = np.flatnonzero(~solved)
        since = int(history.epoch[unsolved[-1] + 1]) if unsolved.size else int(history.epoch[0])
        evidence["converged_at_epoch"] = since
        return Diagnosis(
            "converged",
            f"100 % validation accuracy from epoch {since}, final loss {final:.3g}",
            evidence,
            advice="nothing to fix" + (f"; {since} epochs would do" if since < epochs // 2 else ""),
        )

    if epochs < MIN_EPOCHS:
        return Diagnosis(
            "not_converged",
            f"accuracy {accuracy:.0%} after only {epochs} epochs: too few to read the curve",
            evidence,
            advice="more epochs",
            try_overrides=[f"train.epochs={max(10 * epochs, MIN_EPOCHS * 10)}"],
        )
    tail = loss[-max(2, int(epochs * T["tail"])) :]
    steps = np.diff(tail)
    rising = float(np.mean(steps > 0)) if steps.size else 0.0
    best = float(np.min(loss))
    drop = float((tail[0] - tail[-1]) / tail[0]) if tail[0] > 0 else 0.0
    evidence.update(rising_share=rising, min_train_loss=best, tail_relative_drop=drop)
    smaller_lr = f"train.learning_rate={_round(settings.learning_rate / 10)}"
    if not np.isfinite(final) or rising > T["rising_share"] or final > T["rise_factor"] * best:
        return Diagnosis(
            "oscillating",
            f"the loss rose in {rising:.0%} of the last {tail.size} epochs and ended at "
            f"{final:.3g} (best {best:.3g}): the learning rate is too large",
            evidence,
            advice="a learning rate about 10x smaller",
            try_overrides=[smaller_lr],
        )

    levels = plateau_levels(settings.loss)
    if probes:
        stalled = probes[-1].gradient_norms[0] < T["vanishing_gradient"]
    else:
        stalled = abs(drop) < T["flat_loss"]
    for name, level in levels.items():
        tol = T["plateau_tol"] * level / levels["ln2"]
        if stalled and abs(final - level) <= tol:
            return _plateau(name, level, evidence, probes, settings)

    if drop > T["still_learning"] and float(np.mean(steps < 0)) >= T["falling_share"]:
        per_epoch = (tail[0] - tail[-1]) / max(1, tail.size - 1)
        evidence["loss_drop_per_epoch"] = float(per_epoch)
        return Diagnosis(
            "lr_too_small",
            f"the loss still falls steadily ({drop:.2%} over the last {tail.size} epochs) "
            f"at {final:.3g}, accuracy {accuracy:.0%}: far from done",
            evidence,
            advice="a learning rate about 10x larger (or many more epochs)",
            try_overrides=[f"train.learning_rate={_round(settings.learning_rate * 10)}"],
        )
    return Diagnosis(
        "not_converged",
        f"accuracy {accuracy:.0%} after {epochs} epochs at loss {final:.3g}, "
        "no known pattern in the curve",
        evidence,
        advice="more epochs, another seed or a wider network",
        try_overrides=[f"train.epochs={settings.epochs * 10}"],
    )


def _plateau(
    name: str, level: float, evidence: dict[str, Any], probes: list[Probe], s: RunSettings
) -> Diagnosis:
    T = THRESHOLDS
    reasons: list[str] = []
    overrides: dict[str, str] = {}
    if probes:
        last = probes[-1]
        if last.gradient_norms[0] < T["vanishing_gradient"]:
            reasons.append("vanishing_gradient")
        if max(last.dead, default=0.0) > 0:
            reasons.append("dead_relu")
        if max(last.saturated, default=0.0) > T["saturated_share"]:
            reasons.append("saturated")
        if last.twin_correlation > T["twin_correlation"]:
            reasons.append("symmetry")
        if last.output_spread < T["flat_output"]:
            reasons.append("constant_output")
    if "dead_relu" in reasons:  # a unit off on every sample gets no gradient, ever
        overrides.update({"model.activation": "tanh", "model.bias_scale": "0.0"})
    if "vanishing_gradient" in reasons and (s.init == "normal" and s.init_scale < 0.1):
        # The all-zero saddle: tiny weights give tiny, nearly equal units and
        # gradients; a variance-preserving init starts away from it.
        overrides.update({"model.init": "xavier", "model.init_scale": "1.0"})
        if s.learning_rate < 0.5:
            overrides["train.learning_rate"] = "0.5"
    if name == "half_ln2" or "symmetry" in reasons or min(s.hidden) <= 2:
        # Two units fit XOR only from a good start; four or more from almost any.
        overrides["model.hidden"] = "[" + ", ".join(str(max(4, h)) for h in s.hidden) + "]"
    if not overrides:
        overrides["train.learning_rate"] = _round(s.learning_rate * 2)
    unit_words = {
        "vanishing_gradient": "first-layer gradient norm "
        f"{evidence.get('first_layer_gradient', 0):.1e}",
        "dead_relu": f"{evidence.get('max_dead_share', 0):.0%} of ReLU units never active",
        "saturated": f"{evidence.get('max_saturated_share', 0):.0%} of unit outputs saturated",
        "symmetry": "hidden units "
        + ("h{} and h{}".format(*probes[-1].twin_units) if probes else "")
        + " are near-copies",
        "constant_output": f"outputs spread over only {evidence.get('output_spread', 0):.2g}",
    }
    where = (
        "ln 2 (p ≈ 0.5 everywhere)" if name == "ln2" else "ln 2 / 2 (XOR patterns left at p ≈ 0.5)"
    )
    if s.loss != "bce":
        where = f"{level:.3g} (the {'all' if name == 'ln2' else 'half'}-at-0.5 level)"
    because = "; ".join(unit_words[r] for r in reasons)
    evidence["plateau_level"] = level
    evidence["plateau_tol"] = T["plateau_tol"] * level / plateau_levels(s.loss)["ln2"]
    return Diagnosis(
        f"plateau_{name}",
        f"stuck at loss {evidence['final_train_loss']:.4g} ≈ {where}"
        + (f": {because}" if because else ""),
        evidence,
        reasons,
        advice="start away from the saddle and give the network room",
        try_overrides=[f"{k}={v}" for k, v in overrides.items()],
    )


def _round(value: float) -> str:
    return f"{value:.3g}"


def diagnose_seeds(
    hidden: tuple[int, ...], seeds: int, solved: int, stalled: int, diverged: int
) -> tuple[str, str]:
    """A verdict for one configuration trained over many seeds (the convergence study):
    ``(verdict, what to try)``. ``stalled`` counts unsolved seeds that ended on a
    plateau (ln 2 or ln 2 / 2).

    ``capacity``: with at most 2 units in a hidden layer, a plateau that persists over
    at least ``capacity_share`` of the seeds is the width's doing (XOR needs two
    well-placed lines; with exactly two units a bad start has no spare unit to
    recover with), not a seed's bad luck.
    """
    share = THRESHOLDS["capacity_share"]
    if solved == seeds:
        return "converged", ""
    if diverged > seeds * share:
        return "oscillating", "a smaller train.learning_rate"
    if stalled >= seeds * share:
        wider = "model.hidden=[" + ", ".join(str(max(4, h)) for h in hidden) + "]"
        if min(hidden) <= 2:
            return "capacity", wider
        return "plateau", "model.init=xavier model.init_scale=1.0"
    return "not_converged", "more train.epochs"
