"""Where results go: a window, a video file, palette mask PNGs. Files are written atomically."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from .atomic import AtomicFile, atomic_write, check_output, disk_reason
from .choices import DEFAULT_FPS, VIEWS
from .errors import BadInput
from .segmenter import Result, Segmenter
from .sources import Frame


def render(
    seg: Segmenter,
    frame: Frame,
    result: Result,
    *,
    view: str,
    alpha: float,
    legend: bool,
    fps: float | None,
    stamp: bool = False,
) -> np.ndarray:
    """The picture a person sees: overlay, mask or both side by side, with a class legend and FPS (and, with `stamp`,
    the frame's capture time as cells across the top, for latency measurements)."""
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
    if stamp:
        stamp_time(shown, time.time() - (time.perf_counter() - frame.captured))
    return shown


def stamp_time(image: np.ndarray, captured_epoch: float) -> None:
    """The capture time, milliseconds modulo 2**32, as 32 black/white cells across the top of `image` (in place):
    what benchmarks/rtsp_latency.py (dis-run --stamp-time) reads back from the decoded video to measure
    glass-to-client latency."""
    cell = max(4, image.shape[1] // 40)
    value = int(captured_epoch * 1000) & 0xFFFFFFFF
    for bit in range(32):
        on = (value >> (31 - bit)) & 1
        image[:cell, bit * cell : (bit + 1) * cell] = 255 if on else 0


def read_time_stamp(image: np.ndarray) -> int:
    """The 32-bit millisecond stamp of a decoded frame (stamp_time's inverse)."""
    cell = max(4, image.shape[1] // 40)
    gray = image.mean(axis=2) if image.ndim == 3 else image
    value = 0
    for bit in range(32):
        block = gray[cell // 4 : cell - cell // 4, bit * cell + cell // 4 : (bit + 1) * cell - cell // 4]
        value = (value << 1) | int(block.mean() > 127)
    return value


def latency_ms(stamp_value: int, now: float | None = None) -> int:
    """Milliseconds from a stamp to `now` (epoch seconds), across the 49-day wrap."""
    return ((int((time.time() if now is None else now) * 1000) & 0xFFFFFFFF) - stamp_value) & 0xFFFFFFFF


class VideoSink:
    """A video written to a temp file beside `path`; on close it is checked (every frame and the trailer readable),
    fsynced and renamed onto `path`. A run stopped by a signal still leaves a playable file; a full disk or
    read-only folder leaves an existing `path` untouched and raises WriteFailed.

    `segment_s`: a service that runs for months writes one file per this many seconds instead (out.mp4 ->
    out.000000.mp4, out.000001.mp4, ...), each finalized as it is done: an MP4 muxer keeps its index of every frame
    in memory until the file is closed (about 75 bytes a frame, measured: benchmarks/soak.py), so one endless file
    grows without bound and is lost whole if the box loses power."""

    CHECK_SPACE_EVERY = 100  # frames: a disk that filled up mid-run stops the run instead of running on for nothing

    def __init__(
        self, path: str | Path, fps: float = DEFAULT_FPS, *, option: str = "--output", segment_s: float | None = None
    ) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".avi", ".mkv"):
            raise BadInput(f"{option} {path}: expected a .mp4, .avi or .mkv file")
        check_output(self.path, option=option)
        self.fps, self.segment_s = fps, segment_s
        self.writer = None
        self.file: AtomicFile | None = None
        self.frames = 0  # in the file being written
        self.total = 0  # in every file of this sink
        self.segments: list[Path] = []  # the files finalized so far
        self._opened_at = 0.0

    def current(self) -> Path:
        """The file being written: `path`, or its numbered segment."""
        if self.segment_s is None:
            return self.path
        return self.path.with_name(f"{self.path.stem}.{len(self.segments):06d}{self.path.suffix}")

    def write(self, image: np.ndarray) -> None:
        if self.writer is not None and self.segment_s is not None:
            if time.monotonic() - self._opened_at >= self.segment_s:
                self.close()
        if self.writer is None:
            self._open(image)
        if (image.shape[1], image.shape[0]) != self.size:  # other sizes: a video has one (OpenCV drops the rest)
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1
        self.total += 1
        if self.frames % self.CHECK_SPACE_EVERY == 0 and disk_reason(self.path.parent):
            raise self.file.fail("")

    def _open(self, image: np.ndarray) -> None:
        target = self.current()
        self.file = AtomicFile(target)
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
        self.writer = cv2.VideoWriter(self.file.tmp, fourcc, self.fps, (image.shape[1], image.shape[0]))
        if not self.writer.isOpened():
            self.file.abort()
            raise BadInput(f"{target}: OpenCV cannot write this video format here")
        self.size = (image.shape[1], image.shape[0])
        self.frames, self._opened_at = 0, time.monotonic()

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        try:
            self._check()
        except BaseException:
            self.file.abort()
            raise
        self.file.commit()
        self.segments.append(Path(self.file.path))

    def _check(self) -> None:
        """The finished temp file holds every frame written, the last one readable (a full disk cuts the trailer)."""
        cap = cv2.VideoCapture(self.file.tmp)
        try:
            found = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
            last_ok = False
            if found == self.frames:
                cap.set(cv2.CAP_PROP_POS_FRAMES, self.frames - 1)
                last_ok = cap.read()[0]
        finally:
            cap.release()
        if found != self.frames or not last_ok:
            raise self.file.fail(f"the finished video holds {found} of {self.frames} frames")


class MaskSink:
    """One palette PNG per frame (pixel value = class index, colours from the model's palette), each written
    atomically. Names come from the source, unique per run (sources.unique_names)."""

    def __init__(self, folder: str | Path, palette: tuple[tuple[int, int, int], ...]) -> None:
        self.folder = Path(folder)
        check_output(self.folder, option="--masks", kind="folder")
        self.set_palette(palette)
        self.count = 0

    def set_palette(self, palette: tuple[tuple[int, int, int], ...]) -> None:
        """The model's colours (a model swapped in while running brings its own)."""
        flat = [v for colour in palette for v in colour][:768]
        self.palette = flat + [0] * (768 - len(flat))

    def write(self, name: str, labels: np.ndarray) -> None:
        """A palette PNG for a model of up to 256 classes (uint8 labels); above, a 16-bit grayscale PNG of class
        indices (a palette holds 256 colours), as the C++ runtime writes them."""
        from PIL import Image

        target = self.folder / f"{name}.png"
        if labels.dtype == np.uint8:
            image = Image.fromarray(labels, mode="P")
            image.putpalette(self.palette)
            atomic_write(target, lambda tmp: image.save(tmp, format="PNG"))
        else:
            wide = np.ascontiguousarray(labels, dtype=np.uint16)
            atomic_write(target, lambda tmp: _write_png16(tmp, wide))
        self.count += 1

    def close(self) -> None:
        pass


def _write_png16(path: str, labels: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", labels)
    if not ok:
        raise OSError(f"OpenCV could not encode a 16-bit PNG of {labels.shape}")
    Path(path).write_bytes(data.tobytes())


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
