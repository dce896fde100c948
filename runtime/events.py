"""Results as data for the programs around the box: one JSON record per segmented frame (stream, source, frame
index, capture time, model, per-class area fractions, the scene tags in force) and an `appeared` or `gone` record
when a class's share of the frame crosses --event-min-area. Written as JSON Lines (--events FILE or -), streamed by
the web view as Server-Sent Events (/events) and published over MQTT (--mqtt). The C++ runtime writes the same keys
(tests/events_keys.json holds both to one list).

A class has *appeared* in a stream when its area fraction reaches the threshold in a frame after being below it (or
in the stream's first frame), and is *gone* when it falls below it again; one frame decides, so a class hovering at
the threshold flips on every frame it crosses (raise the threshold to quiet it)."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .atomic import check_output
from .errors import WriteFailed

log = logging.getLogger("disseg.events")
DEFAULT_MIN_AREA = 0.01  # a class must cover 1 % of the frame to have appeared
KINDS = ("frame", "appeared", "gone")


def rounded(value: float, digits: int = 6) -> float:
    """Half away from zero at `digits` decimals, as the C++ runtime rounds (Python's round() goes half to even)."""
    scale = 10.0**digits
    return math.floor(value * scale + 0.5) / scale


def area_fractions(labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """{class: share of the frame's pixels} for every class present, in class order."""
    counts = np.bincount(labels.reshape(-1), minlength=len(class_names))[: len(class_names)]
    total = max(1, labels.size)
    return {class_names[c]: rounded(float(counts[c]) / total) for c in np.flatnonzero(counts)}


def captured_epoch(captured: float) -> float:
    """A frame's capture time (time.perf_counter()) as seconds since the epoch, to the millisecond."""
    return rounded(time.time() - (time.perf_counter() - captured), 3)


def tags_in_force(tags, class_names: tuple[str, ...]) -> dict[str, float] | None:
    """{class: value} of a stream's scene-tag vector (classes at 0 left out); None for a model without scene tags
    or a stream given none."""
    if tags is None:
        return None
    return {class_names[c]: rounded(float(tags[c])) for c in np.flatnonzero(np.asarray(tags) > 0)}


class Events:
    """Turns each segmented frame into records and hands them to every output (`publish(record)`); the pipeline's
    writer thread calls `frame` (never the inference thread: a slow output costs no inference)."""

    def __init__(self, outputs: list, *, min_area: float = DEFAULT_MIN_AREA) -> None:
        self.outputs, self.min_area = outputs, min_area
        self.counts: Counter = Counter()
        self._present: dict[int, set[str]] = {}  # stream id -> classes at or above the threshold
        self._lock = threading.Lock()

    def frame(self, stream, frame, result, seg) -> None:
        names = seg.class_names
        areas = area_fractions(result.labels, names)
        head = {
            "stream": stream.id,
            "source": stream.name,
            "frame": frame.index,
            "captured": captured_epoch(frame.captured),
            "model": seg.name,
            "iterations": seg.info.iterations,
        }
        records = [{"type": "frame", **head, "areas": areas, "scene_tags": tags_in_force(stream.scene_tags, names)}]
        now = {name for name, share in areas.items() if share >= self.min_area}
        with self._lock:
            before = self._present.get(stream.id, set())
            self._present[stream.id] = now
        for name in (n for n in names if n in now - before):
            records.append({"type": "appeared", **head, "class": name, "area": areas[name]})
        for name in (n for n in names if n in before - now):
            records.append({"type": "gone", **head, "class": name, "area": areas.get(name, 0.0)})
        for record in records:
            self.counts[record["type"]] += 1
            for output in self.outputs:
                output.publish(record)

    def summary(self) -> dict:
        """The stats file's "events": records made by kind, and what each output counted."""
        facts = {kind: self.counts[kind] for kind in KINDS}
        for output in self.outputs:
            facts.update(getattr(output, "facts", dict)())
        return facts

    def close(self) -> None:
        for output in self.outputs:
            output.close()


class JsonLines:
    """Records as JSON Lines into a file (truncated at the start, each line flushed as it is written, so `tail -f`
    and a crash both see every whole record) or standard output ("-")."""

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        if self.target == "-":
            self.file = sys.stdout
        else:
            check_output(Path(self.target), option="--events")
            self.file = open(self.target, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed in close())
        self.written = 0
        self._lock = threading.Lock()

    def publish(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            with self._lock:
                self.file.write(line)
                self.file.flush()
                self.written += 1
        except OSError as err:
            raise WriteFailed(f"--events {self.target}: cannot write ({err.strerror or err}); free space or "
                              "choose another path") from None  # fmt: skip

    def close(self) -> None:
        if self.file is sys.stdout:
            self.file.flush()
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as err:
            log.error("--events %s: %s", self.target, err.strerror or err)
        finally:
            self.file.close()
