"""The deployable part of disseg: no torch, Python 3.10+, x86_64 and aarch64."""
from .contract import ModelInfo, read_model_info
from .errors import BadInput, DisError, ModelFileError, SourceError
from .segmenter import Result, Segmenter

__all__ = ["BadInput", "DisError", "ModelFileError", "ModelInfo", "Result", "Segmenter", "SourceError", "read_model_info"]
