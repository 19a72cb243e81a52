"""Start couriers for one project root by forking a process that has imported MLflow.

Run as ``python tests/warm_courier.py ROOT``. Each line read on stdin forks a child
that runs ``xornet-track deliver --root ROOT`` (the courier a stage starts: the same
entry point, in a new session, output discarded) and prints the child's pid. A courier
started from scratch spends about two CPU-seconds importing MLflow and opening its
store before the first delivery step; the fault tests start one per kill.
Exited children are reaped at once, so a pid that no longer answers has ended.
"""

import os
import signal
import sys

# What a courier imports before and while delivering; nothing is opened or started.
import mlflow  # noqa: F401
import mlflow.models  # noqa: F401
import mlflow.pyfunc  # noqa: F401
import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import pandas  # noqa: F401

import xornet.tracking.mlflow_writer  # noqa: F401
from xornet.tracking.courier import entry_point


def courier(root: str) -> None:
    """In the forked child: become the courier ``xornet-track deliver`` starts."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # MLflow may wait for its own children
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    sys.argv = ["xornet-track", "deliver", "--root", root]
    code = 1
    try:
        entry_point()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os._exit(code)  # no atexit handlers of the parent's (coverage's data file)


def main() -> None:
    (root,) = sys.argv[1:]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited children
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            courier(root)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
