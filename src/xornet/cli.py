"""What every stage command shares: params options, one-line errors, progress, tracking.

Exit codes: 0 success; 1 an unexpected failure (I/O, divergence, tracking
server trouble); 2 bad input (params, options, input files); 130 interrupted
(Ctrl-C); 143 terminated (SIGTERM). Errors are one line on stderr, never a
traceback. Run by DVC (`dvc repro`, `dvc exp run`), which deletes a stage's outputs
before running it, that line also names the `dvc checkout` that restores them.
"""

import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from xornet.config.presets import PRESETS
from xornet.config.schema import Params, load_params
from xornet.errors import BadInput, DivergenceError, Failure, Terminated
from xornet.lifeline import die_with_guardians
from xornet.stages.common import NullLogger, RunLogger

if TYPE_CHECKING:  # the study module is only needed by the study stage
    from xornet.study.convergence import ConfigResult

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
# Switches MLflow tracking off whatever params.yaml says (0/false/off/no).
TRACKING_ENV = "XORNET_TRACKING"
# Set by DVC, to the stage's address (e.g. `train`), for every stage command it runs.
DVC_STAGE_ENV = "DVC_STAGE"


def params_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--params``, ``--preset`` and repeatable ``--set`` to a stage command."""
    command = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="SECTION.KEY=VALUE",
        help="Override one parameter (repeatable), validated like the file; "
        "values are YAML, e.g. --set model.hidden=[8,8].",
    )(command)
    command = click.option(
        "--preset",
        type=click.Choice(sorted(PRESETS)),
        default=None,
        help="Apply a named preset before --set (tutorial: the classic tutorial's "
        "2-sigmoid-unit network that stalls at loss ln 2).",
    )(command)
    command = click.option(
        "--params",
        "params_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default="params.yaml",
        show_default=True,
        help="Parameters file.",
    )(command)
    return command


def load(params_path: Path, overrides: tuple[str, ...], preset: str | None) -> Params:
    """Validated params: the file, then the preset, then ``--set`` overrides."""
    return load_params(params_path, (*PRESETS.get(preset or "", ()), *overrides))


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def run(command: click.Command) -> None:
    """Run a stage command, turning every known failure into one line and an exit code."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    name = Path(sys.argv[0]).stem
    try:
        die_with_guardians()
        command.main(standalone_mode=False)
    except click.exceptions.Abort:
        _fail(name, "interrupted", 130)
    except click.ClickException as exc:
        _fail(name, exc.format_message(), EXIT_BAD_INPUT)
    except BadInput as exc:
        _fail(name, str(exc), EXIT_BAD_INPUT)
    except DivergenceError as exc:
        _fail(name, f"{exc} (try a smaller train.learning_rate)", EXIT_FAILURE)
    except MemoryError:  # the params' size estimate (xornet.config.footprint) fell short
        _fail(name, "out of memory (try smaller sizes in the params)", EXIT_FAILURE)
    except Failure as exc:
        _fail(name, str(exc), EXIT_FAILURE)
    except OSError as exc:
        _fail(name, f"I/O failure: {exc}", EXIT_FAILURE)
    except KeyboardInterrupt:
        _fail(name, "interrupted", 130)
    except Terminated:
        _fail(name, "terminated", 143)
    sys.exit(0)


def _fail(name: str, message: str, code: int) -> None:
    click.echo(error_line(name, message), err=True)
    sys.exit(code)


def error_line(name: str, message: str) -> str:
    """The one line a failing stage prints on stderr.

    Under DVC (``DVC_STAGE`` set) the stage's previous outputs are already gone:
    DVC deletes them before running the command. So the line says how to get the
    last good ones (those in dvc.lock, from the DVC cache) back.
    """
    line = f"{name}: error: {message}"
    stage = os.environ.get(DVC_STAGE_ENV)
    if stage:
        line += (
            " (DVC removed this stage's outputs before running it;"
            f" `dvc checkout {shlex.quote(stage)}` restores the last good ones)"
        )
    return line


@contextlib.contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal; ``None`` (no output at all) when stderr is not a tty."""
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        done = 0

        def update(position: int) -> None:
            nonlocal done
            bar.update(position - done)
            done = position

        yield update


def project_root(stage_file: str) -> Path:
    """The project root: ``DVC_ROOT`` when DVC runs the stage, else the stage's checkout."""
    return Path(os.environ.get("DVC_ROOT") or Path(stage_file).resolve().parents[1])


def tracking_enabled(params: Params) -> bool:
    """``tracking.enabled`` in params, unless ``XORNET_TRACKING`` switches it off."""
    flag = os.environ.get(TRACKING_ENV, "").strip().lower()
    if flag in {"0", "false", "off", "no"}:
        return False
    return params.tracking.enabled


@contextlib.contextmanager
def training_run(params: Params, root: Path, data_paths: list[Path]) -> Iterator[RunLogger]:
    """The run a training stage records for MLflow (a no-op logger when tracking is off).

    The run goes into the project's outbox and a background courier delivers it
    (:mod:`xornet.tracking.outbox`): the stage never imports MLflow."""
    if not tracking_enabled(params):
        yield NullLogger()
        return
    from xornet.tracking import outbox

    with outbox.record_training_run(params, root, data_paths) as recorder:
        yield recorder


@contextlib.contextmanager
def attached_run(params: Params, root: Path, model_path: Path, section: str) -> Iterator[RunLogger]:
    """Evaluate/plot results, recorded for the run that trained ``model_path``."""
    if not tracking_enabled(params):
        yield NullLogger()
        return
    from xornet.tracking import outbox

    with outbox.record_attached_run(params, root, model_path, section) as recorder:
        yield recorder


def study_run(
    params: Params, root: Path, results: "list[ConfigResult]", artifacts: list[Path]
) -> None:
    """Record a convergence study for MLflow: one parent run, one child run per
    configuration, delivered in the background like every run (:mod:`xornet.tracking.outbox`).

    Does nothing when tracking is off. Otherwise :func:`xornet.study.convergence.run_records`
    gives the parent and child records (params, final metrics, stepped curves,
    tags) and :func:`xornet.tracking.outbox.record_study` records them.
    """
    if not tracking_enabled(params):
        return
    from xornet.study.convergence import run_records
    from xornet.tracking import outbox

    parent, children = run_records(params, results)
    outbox.record_study(params, root, parent, children, artifacts)
