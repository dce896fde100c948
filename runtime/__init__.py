"""The deployable part of disseg: no torch, Python 3.10+, x86_64 and aarch64.

`Segmenter` and `Result` load on first use (they need OpenCV), so the commands can say in one line
what to install when OpenCV is missing."""

from .contract import ModelInfo, read_model_info
from .errors import BadInput, DisError, ModelFileError, SourceError

__all__ = [
    "BadInput",
    "DisError",
    "ModelFileError",
    "ModelInfo",
    "Result",
    "Segmenter",
    "SourceError",
    "read_model_info",
]


def __getattr__(name: str):
    if name in ("Result", "Segmenter"):
        from . import segmenter

        return getattr(segmenter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
