"""dis-run as a service: streams added and removed while it runs (the web view's /streams, SIGHUP re-reading a
--streams file), a model swapped under live streams after a shadow run on those very streams, readiness for
/readyz, and systemd's notifications. The pipeline (pipeline.Run) does the work; this is what an operator changes
and asks of it."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import BadInput, DisError
from .notify import Notifier
from .pipeline import Run, Stream
from .redaction import redact
from .sources import parse_uri, read_streams

log = logging.getLogger("disseg.service")

READY_WINDOW_S = 10.0  # /readyz: every live stream delivered a frame this recently
SHADOW_FRAMES = 8  # a new model runs beside the old one on this many live frames before it is swapped in


class Candidate:
    """A model offered while running: opened beside the running one, run in shadow, then swapped in or refused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seg = None
        self.frames = 0
        self.agree = 0
        self.pixels = 0
        self.failure: str | None = None
        self.notes: list[str] = []

    @property
    def agreement(self) -> float | None:
        return round(self.agree / self.pixels, 6) if self.pixels else None


class Service:
    """What an operator changes while dis-run runs. `make_stream(spec, tags, stream_id)` builds a Stream with its
    sinks, as the command line's sources get them."""

    def __init__(
        self,
        run: Run,
        *,
        make_stream: Callable[[dict, object, int], Stream],
        open_model: Callable[[Path], object],
        model_path: Path | None,
        streams_file: Path | None = None,
        max_reconnects: int = 10,
        shadow_frames: int = SHADOW_FRAMES,
        ready_window_s: float = READY_WINDOW_S,
        notifier: Notifier | None = None,
        reload: threading.Event | None = None,
    ) -> None:
        self.run, self.make_stream, self.open_model = run, make_stream, open_model
        self.model_path, self.streams_file, self.max_reconnects = model_path, streams_file, max_reconnects
        self.shadow_frames, self.ready_window_s = shadow_frames, ready_window_s
        self.notifier = notifier or Notifier()
        self.swaps: list[dict] = []
        self.candidate: Candidate | None = None
        self.telemetry = None  # a telemetry.Telemetry, when served
        self.events = None  # an events.Events, when records are written, served or published
        self._reload = reload if reload is not None else threading.Event()  # SIGHUP sets it
        self._lock = threading.Lock()
        self._model_mtime = _mtime(model_path)
        self._file_uris = read_streams(streams_file) if streams_file is not None else []
        run.between_batches.append(self._between_batches)
        run.on_batch.append(self._after_batch)

    # --- streams -------------------------------------------------------------------------------------------------

    def add(self, uri: str, scene_tags=None) -> Stream:
        """Start a source given as a URI (what --source takes); BadInput with the one line if it cannot be."""
        spec = {**parse_uri(uri), "uri": uri, "max_reconnects": self.max_reconnects, "retry": True}
        with self.run.lock:
            stream = self.make_stream(spec, scene_tags, len(self.run.streams))
            self.run.add(stream)
        self.run.keep_alive = True
        log.info("s%d added: %s", stream.id, stream.name)
        return stream

    def remove(self, stream_id: int) -> Stream | None:
        stream = self.run.find(stream_id)
        if stream is None or stream.removed:
            return None
        self.run.remove(stream)
        self.run.keep_alive = True
        if self.telemetry is not None:
            self.telemetry.forget(stream)
        log.info("s%d removed: %s (%d frames)", stream.id, stream.name, stream.frames)
        return stream

    def listing(self) -> list[dict]:
        with self.run.lock:
            streams = [s for s in self.run.streams if not s.removed]
        return [
            {
                "id": s.id,
                "source": s.name,
                "uri": s.uri,
                "state": s.state,
                "frames": s.frames,
                "skipped": s.skipped,
                "reconnects": s.source.reconnects,
            }  # fmt: skip
            for s in streams
        ]

    # --- SIGHUP ----------------------------------------------------------------------------------------------------

    def request_reload(self) -> None:
        """From the signal handler: only a flag; the work happens between two batches."""
        self._reload.set()

    def _apply_reload(self) -> None:
        self.notifier.reloading()
        if self.streams_file is not None:
            self._reload_streams()
        mtime = _mtime(self.model_path)
        if self.model_path is not None and mtime != self._model_mtime:
            self._model_mtime = mtime
            log.info("reload: %s changed; checking it on the live streams before swapping it in", self.model_path.name)
            self.offer_model(self.model_path)
        elif self.streams_file is None:
            log.info("reload: nothing to reload (no --streams file, and the model file did not change)")
        self.notifier.reloaded()

    def _reload_streams(self) -> None:
        """Apply the difference between the --streams file now and what it said before: new lines are added, lines
        gone are removed; a file that cannot be read leaves everything running (one line)."""
        try:
            uris = read_streams(self.streams_file)
            for uri in uris:
                parse_uri(uri)
        except BadInput as err:
            log.error("reload: %s; the streams run on unchanged", err)
            return
        old, new = self._file_uris, uris
        with self.run.lock:
            running = {s.uri: s for s in self.run.streams if not s.removed and not s.ended}
        for uri in [u for u in old if u not in new]:
            stream = running.get(redact(uri))
            if stream is not None:
                self.remove(stream.id)
        for uri in [u for u in new if u not in old]:
            self.add(uri)
        self._file_uris = new
        log.info("reload: %s read (%d sources)", self.streams_file, len(new))

    # --- the model -------------------------------------------------------------------------------------------------

    def offer_model(self, path: Path) -> None:
        """Open `path` beside the running model (in a thread of its own; frames keep flowing) and, if it opens and
        suits the streams, run it in shadow on the next frames; BadInput for a path that is no file at all."""
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"model {path}: no such file; give the path of an exported .onnx or .engine on this box")
        with self._lock:
            if self.candidate is not None:
                raise BadInput(f"model {path}: {self.candidate.path.name} is being checked already; try again shortly")
            self.candidate = Candidate(path)
        threading.Thread(target=self._open_candidate, args=(self.candidate,), daemon=True, name="model").start()

    def _open_candidate(self, candidate: Candidate) -> None:
        try:
            candidate.seg = self.open_model(candidate.path)
            self._check_contract(candidate)
        except (DisError, OSError, RuntimeError, ValueError) as err:
            candidate.failure = f"cannot use it ({err})"
            return
        log.info("model %s: opened; running it in shadow on %d frames", candidate.path.name, self.shadow_frames)

    def _check_contract(self, candidate: Candidate) -> None:
        new, old = candidate.seg.info, self.run.seg.info
        tagged = [s for s in self.run.active() if s.scene_tags is not None]
        if tagged and not new.scene_tags:
            raise BadInput(f"{len(tagged)} stream(s) have scene tags and it takes none (export it with --scene-tags)")
        if tagged and new.class_names != old.class_names:
            raise BadInput("its classes differ and streams have scene tags named by the running model's classes")
        if new.class_names != old.class_names:
            candidate.notes.append(f"classes differ: {len(old.class_names)} -> {len(new.class_names)}")
        if (new.input_height, new.input_width) != (old.input_height, old.input_width):
            candidate.notes.append(
                f"input {old.input_height}x{old.input_width} -> {new.input_height}x{new.input_width}"
            )

    def _after_batch(self, batch, results, seg) -> None:
        """The shadow run: the candidate on the very frames the running model just segmented."""
        self.notifier.progress()
        candidate = self.candidate
        if candidate is None or candidate.seg is None or candidate.failure is not None:
            return
        if candidate.frames >= self.shadow_frames:
            return
        try:
            tags = [stream.scene_tags for stream, _ in batch] if candidate.seg.info.scene_tags else None
            shadow = candidate.seg.segment_batch([frame.image for _, frame in batch], scene_tags=tags)
        except (DisError, RuntimeError, ValueError) as err:
            candidate.failure = f"it failed on a live frame ({err})"
            return
        for result, new in zip(results, shadow):
            if new.labels.shape != result.labels.shape or int(new.labels.max(initial=0)) >= len(
                candidate.seg.class_names
            ):
                candidate.failure = "its labels do not fit the frames or its classes"
                return
            candidate.agree += int(np.count_nonzero(new.labels == result.labels))
            candidate.pixels += result.labels.size
            candidate.frames += 1

    def _between_batches(self) -> None:
        if self._reload.is_set():
            self._reload.clear()
            self._apply_reload()
        candidate = self.candidate
        if candidate is None:
            return
        if candidate.failure is not None:
            self._refuse(candidate)
        elif candidate.seg is not None and candidate.frames >= self.shadow_frames:
            self._swap(candidate)

    def _refuse(self, candidate: Candidate) -> None:
        log.error("model %s refused: %s; %s keeps running", candidate.path.name, candidate.failure,
                  self.run.seg.name)  # fmt: skip
        self._record(candidate, "refused")
        if candidate.seg is not None:
            candidate.seg.close()

    def _swap(self, candidate: Candidate) -> None:
        old, new = self.run.seg, candidate.seg
        self.run.seg = new
        with self.run.lock:
            for stream in self.run.streams:
                if stream.masks is not None:
                    stream.masks.set_palette(new.info.palette)
        notes = "; ".join(candidate.notes)
        log.info(
            "model %s swapped in after %d shadow frames (agreement with %s %.2f %%%s)", new.name,
            candidate.frames, old.name, 100 * (candidate.agreement or 0), f"; {notes}" if notes else "",
        )  # fmt: skip
        self._record(candidate, "swapped", previous=old.name)
        self._model_mtime = _mtime(self.model_path)
        old.close()

    def _record(self, candidate: Candidate, result: str, **extra) -> None:
        self.swaps.append(
            {
                "model": candidate.path.name,
                "result": result,
                "shadow_frames": candidate.frames,
                "agreement": candidate.agreement,
                "reason": candidate.failure,
                "notes": candidate.notes,
                "at_frame": self.run.stats.frames,
                "time": time.time(),
                **extra,
            }  # fmt: skip
        )
        with self._lock:
            self.candidate = None

    def close(self) -> None:
        """A model still being checked when the run ends is closed unused."""
        candidate = self.candidate
        if candidate is not None and candidate.seg is not None:
            candidate.seg.close()

    # --- health ----------------------------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """(ready, why): the model is loaded and every live stream delivered a frame within the window."""
        if self.run.seg is None:
            return False, "the model is not loaded"
        now = time.monotonic()
        late = []
        for stream in self.run.active():
            if not stream.source.live:
                continue
            age = None if stream.last_frame_at is None else now - stream.last_frame_at
            if age is None or age > self.ready_window_s:
                seen = "no frame yet" if age is None else f"last frame {age:.0f} s ago"
                late.append(f"s{stream.id} {stream.name} ({stream.state}, {seen})")
        if late:
            return False, f"live streams without a frame in {self.ready_window_s:.0f} s: " + "; ".join(late)
        return True, f"ready: {self.run.seg.name}, {len(self.run.active())} streams"

    def live_facts(self) -> dict:
        """The service's part of /stats.json."""
        return {
            "model": self.run.seg.name,
            "model_swaps": self.swaps,
            "streams": self.listing(),
            "ready": self.readiness()[0],
        }


def _mtime(path: Path | None) -> float | None:
    try:
        return os.stat(path).st_mtime_ns if path is not None else None
    except OSError:
        return None
