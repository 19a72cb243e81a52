"""The exception types every layer raises, and the exit code each one means.

This module imports nothing from xornet, so any layer can raise these and the
command line (:mod:`xornet.cli`) can turn them into one line and an exit code
without importing the layers above it. Bad input (exit 2) subclasses
:class:`BadInput`; a failure of the run itself (exit 1) subclasses
:class:`Failure` or is a :class:`DivergenceError`.
"""


class BadInput(ValueError):
    """Input the user can fix (params, options, files, tracking settings): exit code 2."""


class ParamsError(BadInput):
    """Invalid parameters; the message is a single line meant for the user."""


class DataFileError(BadInput):
    """A data file is missing, unreadable or malformed; the message names the file."""


class ModelFileError(BadInput):
    """A model file is missing, unreadable or does not describe a valid network."""


class InputMismatch(BadInput):
    """Input files that do not fit each other or the params (features, architecture)."""


class Failure(Exception):
    """A one-line failure of the run itself (I/O, tracking server trouble): exit code 1."""


class DivergenceError(ArithmeticError):
    """Training produced a non-finite loss or parameter: exit code 1."""

    def __init__(self, epoch: int, what: str) -> None:
        super().__init__(f"training diverged at epoch {epoch}: {what} became non-finite")
        self.epoch = epoch
        self.what = what


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM."""
