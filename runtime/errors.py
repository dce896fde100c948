"""One exception hierarchy. The command-line layer turns a `BadInput` into one line and exit status 2."""

from __future__ import annotations


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
    """A camera, video, stream or image folder cannot be opened."""
