"""What every command shares, and only commands import (tests/test_layering.py): one-line errors (exit 2 for bad input
and usage, 1 for failures, 128 + N for signal N), numeric options with finite bounds, sizes and lists typed on the
command line, logging set-up and the log file of third-party messages, atomic JSON output. Progress bars and the
capture of third-party output, which library code uses too, are runtime/console.py's."""

from __future__ import annotations

import errno
import functools
import glob
import itertools
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .atomic import atomic_write_text, os_reason, undo_made_folders
from .choices import DEFAULT_MAX_BATCH, MAX_BATCH  # noqa: F401 (MAX_BATCH: the commands' one import)
from .console import CAPTURED, progress, third_party_output  # noqa: F401 (commands' one import)
from .deps import OPENCV_MISSING
from .errors import EXIT_BAD_INPUT, EXIT_DONE, EXIT_FAILED, EXIT_SIGNAL_BASE, BadInput, DisError
from .signals import STUCK, RaiseOnSignals, exit_now

# Ceilings of the numeric options: far above any real use, low enough that a typo fails at once instead of
# allocating for minutes (an image side of 10^6 pixels, 10^9 images).
MAX_SIDE = 8192  # pixels of an image or model input side
MAX_ITERS = 100  # refinement steps
MAX_COUNT = 1_000_000  # images, frames, runs, steps, epochs
MAX_SEED = 2**32 - 1
MAX_WEIGHT = 1e6  # loss weights, step sizes, gigabytes
CORES = os.cpu_count() or 1
# errno values of a write that the machine refused (not a bug of ours): one line, exit 1, never a traceback.
WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EISDIR, errno.ENOTDIR}


def max_batch_option(help: str):
    """--max-batch as every command takes it: DEFAULT_MAX_BATCH, 1 to MAX_BATCH."""
    return click.option("--max-batch", default=DEFAULT_MAX_BATCH, show_default=True, type=click.IntRange(1, MAX_BATCH),
                        help=help)  # fmt: skip


_LONG_WORD = re.compile(r"[^\s'\"]{201,}")


def quoted(message: str) -> str:
    """A message with every word longer than 200 characters cut ("... (5,000 characters)"): what a user typed is
    quoted, never a screenful of it."""
    return _LONG_WORD.sub(lambda m: f"{m.group(0)[:200]}... ({len(m.group(0)):,} characters)", message)


def handle_errors(func: Callable) -> Callable:
    """Turn BadInput into one line on stderr and exit 2, other DisErrors (and a write the machine refused) into
    exit 1, a stop signal into exit 128 + its number (Ctrl-C: 130, SIGTERM: 143)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with RaiseOnSignals():  # SIGTERM/SIGHUP as Ctrl-C: temp files removed on the way out, exit 128 + N
                result = func(*args, **kwargs)
            _save_captured(failed=False)
            if any(thread.is_alive() for thread in STUCK):
                exit_now(EXIT_DONE)
            return result
        except BadInput as err:
            _save_captured(failed=True)
            undo_made_folders()
            click.echo(f"error: {quoted(str(err))}", err=True)
            exit_now(EXIT_BAD_INPUT)
        except DisError as err:
            _save_captured(failed=True)
            click.echo(f"failed: {quoted(str(err))}", err=True)
            exit_now(EXIT_FAILED)
        except KeyboardInterrupt as err:
            _save_captured(failed=False)
            click.echo(f"interrupted ({err.args[0] if err.args else 'SIGINT'})", err=True)
            exit_now(getattr(err, "exit_status", EXIT_SIGNAL_BASE + signal.SIGINT))
        except ModuleNotFoundError as err:
            if err.name != "cv2":
                raise
            click.echo(f"error: {OPENCV_MISSING}", err=True)
            exit_now(EXIT_BAD_INPUT)
        except OSError as err:
            if err.errno == errno.ENAMETOOLONG:  # a path given as an option or argument: bad input, one line
                _save_captured(failed=True)
                undo_made_folders()
                name = str(err.filename or "a path")
                shown = name if len(name) <= 200 else f"{name[:200]}... ({len(name):,} characters)"
                click.echo(f"error: {shown}: a name too long for this system (ENAMETOOLONG); give a shorter path",
                           err=True)  # fmt: skip
                exit_now(EXIT_BAD_INPUT)
            if err.errno not in WRITE_ERRNOS:
                raise
            _save_captured(failed=True)
            click.echo(f"failed: {err.filename or 'output'}: {os_reason(err)}", err=True)
            exit_now(EXIT_FAILED)

    return wrapper


class _OneLineErrors:
    """Click's usage errors as one line ("error: ... (see 'dis-run --help')"), exit 2, like every other bad input."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as err:
            where = f" (see '{err.ctx.command_path} --help')" if getattr(err, "ctx", None) else ""
            click.echo(f"error: {err.format_message()}{where}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(EXIT_FAILED)
        sys.exit(rv if isinstance(rv, int) else EXIT_DONE)


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global VERBOSE
    VERBOSE = VERBOSE or value


VERBOSE = False  # set by any command's --verbose, read by setup_logging


def _verbose_option() -> click.Option:
    return click.Option(
        ["--verbose"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_verbose,
        help="show the libraries' own messages (torch.onnx, onnxscript, ONNX Runtime, ...) instead of logging them",
    )


class Command(_OneLineErrors, click.Command):
    """Every command: one-line usage errors, and --verbose."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_verbose_option())


class Group(_OneLineErrors, click.Group):
    """A command with subcommands (dis-data): one-line usage errors; --verbose on each subcommand."""

    command_class = Command


class ModelArg(click.ParamType):
    """A model argument: a file (a Path) or a served model's URL, triton://HOST:PORT/NAME (kept a string: a Path
    would fold its '//')."""

    name = "model"

    def convert(self, value, param, ctx):
        from .contract import is_remote

        return value if isinstance(value, Path) or is_remote(value) else Path(value)


MODEL = ModelArg()


class Finite(click.FloatRange):
    """A float in [min, max] that is a number: FloatRange alone lets 'nan' through."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def threads_option(help_text: str):
    return click.option(
        "--threads",
        default=0,
        show_default=True,
        type=click.IntRange(0, CORES),
        help=f"{help_text} (0: all; at most this machine's {CORES} cores)",
    )


FAILURE_TAIL = 5  # a failing command shows this many of the last third-party lines


def setup_logging(verbose: bool | None = None) -> None:
    """Our loggers ("disseg.*") print their message alone on stderr; every other logger and every Python warning is
    captured for the log file (`handle_errors` names it), or with `verbose` (--verbose) printed with its logger's
    name."""
    verbose = VERBOSE if verbose is None else verbose
    ours = logging.getLogger("disseg")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours.handlers[:] = [handler]
    ours.setLevel(logging.DEBUG if verbose else logging.INFO)
    ours.propagate = False
    logging.captureWarnings(False)  # re-installed, in case something replaced warnings.showwarning since
    logging.captureWarnings(True)
    root = logging.getLogger()
    if verbose:
        loud = logging.StreamHandler(sys.stderr)
        loud.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.handlers[:] = [loud]
        root.setLevel(logging.DEBUG)
    else:
        root.handlers[:] = [CAPTURED]
        root.setLevel(logging.INFO)


def _log_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("DISSEG_LOG_DIR") or Path(cache) / "disseg" / "logs")


