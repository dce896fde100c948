"""`Segmenter`: an exported DIS model (ONNX or TensorRT engine) as a callable on BGR frames."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import scene_tags as tags_
from .backends import Backend, infer_in_batches, open_backend
from .contract import LABELS, SCENE_TAGS, SCORES, TAGS, ModelInfo, is_remote, label_channels
from .errors import BadInput, DisError, ModelFileError
from .image import fit_to, labels_back, to_bgr8

log = logging.getLogger("disseg.runtime")


@dataclass
class Result:
    labels: np.ndarray  # H x W at the frame's size: uint8 (int32 for models with more than 256 classes)
    tags: np.ndarray | None = None  # per-class probabilities, when the model outputs them
    scores: np.ndarray | None = None  # K x h x w at the model size, when the model outputs them
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage


def check_outputs(backend: Backend, info: ModelInfo, path: Path) -> None:
    """The graph's outputs agree with the metadata: labels present, uint8 (int32 past 256 classes) at the input
    size; scores and tags with one entry per declared class. Raises ModelFileError (exit 2) naming the mismatch;
    without this check a mask could hold labels outside the declared classes."""
    k = info.num_classes
    specs = backend.output_specs
    fix = "re-export the model with dis-export, or correct the class list in its metadata"
    if LABELS not in specs:
        raise ModelFileError(f"{path}: the graph has no '{LABELS}' output (it has {', '.join(specs)}); {fix}")
    labels = specs[LABELS]
    wanted = (np.uint8, np.int32) if k <= 256 else (np.int32,)
    if labels.dtype not in [np.dtype(t) for t in wanted]:
        raise ModelFileError(
            f"{path}: '{LABELS}' is {labels.dtype}, the contract wants {' or '.join(np.dtype(t).name for t in wanted)} "
            f"for {k} classes; {fix}"
        )
    size = (info.input_height, info.input_width)
    if len(labels.shape) != 3 or any(isinstance(d, int) and d != w for d, w in zip(labels.shape[1:], size)):
        raise ModelFileError(f"{path}: '{LABELS}' has shape {labels.shape}, expected (N, {size[0]}, {size[1]}); {fix}")
    for name, axis in ((SCORES, 1), (TAGS, -1)):
        spec = specs.get(name)
        if spec is not None and len(spec.shape) > 1 and isinstance(spec.shape[axis], int) and spec.shape[axis] != k:
            raise ModelFileError(
                f"{path}: the graph's '{name}' output has {spec.shape[axis]} classes, its metadata names {k}; {fix}"
            )
    # labels alone show no class count in their shape: the argmax behind them does, where the graph says it
    local = Path(str(path))  # a served model (triton://) has no file: nothing to read
    channels = label_channels(local.read_bytes()) if local.suffix == ".onnx" and local.is_file() else None
    if channels is not None and channels != k:
        raise ModelFileError(
            f"{path}: the graph's '{LABELS}' output has {channels} classes, its metadata names {k}; {fix}"
        )


def check_inputs(backend: Backend, info: ModelInfo, path: Path) -> None:
    """The graph's scene-tags input agrees with the metadata: present exactly when it says so, one entry per class."""
    spec = backend.inputs.get(SCENE_TAGS)
    fix = "re-export the model with dis-export"
    if bool(info.scene_tags) != (spec is not None):
        has = "has" if spec is not None else "has no"
        says = "says it takes them" if info.scene_tags else "says nothing of them"
        raise ModelFileError(f"{path}: the graph {has} a '{SCENE_TAGS}' input but its metadata {says}; {fix}")
    if spec is not None and (len(spec.shape) != 2 or spec.shape[1] != info.num_classes):
        raise ModelFileError(
            f"{path}: '{SCENE_TAGS}' has shape {spec.shape}, expected (N, {info.num_classes}), one per class; {fix}"
        )


