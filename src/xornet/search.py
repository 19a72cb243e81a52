"""Random search on DVC's queue: sample configurations, queue each with `dvc exp run --queue`.

Installed as the ``xornet-search`` command. Each sampled configuration is
validated against params.yaml's schema before anything is queued; run the
queue with ``dvc queue start -j N`` and compare in ``dvc exp show`` / MLflow.
"""

import math
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import yaml

from xornet import cli
from xornet.config.schema import load_params
from xornet.errors import Failure


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: ``kind`` is log-uniform, uniform, int or choice."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "log-uniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        return self.choices[int(rng.integers(len(self.choices)))]


def parse_range(text: str, kind: str) -> Dimension:
    """``section.key=LOW:HIGH`` into a Dimension, with one-line errors."""
    key, sep, bounds = text.partition("=")
    low_text, colon, high_text = bounds.partition(":")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        low = high = math.nan
    if not sep or not colon or "." not in key or not low < high:
        raise click.BadParameter(f"{text!r}: expected section.key=LOW:HIGH with LOW < HIGH")
    if kind == "log-uniform" and low <= 0:
        raise click.BadParameter(f"{text!r}: log-uniform bounds must be > 0")
    return Dimension(key.strip(), kind, low, high)


def parse_choice(text: str) -> Dimension:
    """``section.key=[a, b, c]`` (a YAML list) into a Dimension."""
    key, sep, values = text.partition("=")
    try:
        choices = yaml.safe_load(values) if sep else None
    except yaml.YAMLError:
        choices = None
    if "." not in key or not isinstance(choices, list) or not choices:
        raise click.BadParameter(f"{text!r}: expected section.key=[choice, choice, ...]")
    return Dimension(key.strip(), "choice", choices=tuple(choices))


def sample_configs(dimensions: list[Dimension], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` configurations, drawn in order from one seeded generator."""
    rng = np.random.default_rng(seed)
    return [{d.key: d.sample(rng) for d in dimensions} for _ in range(count)]


def format_value(value: Any) -> str:
    """A value as DVC's ``-S key=value`` understands it (YAML flow style)."""
    if isinstance(value, float):
        return repr(float(f"{value:.6g}"))
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def queue_command(config: dict[str, Any], name: str) -> list[str]:
    args = ["dvc", "exp", "run", "--queue", "--name", name]
    for key, value in config.items():
        args += ["-S", f"{key}={format_value(value)}"]
    return args


@click.command()
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1, 1000),
    default=8,
    show_default=True,
    help="Configurations to sample.",
)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--log-uniform",
    "log_uniform",
    multiple=True,
    metavar="KEY=LOW:HIGH",
    help="Sample KEY log-uniformly (learning rates), e.g. train.learning_rate=0.01:2.",
)
@click.option("--uniform", multiple=True, metavar="KEY=LOW:HIGH", help="Sample KEY uniformly.")
@click.option(
    "--int",
    "integer",
    multiple=True,
    metavar="KEY=LOW:HIGH",
    help="Sample an integer KEY in [LOW, HIGH], e.g. train.epochs=200:2000.",
)
@click.option(
    "--choice",
    multiple=True,
    metavar="KEY=[A, B, ...]",
    help="Pick KEY from a YAML list, e.g. 'model.hidden=[[2], [4], [8, 8]]'.",
)
@click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="params.yaml",
    show_default=True,
    help="Params to validate against.",
)
@click.option("--prefix", default="search", show_default=True, help="Experiment name prefix.")
@click.option("--dry-run", is_flag=True, help="Print the dvc commands instead of queueing.")
def main(count, seed, log_uniform, uniform, integer, choice, params_path, prefix, dry_run):
    """Queue COUNT random configurations as DVC experiments.

    Each configuration becomes `dvc exp run --queue --name PREFIX-SEED-I -S key=value ...`;
    start them with `dvc queue start -j 2`. Every sampled configuration is
    validated against the params schema first, so nothing bad is queued.
    """
    dimensions = [
        *(parse_range(t, "log-uniform") for t in log_uniform),
        *(parse_range(t, "uniform") for t in uniform),
        *(parse_range(t, "int") for t in integer),
        *(parse_choice(t) for t in choice),
    ]
    if not dimensions:
        raise click.UsageError(
            "nothing to search: give --log-uniform, --uniform, --int or --choice"
        )
    configs = sample_configs(dimensions, count, seed)
    commands = []
    for index, config in enumerate(configs):
        overrides = tuple(f"{k}={format_value(v)}" for k, v in config.items())
        load_params(params_path, overrides)  # a bad sample raises ParamsError: nothing queued
        commands.append(queue_command(config, f"{prefix}-{seed}-{index}"))
    for command in commands:
        click.echo(shlex.join(command))
        if not dry_run:
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                message = (done.stderr.strip().splitlines() or ["dvc failed"])[-1]
                raise Failure(f"queueing failed: {message}")
    if not dry_run:
        click.echo(f"queued {len(commands)} experiments; run them with: dvc queue start -j 2")


def entry_point() -> None:
    """Console-script entry (``xornet-search``)."""
    sys.argv[0] = "xornet-search"
    cli.run(main)
