"""A model file written: the contract in its metadata, the file written atomically. No torch here: dis-export and
dis-import (which runs without PyTorch) both write through it."""

from __future__ import annotations

from pathlib import Path

import onnx

from disseg.runtime.atomic import atomic_write
from disseg.runtime.contract import ModelInfo, attach_metadata


def attach(proto: onnx.ModelProto, info: ModelInfo) -> onnx.ModelProto:
    """Put the contract into metadata_props (nodes keep only their part marks, from mark_parts)."""
    attach_metadata(proto, info)
    proto.producer_name = "disseg"
    return proto


def save(proto: onnx.ModelProto, path: str | Path) -> None:
    """Write atomically (no half-written model on a crash or Ctrl-C)."""
    atomic_write(path, lambda tmp: onnx.save_model(proto, tmp))
