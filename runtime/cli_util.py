"""What every command shares: one-line errors (exit 2 for bad input and usage, 1 for failures, 128 + N for signal
N), numeric options with finite bounds, logging set-up, atomic JSON output."""

from __future__ import annotations

import errno
import functools
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .atomic import atomic_write_text, os_reason
from .deps import OPENCV_MISSING
from .errors import EXIT_BAD_INPUT, EXIT_DONE, EXIT_FAILED, EXIT_SIGNAL_BASE, BadInput, DisError

# Ceilings of the numeric options: far above any real use, low enough that a typo fails at once instead of
# allocating for minutes (an image side of 10^6 pixels, 10^9 images).
MAX_SIDE = 8192  # pixels of an image or model input side
MAX_ITERS = 100  # refinement steps
MAX_BATCH = 1024
MAX_COUNT = 1_000_000  # images, frames, runs, steps, epochs
MAX_SEED = 2**32 - 1
MAX_WEIGHT = 1e6  # loss weights, step sizes, gigabytes
CORES = os.cpu_count() or 1
# errno values of a write that the machine refused (not a bug of ours): one line, exit 1, never a traceback.
WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EISDIR, errno.ENOTDIR}


def handle_errors(func: Callable) -> Callable:
    """Turn BadInput into one line on stderr and exit 2, other DisErrors (and a write the machine refused) into
    exit 1, a stop signal into exit 128 + its number (Ctrl-C: 130, SIGTERM: 143)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BadInput as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except DisError as err:
            click.echo(f"failed: {err}", err=True)
            sys.exit(EXIT_FAILED)
        except KeyboardInterrupt as err:
            click.echo(f"interrupted ({err.args[0] if err.args else 'SIGINT'})", err=True)
            sys.exit(getattr(err, "exit_status", EXIT_SIGNAL_BASE + signal.SIGINT))
        except ModuleNotFoundError as err:
            if err.name != "cv2":
                raise
            click.echo(f"error: {OPENCV_MISSING}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except OSError as err:
            if err.errno not in WRITE_ERRNOS:
                raise
            click.echo(f"failed: {err.filename or 'output'}: {os_reason(err)}", err=True)
            sys.exit(EXIT_FAILED)

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


class Command(_OneLineErrors, click.Command):
    pass


class Group(_OneLineErrors, click.Group):
    pass


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


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr)


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
