"""What every command shares: one-line errors with exit status 2, logging set-up, atomic JSON output."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .atomic import atomic_write_text
from .deps import OPENCV_MISSING
from .errors import BadInput, DisError


def handle_errors(func: Callable) -> Callable:
    """Turn BadInput into one line on stderr and exit 2, other DisErrors into exit 1, Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BadInput as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except DisError as err:
            click.echo(f"failed: {err}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except ModuleNotFoundError as err:
            if err.name != "cv2":
                raise
            click.echo(f"error: {OPENCV_MISSING}", err=True)
            sys.exit(2)

    return wrapper


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr)


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def parse_int_list(text: str, *, name: str) -> list[int]:
    """ "0,1,3" -> [0, 1, 3]; raises BadInput for anything that is not non-negative integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise BadInput(f"{name} {text!r}: expected comma-separated non-negative integers, e.g. 0,1,3") from None
    if not values or min(values) < 0:
        raise BadInput(f"{name} {text!r}: expected comma-separated non-negative integers, e.g. 0,1,3")
    return values
