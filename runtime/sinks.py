"""Where results go: a window, a video file, palette mask PNGs. Files are written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_write
from .choices import VIEWS
from .errors import BadInput
from .segmenter import Result, Segmenter
from .sources import Frame


def render(
    seg: Segmenter, frame: Frame, result: Result, *, view: str, alpha: float, legend: bool, fps: float | None
) -> np.ndarray:
    """The picture a person sees: overlay, mask or both side by side, with a class legend and FPS."""
    if view not in VIEWS:
        raise BadInput(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    if view == "mask":
        shown = seg.colorize(result.labels)
    elif view == "side-by-side":
        shown = np.hstack([frame.image, seg.colorize(result.labels)])
    else:
        shown = seg.overlay(frame.image, result, alpha=alpha)
    shown = np.ascontiguousarray(shown)
    scale = max(0.4, min(shown.shape[0], 720) / 720)
    if legend:
        present = np.unique(result.labels)
        for row, c in enumerate(int(c) for c in present if c < seg.info.num_classes):
            y = int((10 + 22 * row) * scale)
            cv2.rectangle(
                shown,
                (int(8 * scale), y),
                (int(26 * scale), y + int(16 * scale)),
                tuple(int(v) for v in seg.palette_bgr[c]),
                -1,
            )
            cv2.putText(
                shown,
                seg.class_names[c],
                (int(32 * scale), y + int(14 * scale)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5 * scale,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
    if fps is not None:
        cv2.putText(
            shown,
            f"{fps:.1f} FPS  {result.timings.get('infer_ms', 0):.1f} ms",
            (int(8 * scale), shown.shape[0] - int(10 * scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6 * scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return shown


class VideoSink:
    """An MP4 written to a temp file and renamed on close, so an interrupted run still leaves a playable file."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".avi", ".mkv"):
            raise BadInput(f"--output {path}: expected a .mp4, .avi or .mkv file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fps = fps
        self.writer = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (image.shape[1], image.shape[0]))
            if not self.writer.isOpened():
                raise BadInput(f"--output {self.path}: OpenCV cannot write this video format here")
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            os.replace(self.tmp, self.path)
            self.writer = None


class MaskSink:
    """One palette PNG per frame (pixel value = class index, colours from the model's palette)."""

    def __init__(self, folder: str | Path, palette: tuple[tuple[int, int, int], ...]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        flat = [v for colour in palette for v in colour]
        self.palette = flat + [0] * (768 - len(flat))
        self.count = 0

    def write(self, name: str, labels: np.ndarray) -> None:
        from PIL import Image

        image = Image.fromarray(labels, mode="P")
        image.putpalette(self.palette)
        atomic_write(self.folder / f"{name}.png", lambda tmp: image.save(tmp, format="PNG"))
        self.count += 1

    def close(self) -> None:
        pass


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"


class WindowSink:
    def __init__(self, title: str) -> None:
        self.title = title
        self.closed = False

    def write(self, image: np.ndarray) -> None:
        cv2.imshow(self.title, image)
        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
            self.closed = True

    def close(self) -> None:
        cv2.destroyAllWindows()
