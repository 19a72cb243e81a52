"""Servers the tests start and stop themselves: a process group per server, stopped
by its id (nothing left running), and the one `mlflow server` command line they use."""

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN_DIR


def mlflow_server(port: int, backend_store_uri: str, *options: str) -> list[str]:
    """`mlflow server` on 127.0.0.1:``port`` with one worker. Start it with
    :func:`conftest.base_env`, which turns off MLflow's job runner."""
    return [
        str(BIN_DIR / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", backend_store_uri, "--workers", "1", *options,
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(
    url: str, proc: subprocess.Popen, timeout: float = 90, any_status: bool = False
) -> None:
    """Until ``url`` answers with a success, or with any HTTP status when
    ``any_status`` (a server behind auth answers 401 once it is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            if any_status:
                return
            time.sleep(0.5)
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout} s")


def start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A server process in its own session, so it and its workers stop together."""
    handle = open(log, "w")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc.log = handle  # type: ignore[attr-defined]
    return proc


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen) -> None:
    """Stop the server by its process id: SIGTERM to the process group it leads (its
    workers too), SIGKILL after 20 s; return once nothing of it is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if group_alive(proc.pid):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader
            if proc.returncode is not None and not group_alive(proc.pid):
                break
            time.sleep(0.2)
        else:
            continue
        break
    proc.log.close()  # type: ignore[attr-defined]
    assert proc.returncode is not None and not group_alive(proc.pid)


def group_commands(proc: subprocess.Popen) -> list[str]:
    """The command lines of the processes in the group ``proc`` leads (a server
    started by :func:`start` and its workers)."""
    commands = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                if os.getpgid(int(entry.name)) == proc.pid:
                    commands.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return commands
