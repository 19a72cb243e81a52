"""Stage ``generate``: the seeded train/test datasets of params ``data``."""

from pathlib import Path

from xornet.config import footprint
from xornet.config.schema import Params
from xornet.core.data import Dataset, generate
from xornet.files.datasets import save_dataset


def run_generate(params: Params, train_out: Path, test_out: Path) -> tuple[Dataset, Dataset]:
    """Generate the dataset of ``params.data`` and write the train/test ``.npz`` files."""
    footprint.check(footprint.generate_estimate(params))
    d = params.data
    train_set, test_set = generate(d.kind, d.n_samples, d.test_fraction, d.seed, d.noise, d.n_bits)
    save_dataset(train_out, train_set)
    save_dataset(test_out, test_set)
    return train_set, test_set
