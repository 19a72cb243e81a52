"""Stage `train`: fit the network and record its history, metrics and weight snapshots."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's library

import click

from xornet import cli
from xornet.stages import train

PATH = click.Path(dir_okay=False, path_type=Path)


@click.command()
@cli.params_options
@click.option("--train-data", type=PATH, default="data/train.npz", show_default=True)
@click.option(
    "--test-data",
    type=PATH,
    default="data/test.npz",
    show_default=True,
    help="Validation data for the per-epoch curves.",
)
@click.option(
    "--init-from",
    type=PATH,
    default=None,
    help="Continue training from this saved model (its architecture must match).",
)
@click.option("--model-out", type=PATH, default="models/model.npz", show_default=True)
@click.option("--snapshots-out", type=PATH, default="models/snapshots.npz", show_default=True)
@click.option("--history-out", type=PATH, default="metrics/history.csv", show_default=True)
@click.option("--metrics-out", type=PATH, default="metrics/train.json", show_default=True)
@click.option(
    "--diagnosis-out",
    type=PATH,
    default="metrics/diagnosis.json",
    show_default=True,
    help="Why the loss did or did not converge: verdict, evidence, what to try (JSON).",
)
def main(
    params_path,
    preset,
    overrides,
    train_data,
    test_data,
    init_from,
    model_out,
    snapshots_out,
    history_out,
    metrics_out,
    diagnosis_out,
):
    """Train the MLP of the params' `model` section with its `train` settings.

    Reads TRAIN-DATA, TEST-DATA (validation) and params `model`, `train`,
    `tracking`. Writes MODEL-OUT (weights + architecture, .npz), SNAPSHOTS-OUT
    (weights every train.snapshot_every epochs), HISTORY-OUT (epoch, train_loss,
    val_loss, val_accuracy), METRICS-OUT (final metrics, JSON) and DIAGNOSIS-OUT
    (the run's diagnosis, also printed as the last line). Records an
    MLflow run unless tracking is off (tracking.enabled or XORNET_TRACKING=0);
    a background courier delivers it (`xornet-track flush` waits for it).
    """
    params = cli.load(params_path, overrides, preset)
    outputs = train.TrainOutputs(model_out, history_out, metrics_out, snapshots_out, diagnosis_out)
    root = cli.project_root(__file__)
    with (
        cli.training_run(params, root, [train_data, test_data]) as logger,
        cli.progress(params.train.epochs, "training") as progress,
    ):
        run = train.run_train(params, train_data, test_data, outputs, logger, init_from, progress)
    summary = train.train_summary(run.result.history)
    click.echo("train: " + ", ".join(f"{k}={v:.6g}" for k, v in summary.items()))
    click.echo(f"train: diagnosis: {run.diagnosis.line()}")


if __name__ == "__main__":
    cli.run(main)
