"""The courier: delivers the outbox's entries to MLflow, and the ``xornet-track`` command.

``xornet-track flush``   deliver every pending entry and retry the failed ones,
                         waiting for a courier already at work; exit 1 if any
                         entry still cannot be delivered (each named, one line).
``xornet-track status``  what is pending, what failed and why, whether a
                         courier is delivering.

Stages start ``python -m xornet.tracking.courier deliver --root ROOT`` in the background
after they enqueue an entry. Only one courier delivers at a time (an exclusive
lock on ``courier.lock``); a second one exits at once, and the one at work
looks again after releasing the lock, so no entry is left behind. SIGTERM
stops a courier between two MLflow calls: the run it was writing ends KILLED
and its entry stays pending for the next courier, which deletes that run and
delivers the entry again.
"""

import contextlib
import fcntl
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from xornet.tracking.outbox import TAG_MODEL, Outbox, read_header

ERROR_FILE = "error.txt"


class Stopped(BaseException):
    """SIGTERM reached the courier (SIGINT raises KeyboardInterrupt)."""


def _stop(signum: int, frame: Any) -> None:
    raise Stopped()


@contextlib.contextmanager
def courier_lock(outbox: Outbox, wait: bool, record_pid: bool = True) -> Iterator[bool]:
    """Hold the outbox's courier lock; yields False (not held) when ``wait`` is off
    and another courier holds it. The holder's pid is written into the lock file."""
    outbox.make_dirs()
    with open(outbox.lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            if record_pid:  # who is delivering, for `status`
                handle.truncate(0)
                handle.write(f"{os.getpid()}\n")
                handle.flush()
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} courier[{os.getpid()}]: {message}", flush=True)


def _header_or_empty(entry: Path) -> dict[str, Any]:
    try:
        return read_header(entry)
    except (OSError, ValueError):
        return {}


def waiting_for(entry: Path, failed: list[Path]) -> Path | None:
    """The failed training entry of the model an evaluate/plot ``entry`` belongs to, if
    there is one: such an entry waits beside it, so that a retry delivers the training
    run first and the results attach to it instead of to a run of their own."""
    header = _header_or_empty(entry)
    if header.get("kind") != "attach":
        return None
    for other in failed:
        trained = _header_or_empty(other)
        if trained.get("kind") == "train" and trained.get("tags", {}).get(
            f"{TAG_MODEL}.sha256"
        ) == header.get("model_sha256"):
            return other
    return None


def _set_aside(outbox: Outbox, entry: Path, message: str) -> None:
    (entry / ERROR_FILE).write_text(message + "\n")
    os.replace(entry, outbox.failed_dir / entry.name)
    _log(f"{entry.name}: not delivered: {message}")


def drain(outbox: Outbox, courier: Any) -> list[tuple[Path, str]]:
    """Deliver pending entries, oldest first, until none is left; entries that fail
    (or wait for a training entry that failed) move to ``failed/``. Returns those
    (entry, one-line reason)."""
    from xornet.tracking.mlflow_writer import DeliveryError

    failures = []
    while entries := outbox.pending():
        entry = entries[0]
        training = waiting_for(entry, outbox.failed())
        if training is not None:
            message = f"waits for its training run (entry {training.name}, not delivered)"
            _set_aside(outbox, entry, message)
            failures.append((entry, message))
            continue
        try:
            run_id = courier.deliver(entry)
        except DeliveryError as exc:
            _set_aside(outbox, entry, str(exc))
            failures.append((entry, str(exc)))
            continue
        shutil.rmtree(entry)
        _log(f"{entry.name}: delivered to run {run_id}")
    return failures


def sweep_abandoned(outbox: Outbox) -> list[Path]:
    """Remove staging folders of stages that died without closing them (SIGKILL, power
    loss): a folder is named ``<pid>-<time>`` after the stage that records into it."""
    removed = []
    for folder in outbox.staging.iterdir() if outbox.staging.is_dir() else ():
        pid = folder.name.split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            _log(f"removed {folder.name}: its stage (pid {pid}) ended without recording")
        except PermissionError:  # alive, another user's
            pass
    return removed


def deliver_in_background(root: Path) -> None:
    """What a stage starts: deliver until the outbox is empty, unless a courier is
    already at work (it will see this stage's entry: it looks again after it
    releases the lock)."""
    from xornet.tracking.mlflow_writer import Courier

    outbox = Outbox(root)
    courier = Courier(root)
    while outbox.pending():
        with courier_lock(outbox, wait=False) as held:
            if not held:
                return
            sweep_abandoned(outbox)
            drain(outbox, courier)


def flush(root: Path) -> list[tuple[Path, str]]:
    """Retry failed entries and deliver everything pending, waiting for the lock."""
    from xornet.tracking.mlflow_writer import Courier

    outbox = Outbox(root)
    sweep_abandoned(outbox)
    if not outbox.pending() and not outbox.failed():
        return []
    with courier_lock(outbox, wait=True):
        for entry in outbox.failed():  # names keep their original order
            (entry / ERROR_FILE).unlink(missing_ok=True)
            os.replace(entry, outbox.pending_dir / entry.name)
        return drain(outbox, Courier(root))


# ------------------------------------------------------------------ the command
def find_root(root: Path | None) -> Path:
    """``root`` when given; else ``DVC_ROOT`` when set, else the nearest folder from the
    current one up holding ``dvc.yaml``, else the current folder."""
    if root is not None:
        return root.resolve()
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    start = Path.cwd().resolve()
    for folder in (start, *start.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return start


ROOT_OPTION = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project root (where mlflow.db and .xornet/ are); default: the nearest folder "
    "holding dvc.yaml, from the current one up.",
)


@click.group()
def track() -> None:
    """Deliver the runs the stages recorded to MLflow (they do it in the background)."""


@track.command("flush")
@ROOT_OPTION
def flush_command(root: Path | None) -> None:
    """Deliver everything pending and retry failed entries; wait until done."""
    failures = flush(find_root(root))
    for entry, message in failures:
        click.echo(f"xornet-track: error: {entry.name}: {message}", err=True)
    if failures:
        sys.exit(1)


@track.command("status")
@ROOT_OPTION
def status_command(root: Path | None) -> None:
    """Show pending and failed entries and whether a courier is delivering."""
    outbox = Outbox(find_root(root))
    courier = "idle"
    if outbox.path.is_dir():
        with courier_lock(outbox, wait=False, record_pid=False) as held:
            if not held:
                courier = f"delivering (pid {outbox.lock_file.read_text().strip()})"
    pending, failed = outbox.pending(), outbox.failed()
    click.echo(f"pending: {len(pending)}  failed: {len(failed)}  courier: {courier}")
    for entry in failed:
        error = entry / ERROR_FILE
        reason = error.read_text().strip() if error.is_file() else "?"
        click.echo(f"failed {entry.name}: {reason}")


@track.command("deliver", hidden=True)
@ROOT_OPTION
def deliver_command(root: Path | None) -> None:
    """Deliver pending entries unless another courier is at work (started by stages)."""
    deliver_in_background(find_root(root))


def entry_point() -> None:
    """Entry point: SIGTERM/SIGINT stop delivery cleanly (exit 143/130)."""
    signal.signal(signal.SIGTERM, _stop)
    try:
        track.main(standalone_mode=False)
    except click.ClickException as exc:
        click.echo(f"xornet-track: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except Stopped:
        click.echo("xornet-track: terminated; undelivered entries stay pending", err=True)
        sys.exit(143)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("xornet-track: interrupted; undelivered entries stay pending", err=True)
        sys.exit(130)
    sys.exit(0)


if __name__ == "__main__":
    entry_point()