class Segmenter:
    """Run an exported DIS model on BGR frames of any size and channel count.

        with Segmenter("model.onnx") as seg:
            result = seg(frame)                 # result.labels: H x W uint8 at the frame's size
            shown = seg.overlay(frame, result)

    Everything (input size, classes, palette, iterations) comes from the model file. A model exported with
    `--scene-tags` takes what the camera may see: `Segmenter(path, scene_tags="road,car")` (class names, or one
    number in 0..1 per class), `seg.scene_tags = ...` later, or `seg(frame, scene_tags=...)` for one call; without
    tags it runs as the model without them.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        backend: str = "auto",
        cache_dir: str | Path | None = None,
        threads: int = 0,
        scene_tags=None,
    ) -> None:
        self.path = model if is_remote(model) else Path(model)
        self.backend, self.info = open_backend(self.path, backend=backend, cache_dir=cache_dir, threads=threads)
        try:
            check_outputs(self.backend, self.info, self.path)
            check_inputs(self.backend, self.info, self.path)
        except ModelFileError:
            self.backend.close()
            raise
        spec = self.backend.inputs[self.info.input_name]
        self.batch = spec.shape[0] if isinstance(spec.shape[0], int) else None  # None: dynamic
        self.palette_bgr = np.array([c[::-1] for c in self.info.palette], np.uint8)
        self._scene_tags: np.ndarray | None = None
        try:
            self.scene_tags = scene_tags
        except BadInput:
            self.backend.close()
            raise

    @property
    def name(self) -> str:
        """The model's short name for logs and metrics: its file's name, or a served model's name."""
        return Path(str(self.path)).name

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def scene_tags(self) -> np.ndarray | None:
        """The tags every call uses unless it brings its own: K float32, or None (no tags)."""
        return self._scene_tags

    @scene_tags.setter
    def scene_tags(self, given) -> None:
        self._scene_tags = self._tags(given)

    def _tags(self, given) -> np.ndarray | None:
        vector = tags_.parse(given, self.info)
        if vector is not None:
            tags_.check_takes_tags(self.info, str(self.path))
        return vector

    def __call__(self, frame: np.ndarray, *, scene_tags=None) -> Result:
        return self.segment_batch([frame], scene_tags=None if scene_tags is None else [scene_tags])[0]

    def segment_batch(self, frames: list[np.ndarray], *, scene_tags: list | None = None) -> list[Result]:
        """Segment several frames in one call (padded to a fixed batch, split to the model's batch); `scene_tags`: one
        entry per frame (names, numbers, or None for the Segmenter's own tags)."""
        h, w = self.info.input_height, self.info.input_width
        t0 = time.perf_counter()
        frames = [to_bgr8(f, source="frame") for f in frames]
        fitted = [fit_to(f, h, w, self.info.resize) for f in frames]
        batch = np.stack([inputs for inputs, _ in fitted])
        extra = self._tag_feed(len(frames), scene_tags)
        t1 = time.perf_counter()
        step = self.batch_plan(len(batch))[0]
        merged = infer_in_batches(self.backend, self.info.input_name, batch, step, extra)
        t2 = time.perf_counter()
        results = []
        _check_label_range(merged[LABELS][: len(frames)], self.info.num_classes, self.name)
        for i, frame in enumerate(frames):
            labels = labels_back(merged[LABELS][i], fitted[i][1], frame.shape[0], frame.shape[1])
            results.append(
                Result(
                    labels, merged[TAGS][i] if TAGS in merged else None, merged[SCORES][i] if SCORES in merged else None
                )
            )
        t3 = time.perf_counter()
        per = 1000.0 / len(frames)
        for r in results:
            r.timings = {
                "preprocess_ms": (t1 - t0) * per,
                "infer_ms": (t2 - t1) * per,
                "postprocess_ms": (t3 - t2) * per,
            }
        return results

    def _tag_feed(self, count: int, per_frame: list | None) -> dict[str, np.ndarray] | None:
        """The scene_tags input for `count` frames (None: the model has none); all ones where no tags are given."""
        if per_frame is not None and len(per_frame) != count:
            raise BadInput(f"scene_tags: {len(per_frame)} entries for {count} frames; give one per frame")
        rows = [self._scene_tags if g is None else self._tags(g) for g in (per_frame or [None] * count)]
        if not self.info.scene_tags:
            return None
        ones = np.ones(self.info.num_classes, np.float32)
        return {SCENE_TAGS: np.stack([ones if r is None else r for r in rows])}

    def batch_plan(self, frames: int) -> list[int]:
        """The batch sizes segment_batch runs for this many frames: chunks of a fixed batch (the last one padded), or
        of a dynamic model's maximum."""
        step = self.batch or min(frames, self.backend.max_batch or frames)
        return [step if self.batch else min(step, frames - i) for i in range(0, frames, step)]

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """Labels -> BGR image in the model's palette."""
        return self.palette_bgr[np.minimum(labels, len(self.palette_bgr) - 1)]

    def overlay(self, frame: np.ndarray, result: Result, alpha: float = 0.5) -> np.ndarray:
        """The frame with the labelmap blended over it (background left clear)."""
        frame = to_bgr8(frame)
        colour = self.colorize(result.labels)
        blended = cv2.addWeighted(frame, 1 - alpha, colour, alpha, 0)
        return np.where(result.labels[..., None] > 0, blended, frame)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_label_range(labels: np.ndarray, classes: int, model: str) -> None:
    """A model that lies about its classes (its graph argmaxes over more channels than its metadata names) is stopped
    at the first frame that shows it, in one line (exit 1), before a palette or class list is indexed past its end."""
    top = int(labels.max()) if labels.size else 0
    if top >= classes or (labels.size and int(labels.min()) < 0):
        raise DisError(
            f"{model}: the model produced class {top} but its metadata names {classes} classes (0..{classes - 1}); "
            "the file is inconsistent: re-export or re-import it"
        )
