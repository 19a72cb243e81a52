"""Stage `study`: train every configuration of a small grid over many seeds and summarise."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's library

import click

from xornet import cli
from xornet.stages import study
from xornet.study import convergence


@click.command()
@cli.params_options
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="study",
    show_default=True,
    help="Folder for summary.csv, summary.md, summary.json, seeds.csv and convergence.png.",
)
def main(params_path, preset, overrides, out_dir):
    """Train each configuration of the params' `study.grid` over `study.seeds` seeds.

    Reads params `study`, `data`, `model`, `train` (the grid overrides the
    last three), `plot.dpi` and `tracking`; generates the data from `data`.
    Writes to OUT-DIR: summary.csv and summary.md (per configuration: success
    rate, epochs to 100 % test accuracy, final-loss quantiles, unsolved seeds
    ending at ln 2, at ln 2 / 2 or elsewhere, diverged seeds), summary.json (the same, for dvc
    metrics), seeds.csv (one row per seed) and convergence.png.
    """
    params = cli.load(params_path, overrides, preset)
    outputs = convergence.StudyOutputs(
        out_dir / "summary.csv",
        out_dir / "summary.md",
        out_dir / "summary.json",
        out_dir / "seeds.csv",
        out_dir / "convergence.png",
    )
    with cli.progress(convergence.total_epochs(params), "study") as progress:
        results = study.run_study(params, outputs, progress)
    cli.study_run(params, cli.project_root(__file__), results, outputs.files())
    for line in convergence.report_lines(results):
        click.echo(f"study: {line}")


if __name__ == "__main__":
    cli.run(main)
