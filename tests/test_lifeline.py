"""`xornet.lifeline.runner_pidfd`: the process a stage runs for, found past the shell
wrappers DVC puts between itself and the stage, as a pidfd of that very process."""

import os
import shlex
import subprocess
import sys

import pytest

from conftest import base_env

# Prints the PID behind runner_pidfd()'s pidfd (the kernel's, from fdinfo), or "None".
CHILD = """
from pathlib import Path
from xornet.lifeline import runner_pidfd
fd = runner_pidfd()
if fd is None:
    print("None")
else:
    info = Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()
    print(int(dict(line.split(":", 1) for line in info)["Pid"]))
"""
# A runner: starts ARGV as its child and prints its own PID, then the child's output.
LAUNCHER = """
import os, subprocess, sys
print(os.getpid(), flush=True)
subprocess.run(sys.argv[1:], check=True)
"""


def runner_and_found(*wrapper: str) -> tuple[int, str]:
    child = f"{shlex.quote(sys.executable)} -c {shlex.quote(CHILD)}"
    command = [*wrapper, child] if wrapper else [sys.executable, "-c", CHILD]
    out = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    return int(out[0]), out[1]


def test_a_direct_child_finds_its_parent():
    runner, found = runner_and_found()
    assert found == str(runner)


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_a_child_under_a_shell_wrapper_finds_the_process_the_wrapper_runs_for(shell):
    """dash stays as the stage's parent, bash replaces itself: the runner either way."""
    runner, found = runner_and_found(shell, "-c")
    assert found == str(runner)


def test_nested_wrappers_are_passed_too():
    inner = f"{shlex.quote(sys.executable)} -c {shlex.quote(CHILD)}; true"
    runner, found = runner_and_found("/bin/sh", "-c", f"/bin/sh -c {shlex.quote(inner)}; true")
    assert found == str(runner)


def test_is_pidfd_tells_a_pidfd_from_other_and_closed_fds(tmp_path):
    from xornet.lifeline import is_pidfd

    pidfd = os.pidfd_open(os.getpid())
    with open(tmp_path / "file", "w") as plain:
        read_end, write_end = os.pipe()
        try:
            assert is_pidfd(pidfd)
            assert not is_pidfd(plain.fileno())
            assert not is_pidfd(read_end)
        finally:
            for fd in (pidfd, read_end, write_end):
                os.close(fd)
    assert not is_pidfd(pidfd)  # closed now
