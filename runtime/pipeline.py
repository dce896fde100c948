"""Capture, inference and writing overlapped in threads; stats that show whether anything grows or lags."""

from __future__ import annotations

import queue
import resource
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .segmenter import Result, Segmenter
from .signals import StopOnSignals
from .sinks import MaskSink, VideoSink, WindowSink, render
from .sources import Frame, Source

_END = object()


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


WINDOW = 10_000  # per-frame figures kept for percentiles: a camera that runs for days must not grow


def _window() -> deque:
    return deque(maxlen=WINDOW)


@dataclass
class Stats:
    """Per-stage latency, frame age and class areas. Percentiles cover the last WINDOW frames; the first
    1000 frames' totals are kept apart, so a long run can show whether latency drifted."""

    class_names: tuple[str, ...]
    stages: dict[str, deque] = field(
        default_factory=lambda: {k: _window() for k in ("preprocess_ms", "infer_ms", "postprocess_ms", "total_ms")}
    )
    frame_age_ms: deque = field(default_factory=_window)
    first_totals_ms: list[float] = field(default_factory=list)
    class_pixels: np.ndarray | None = None
    rss_mb: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    frames: int = 0

    def add(self, frame: Frame, result: Result, started: float) -> None:
        for k, v in result.timings.items():
            self.stages[k].append(v)
        total = (time.perf_counter() - started) * 1000
        self.stages["total_ms"].append(total)
        if len(self.first_totals_ms) < 1000:
            self.first_totals_ms.append(total)
        self.frame_age_ms.append((started - frame.captured) * 1000)
        counts = np.bincount(result.labels.reshape(-1), minlength=len(self.class_names))[: len(self.class_names)]
        self.class_pixels = counts if self.class_pixels is None else self.class_pixels + counts
        if self.frames % 1000 == 0:
            self.rss_mb.append(_rss_mb())
        self.frames += 1

    def summary(self, **extra) -> dict:
        wall = time.perf_counter() - self.started

        def pct(values) -> dict:
            if not values:
                return {}
            a = np.asarray(values)
            return {
                "mean": round(float(a.mean()), 3),
                "p50": round(float(np.percentile(a, 50)), 3),
                "p90": round(float(np.percentile(a, 90)), 3),
                "p99": round(float(np.percentile(a, 99)), 3),
            }

        total = self.stages["total_ms"]
        area = self.class_pixels / max(1, self.class_pixels.sum()) if self.class_pixels is not None else []
        return {
            "frames": self.frames,
            "wall_s": round(wall, 3),
            "fps": round(self.frames / wall, 3) if wall else None,
            "latency_ms": {k: pct(v) for k, v in self.stages.items()},
            "frame_age_ms": pct(self.frame_age_ms),
            "first_1000_total_ms": pct(self.first_totals_ms),
            "last_1000_total_ms": pct(list(total)[-1000:]),
            "percentiles_over_last_frames": min(self.frames, WINDOW),
            "rss_mb": {
                "start": round(self.rss_mb[0], 1) if self.rss_mb else None,
                "end": round(_rss_mb(), 1),
                "samples_every_1000_frames": [round(v, 1) for v in self.rss_mb],
            },
            "class_area": {n: round(float(a), 5) for n, a in zip(self.class_names, area)},
            "runtime": "python",
            **extra,
        }


def _reader(source: Source, frames: queue.Queue, stop: threading.Event, max_frames: int | None) -> None:
    try:
        for n, frame in enumerate(source):
            if stop.is_set() or (max_frames is not None and n >= max_frames):
                break
            frames.put(frame)
    finally:
        frames.put(_END)


def _writer(
    seg: Segmenter,
    outputs: queue.Queue,
    *,
    video: VideoSink | None,
    masks: MaskSink | None,
    window: WindowSink | None,
    stop: threading.Event,
    errors: list,
    view: str = "overlay",
    alpha: float = 0.5,
    legend: bool = True,
) -> None:
    try:
        while (item := outputs.get()) is not _END:
            frame, result, fps = item
            if masks is not None:
                masks.write(frame.name, result.labels)
            if video is not None or window is not None:
                shown = render(seg, frame, result, view=view, alpha=alpha, legend=legend, fps=fps)
                if video is not None:
                    video.write(shown)
                if window is not None:
                    window.write(shown)
                    if window.closed:
                        stop.set()
    except BaseException as err:  # surfaced in the main thread
        errors.append(err)
        stop.set()
        while outputs.get() is not _END:  # drain so the producer never blocks
            pass


def _next(frames: queue.Queue, stop: threading.Event):
    """The next frame, or _END once the source ends or `stop` is set (checked while a live source is silent)."""
    while not stop.is_set():
        try:
            return frames.get(timeout=0.1)
        except queue.Empty:
            continue
    return _END


def _drain(reader: threading.Thread, frames: queue.Queue) -> None:
    """Unblock the reader if it waits on a full queue, until it has finished."""
    while reader.is_alive():
        try:
            frames.get_nowait()
        except queue.Empty:
            reader.join(timeout=0.1)


def _close(sinks, errors: list) -> None:
    """Close every sink, even after one fails (a full disk for the masks must not cost the video); keep errors."""
    for sink in sinks:
        if sink is None:
            continue
        try:
            sink.close()
        except Exception as err:  # noqa: BLE001 (surfaced by run() once all are closed)
            errors.append(err)


def run(
    seg: Segmenter,
    source: Source,
    *,
    video: VideoSink | None = None,
    masks: MaskSink | None = None,
    window: WindowSink | None = None,
    max_frames: int | None = None,
    stats: Stats | None = None,
    stop: threading.Event | None = None,
    **render,
) -> Stats:
    """Segment every frame of `source` into the sinks, adding to `stats` (pass one in to keep what was counted
    when the run is stopped); `render`: view, alpha, legend (sinks.render). `stop`: an event that ends the run
    cleanly once set (a command sets it from its signal handlers, signals.StopOnSignals); without one, run()
    takes SIGINT/SIGTERM/SIGHUP itself and raises signals.Stopped after finishing. Either way the sinks are
    flushed and closed: every frame counted in `stats` is written. A sink's error (WriteFailed) is raised."""
    if stop is None:
        with StopOnSignals() as signals:
            result = run(seg, source, video=video, masks=masks, window=window, max_frames=max_frames, stats=stats,
                         stop=signals.event, **render)  # fmt: skip
        signals.raise_if_stopped()
        return result
    stats = stats if stats is not None else Stats(seg.class_names)
    # Bounded: a file never runs ahead of inference; a live source waits at one frame and keeps
    # replacing it with the newest, so lag never grows.
    frames: queue.Queue = queue.Queue(maxsize=1 if source.live else 8)
    outputs: queue.Queue = queue.Queue(maxsize=8)
    errors: list = []
    sinks = dict(video=video, masks=masks, window=window)
    reader = threading.Thread(target=_reader, args=(source, frames, stop, max_frames), daemon=True)
    writer = threading.Thread(
        target=_writer, args=(seg, outputs), kwargs=dict(**sinks, **render, stop=stop, errors=errors)
    )
    writer.daemon = True
    reader.start()
    writer.start()
    try:
        while (frame := _next(frames, stop)) is not _END:
            started = time.perf_counter()
            result = seg(frame.image)
            stats.add(frame, result, started)
            elapsed = time.perf_counter() - stats.started
            outputs.put((frame, result, stats.frames / elapsed if elapsed else None))
    finally:
        stop.set()
        _drain(reader, frames)
        outputs.put(_END)
        writer.join()
        _close((video, masks, window), errors)
        source.close()
    if errors:
        raise errors[0]
    return stats
