"""Measure a test's subprocess only if it imports xornet.

``coverage``'s own subprocess patch starts measuring in every Python process the
tests start: the dvc CLI, DVC's queue workers, ``mlflow server``. Tracing their
calls cost about a third more CPU time in the queued-sweep tests, for no xornet
line. ``conftest.base_env`` moves coverage's configuration from
``COVERAGE_PROCESS_CONFIG`` (which the ``.pth`` file coverage installs acts on at
start-up) to ``CONFIG_VARIABLE`` and puts this folder on ``PYTHONPATH``; the
``sitecustomize`` here calls :func:`install`, and coverage starts at the first
``import xornet``, before any of its lines run.
"""

import os
import sys

CONFIG_VARIABLE = "XORNET_TESTS_COVERAGE_CONFIG"


class StartCoverageOnXornetImport:
    """A meta path finder that finds nothing: it starts coverage, then steps aside."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] != "xornet":
            return None
        sys.meta_path.remove(StartCoverageOnXornetImport)
        config = os.environ.get(CONFIG_VARIABLE)
        if config:
            import coverage

            os.environ["COVERAGE_PROCESS_CONFIG"] = config
            coverage.process_startup()
            # Starting sets the variable again (patch = subprocess); this process's
            # own children get the lazy start too.
            os.environ.pop("COVERAGE_PROCESS_CONFIG", None)
        return None


def install() -> None:
    if os.environ.get(CONFIG_VARIABLE) and StartCoverageOnXornetImport not in sys.meta_path:
        sys.meta_path.insert(0, StartCoverageOnXornetImport)


install()
