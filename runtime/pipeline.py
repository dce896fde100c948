"""Capture, inference and writing overlapped in threads, for one stream or many: a reader thread per source, one
inference loop that batches the next frame of every stream (the newest of a live one), one writer thread that
renders into each stream's own sinks; stats that show whether anything grows or lags, in total and per stream."""

from __future__ import annotations

import logging
import queue
import resource
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from .segmenter import Result, Segmenter
from .signals import StopOnSignals
from .sinks import MaskSink, VideoSink, WindowSink, render
from .sources import Frame, Source

_END = object()
log = logging.getLogger("disseg.run")


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


WINDOW = 10_000  # per-frame figures kept for percentiles: a camera that runs for days must not grow


def _window() -> deque:
    return deque(maxlen=WINDOW)


def _percentiles(values) -> dict:
    if not values:
        return {}
    a = np.asarray(values)
    return {
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p90": round(float(np.percentile(a, 90)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
    }


@dataclass(eq=False)
class Stream:
    """One source and its own sinks, and what the run counted of it."""

    source: Source
    name: str = ""  # for logs and the stats file, credentials redacted
    video: VideoSink | None = None
    masks: MaskSink | None = None
    window: WindowSink | None = None
    scene_tags: np.ndarray | None = None  # what this camera may see (models exported with --scene-tags)
    frames: int = 0
    frame_age_ms: deque = field(default_factory=_window)
    ended: bool = False

    def __post_init__(self) -> None:
        # Bounded: a file never runs far ahead of inference; a live source waits at one frame and keeps replacing
        # it with the newest, so lag never grows.
        self.queue: queue.Queue = queue.Queue(maxsize=1 if self.source.live else 8)

    def add(self, frame: Frame, started: float) -> None:
        self.frames += 1
        self.frame_age_ms.append((started - frame.captured) * 1000)

    def summary(self, wall: float) -> dict:
        return {
            "source": self.name,
            "frames": self.frames,
            "fps": round(self.frames / wall, 3) if wall else None,
            "skipped": self.source.skipped,
            "reconnects": self.source.reconnects,
            "frame_age_ms": _percentiles(self.frame_age_ms),
            "truncated": self.source.truncated,
        }


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
    batches: Counter = field(default_factory=Counter)  # batch size -> how many batches of it ran
    streams: list = field(default_factory=list)  # the run's Streams, for their own figures

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
        total = self.stages["total_ms"]
        area = self.class_pixels / max(1, self.class_pixels.sum()) if self.class_pixels is not None else []
        return {
            "frames": self.frames,
            "wall_s": round(wall, 3),
            "fps": round(self.frames / wall, 3) if wall else None,
            "latency_ms": {k: _percentiles(v) for k, v in self.stages.items()},
            "frame_age_ms": _percentiles(self.frame_age_ms),
            "first_1000_total_ms": _percentiles(self.first_totals_ms),
            "last_1000_total_ms": _percentiles(list(total)[-1000:]),
            "percentiles_over_last_frames": min(self.frames, WINDOW),
            "rss_mb": {
                "start": round(self.rss_mb[0], 1) if self.rss_mb else None,
                "end": round(_rss_mb(), 1),
                "samples_every_1000_frames": [round(v, 1) for v in self.rss_mb],
            },
            "class_area": {n: round(float(a), 5) for n, a in zip(self.class_names, area)},
            "runtime": "python",
            "streams": [stream.summary(wall) for stream in self.streams],
            "batches": {str(size): n for size, n in sorted(self.batches.items())},
            **extra,
        }


def _reader(stream: Stream, stop: threading.Event, arrived: threading.Event, max_frames: int | None) -> None:
    try:
        for n, frame in enumerate(stream.source):
            if stop.is_set() or (max_frames is not None and n >= max_frames):
                break
            if stream.source.live:  # keep only the newest: a live frame never waits behind an older one
                try:
                    stream.queue.get_nowait()
                except queue.Empty:
                    pass
            stream.queue.put(frame)
            arrived.set()
    finally:
        stream.queue.put(_END)
        arrived.set()


def _writer(
    seg: Segmenter,
    outputs: queue.Queue,
    *,
    stop: threading.Event,
    errors: list,
    viewer=None,
    view: str = "overlay",
    alpha: float = 0.5,
    legend: bool = True,
) -> None:
    """Each segmented frame into its stream's sinks (and the web view); a window closed or a sink failing stops
    the run."""
    try:
        while (item := outputs.get()) is not _END:
            index, stream, frame, result, fps = item
            if stream.masks is not None:
                stream.masks.write(frame.name, result.labels)
            if stream.video is None and stream.window is None and viewer is None:
                continue
            shown = render(seg, frame, result, view=view, alpha=alpha, legend=legend, fps=fps)
            if stream.video is not None:
                stream.video.write(shown)
            if viewer is not None:
                viewer.publish(index, shown)
            if stream.window is not None:
                stream.window.write(shown)
                if stream.window.closed:
                    stop.set()
    except BaseException as err:  # surfaced in the main thread
        errors.append(err)
        stop.set()
        while outputs.get() is not _END:  # drain so the producer never blocks
            pass


