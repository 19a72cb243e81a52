"""The courier: delivers the outbox's entries to MLflow, and the ``xornet-track`` command.

``xornet-track flush``        deliver every pending entry and retry the failed ones,
                              waiting for a courier already at work; exit 1 if any
                              entry still cannot be delivered (each named, one line).
``xornet-track status``       what is pending, what failed and why, whether a
                              courier is delivering. It only reads: it never takes
                              the courier's lock, so it never stops or delays one.
``xornet-track show ID``      one entry: what it records and, if it failed, why.
``xornet-track retry ID...``  deliver these failed entries again, now.
``xornet-track discard ID``   delete a failed entry, undelivered (the only way an
                              undelivered entry is ever deleted).

Stages start ``python -m xornet.tracking.courier deliver --root ROOT`` in the background
after they enqueue an entry, unless a courier is at work already. Only one courier
delivers at a time (an exclusive lock on ``courier.lock``); a second one exits at
once, before importing MLflow, and the one at work looks again after releasing the
lock, so no entry is left behind. A stage DVC runs hands its courier a pidfd of the
``dvc`` process, and the courier stays at work until that ends: one courier (one
MLflow import) delivers a whole ``dvc repro`` or queued experiment. Delivery is
idempotent (:mod:`xornet.tracking.mlflow_writer`): a courier stopped at any moment
— SIGTERM between two MLflow calls, SIGKILL anywhere — leaves its entry
pending, and the next delivery replaces what it left, so each entry becomes
exactly one set of runs.
"""

import contextlib
import fcntl
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from xornet.lifeline import is_pidfd
from xornet.tracking.outbox import (
    ENTRY_FILE,
    ERROR_FILE,
    TAG_MODEL,
    Outbox,
    entry_id,
    read_header,
)

# How often a courier kept at work by its runner (deliver_in_background) looks for entries.
RUNNER_POLL_S = 0.25
TRACE_ENV = "XORNET_COURIER_TRACE"  # a file the courier appends each delivery step to (tests)


class Stopped(BaseException):
    """SIGTERM reached the courier (SIGINT raises KeyboardInterrupt)."""


def _stop(signum: int, frame: Any) -> None:
    raise Stopped()


@contextlib.contextmanager
def courier_lock(outbox: Outbox, wait: bool) -> Iterator[bool]:
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
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_holder(path: Path) -> int | None:
    """The pid holding a ``flock`` on ``path``, read from ``/proc/locks`` — looking
    never takes the lock. ``None`` when nobody holds it; ``-1`` when this system
    cannot tell."""
    try:
        stat = os.stat(path)
        table = Path("/proc/locks").read_text()
    except FileNotFoundError:
        return None if not path.exists() else -1
    except OSError:
        return -1
    key = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; waiters are marked "->"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
            return int(fields[4])
    return None


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


def drain(outbox: Outbox, courier: Any) -> list[tuple[Path, str]]:
    """Deliver pending entries in sequence order until none is left; entries that fail
    (or wait for a training entry that failed) move to ``failed/`` with the reason.
    Returns those (entry, one-line reason)."""
    from xornet.tracking.mlflow_writer import DeliveryError

    failures = []
    while entries := outbox.pending():
        entry = entries[0]
        training = waiting_for(entry, outbox.failed())
        if training is not None:
            message = f"waits for its training run (entry {entry_id(training)}, not delivered)"
        else:
            try:
                run_id = courier.deliver(entry)
            except DeliveryError as exc:
                message = str(exc)
            else:
                shutil.rmtree(entry)
                _log(f"{entry_id(entry)}: delivered to run {run_id}")
                continue
        failed = outbox.set_aside(entry, message)
        _log(f"{entry_id(entry)}: not delivered: {message}")
        failures.append((failed, message))
    return failures


def running(pidfd: int, timeout: float) -> bool:
    """Whether the process behind ``pidfd`` still runs after waiting up to ``timeout``
    seconds for it to exit (a pidfd turns readable when its process exits)."""
    readable, _, _ = select.select([pidfd], [], [], timeout)
    return not readable


def deliver_in_background(root: Path, runner: int | None = None) -> None:
    """What a stage starts: deliver until the outbox is empty, unless a courier is
    already at work (it will see this stage's entry: it looks again after it
    releases the lock). MLflow is imported only once the lock is held: the import
    costs seconds, wasted by a courier that finds another at work.

    ``runner``, a pidfd of the ``dvc`` process running the stages, keeps this courier
    at work (the lock held, the outbox looked at every ``RUNNER_POLL_S``) until that
    process ends: the later stages of a ``dvc repro`` or queued experiment then start
    no courier of their own, and one courier delivers them all."""
    outbox = Outbox(root)
    courier = None
    first = True
    while first or outbox.pending():
        first = False
        with courier_lock(outbox, wait=False) as held:
            if not held:
                return
            if courier is None:
                from xornet.tracking.mlflow_writer import Courier

                courier = Courier(root)
            outbox.sweep_abandoned()
            drain(outbox, courier)
            while runner is not None and running(runner, RUNNER_POLL_S):
                if outbox.pending():
                    drain(outbox, courier)
            runner = None
            drain(outbox, courier)


