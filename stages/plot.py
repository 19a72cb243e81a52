"""Stage `plot`: draw the figures of the trained run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's library

import click

from xornet import cli
from xornet.stages import plot

PATH = click.Path(dir_okay=False, path_type=Path)


@click.command()
@cli.params_options
@click.option(
    "--history", "history_path", type=PATH, default="metrics/history.csv", show_default=True
)
@click.option("--model", "model_path", type=PATH, default="models/model.npz", show_default=True)
@click.option("--snapshots", type=PATH, default="models/snapshots.npz", show_default=True)
@click.option("--train-data", type=PATH, default="data/train.npz", show_default=True)
@click.option("--test-data", type=PATH, default="data/test.npz", show_default=True)
@click.option("--predictions", type=PATH, default="metrics/predictions.csv", show_default=True)
@click.option(
    "--diagnosis",
    type=PATH,
    default="metrics/diagnosis.json",
    show_default=True,
    help="The train stage's diagnosis, marked on the learning curves.",
)
@click.option(
    "--learning-curves-out", type=PATH, default="plots/learning_curves.png", show_default=True
)
@click.option(
    "--decision-boundary-out", type=PATH, default="plots/decision_boundary.png", show_default=True
)
@click.option("--confusion-out", type=PATH, default="plots/confusion_matrix.png", show_default=True)
@click.option("--animation-out", type=PATH, default="plots/training.gif", show_default=True)
def main(
    params_path,
    preset,
    overrides,
    history_path,
    model_path,
    snapshots,
    train_data,
    test_data,
    predictions,
    diagnosis,
    learning_curves_out,
    decision_boundary_out,
    confusion_out,
    animation_out,
):
    """Draw the run's figures from its outputs, without retraining.

    Reads HISTORY, MODEL, SNAPSHOTS, TRAIN-DATA, TEST-DATA, PREDICTIONS, DIAGNOSIS and
    params `plot`, `tracking` (plus `data`, `model`, `train` for the captions).
    Writes the learning-curve, decision-boundary and confusion-matrix PNGs and
    the training GIF, and attaches them to the MLflow run that trained MODEL.
    """
    params = cli.load(params_path, overrides, preset)
    inputs = plot.PlotInputs(
        history_path, model_path, snapshots, train_data, test_data, predictions, diagnosis
    )
    outputs = plot.PlotOutputs(
        learning_curves_out, decision_boundary_out, confusion_out, animation_out
    )
    root = cli.project_root(__file__)
    with cli.attached_run(params, root, model_path, "plot") as logger:
        plot.run_plot(params, inputs, outputs, logger)
    click.echo(f"plot: figures written to {learning_curves_out.parent}")


if __name__ == "__main__":
    cli.run(main)
