"""Model files: a network's weights plus its architecture JSON in a pickle-free ``.npz``.

``Wl`` is (out, in) and ``bl`` (out, 1), as in the tutorial; the
``architecture`` entry makes the file self-describing, so
``np.load(path, allow_pickle=False)`` reads everything. The train stage's
snapshots file holds the same arrays stacked over snapshots, plus ``epoch``.
"""

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xornet.core.model import MLP, Architecture
from xornet.errors import ModelFileError
from xornet.files import npz_problem
from xornet.files.atomic import write_npz


def save_model(model: MLP, path: str | Path) -> None:
    """Write a self-describing, pickle-free ``.npz`` atomically."""
    write_npz(path, model.to_arrays())


def _read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ModelFileError(f"{path}: {what} file not found")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("a single .npy array")
        with archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(
            f"{path}: not a readable .npz {what} file ({npz_problem(exc)})"
        ) from None


def load_model(path: str | Path) -> MLP:
    """Read a model written by :func:`save_model`; raises ModelFileError naming the file."""
    path = Path(path)
    return MLP.from_arrays(_read_npz(path, "model"), source=str(path))


@dataclass(frozen=True)
class Snapshots:
    """Weights saved during training: ``epochs`` (k,) and each parameter stacked as
    (k, *shape), e.g. ``params["W1"]`` is (k, out, in)."""

    epochs: np.ndarray
    arch: Architecture
    params: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.epochs)

    def model(self, index: int) -> MLP:
        """The network as it was at snapshot ``index``."""
        return MLP(self.arch, {name: value[index] for name, value in self.params.items()})


def load_snapshots(path: Path) -> Snapshots:
    """Read the train stage's snapshots file; raises ModelFileError naming the file."""
    arrays = _read_npz(Path(path), "snapshots")
    if "epoch" not in arrays or arrays["epoch"].ndim != 1 or arrays["epoch"].size == 0:
        raise ModelFileError(f"{path}: needs a non-empty 1-D 'epoch' array")
    epochs = arrays.pop("epoch")
    k = len(epochs)
    stacked = {name: value for name, value in arrays.items() if name != "architecture"}
    if any(value.ndim < 1 or value.shape[0] != k for value in stacked.values()):
        raise ModelFileError(f"{path}: every weight array must have {k} snapshots (axis 0)")
    if "architecture" not in arrays:
        raise ModelFileError(f"{path}: no 'architecture' entry")
    # MLP.from_arrays validates the architecture and every shape, on the first snapshot.
    first = MLP.from_arrays(
        {"architecture": arrays["architecture"], **{k: v[0] for k, v in stacked.items()}},
        source=str(path),
    )
    if not all(np.all(np.isfinite(value)) for value in stacked.values()):
        raise ModelFileError(f"{path}: snapshots hold non-finite values")
    params = {name: stacked[name].astype(np.float64) for name in first.params}
    return Snapshots(epochs.astype(np.int64), first.arch, params)
