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
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .segmenter import Result, Segmenter
from .signals import StopOnSignals
from .sinks import MaskSink, VideoSink, WindowSink
from .sinks import render as render_view
from .sources import Frame, Source

_END = object()  # a stream's queue, and the writer's: nothing more comes
_ENDED = object()  # the writer's: a stream ended, finalize its files
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
    """One source and its own sinks, and what the run counted of it. `id` is stable for the run's life (the web view's
    /streams/ID, the stats' order); a removed or ended stream keeps its figures."""

    source: Source
    name: str = ""  # for logs and the stats file, credentials redacted
    video: VideoSink | None = None
    masks: MaskSink | None = None
    window: WindowSink | None = None
    rtsp: object | None = None  # an rtsp.Mount: this stream's rendered view served over RTSP
    scene_tags: np.ndarray | None = None  # what this camera may see (models exported with --scene-tags)
    uri: str = ""  # as it was asked for (redacted), for GET /streams
    frames: int = 0
    frame_age_ms: deque = field(default_factory=_window)
    ended: bool = False
    removed: bool = False
    id: int = -1
    dropped: int = 0  # frames of a live source the run's own newest-only queue replaced before inference took them
    last_frame_at: float | None = None  # time.monotonic() of the newest frame segmented

    def __post_init__(self) -> None:
        # Bounded: a file never runs far ahead of inference; a live source waits at one frame and keeps replacing
        # it with the newest (counted in `dropped`), so lag never grows.
        self.queue: queue.Queue = queue.Queue(maxsize=1 if self.source.live else 8)
        self.stop = threading.Event()  # this stream alone: removed, or the run stops
        self.reader: threading.Thread | None = None

    @property
    def skipped(self) -> int:
        """Frames never segmented: unreadable images, live frames replaced by newer ones (in the source's reader and
        in the run's queue)."""
        return self.source.skipped + self.dropped

    @property
    def state(self) -> str:
        if self.removed:
            return "removed"
        if self.ended:
            return "ended"
        return getattr(self.source, "state", "running")

    def add(self, frame: Frame, started: float) -> None:
        self.frames += 1
        self.frame_age_ms.append((started - frame.captured) * 1000)
        self.last_frame_at = time.monotonic()

    def summary(self, wall: float) -> dict:
        return {
            "source": self.name,
            "frames": self.frames,
            "fps": round(self.frames / wall, 3) if wall else None,
            "skipped": self.skipped,
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

    def wall(self) -> float:
        return time.perf_counter() - self.started

    def summary(self, **extra) -> dict:
        wall = self.wall()
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


def _put(stream: Stream, item) -> bool:
    """Into a stream's queue: a live frame replaces the one waiting (counted); a file's frame waits for room, looking
    at the stream's stop. False once the stream is stopped."""
    if stream.source.live:
        try:
            stream.queue.get_nowait()
            stream.dropped += 1
        except queue.Empty:
            pass
        stream.queue.put(item)
        return True
    while not stream.stop.is_set():
        try:
            stream.queue.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _reader(stream: Stream, arrived: threading.Event, max_frames: int | None) -> None:
    try:
        for n, frame in enumerate(stream.source):
            if stream.stop.is_set() or (max_frames is not None and n >= max_frames) or not _put(stream, frame):
                break
            arrived.set()
    except Exception as err:  # noqa: BLE001 (a source that fails ends its stream, not the run)
        log.error("%s: %s", stream.name, err)
    finally:
        while True:  # the end marker always gets in: a stopped stream's waiting frames are not needed
            try:
                stream.queue.put_nowait(_END)
                break
            except queue.Full:
                if not stream.stop.is_set():
                    stream.queue.put(_END)
                    break
                try:
                    stream.queue.get_nowait()
                except queue.Empty:
                    pass
        arrived.set()


def _render_into(item, viewer, stop: threading.Event, render: dict, results: list) -> None:
    stream, frame, result, fps, seg = item
    for hook in results:  # results as data: events, MQTT
        hook(stream, frame, result, seg)
    if stream.masks is not None:
        stream.masks.write(frame.name, result.labels)
    if viewer is not None:
        viewer.keep_result(stream.id, result)
    if stream.video is None and stream.window is None and viewer is None and stream.rtsp is None:
        return
    shown = render_view(seg, frame, result, fps=fps, **render)
    if stream.video is not None:
        stream.video.write(shown)
    if stream.rtsp is not None:
        stream.rtsp.write(shown)
    if viewer is not None:
        viewer.publish(stream.id, shown)
    if stream.window is not None:
        stream.window.write(shown)
        if stream.window.closed:
            stop.set()


def _writer(outputs: queue.Queue, *, stop: threading.Event, errors: list, viewer=None, results=(), **render) -> None:
    """Each segmented frame into its stream's sinks (and the web view, and the `results` hooks: events); a stream
    that ended has its files finalized here, after its last frame; a window closed or a sink failing stops the run."""
    try:
        while (item := outputs.get()) is not _END:
            if item[0] is _ENDED:
                _close([item[1].video, item[1].masks, item[1].rtsp], errors)
            else:
                _render_into(item, viewer, stop, render, results)
    except BaseException as err:  # surfaced in the main thread
        errors.append(err)
        stop.set()
        while outputs.get() is not _END:  # drain so the producer never blocks
            pass


def _take(stream: Stream, stop: threading.Event):
    """A file stream's next frame (waited for: every round batches one frame of each file stream), a live stream's
    newest if one is there (None if not); _END once the stream has ended; None once `stop` is set."""
    while True:
        try:
            return stream.queue.get(timeout=0.1) if not stream.source.live else stream.queue.get_nowait()
        except queue.Empty:
            if stream.source.live or stop.is_set():
                return None


def _close(sinks, errors: list) -> None:
    """Close every sink, even after one fails (a full disk for the masks must not cost the video); keep errors."""
    for sink in sinks:
        if sink is None:
            continue
        try:
            sink.close()
        except Exception as err:  # noqa: BLE001 (surfaced by run() once all are closed)
            errors.append(err)


STOP_BUDGET_S = 1.0  # how long a stop waits for the readers before it leaves one inside a library to end alone


class Run:
    """A running pipeline: streams that may be added and removed while it runs (add/remove, from any thread), a
    model that may be swapped between two batches (`between_batches` hooks run on the inference thread), figures
    that observers see per frame (`on_frame`). Every stop is prompt: nothing on the stop's path waits on a camera."""

    def __init__(
        self,
        seg: Segmenter,
        *,
        stop: threading.Event,
        stats: Stats | None = None,
        viewer=None,
        max_frames: int | None = None,
        render: dict | None = None,
    ) -> None:
        self.seg, self.stop, self.viewer, self.max_frames = seg, stop, viewer, max_frames
        self.stats = stats if stats is not None else Stats(seg.class_names)
        self.stats.streams = self.streams = []  # every stream of the run, in id order, removed and ended ones too
        self.render = render or {}
        self.lock = threading.RLock()
        self.arrived = threading.Event()
        self.outputs: queue.Queue = queue.Queue(maxsize=64)
        self.errors: list = []
        self.keep_alive = False  # a service: once an operator changed the streams, no streams is no reason to end
        self.between_batches: list[Callable[[], None]] = []
        self.on_frame: list[Callable] = []  # (stream, frame, result, started)
        self.on_batch: list[Callable] = []  # (batch, results, seg): e.g. a model's shadow run
        self.on_result: list[Callable] = []  # (stream, frame, result, seg), on the writer thread: events, MQTT
        self.batches_done = 0
        self._writer: threading.Thread | None = None

    def add(self, stream: Stream) -> Stream:
        """Start a stream (any thread); it gets the next id."""
        with self.lock:
            stream.id = len(self.streams)
            self.streams.append(stream)
        stream.reader = threading.Thread(
            target=_reader, args=(stream, self.arrived, self.max_frames), daemon=True, name=f"reader s{stream.id}"
        )
        stream.reader.start()
        return stream

    def find(self, stream_id: int) -> Stream | None:
        with self.lock:
            return self.streams[stream_id] if 0 <= stream_id < len(self.streams) else None

    def remove(self, stream: Stream) -> None:
        """Stop a stream (any thread): its reader ends, its outputs are finalized after its last frame."""
        stream.removed = True
        stream.stop.set()
        stream.source.interrupt()
        self.arrived.set()

    def active(self) -> list[Stream]:
        with self.lock:
            return [s for s in self.streams if not s.ended]

    def _gather(self) -> list[tuple[Stream, Frame]]:
        """The next batch: a frame from every stream that has one. Empty after ~0.1 s without one (so the hooks
        between batches run), or at once when `stop` is set."""
        deadline = time.monotonic() + 0.1
        while not self.stop.is_set():
            self.arrived.clear()
            batch = []
            for stream in self.active():
                item = _take(stream, self.stop)
                if item is _END:
                    self._ended(stream)
                elif item is not None:
                    batch.append((stream, item))
            if batch or time.monotonic() > deadline or not self.active():
                return batch
            self.arrived.wait(0.02)
        return []

    def _ended(self, stream: Stream) -> None:
        stream.ended = True
        stream.source.close()
        self.outputs.put((_ENDED, stream))
        log.info("%s: ended after %d frames", stream.name, stream.frames)

    def _segment(self, batch: list[tuple[Stream, Frame]]) -> None:
        seg, started = self.seg, time.perf_counter()
        tags = [stream.scene_tags for stream, _ in batch] if seg.info.scene_tags else None
        results = seg.segment_batch([frame.image for _, frame in batch], scene_tags=tags)
        self.stats.batches.update(seg.batch_plan(len(batch)))
        for (stream, frame), result in zip(batch, results):
            self.stats.add(frame, result, started)
            stream.add(frame, started)
            for hook in self.on_frame:
                hook(stream, frame, result, started)
            elapsed = time.perf_counter() - self.stats.started
            self.outputs.put((stream, frame, result, stream.frames / elapsed if elapsed else None, seg))
        for hook in self.on_batch:
            hook(batch, results, seg)
        self.batches_done += 1

    def _finished(self) -> bool:
        return self.stop.is_set() or (not self.active() and not self.keep_alive)

    def run(self) -> Stats:
        if len(self.streams) > 1 and self.seg.batch == 1:
            log.info("%s has a fixed batch of 1: the %d streams run one frame at a time (export with --dynamic-batch "
                     "to batch them)", self.seg.name, len(self.streams))  # fmt: skip
        kwargs = dict(stop=self.stop, errors=self.errors, viewer=self.viewer, results=self.on_result, **self.render)
        self._writer = threading.Thread(target=_writer, args=(self.outputs,), kwargs=kwargs, daemon=True, name="writer")
        self._writer.start()
        try:
            while not self._finished():
                for hook in self.between_batches:
                    hook()
                if batch := self._gather():
                    self._segment(batch)
        finally:
            self._finish()
        if self.errors:
            raise self.errors[0]
        return self.stats

    def _finish(self) -> None:
        """Stop every reader (interrupting live sources), finalize every sink; nothing here waits on a camera for
        more than STOP_BUDGET_S in all."""
        self.stop.set()
        with self.lock:
            streams = list(self.streams)
        for stream in streams:
            stream.stop.set()
            stream.source.interrupt()
        deadline = time.monotonic() + STOP_BUDGET_S
        for stream in streams:
            if stream.reader is not None:
                stream.reader.join(timeout=max(0.0, deadline - time.monotonic()))
        self.outputs.put(_END)
        self._writer.join()
        _close([sink for s in streams for sink in (s.video, s.masks, s.window, s.rtsp)], self.errors)
        for stream in streams:
            stream.source.close(wait=max(0.0, deadline - time.monotonic()))


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
    pipeline = Run(seg, stop=stop, stats=stats, viewer=viewer, max_frames=max_frames, render=render)
    for stream in streams:
        pipeline.add(stream)
    return pipeline.run()