def _save_captured(*, failed: bool) -> None:
    """Write what third-party code said to the command's log file, named in one line; on a failure show its last
    lines too. Nothing when it said nothing."""
    lines, CAPTURED.lines = CAPTURED.lines, []
    if not lines:
        return
    if failed:
        for line in lines[-FAILURE_TAIL:]:
            click.echo(f"  | {line[:200]}", err=True)
    command = Path(sys.argv[0]).name or "disseg"
    run = next(_RUNS)  # a second command run inside one process (tests, an embedding program) gets a name of its own
    path = _log_dir() / f"{command}.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}{f'-{run}' if run else ''}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "\n".join(lines) + "\n")
        _keep_newest(path.parent, command)
    except (OSError, DisError) as err:
        click.echo(f"{len(lines)} lines of third-party messages not saved ({err}); --verbose shows them", err=True)
        return
    click.echo(f"third-party messages ({len(lines)} lines): {path}", err=True)


KEEP_LOGS = 5  # log files kept per command, the newest
_RUNS = itertools.count()


def _keep_newest(folder: Path, command: str) -> None:
    """Each run writes its own log (COMMAND.TIME.PID.log); only the newest KEEP_LOGS of a command stay."""
    logs = sorted(folder.glob(f"{glob.escape(command)}.*.log"), key=lambda p: p.stat().st_mtime_ns)
    for old in logs[:-KEEP_LOGS]:
        old.unlink(missing_ok=True)


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def parse_int_list(text: str, *, name: str, low: int = 0, high: int = MAX_ITERS) -> list[int]:
    """ "0,1,3" -> [0, 1, 3]; raises BadInput for anything that is not integers in [low, high]."""
    wanted = f"expected comma-separated integers from {low} to {high}, e.g. {low},{low + 1}"
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise BadInput(f"{name} {text!r}: {wanted}") from None
    if not values or min(values) < low or max(values) > high:
        raise BadInput(f"{name} {text!r}: {wanted}")
    return values


def parse_size(text: str | None, *, option: str = "--size") -> tuple[int, int] | None:
    """ "512x384" or "512" -> (height, width); None for None; BadInput otherwise (dis-export --size, dis-import
    --input-size)."""
    if text is None:
        return None
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0 or max(parts) > MAX_SIDE:
        raise BadInput(f"{option} {text!r}: expected HxW or one side, 1 to {MAX_SIDE} pixels, e.g. 512x512")
    return parts[0], parts[1]
