"""Calibration data as a tiny protocol: an iterator of {input_name: array}, built with the runtime's own
preprocessing (to_bgr8 + fit_to: stretched or letterboxed as the model's contract says), from a data set, an image
folder or a video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from disseg.runtime.console import progress
from disseg.runtime.contract import SCENE_TAGS
from disseg.runtime.dataset import list_samples
from disseg.runtime.errors import BadInput, SourceError
from disseg.runtime.image import fit_to, list_images, read_image, to_bgr8


class FrameReader(CalibrationDataReader):
    """Feeds uint8 BGR frames (already at the model size) one batch at a time; with `scene_tag_classes`, all-ones
    scene tags beside them (the model without tags)."""

    def __init__(
        self,
        frames: list[np.ndarray],
        input_name: str,
        batch: int = 1,
        *,
        desc: str = "calibrate",
        scene_tag_classes: int = 0,
    ) -> None:
        self.frames, self.input_name, self.batch = frames, input_name, batch
        self.scene_tag_classes = scene_tag_classes
        self._next = 0
        self._bar = progress(desc=desc, total=len(self), unit="batch")

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next + self.batch > len(self.frames):
            self._bar.close()
            return None
        chunk = np.stack(self.frames[self._next : self._next + self.batch])
        self._next += self.batch
        self._bar.update()
        if not self.scene_tag_classes:
            return {self.input_name: chunk}
        return {self.input_name: chunk, SCENE_TAGS: np.ones((self.batch, self.scene_tag_classes), np.float32)}

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self.frames) // self.batch


def _fit(image: np.ndarray, height: int, width: int, resize: str) -> np.ndarray:
    """The model input the Segmenter would make of this frame (the letterbox's pad included)."""
    return fit_to(image, height, width, resize)[0]


def frames_from_data(
    root: str | Path, split: str, height: int, width: int, count: int, *, resize: str = "stretch"
) -> list[np.ndarray]:
    _, samples = list_samples(root, split)
    step = max(1, len(samples) // count)
    return [_fit(read_image(s.image), height, width, resize) for s in samples[::step][:count]]


def frames_from_images(
    folder: str | Path, height: int, width: int, count: int, *, resize: str = "stretch"
) -> list[np.ndarray]:
    if not any(ch in str(folder) for ch in "*?[") and not Path(folder).is_dir():
        raise SourceError(f"{folder}: no such image folder")
    paths = list_images(folder)
    step = max(1, len(paths) // count)
    frames = []
    for path in paths[::step]:
        try:
            frames.append(_fit(read_image(path), height, width, resize))
        except BadInput:
            continue
        if len(frames) == count:
            break
    return frames


def frames_from_video(
    path: str | Path, height: int, width: int, count: int, *, resize: str = "stretch"
) -> list[np.ndarray]:
    """`count` frames spread evenly over the video."""
    cap = cv2.VideoCapture(str(path))
    if not Path(path).is_file() or not cap.isOpened():
        raise SourceError(f"{path}: cannot open this video")
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or count
    wanted = set(np.linspace(0, max(total - 1, 0), count).astype(int).tolist())
    frames, index = [], 0
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        if index in wanted:
            frames.append(_fit(to_bgr8(frame), height, width, resize))
        index += 1
    cap.release()
    if not frames:
        raise SourceError(f"{path}: cannot read any frame (empty, corrupt or an unsupported codec)")
    return frames
