"""Measure a test's subprocess only if it imports xornet.

``coverage``'s own subprocess patch starts measuring in every Python process the
tests start: the dvc CLI, DVC's queue workers, ``mlflow server``. Tracing their
calls cost about a third more CPU time in the queued-sweep tests, for no xornet
line. ``conftest.base_env`` moves coverage's configuration from
``COVERAGE_PROCESS_CONFIG`` (which the ``.pth`` file coverage installs acts on at
start-up) to ``CONFIG_VARIABLE`` and puts this folder on ``PYTHONPATH``; the
``sitecustomize`` here calls :func:`install`, and coverage starts at the first
``import xornet``, before any of its lines run. From then on every module that is
not xornet's (MLflow, matplotlib, pandas, ...) is imported with the tracer stopped
(:class:`ImportsUntraced`): xornet's lines are all measured, other packages' imports
are not slowed down.
"""

import os
import sys

CONFIG_VARIABLE = "XORNET_TESTS_COVERAGE_CONFIG"
# Set (by ``conftest.unmeasured_couriers``): background couriers are not measured.
UNMEASURED_COURIERS_VARIABLE = "XORNET_TESTS_UNMEASURED_COURIERS"


def is_background_courier(cmdline: str = "/proc/self/cmdline") -> bool:
    """Whether this process is a courier a stage started (``-m xornet.tracking.courier
    deliver``). Read from the command line: ``sys.argv`` is still ``-m`` while the
    module's packages are imported."""
    try:
        with open(cmdline, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"xornet.tracking.courier" in argv and b"deliver" in argv


class StartCoverageOnXornetImport:
    """A meta path finder that finds nothing: it starts coverage, then steps aside."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] != "xornet":
            return None
        sys.meta_path.remove(StartCoverageOnXornetImport)
        config = os.environ.get(CONFIG_VARIABLE)
        if os.environ.get(UNMEASURED_COURIERS_VARIABLE) and is_background_courier():
            config = None
        if config:
            import coverage

            os.environ["COVERAGE_PROCESS_CONFIG"] = config
            coverage.process_startup()
            # Starting sets the variable again (patch = subprocess); this process's
            # own children get the lazy start too.
            os.environ.pop("COVERAGE_PROCESS_CONFIG", None)
            if hasattr(sys.gettrace(), "stop"):  # coverage's C tracer
                sys.meta_path.insert(0, ImportsUntraced())
        return None


class ImportsUntraced:
    """A meta path finder that finds what the others find, and has each module that is
    not xornet's execute its body with the thread's tracer stopped.

    Importing MLflow, matplotlib or pandas runs no xornet line, yet under
    ``sys.settrace`` (all Python 3.11 offers) it costs ~40 % more CPU. A xornet module
    imported from inside such an import is traced again while its body runs.
    """

    def __init__(self) -> None:
        import threading

        self.stopped = threading.local()  # .tracer: this thread's, while it is stopped

    def find_spec(self, name, path=None, target=None):
        ours = name.partition(".")[0] == "xornet"
        if ours and getattr(self.stopped, "tracer", None) is None:
            return None  # found and traced as usual
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        else:
            return None
        loader = spec.loader
        if isinstance(loader, type) or not hasattr(loader, "exec_module"):
            return spec  # built-in and frozen modules: their importers are classes
        execute = loader.exec_module
        loader.exec_module = self._traced(execute) if ours else self._untraced(execute)
        return spec

    def _untraced(self, execute):
        def exec_module(module):
            tracer = sys.gettrace()
            if not hasattr(tracer, "stop"):  # stopped already (a nested import)
                return execute(module)
            tracer.stop()  # the tracer removes itself at the next event
            self.stopped.tracer = tracer
            try:
                return execute(module)
            finally:
                self.stopped.tracer = None
                tracer.start()

        return exec_module

    def _traced(self, execute):
        def exec_module(module):
            tracer = getattr(self.stopped, "tracer", None)
            if tracer is None:
                return execute(module)
            self.stopped.tracer = None
            tracer.start()
            try:
                return execute(module)
            finally:
                tracer.stop()
                self.stopped.tracer = tracer

        return exec_module


def install() -> None:
    if os.environ.get(CONFIG_VARIABLE) and StartCoverageOnXornetImport not in sys.meta_path:
        sys.meta_path.insert(0, StartCoverageOnXornetImport)


install()
