"""The convergence study: every configuration of a small grid, trained over S model seeds.

One training run says little about a network that sometimes gets stuck. For
each configuration (a set of ``section.key`` overrides on top of the params)
this trains S networks at once with :func:`xornet.core.batched.train_batched`, one
per model seed ``model.seed, model.seed + 1, ...``, and summarises them:

- success: 100 % accuracy on the test set after the last epoch;
- epochs to success: first epoch at 100 % test accuracy (successful seeds),
  as median, quartiles, min and max;
- final training loss: min, quartiles, max (diverged seeds excluded);
- unsolved seeds by where they ended: final loss within ``study.plateau_tol``
  of ln 2 (nothing fitted: the saddle at all-zero weights, p ≈ 0.5 everywhere)
  or of ln 2 / 2 (two of XOR's four patterns fitted, the other two sharing
  one p ≈ 0.5); with unequal pattern counts in a finite sample these levels
  shift a little (0.32–0.37 for ln 2 / 2 on the default 800 samples);
  or elsewhere (e.g. one pattern fitted, three sharing p: ≈ 0.45–0.5). After
  enough epochs these are stalls for good; after few, a seed may merely not
  have left the plateau yet;
- diverged seeds (non-finite loss or weights).

Results come back per configuration; :func:`write_tables` writes the CSV
files and the Markdown table (atomically, byte-deterministic), and
:func:`run_records` gives what an experiment tracker logs: one parent run and
a child run per configuration. NumPy only; the figure is
:func:`xornet.figures.plots.convergence_png`.
"""

import itertools
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xornet.config.schema import SECTION_SCHEMAS, Params, train_config, validate
from xornet.core.batched import BatchedResult, train_batched
from xornet.core.data import Dataset, generate
from xornet.core.diagnosis import diagnose_seeds
from xornet.core.model import Architecture
from xornet.core.training import Progress
from xornet.errors import ParamsError
from xornet.files import atomic

LN2 = math.log(2.0)
PLATEAUS = {"ln2": LN2, "half_ln2": LN2 / 2}
# Sections a grid may vary. model.seed is the study's own axis (the S seeds).
GRID_SECTIONS = ("data", "model", "train")
# Loss curves keep at most about this many points per configuration.
HISTORY_POINTS = 2000


