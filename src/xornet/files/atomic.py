"""Atomic, byte-deterministic file writers.

Every output is written to a temporary file in the destination folder and
renamed over the target only once complete, so a failed or interrupted stage
leaves the previous output in place. Nothing written here depends on the
clock, the host or dict ordering: the same content gives the same bytes.
"""

import contextlib
import csv
import io
import json
import os
import signal
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

# A fixed timestamp for zip members: numpy's own savez stamps the current time.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it onto ``path`` on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed
    and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the output the usual permissions.
        os.chmod(tmp_name, _default_mode())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_writer(path) as handle:
        handle.write(data)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise arrays as an uncompressed ``.npz`` whose bytes depend only on the arrays.

    Readable by ``np.load(..., allow_pickle=False)``; members are written in
    the mapping's order with a fixed timestamp.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, value in arrays.items():
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise TypeError(f"array {name!r} has object dtype; npz files here are pickle-free")
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Atomically write a deterministic ``.npz`` (see :func:`npz_bytes`)."""
    write_bytes(path, npz_bytes(arrays))


def json_text(obj: Any) -> str:
    """Stable JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as stable JSON."""
    write_bytes(path, json_text(obj).encode())


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with ``\\n`` line endings; floats use ``repr`` so they round-trip exactly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


def write_csv(
    path: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Atomically write a CSV file (see :func:`csv_text`)."""
    write_bytes(path, csv_text(header, rows).encode())


@contextlib.contextmanager
def staged(*targets: Path) -> Iterator[list[Path]]:
    """Stand-ins for ``targets`` in a private temporary folder, same file names.

    Write the outputs there, log them to tracking from there, and only when the
    block succeeds are they copied onto ``targets`` (each atomically, with
    SIGINT/SIGTERM held back until all are in place). A failure or interrupt
    anywhere before that, tracking included, leaves every target untouched.
    """
    with tempfile.TemporaryDirectory(prefix="xornet-stage-") as tmp:
        paths = []
        for i, target in enumerate(targets):
            (Path(tmp) / str(i)).mkdir()
            paths.append(Path(tmp) / str(i) / Path(target).name)
        yield paths
        with hold_signals():
            for path, target in zip(paths, targets, strict=True):
                write_bytes(target, path.read_bytes())


@contextlib.contextmanager
def hold_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back during the block and deliver them after it, so a
    short critical step (renaming outputs, writing a run's final status) is never
    cut in half. Only in the main thread, where Python runs signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        pending.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            signal.raise_signal(pending[0])