def _deliver_waiting(outbox: Outbox, retry: list[Path]) -> list[tuple[Path, str]]:
    """Move ``retry`` (failed entries) back to pending and deliver everything pending,
    waiting for the lock; after releasing it, look again (a courier that found it
    held meanwhile has left its entries to us)."""
    from xornet.tracking.mlflow_writer import Courier

    courier = Courier(outbox.root)
    failures: list[tuple[Path, str]] = []
    with courier_lock(outbox, wait=True):
        outbox.sweep_abandoned()
        for entry in retry:
            if (entry / ENTRY_FILE).is_file():  # names keep their sequence
                os.replace(entry, outbox.pending_dir / entry.name)
                (outbox.pending_dir / entry.name / ERROR_FILE).unlink(missing_ok=True)
        failures += drain(outbox, courier)
    while outbox.pending():
        with courier_lock(outbox, wait=True):
            failures += drain(outbox, courier)
    return failures


def flush(root: Path) -> list[tuple[Path, str]]:
    """Retry failed entries and deliver everything pending, waiting for the lock.
    Returns the entries still not delivered, with their reasons."""
    outbox = Outbox(root)
    outbox.sweep_abandoned()
    if not outbox.pending() and not outbox.failed():
        return []
    _deliver_waiting(outbox, outbox.failed())
    return [(entry, _reason(entry)) for entry in outbox.failed()]


def _reason(entry: Path) -> str:
    try:
        return (entry / ERROR_FILE).read_text().strip() or "?"
    except OSError:
        return "?"


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


def _report(failures: list[tuple[Path, str]]) -> None:
    for entry, message in failures:
        click.echo(f"xornet-track: error: {entry_id(entry)}: {message}", err=True)
    if failures:
        sys.exit(1)


@track.command("flush")
@ROOT_OPTION
def flush_command(root: Path | None) -> None:
    """Deliver everything pending and retry failed entries; wait until done."""
    _report(flush(find_root(root)))


def courier_state(outbox: Outbox) -> str:
    holder = lock_holder(outbox.lock_file)
    if holder is None:
        return "idle"
    return "unknown (no /proc/locks)" if holder < 0 else f"delivering (pid {holder})"


@track.command("status")
@ROOT_OPTION
def status_command(root: Path | None) -> None:
    """Show pending and failed entries and whether a courier is delivering."""
    outbox = Outbox(find_root(root))
    state = courier_state(outbox)
    pending, failed = outbox.pending(), outbox.failed()
    click.echo(f"pending: {len(pending)}  failed: {len(failed)}  courier: {state}")
    for entry in failed:
        click.echo(f"failed {entry_id(entry)}: {_reason(entry)}")


def _find(outbox: Outbox, wanted: str) -> Path:
    entry = outbox.find(wanted)
    if entry is None:
        raise click.BadParameter(f"no pending or failed entry {wanted!r} (see xornet-track status)")
    return entry


@track.command("show")
@click.argument("entry_ids", metavar="ID", nargs=-1, required=True)
@ROOT_OPTION
def show_command(entry_ids: tuple[str, ...], root: Path | None) -> None:
    """Show what an entry records and, if it failed, why."""
    outbox = Outbox(find_root(root))
    for wanted in entry_ids:
        entry = _find(outbox, wanted)
        header = _header_or_empty(entry)
        state = "failed" if entry.parent == outbox.failed_dir else "pending"
        click.echo(f"entry {entry_id(entry)}: {state}, sequence {entry.name.split('-', 1)[0]}")
        for key in ("kind", "stage", "status", "experiment", "run_name", "section"):
            if header.get(key):
                click.echo(f"  {key}: {header[key]}")
        if header.get("store"):
            click.echo(f"  store: {header['store'].get('uri')}")
        for key in ("start_ms", "end_ms"):
            if header.get(key):
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(header[key] / 1000))
                click.echo(f"  {key[:-3]}: {stamp}")
        if header.get("params"):
            shown = " ".join(f"{k}={v}" for k, v in sorted(header["params"].items()))
            click.echo(f"  params: {shown}")
        if header.get("error"):
            click.echo(f"  stage error: {header['error']}")
        if state == "failed":
            click.echo(f"  not delivered: {_reason(entry)}")


@track.command("retry")
@click.argument("entry_ids", metavar="ID", nargs=-1, required=True)
@ROOT_OPTION
def retry_command(entry_ids: tuple[str, ...], root: Path | None) -> None:
    """Deliver these failed entries again now (and whatever is pending)."""
    outbox = Outbox(find_root(root))
    entries = [_find(outbox, wanted) for wanted in entry_ids]
    retry = [e for e in entries if e.parent == outbox.failed_dir]
    ids = {entry_id(e) for e in entries}
    failures = _deliver_waiting(outbox, retry)
    _report([(entry, message) for entry, message in failures if entry_id(entry) in ids])


@track.command("discard")
@click.argument("wanted", metavar="ID")
@ROOT_OPTION
def discard_command(wanted: str, root: Path | None) -> None:
    """Delete the failed entry ID without delivering it (give its full id)."""
    outbox = Outbox(find_root(root))
    entry = _find(outbox, wanted)
    if entry.parent != outbox.failed_dir:
        raise click.BadParameter(f"entry {wanted} is pending, not failed: it will be delivered")
    shutil.rmtree(entry)
    click.echo(f"discarded {entry_id(entry)} (never delivered)")


@track.command("deliver", hidden=True)
@ROOT_OPTION
@click.option(
    "--runner-pidfd",
    type=click.IntRange(min=0),
    default=None,
    help="An inherited pidfd of the process running the stages: deliver until it ends.",
)
def deliver_command(root: Path | None, runner_pidfd: int | None) -> None:
    """Deliver pending entries unless another courier is at work (started by stages)."""
    if runner_pidfd is not None and not is_pidfd(runner_pidfd):
        raise click.BadParameter(
            f"{runner_pidfd} is not an open pidfd (stages pass one of the process they run for)",
            param_hint="'--runner-pidfd'",
        )
    deliver_in_background(find_root(root), runner_pidfd)


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
