"""One exception hierarchy and the exit statuses it maps to: the command-line layer turns a `BadInput` into one line
and exit status 2, any other `DisError` into exit status 1."""

from __future__ import annotations

# The exit statuses of every command, Python and C++ (disseg::kExit* in model_info.hpp); the C ABI's disseg_status
# has the same numbers. tests/test_twins.py holds the two languages equal.
EXIT_DONE = 0
EXIT_FAILED = 1  # a DisError that is not BadInput: a parity gate, a backend at run time, a write that failed
EXIT_BAD_INPUT = 2  # BadInput: found before any work; nothing written
EXIT_SIGNAL_BASE = 128  # stopped by signal N: 128 + N; everything produced so far finalized


class DisError(Exception):
    """Base of every error disseg raises on purpose."""


class BadInput(DisError):
    """The user gave something we cannot use (file, flag, image, camera). Exit status 2."""


class WriteFailed(DisError):
    """An output could not be written completely (full disk, read-only mount, permission). Exit status 1; the
    temp file is removed and an existing file of that name is left as it was."""


class ModelFileError(BadInput):
    """A model file is missing, corrupt, not ours, or does not fit this machine."""


class SourceError(BadInput):
    """A camera, video, stream or image folder cannot be opened (C++: disseg::SourceError, the same place in the same
    tree; the C ABI has no sources, so its statuses need no twin)."""
