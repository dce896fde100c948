"""The one way disseg reads a text file it is given (--streams, --scene-tags-file, --classes, a dataset's lists, a
model's .json sidecar): a regular file only (a FIFO, device or folder is refused before anything blocks on it), at
most `limit` bytes (/dev/zero or a huge file is refused, never read into memory), UTF-8 without NUL bytes. Any
other file is one line naming the option, what was found and what to give instead (BadInput, exit 2)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .atomic import os_reason
from .errors import BadInput

MAX_TEXT_BYTES = 1024 * 1024  # an option's text file: a few hundred lines in practice, 1 MiB allowed
MAX_LIST_BYTES = 64 << 20  # a dataset's image list


def read_text(path: str | Path, what: str, expected: str, *, limit: int = MAX_TEXT_BYTES) -> str:
    """The text of `path`, or BadInput "`what` PATH: <why>; give <expected>"."""

    def bad(why: str) -> BadInput:
        return BadInput(f"{what} {path}: {why}; give {expected}")

    try:  # O_NONBLOCK: opening a FIFO with no writer must not wait; fstat then says what was opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise bad(f"cannot read it ({os_reason(err)})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        mode = info.st_mode
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise bad(f"{kind}, not a regular file")
    if info.st_size > limit:
        raise bad(f"{info.st_size:,} bytes, more than the {limit:,} such a file may have")
    with os.fdopen(fd, "rb") as file:
        try:
            data = file.read(limit + 1)
        except OSError as err:
            raise bad(f"cannot read it ({os_reason(err)})") from None
    if len(data) > limit:  # it grew while being read
        raise bad(f"more than the {limit:,} bytes such a file may have")
    if b"\0" in data:
        raise bad("it holds NUL bytes, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise bad(f"not UTF-8 text (byte {err.start})") from None
