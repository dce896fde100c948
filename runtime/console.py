"""What the terminal shows while library code works: progress bars (tqdm, off where stderr is not a terminal) and the
capture of what third-party code says (its loggers, warnings and prints), kept for the command's log file instead of
the terminal. Library modules use these; the commands set them up (cli_util.setup_logging, handle_errors)."""

from __future__ import annotations

import contextlib
import io
import logging
import sys


class _Captured(logging.Handler):
    """What third-party code says (its loggers, its warnings, what it prints inside `third_party_output`), kept for
    the command's log file instead of the terminal."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(f"{record.name}: {record.getMessage()}")
        except Exception:  # a library's bad format string must not end the command
            self.handleError(record)

    def add(self, text: str) -> None:
        self.lines.extend(line.rstrip() for line in text.splitlines() if line.strip())


class _Lines(io.TextIOBase):
    """A text stream that hands what is written to it to the capture, a whole line at a time: a library that writes a
    character at a time (Triton's server output, forwarded by pytriton) still gives one line per line."""

    def __init__(self) -> None:
        super().__init__()
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        whole, sep, self._partial = (self._partial + text).rpartition("\n")
        if sep:
            CAPTURED.add(whole)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            CAPTURED.add(self._partial)
            self._partial = ""


CAPTURED = _Captured()


@contextlib.contextmanager
def third_party_output():
    """What third-party code prints on stdout/stderr inside (onnxscript's optimizer, onnxconverter-common) goes to the
    capture, unless the run is verbose."""
    if logging.getLogger().handlers[:1] != [CAPTURED]:
        yield
        return
    out, err = _Lines(), _Lines()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        out.flush()
        err.flush()


@contextlib.contextmanager
def native_output():
    """`third_party_output`, and what native libraries (TensorFlow, LiteRT) write straight to file descriptors 1 and 2
    inside, which Python's streams never see. The command writes none of its own lines inside."""
    if logging.getLogger().handlers[:1] != [CAPTURED]:
        yield
        return
    import os
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with third_party_output():
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            CAPTURED.add(sink.read().decode(errors="replace"))


def progress(iterable=None, *, desc: str, total: int | None = None, unit: str = "it"):
    """A tqdm bar for long work (rate and time left), on stderr; off where stderr is not a terminal (logs, pipes,
    tests), so what a command writes there stays a few lines."""
    from tqdm import tqdm

    terminal = sys.__stderr__ or sys.stderr  # not a third_party_output redirection around the work it measures
    return tqdm(
        iterable, desc=desc, total=total, unit=unit, leave=False, disable=None, dynamic_ncols=True, file=terminal
    )
