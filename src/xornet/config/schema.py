"""The params.yaml schema: parsed once, typed and validated.

Every key is required — ``params.yaml`` is the one place defaults live. A
problem becomes a :class:`ParamsError` whose message is one line naming the
key, the bad value and what is allowed.

The params file and ``--set`` values are untrusted text: the YAML loader refuses
duplicate keys, files over :data:`MAX_FILE_BYTES`, nesting deeper than
:data:`MAX_DEPTH` and anything that would expand (through aliases) to more than
:data:`MAX_NODES` nodes, before anything is built from it; every float must be
finite and within its meaningful range.
"""

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from xornet.core.training import TrainConfig
from xornet.errors import ParamsError

PositiveInt = Annotated[int, Field(ge=1)]
# NumPy's classic seed range; study seeds run from model.seed up, in int64.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]

# Limits on the YAML text: a params file is ~60 nodes and a few KiB.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 100_000
# Configurations a convergence study may have (the README's have a few dozen).
MAX_CONFIGURATIONS = 10_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class RefusedYAML(yaml.MarkedYAMLError):
    """YAML that parses but is refused: a duplicate key, too deep or too big."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-8`` and ``1e6`` as floats (YAML 1.2 style);
    plain PyYAML would read them as strings. It refuses (:class:`RefusedYAML`)
    duplicate keys at any depth, nesting deeper than MAX_DEPTH, and documents that
    would expand through aliases to more than MAX_NODES nodes (or recursively): the
    size is counted on the composed node graph, whose aliases are shared, before
    anything is constructed, so an alias bomb costs time and memory linear in its
    text."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise RefusedYAML(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        _expanded(node, 1, {}, set())
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable: SafeLoader's own error follows
                    continue
                if duplicate:
                    raise RefusedYAML(
                        None,
                        None,
                        f"duplicate key {key!r} (each key may appear once)",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded(
    node: Any, depth: int, known: dict[int, tuple[int, int]], path: set[int]
) -> tuple[int, int]:
    """(nodes, height) of ``node`` with every alias expanded; raises RefusedYAML past
    MAX_NODES or MAX_DEPTH, or on a recursive alias. ``known`` memoises shared nodes."""
    if id(node) in known:
        size, height = known[id(node)]
    elif id(node) in path:
        raise RefusedYAML(None, None, "recursive alias", node.start_mark)
    else:
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        path.add(id(node))
        size, height = 1, 1
        for child in children:
            child_size, child_height = _expanded(child, depth + 1, known, path)
            size, height = size + child_size, max(height, child_height + 1)
            if size > MAX_NODES:
                break
        path.discard(id(node))
        known[id(node)] = (size, height)
    if size > MAX_NODES:
        raise RefusedYAML(
            None,
            None,
            f"expands to more than {MAX_NODES} values (through aliases)",
            node.start_mark,
        )
    if depth + height - 1 > MAX_DEPTH:
        raise RefusedYAML(
            None,
            None,
            f"nested deeper than {MAX_DEPTH} levels (through aliases)",
            node.start_mark,
        )
    return size, height


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class _Section(BaseModel):
    # allow_inf_nan=False: every float is finite (".inf" and ".nan" are refused).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class DataParams(_Section):
    kind: Literal["xor", "noisy_xor", "parity"]
    n_samples: PositiveInt
    test_fraction: Annotated[float, Field(gt=0, lt=1)]
    noise: Annotated[float, Field(ge=0, le=10)]
    n_bits: Annotated[int, Field(ge=2, le=16)]
    seed: Seed

    @model_validator(mode="after")
    def _splittable(self) -> "DataParams":
        n_test = round(self.n_samples * self.test_fraction)
        if not 1 <= n_test <= self.n_samples - 1:
            raise ValueError(
                f"data.n_samples = {self.n_samples} is too small to split with test_fraction "
                f"{self.test_fraction} (round(n_samples * test_fraction) must be between 1 and "
                "n_samples - 1)"
            )
        return self

    @property
    def n_features(self) -> int:
        return self.n_bits if self.kind == "parity" else 2


class ModelParams(_Section):
    hidden: Annotated[list[PositiveInt], Field(min_length=1)]
    activation: Literal["sigmoid", "tanh", "relu"]
    init: Literal["normal", "xavier", "he"]
    init_scale: Annotated[float, Field(gt=0, le=100)]
    bias_scale: Annotated[float, Field(ge=0, le=100)]
    seed: Seed


class TrainParams(_Section):
    loss: Literal["bce", "mse"]
    optimizer: Literal["gd", "momentum", "adam"]
    learning_rate: Annotated[float, Field(gt=0)]
    epochs: PositiveInt
    batch_size: Annotated[int, Field(ge=0)]
    shuffle_seed: Seed
    momentum: Annotated[float, Field(ge=0, lt=1)]
    beta1: Annotated[float, Field(ge=0, lt=1)]
    beta2: Annotated[float, Field(ge=0, lt=1)]
    eps: Annotated[float, Field(gt=0, le=1)]
    dtype: Literal["float64", "float32"]
    snapshot_every: PositiveInt


class EvaluateParams(_Section):
    threshold: Annotated[float, Field(gt=0, lt=1)]


class PlotParams(_Section):
    log_scale: bool
    grid_resolution: Annotated[int, Field(ge=10, le=1000)]
    animation_frames: Annotated[int, Field(ge=1, le=500)]
    fps: Annotated[int, Field(ge=1, le=60)]
    dpi: Annotated[int, Field(ge=30, le=300)]


class StudyParams(_Section):
    """The convergence study (stages/study.py): every configuration of ``grid`` over
    ``seeds`` model seeds. The grid is ``{"section.key": [values]}`` (every combination)
    or a list of ``{"section.key": value}`` sets; ``{}`` is the other sections as they are.
    Keys are checked against the schema when the study expands the grid."""

    seeds: Annotated[int, Field(ge=1, le=100_000)]
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] | list[dict[str, Any]]
    plateau_tol: Annotated[float, Field(gt=0, lt=0.3)]

    @field_validator("grid")
    @classmethod
    def _bounded(cls, grid: Any) -> Any:
        size = grid_size(grid)
        if size > MAX_CONFIGURATIONS:
            raise ValueError(
                f"expands to {size} configurations (allowed: at most {MAX_CONFIGURATIONS})"
            )
        return grid


def grid_size(grid: Mapping[str, Sequence[Any]] | Sequence[Any]) -> int:
    """Number of configurations ``study.grid`` expands to, without expanding it."""
    if isinstance(grid, Mapping):
        return math.prod(len(values) for values in grid.values())
    return max(1, len(grid))


class TrackingParams(_Section):
    enabled: bool
    experiment: Annotated[str, Field(min_length=1)]
    registered_model: Annotated[str, Field(min_length=1)]


class Params(_Section):
    data: DataParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    plot: PlotParams
    study: StudyParams
    tracking: TrackingParams

    def flat(self, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
        """``{"data.kind": "xor", "model.hidden": [4], ...}`` for the chosen sections."""
        out: dict[str, Any] = {}
        for section, values in self.model_dump().items():
            if sections is None or section in sections:
                for key, value in values.items():
                    out[f"{section}.{key}"] = value
        return out


SECTION_SCHEMAS: dict[str, type[_Section]] = {
    name: field.annotation
    for name, field in Params.model_fields.items()  # type: ignore[misc]
}


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    if len(loc) <= 1:
        return ", ".join(SECTION_SCHEMAS)
    section = SECTION_SCHEMAS.get(str(loc[0]))
    return ", ".join(section.model_fields) if section else ""


def _format_error(error: dict[str, Any], source: str) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc if not isinstance(part, int))
    key += "".join(f"[{part}]" for part in loc if isinstance(part, int))
    kind = error["type"]
    if kind == "extra_forbidden":
        what = "section" if len(loc) == 1 else "key"
        return f"{source}: unknown {what} '{key}' (allowed: {_allowed_keys(loc)})"
    if kind == "missing":
        what = "section" if len(loc) == 1 else "key"
        return f"{source}: missing {what} '{key}'"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    value = error.get("input")
    if isinstance(value, dict) and len(loc) <= 1:  # a section's own check names its keys
        return f"{source}: {message}"
    return f"{source}: {key} = {_shown(value)}: {message}"


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a value may be long)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate(raw: Any, source: str = "params") -> Params:
    """Validate a parsed params mapping; raises ParamsError with one line."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        line = _format_error(errors[0], source)  # type: ignore[arg-type]
        if len(errors) > 1:
            line += f" (and {len(errors) - 1} more problem(s))"
        raise ParamsError(" ".join(line.splitlines())) from None


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.key=value`` into (section, key, YAML-parsed value)."""
    key, sep, value = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name or "." in name:
        raise ParamsError(f"malformed --set {text!r}: expected section.key=value")
    try:
        parsed = _load_yaml(value) if value.strip() else None
    except RefusedYAML as exc:
        raise ParamsError(f"malformed --set {_shown(text)}: {exc.problem}") from None
    except yaml.YAMLError:
        raise ParamsError(f"malformed --set {_shown(text)}: value is not valid YAML") from None
    if parsed is None:
        raise ParamsError(f"malformed --set {text!r}: empty value")
    return section, name, parsed


def read_yaml(path: Path) -> Any:
    """The parsed content of a params file, with one-line errors."""
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ParamsError(
                f"{path}: params file larger than {MAX_FILE_BYTES} bytes (allowed: at most that)"
            )
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(f"{path}: cannot read params file ({exc})") from None
    try:
        raw = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        kind = "refused YAML" if isinstance(exc, RefusedYAML) else "YAML syntax error"
        raise ParamsError(f"{path}: {kind}{where}: {problem}") from None
    if raw is None:
        raise ParamsError(f"{path}: params file is empty")
    return raw


def load_params(path: str | Path = "params.yaml", overrides: tuple[str, ...] = ()) -> Params:
    """Read ``path``, apply ``section.key=value`` overrides, validate."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    for text in overrides:
        section, name, value = parse_override(text)
        if section not in SECTION_SCHEMAS:
            allowed = ", ".join(SECTION_SCHEMAS)
            raise ParamsError(f"--set {text!r}: unknown section '{section}' (allowed: {allowed})")
        if name not in SECTION_SCHEMAS[section].model_fields:
            allowed = ", ".join(SECTION_SCHEMAS[section].model_fields)
            raise ParamsError(
                f"--set {text!r}: unknown key '{section}.{name}' (allowed: {allowed})"
            )
        if not isinstance(raw.get(section), dict):
            raw[section] = {}
        raw[section][name] = value
    return validate(raw, f"{path} with --set" if overrides else str(path))


def train_config(params: Params) -> TrainConfig:
    """The core's :class:`~xornet.core.training.TrainConfig` for ``params.train``."""
    t = params.train
    return TrainConfig(
        loss=t.loss,
        optimizer=t.optimizer,
        learning_rate=t.learning_rate,
        epochs=t.epochs,
        batch_size=t.batch_size,
        shuffle_seed=t.shuffle_seed,
        momentum=t.momentum,
        beta1=t.beta1,
        beta2=t.beta2,
        eps=t.eps,
        dtype=t.dtype,
    )