def _take(stream: Stream, stop: threading.Event):
    """A file stream's next frame (waiting for it), a live stream's newest if one is there (None if not); _END
    once the stream has ended; None once `stop` is set."""
    if stream.source.live:
        try:
            return stream.queue.get_nowait()
        except queue.Empty:
            return None
    while not stop.is_set():
        try:
            return stream.queue.get(timeout=0.1)
        except queue.Empty:
            continue
    return None


def _gather(streams: list[Stream], stop: threading.Event, arrived: threading.Event) -> list[tuple[Stream, Frame]]:
    """The next batch: a frame from every stream that has one; waits until there is at least one. Empty once every
    stream has ended or `stop` is set."""
    while not stop.is_set():
        arrived.clear()
        batch = []
        for stream in streams:
            if stream.ended:
                continue
            item = _take(stream, stop)
            if item is _END:
                stream.ended = True
            elif item is not None:
                batch.append((stream, item))
        if batch or all(stream.ended for stream in streams):
            return batch
        arrived.wait(0.05)
    return []


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
    **options,
) -> Stats:
    """One source into its sinks: run_streams with one stream."""
    return run_streams(seg, [Stream(source, video=video, masks=masks, window=window)], **options)


def run_streams(
    seg: Segmenter,
    streams: list[Stream],
    *,
    max_frames: int | None = None,
    stats: Stats | None = None,
    stop: threading.Event | None = None,
    viewer=None,
    **render,
) -> Stats:
    """Segment every frame of every stream into its sinks, adding to `stats` (pass one in to keep what was counted
    when the run is stopped); `max_frames` is per stream; `render`: view, alpha, legend (sinks.render); `viewer`:
    a serve.Viewer that gets each rendered frame. Each round batches the next frame of every file stream and the
    newest of every live one (a fixed-batch model runs them one at a time); a stream that ends leaves the others
    running, the run ends when all have. `stop`: an event that ends the run cleanly once set (a command sets it from
    its signal handlers, signals.StopOnSignals); without one, the run takes SIGINT/SIGTERM/SIGHUP itself and raises
    signals.Stopped after finishing. Either way the sinks are flushed and closed: every frame counted in `stats` is
    written. A sink's error (WriteFailed) is raised."""
    if stop is None:
        with StopOnSignals() as signals:
            result = run_streams(seg, streams, max_frames=max_frames, stats=stats, stop=signals.event, viewer=viewer,
                                 **render)  # fmt: skip
        signals.raise_if_stopped()
        return result
    stats = stats if stats is not None else Stats(seg.class_names)
    stats.streams = streams
    if len(streams) > 1 and seg.batch == 1:
        log.info("%s has a fixed batch of 1: the %d streams run one frame at a time (export with --dynamic-batch to "
                 "batch them)", seg.path.name, len(streams))  # fmt: skip
    outputs: queue.Queue = queue.Queue(maxsize=8 * len(streams))
    errors: list = []
    arrived = threading.Event()
    readers = [threading.Thread(target=_reader, args=(s, stop, arrived, max_frames), daemon=True) for s in streams]
    writer = threading.Thread(
        target=_writer, args=(seg, outputs), kwargs=dict(**render, viewer=viewer, stop=stop, errors=errors), daemon=True
    )
    for thread in (*readers, writer):
        thread.start()
    try:
        while batch := _gather(streams, stop, arrived):
            started = time.perf_counter()
            tags = [stream.scene_tags for stream, _ in batch] if seg.info.scene_tags else None
            results = seg.segment_batch([frame.image for _, frame in batch], scene_tags=tags)
            stats.batches.update(seg.batch_plan(len(batch)))
            for (stream, frame), result in zip(batch, results):
                stats.add(frame, result, started)
                stream.add(frame, started)
                elapsed = time.perf_counter() - stats.started
                outputs.put(
                    (streams.index(stream), stream, frame, result, stream.frames / elapsed if elapsed else None)
                )
    finally:
        stop.set()
        for reader, stream in zip(readers, streams):
            _drain(reader, stream.queue)
        outputs.put(_END)
        writer.join()
        _close([sink for s in streams for sink in (s.video, s.masks, s.window)], errors)
        for stream in streams:
            stream.source.close()
    if errors:
        raise errors[0]
    return stats
