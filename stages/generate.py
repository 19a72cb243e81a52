"""Stage `generate`: make the seeded dataset and split it into train and test files."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's library

import click

from xornet import cli
from xornet.stages import generate

PATH = click.Path(dir_okay=False, path_type=Path)


@click.command()
@cli.params_options
@click.option("--train-out", type=PATH, default="data/train.npz", show_default=True)
@click.option("--test-out", type=PATH, default="data/test.npz", show_default=True)
def main(params_path, preset, overrides, train_out, test_out):
    """Generate the dataset described by the params' `data` section.

    Reads params `data` (kind, n_samples, test_fraction, noise, n_bits, seed).
    Writes TRAIN-OUT and TEST-OUT: .npz files with X (features, n) float and
    y (1, n) int 0/1.
    """
    params = cli.load(params_path, overrides, preset)
    train_set, test_set = generate.run_generate(params, train_out, test_out)
    click.echo(f"generate: {train_set.n} train / {test_set.n} test samples ({params.data.kind})")


if __name__ == "__main__":
    cli.run(main)
