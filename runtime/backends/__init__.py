"""The backends a model runs on, one module each, and the table every part of disseg reads them from: the
Segmenter opens through `open_backend`, the commands offer `CHOICES`, dis-doctor asks each `Kind.check`.

Adding a backend is one module (a `Backend` subclass and its `KIND`, see base.py) and one entry in `KINDS`;
`--backend auto` tries the entries in order. Nothing here imports ONNX Runtime, TensorRT or CUDA until a backend
is opened, so the commands build their options without them."""

from __future__ import annotations

import logging
from pathlib import Path

from ..contract import ModelInfo, read_model_info
from ..errors import BadInput, DisError
from ..redaction import redact
from . import onnxrt, triton, trt
from .base import Backend, Kind, TensorSpec, infer_in_batches, scene_tag_feed
from .onnxrt import OnnxRuntimeBackend, cpu_backend
from .trt import TensorRTBackend, tensorrt_available

__all__ = [
    "CHOICES",
    "KINDS",
    "Backend",
    "Kind",
    "OnnxRuntimeBackend",
    "TensorRTBackend",
    "TensorSpec",
    "cpu_backend",
    "infer_in_batches",
    "open_backend",
    "scene_tag_feed",
    "tensorrt_available",
]

log = logging.getLogger("disseg.runtime")

KINDS: dict[str, Kind] = {kind.name: kind for kind in (trt.KIND, onnxrt.KIND, triton.KIND)}  # `auto`: this order
CHOICES = ("auto", *KINDS)


def open_backend(
    path: str | Path, *, backend: str = "auto", cache_dir: str | Path | None = None, threads: int = 0
) -> tuple[Backend, ModelInfo]:
    """Open a model with the named backend, or with `auto` the first in `KINDS` that claims it here (TensorRT
    where it and a GPU are present, else ONNX Runtime; Triton for a triton:// URL). A claimant that fails hands
    over to the next one with a warning; a backend named explicitly raises instead."""
    if backend not in CHOICES:
        raise BadInput(f"unknown backend {backend!r}; choose from {', '.join(CHOICES)}")
    served = next((kind for kind in KINDS.values() if kind.served and kind.claims(path)), None)
    if served is not None:
        return _open_served(served, str(path), backend)
    path = Path(path)
    info = read_model_info(path)
    cache = Path(cache_dir) if cache_dir else None
    if backend != "auto":
        return KINDS[backend].open(path, info, cache_dir=cache, threads=threads), info
    claimants = [kind for kind in KINDS.values() if kind.claims(path)]
    for i, kind in enumerate(claimants):
        try:
            return kind.open(path, info, cache_dir=cache, threads=threads), info
        except DisError as err:
            if i == len(claimants) - 1:
                raise
            log.warning("%s unavailable (%s); falling back to %s", kind.title, err, claimants[i + 1].title)
    raise BadInput(f"{path}: no backend here opens it; choose one with --backend ({', '.join(KINDS)})")


def _open_served(kind: Kind, url: str, backend: str) -> tuple[Backend, ModelInfo]:
    """A served model: its own kind opens it, and the server says what the model is."""
    if backend not in ("auto", kind.name):
        raise BadInput(f"{redact(url)}: a served model runs on the server's backend; drop --backend {backend}")
    opened = kind.open(url, None)
    try:
        return opened, opened.info()
    except DisError:
        opened.close()
        raise
