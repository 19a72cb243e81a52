"""Stage `evaluate`: score the trained model on the test set."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's library

import click

from xornet import cli
from xornet.stages import evaluate

PATH = click.Path(dir_okay=False, path_type=Path)


@click.command()
@cli.params_options
@click.option("--model", "model_path", type=PATH, default="models/model.npz", show_default=True)
@click.option("--test-data", type=PATH, default="data/test.npz", show_default=True)
@click.option("--metrics-out", type=PATH, default="metrics/evaluate.json", show_default=True)
@click.option("--predictions-out", type=PATH, default="metrics/predictions.csv", show_default=True)
def main(params_path, preset, overrides, model_path, test_data, metrics_out, predictions_out):
    """Evaluate MODEL on TEST-DATA at the params' evaluate.threshold.

    Reads MODEL, TEST-DATA and params `evaluate`, `train.loss`, `tracking`.
    Writes METRICS-OUT (accuracy, loss, precision, recall, f1, tp/fp/tn/fn) and
    PREDICTIONS-OUT (actual, predicted per test sample, for DVC's confusion
    plot). Attaches the metrics to the MLflow run that trained MODEL.
    """
    params = cli.load(params_path, overrides, preset)
    root = cli.project_root(__file__)
    with cli.attached_run(params, root, model_path, "evaluate") as logger:
        metrics = evaluate.run_evaluate(
            params, model_path, test_data, metrics_out, predictions_out, logger
        )
    click.echo(f"evaluate: accuracy={metrics['accuracy']:.4f} loss={metrics['loss']:.6g}")


if __name__ == "__main__":
    cli.run(main)