# ------------------------------------------------------------------ the grid
def expand_grid(grid: Mapping[str, list[Any]] | list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The configurations of ``study.grid``, each a ``{"section.key": value}`` dict.

    A mapping ``{key: [values]}`` gives every combination (the first key
    varies slowest); a list of mappings gives exactly those sets; ``{}`` gives
    one empty configuration (the params as they are).
    """
    if isinstance(grid, Mapping):
        keys = list(grid)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    return [dict(entry) for entry in grid] or [{}]


def _check_key(key: str) -> tuple[str, str]:
    section, dot, name = key.partition(".")
    if not dot or section not in GRID_SECTIONS:
        allowed = ", ".join(f"{s}.*" for s in GRID_SECTIONS)
        raise ParamsError(f"study.grid: key '{key}' must be one of {allowed}")
    fields = SECTION_SCHEMAS[section].model_fields
    if name not in fields:
        allowed = ", ".join(f"{section}.{f}" for f in fields)
        raise ParamsError(f"study.grid: unknown key '{key}' (allowed: {allowed})")
    if key == "model.seed":
        raise ParamsError(
            "study.grid: model.seed cannot vary, the study trains study.seeds seeds "
            "starting at model.seed"
        )
    return section, name


def apply_overrides(base: Params, overrides: Mapping[str, Any]) -> Params:
    """``base`` with ``{"section.key": value}`` applied, validated like params.yaml."""
    raw = base.model_dump()
    for key, value in overrides.items():
        section, name = _check_key(key)
        raw[section][name] = value
    where = "study.grid " + label(overrides) if overrides else "params"
    return validate(raw, where)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def label(overrides: Mapping[str, Any]) -> str:
    """``hidden=[2], learning_rate=1.0``; ``base`` for no overrides."""
    if not overrides:
        return "base"
    names = [key.partition(".")[2] for key in overrides]
    parts = []
    for key, value in overrides.items():
        name = key.partition(".")[2]
        shown = name if names.count(name) == 1 and key != "data.seed" else key
        parts.append(f"{shown}={_format_value(value)}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Configuration:
    """One grid point: its overrides and the params they give."""

    index: int
    overrides: dict[str, Any]
    params: Params

    @property
    def label(self) -> str:
        return label(self.overrides)


def configurations(params: Params) -> list[Configuration]:
    """Every configuration of ``params.study.grid``, validated before anything trains."""
    configs = []
    for index, overrides in enumerate(expand_grid(params.study.grid)):
        config_params = apply_overrides(params, overrides)
        if config_params.train.batch_size != 0:
            raise ParamsError(
                f"study.grid {label(overrides)}: the study trains full batch "
                f"(train.batch_size must be 0, got {config_params.train.batch_size})"
            )
        configs.append(Configuration(index, overrides, config_params))
    return configs


# ------------------------------------------------------------------ training
@dataclass
class ConfigResult:
    """A configuration, its S trained seeds and their summary (see :func:`summarize`)."""

    config: Configuration
    result: BatchedResult
    summary: dict[str, Any]
    seconds: float = field(compare=False)

    @property
    def label(self) -> str:
        return self.config.label


def _dataset(params: Params, cache: dict[str, tuple[Dataset, Dataset]]) -> tuple[Dataset, Dataset]:
    d = params.data
    key = d.model_dump_json()
    if key not in cache:
        cache[key] = generate(d.kind, d.n_samples, d.test_fraction, d.seed, d.noise, d.n_bits)
    return cache[key]


def train_configuration(
    config: Configuration,
    seeds: int,
    cache: dict[str, tuple[Dataset, Dataset]] | None = None,
    progress: Progress | None = None,
) -> BatchedResult:
    """Train ``seeds`` networks of one configuration (model seeds from ``model.seed`` on).

    The data are generated from the configuration's ``data`` section exactly
    as the generate stage does (``cache`` reuses them across configurations).
    """
    p = config.params
    cache = {} if cache is None else cache
    train_set, test_set = _dataset(p, cache)
    arch = Architecture(train_set.X.shape[0], tuple(p.model.hidden), p.model.activation)
    return train_batched(
        arch,
        range(p.model.seed, p.model.seed + seeds),
        train_set.X,
        train_set.y,
        train_config(p),
        init=p.model.init,
        scale=p.model.init_scale,
        bias_scale=p.model.bias_scale,
        validation=(test_set.X, test_set.y),
        history_every=max(1, p.train.epochs // HISTORY_POINTS),
        progress=progress,
    )


def train_grid(params: Params, progress: Progress | None = None) -> list[ConfigResult]:
    """Train and summarise every configuration of ``params.study``.

    ``progress(epochs_done)`` counts epochs over all configurations (their
    ``train.epochs`` summed), for a progress bar.
    """
    configs = configurations(params)
    cache: dict[str, tuple[Dataset, Dataset]] = {}
    results = []
    done = 0
    for config in configs:
        tick = None if progress is None else (lambda epoch, base=done: progress(base + epoch))
        start = time.perf_counter()
        result = train_configuration(config, params.study.seeds, cache, tick)
        seconds = time.perf_counter() - start
        hidden = tuple(config.params.model.hidden)
        summary = summarize(result, params.study.plateau_tol, hidden)
        results.append(ConfigResult(config, result, summary, seconds))
        done += config.params.train.epochs
    return results


def total_epochs(params: Params) -> int:
    """Epochs the study runs, over all configurations (for a progress bar)."""
    return sum(c.params.train.epochs for c in configurations(params))


# ------------------------------------------------------------------- summary
SUMMARY_METRICS = (
    "seeds",
    "epochs",
    "solved",
    "success_rate",
    "solve_epoch_median",
    "solve_epoch_q25",
    "solve_epoch_q75",
    "solve_epoch_min",
    "solve_epoch_max",
    "final_loss_min",
    "final_loss_q25",
    "final_loss_median",
    "final_loss_q75",
    "final_loss_max",
    "unsolved_ln2",
    "unsolved_half_ln2",
    "unsolved_other",
    "diverged",
    "verdict",
    "try",
)


def _quantiles(values: np.ndarray, prefix: str, as_int: bool = False) -> dict[str, Any]:
    names = ("min", "q25", "median", "q75", "max")
    if values.size == 0:
        return {f"{prefix}_{n}": None for n in names}
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    out = {f"{prefix}_{n}": float(v) for n, v in zip(names, q, strict=True)}
    if as_int:
        out[f"{prefix}_min"] = int(values.min())
        out[f"{prefix}_max"] = int(values.max())
    return out


def unsolved_at(result: BatchedResult, plateau: float, tol: float) -> np.ndarray:
    """Unsolved, non-diverged seeds whose final training loss is within ``tol`` of ``plateau``."""
    near = np.abs(result.train_loss - plateau) <= tol
    return near & ~result.success & ~result.diverged


def summarize(
    result: BatchedResult, plateau_tol: float, hidden: tuple[int, ...] = (8,)
) -> dict[str, Any]:
    """The per-configuration numbers of :data:`SUMMARY_METRICS` (None where undefined)."""
    success = result.success
    S = result.seeds.size
    finite = result.train_loss[~result.diverged]
    summary: dict[str, Any] = {
        "seeds": int(S),
        "epochs": int(result.history_epoch[-1]),
        "solved": int(success.sum()),
        "success_rate": float(success.mean()),
        **_quantiles(result.solved_epoch[success], "solve_epoch", as_int=True),
        **_quantiles(finite, "final_loss"),
        "unsolved_ln2": int(unsolved_at(result, PLATEAUS["ln2"], plateau_tol).sum()),
        "unsolved_half_ln2": int(unsolved_at(result, PLATEAUS["half_ln2"], plateau_tol).sum()),
        "diverged": int(result.diverged.sum()),
    }
    summary["unsolved_other"] = (
        S - summary["solved"] - summary["unsolved_ln2"] - summary["unsolved_half_ln2"]
    ) - summary["diverged"]
    stalled = summary["unsolved_ln2"] + summary["unsolved_half_ln2"]
    summary["verdict"], summary["try"] = diagnose_seeds(
        hidden, S, summary["solved"], stalled, summary["diverged"]
    )
    return {key: summary[key] for key in SUMMARY_METRICS}


def _cell(value: Any) -> Any:
    """CSV cell: floats via repr (exact round trip), None as empty."""
    if isinstance(value, float):
        return repr(value)
    return value


def summary_rows(results: list[ConfigResult]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of ``summary.csv``: configuration, its grid values, the metrics."""
    keys = list(dict.fromkeys(k for r in results for k in r.config.overrides))
    header = ["configuration", *keys, *SUMMARY_METRICS]
    rows = []
    for r in results:
        values = [
            json.dumps(r.config.overrides[k]) if k in r.config.overrides else "" for k in keys
        ]
        rows.append([r.label, *values, *(_cell(r.summary[m]) for m in SUMMARY_METRICS)])
    return header, rows


SEED_HEADER = (
    "configuration",
    "seed",
    "success",
    "solved_epoch",
    "final_train_loss",
    "test_loss",
    "test_accuracy",
    "diverged_epoch",
)


def seed_rows(results: list[ConfigResult]) -> list[list[Any]]:
    """One row per (configuration, seed) for ``seeds.csv``."""
    rows = []
    for r in results:
        b = r.result
        for i, seed in enumerate(b.seeds):
            rows.append(
                [
                    r.label,
                    int(seed),
                    int(b.success[i]),
                    int(b.solved_epoch[i]),
                    _finite_cell(b.train_loss[i]),
                    _finite_cell(b.test_loss[i]),
                    _finite_cell(b.test_accuracy[i]),
                    int(b.diverged_epoch[i]),
                ]
            )
    return rows


def _finite_cell(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ""


def setting(params: Params) -> str:
    """One line describing the base setting the grid varies."""
    d, m, t = params.data, params.model, params.train
    return (
        f"data {d.kind} n={d.n_samples} (test {d.test_fraction:g}, seed {d.seed}); "
        f"hidden {m.hidden} {m.activation}, init {m.init} x {m.init_scale:g}, "
        f"bias std {m.bias_scale:g}; {t.loss}, {t.optimizer} lr {t.learning_rate:g}, "
        f"{t.epochs} epochs, full batch"
    )


def _fmt_epoch(value: float | int | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _fmt_loss(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def markdown(params: Params, results: list[ConfigResult]) -> str:
    """``summary.md``: a caption and one table row per configuration."""
    seeds = params.study.seeds
    first = params.model.seed
    tol = params.study.plateau_tol
    lines = [
        f"Convergence over {seeds} model seeds ({first}–{first + seeds - 1}) per configuration. "
        f"Base setting: {setting(params)}.",
        "",
        "Solved: 100 % test accuracy after the last epoch. Epochs to solve: first epoch at "
        "100 % test accuracy, over solved seeds, median [quartiles] and range. Final loss: "
        "training loss of the last epoch. Unsolved seeds are counted by where their final "
        f"loss is: within {tol:g} of ln 2 ≈ 0.693 (nothing fitted: the saddle), within "
        f"{tol:g} of ln 2 / 2 ≈ 0.347 (two of the four XOR patterns unfitted), or elsewhere.",
        "",
        "| configuration | epochs | solved | epochs to solve: median [IQR] | range "
        "| final loss: median [IQR] | max | unsolved at ln 2 | at ln 2 / 2 | elsewhere "
        "| diverged | verdict |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        s = r.summary
        epochs = (
            f"{_fmt_epoch(s['solve_epoch_median'])} "
            f"[{_fmt_epoch(s['solve_epoch_q25'])}–{_fmt_epoch(s['solve_epoch_q75'])}]"
            if s["solved"]
            else "–"
        )
        span = (
            f"{_fmt_epoch(s['solve_epoch_min'])}–{_fmt_epoch(s['solve_epoch_max'])}"
            if s["solved"]
            else "–"
        )
        loss = (
            f"{_fmt_loss(s['final_loss_median'])} "
            f"[{_fmt_loss(s['final_loss_q25'])}–{_fmt_loss(s['final_loss_q75'])}]"
        )
        verdict = f"{s['verdict']} (try {s['try']})" if s["try"] else s["verdict"]
        lines.append(
            f"| {r.label} | {s['epochs']} | {s['solved']}/{s['seeds']} | {epochs} | {span} "
            f"| {loss} | {_fmt_loss(s['final_loss_max'])} | {s['unsolved_ln2']} "
            f"| {s['unsolved_half_ln2']} | {s['unsolved_other']} | {s['diverged']} "
            f"| {verdict} |"
        )
    return "\n".join(lines) + "\n"


def metrics(results: list[ConfigResult]) -> dict[str, Any]:
    """``summary.json`` for ``dvc metrics``: the summary of each configuration, by label."""
    return {r.label: r.summary for r in results}


@dataclass(frozen=True)
class StudyOutputs:
    summary_csv: Path
    summary_md: Path
    summary_json: Path
    seeds_csv: Path
    figure: Path

    def files(self) -> list[Path]:
        return [self.summary_csv, self.summary_md, self.summary_json, self.seeds_csv, self.figure]


def write_tables(params: Params, results: list[ConfigResult], outputs: StudyOutputs) -> None:
    """Write the CSVs, the Markdown table and the JSON metrics (not the figure)."""
    header, rows = summary_rows(results)
    atomic.write_csv(outputs.summary_csv, header, rows)
    atomic.write_csv(outputs.seeds_csv, SEED_HEADER, seed_rows(results))
    atomic.write_bytes(outputs.summary_md, markdown(params, results).encode())
    atomic.write_json(outputs.summary_json, metrics(results))


# ------------------------------------------------------------------ tracking
@dataclass(frozen=True)
class RunRecord:
    """What a tracker logs for one run: params, final metrics and stepped curves.

    ``curves`` maps a metric name to (steps, values); steps are epochs.
    """

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    curves: dict[str, tuple[list[int], list[float]]]
    tags: dict[str, str]


def report_lines(results: list[ConfigResult]) -> list[str]:
    """One line per configuration for the terminal: solved seeds, median epochs, time."""
    lines = []
    for r in results:
        s = r.summary
        median = s["solve_epoch_median"]
        when = f", median {median:g} epochs" if median is not None else ""
        lines.append(f"{r.label}: solved {s['solved']}/{s['seeds']}{when} ({r.seconds:.2f} s)")
    return lines


def run_records(params: Params, results: list[ConfigResult]) -> tuple[RunRecord, list[RunRecord]]:
    """The parent run of the study and one child run per configuration."""
    parent = RunRecord(
        name="study",
        params={
            "study.seeds": params.study.seeds,
            "study.grid": json.dumps(params.study.grid),
            "study.plateau_tol": params.study.plateau_tol,
            "study.configurations": len(results),
            **params.flat(("data", "model", "train")),
        },
        metrics={
            "best_success_rate": max((r.summary["success_rate"] for r in results), default=0.0)
        },
        curves={},
        tags={"xornet.kind": "study"},
    )
    children = []
    for r in results:
        b = r.result
        with np.errstate(all="ignore"):
            solved_share = [
                float(np.mean((b.solved_epoch > 0) & (b.solved_epoch <= e) & b.success))
                for e in b.history_epoch
            ]
        steps = [int(e) for e in b.history_epoch]
        loss = np.where(np.isfinite(b.loss_history), b.loss_history, np.nan)
        curves = {"solved_share": (steps, solved_share)}
        if np.isfinite(loss).any(axis=1).all():
            for name, q in (("loss_median", 0.5), ("loss_q10", 0.1), ("loss_q90", 0.9)):
                curves[name] = (steps, [float(v) for v in np.nanquantile(loss, q, axis=1)])
        children.append(
            RunRecord(
                name=r.label,
                params={
                    **r.config.params.flat(("data", "model", "train")),
                    "study.seeds": params.study.seeds,
                    "study.overrides": json.dumps(r.config.overrides),
                },
                metrics={
                    k: float(v)
                    for k, v in r.summary.items()
                    if isinstance(v, int | float) and k != "epochs"
                }
                | {"seconds": r.seconds},
                curves=curves,
                tags={
                    "xornet.kind": "study-configuration",
                    "xornet.configuration": r.label,
                    "xornet.diagnosis": r.summary["verdict"],
                },
            )
        )
    return parent, children
