"""A stage stops when whoever started it is gone.

DVC runs a stage as ``$SHELL -c "<cmd>"``. bash replaces itself with a lone command,
so the stage's parent is DVC; dash (``/bin/sh`` on Debian and Ubuntu) does not, and
the parent is a shell that waits on, orphaned, after DVC is terminated. A stage that
only watched its parent would then train on and write outputs nobody records.

So the stage watches its *guardians*: the parent (the kernel's parent-death signal)
and, while a guardian is a ``<shell> -c`` wrapper, that wrapper's parent too (a
pidfd polled by a daemon thread). When any of them exits the stage gets SIGTERM,
as if DVC had sent it. Linux only; elsewhere a no-op. Processes the stage starts do
not inherit any of it: its tracking courier lives on, and is handed a pidfd of the
process the stage runs for (:func:`runner_pidfd`) to keep delivering while it lives.
"""

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Shells that run `-c` commands and may stay as the stage's parent.
SHELLS = frozenset({"sh", "dash", "bash", "zsh", "ksh", "mksh", "busybox", "fish"})
# A stage started through nested wrappers (`sh -c "sh -c ..."`) is watched this far up.
MAX_WRAPPERS = 4

# The process that started this one, as early as we can tell (when this is imported).
PARENT_AT_IMPORT = os.getppid()


def _argv(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    return int(stat.rsplit(")", 1)[1].split()[1])


def is_shell_wrapper(pid: int) -> bool:
    """Whether process ``pid`` is a non-interactive shell running a ``-c`` command."""
    try:
        argv = _argv(pid)
    except OSError:
        return False
    return bool(argv) and Path(argv[0]).name in SHELLS and "-c" in argv[1:]


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def _watch(pidfds: list[int]) -> None:
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    poller.poll()  # a pidfd becomes readable when its process exits
    _terminate_self()


def _watch_wrapper_parent(wrapper: int, parent: int) -> int | None:
    """A pidfd for ``parent``, checked to be the parent of ``wrapper`` still (a PID
    reused between reading it and opening it would no longer be); ``None`` if it is
    gone."""
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        return None
    try:
        if _parent_of(wrapper) == parent:
            return pidfd
    except (OSError, ValueError, IndexError):
        pass
    os.close(pidfd)
    return None


def is_pidfd(fd: int) -> bool:
    """Whether ``fd`` is an open pidfd of this process (its fdinfo names a PID)."""
    try:
        info = Path(f"/proc/self/fdinfo/{fd}").read_text()
    except OSError:
        return False
    return any(line.startswith("Pid:") for line in info.splitlines())


def runner_pidfd() -> int | None:
    """A pidfd for the process this one runs for: its parent or, past ``<shell> -c``
    wrappers, the process they run for (``dvc``, for a stage DVC runs). Checked to
    be that process still after opening, so a reused PID is never watched. ``None``
    when it is gone already or this system cannot tell (no ``/proc``, no pidfds)."""
    if not sys.platform.startswith("linux") or os.getppid() != PARENT_AT_IMPORT:
        return None
    child, parent = os.getpid(), PARENT_AT_IMPORT
    try:
        for _ in range(MAX_WRAPPERS):
            if not is_shell_wrapper(parent):
                break
            child, parent = parent, _parent_of(parent)
        if parent <= 1:
            return None
        return _watch_wrapper_parent(child, parent)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def die_with_guardians() -> None:
    """Have this process receive SIGTERM when its parent, or the process a shell
    wrapper parent runs for, exits. A guardian already gone means SIGTERM now.
    (A parent gone before this module was imported, in the stage's first second,
    is not noticed.)"""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != PARENT_AT_IMPORT:
        _terminate_self()
        return
    pidfds: list[int] = []
    wrapper = PARENT_AT_IMPORT
    try:
        for _ in range(MAX_WRAPPERS):
            if wrapper <= 1 or not is_shell_wrapper(wrapper):
                break
            parent = _parent_of(wrapper)
            if parent <= 1:  # init, which outlives us (or a wrapper orphaned already)
                break
            pidfd = _watch_wrapper_parent(wrapper, parent)
            if pidfd is None:
                _terminate_self()
                break
            pidfds.append(pidfd)
            wrapper = parent
    except (OSError, ValueError, IndexError, AttributeError):
        pass  # no /proc or no pidfd_open (Linux < 5.3): the parent-death signal only
    if pidfds:
        threading.Thread(target=_watch, args=(pidfds,), name="lifeline", daemon=True).start()
