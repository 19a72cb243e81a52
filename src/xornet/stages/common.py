"""What the stages share: the tracking interface they report to, and naming an architecture."""

from pathlib import Path
from typing import Protocol

from xornet.core.model import MLP, Architecture
from xornet.core.training import History


class RunLogger(Protocol):
    """What a stage reports to experiment tracking.

    ``log_progress`` is called during training with the history so far (so an
    interrupted training still has its epochs recorded); ``log_history`` with
    the whole history once training is done.
    """

    def log_progress(self, history: History) -> None: ...
    def log_history(self, history: History) -> None: ...
    def log_metrics(self, metrics: dict[str, float]) -> None: ...
    def log_tags(self, tags: dict[str, str]) -> None: ...
    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None: ...
    def log_model(self, model: MLP, model_path: Path) -> None: ...


class NullLogger:
    """Tracking switched off: every call does nothing."""

    def log_progress(self, history: History) -> None:
        pass

    def log_history(self, history: History) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float]) -> None:
        pass

    def log_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        pass

    def log_model(self, model: MLP, model_path: Path) -> None:
        pass


def describe(arch: Architecture) -> str:
    """``2-4-1 tanh`` style summary."""
    return "-".join(map(str, arch.layer_sizes)) + f" {arch.activation}"
