"""Dataset files: ``X`` (features, n) float and ``y`` (1, n) int 0/1 in a pickle-free ``.npz``."""

import zipfile
from pathlib import Path

import numpy as np

from xornet.core.data import Dataset
from xornet.errors import DataFileError
from xornet.files import npz_problem
from xornet.files.atomic import write_npz


def save_dataset(path: str | Path, data: Dataset) -> None:
    """Write ``X`` and ``y`` to a deterministic, pickle-free ``.npz`` (atomically)."""
    write_npz(path, {"X": data.X, "y": data.y})


def load_dataset(path: str | Path) -> Dataset:
    """Read and validate a dataset written by :func:`save_dataset`."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: data file not found")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array
            raise DataFileError(f"{path}: not a readable .npz data file (a single .npy array)")
        with archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise DataFileError(f"{path}: missing array(s) {', '.join(sorted(missing))}")
            X, y = archive["X"], archive["y"]
    except DataFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataFileError(f"{path}: not a readable .npz data file ({npz_problem(exc)})") from None
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1 or X.dtype.kind not in "fiu":
        raise DataFileError(
            f"{path}: X must be a 2-D numeric (features, n) array, got {X.dtype} {X.shape}"
        )
    if y.shape != (1, X.shape[1]) or y.dtype.kind not in "iub":
        raise DataFileError(
            f"{path}: y must be integer with shape (1, {X.shape[1]}), got {y.dtype} {y.shape}"
        )
    if not np.all(np.isfinite(X)):
        raise DataFileError(f"{path}: X holds non-finite values")
    if not np.all((y == 0) | (y == 1)):
        raise DataFileError(f"{path}: y must hold only 0/1 labels")
    return Dataset(X.astype(np.float64), y.astype(np.int64))
