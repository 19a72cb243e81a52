"""Data and models travel through a DVC remote: push, wipe, pull, byte-identical."""

import hashlib
import shutil

import pytest

from conftest import OUTPUTS, make_clone, run

pytestmark = pytest.mark.slow


def test_push_then_pull_restores_every_output_byte_identical(tmp_path):
    repo = make_clone(tmp_path / "xornet")
    remote = tmp_path / "remote"
    run(["dvc", "repro"], repo)
    before = {p: hashlib.sha256((repo / p).read_bytes()).hexdigest() for p in OUTPUTS}
    run(["dvc", "remote", "add", "-d", "store", str(remote)], repo)
    run(["dvc", "push"], repo)
    assert any(remote.rglob("*")), "nothing pushed"

    shutil.rmtree(repo / ".dvc" / "cache")
    for path in OUTPUTS:
        (repo / path).unlink()
    assert "deleted" in run(["dvc", "status"], repo).stdout

    run(["dvc", "pull"], repo)
    after = {p: hashlib.sha256((repo / p).read_bytes()).hexdigest() for p in OUTPUTS}
    assert after == before
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout
