"""/metrics of a running dis-run in Prometheus' text format, through prometheus_client's registry and exposition:
per-stream counters read from the run at scrape time, frame age and inference latency as histograms observed per
frame, batches by size, the model as an info metric, model swaps, and the process (resident memory, descriptors,
threads)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
AGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _threads() -> int:
    """The process's OS threads (Python's, ONNX Runtime's, OpenCV's), from /proc; 0 where there is none."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    except (OSError, StopIteration, ValueError):
        return 0


class _RunCollector:
    """What the run counted, read when scraped (no second copy of the counts to drift)."""

    def __init__(self, service) -> None:
        self.service = service

    def collect(self):
        service, run = self.service, self.service.run
        labels = ["stream", "source"]
        families = {
            "frames": CounterMetricFamily("disseg_stream_frames", "Frames segmented per stream", labels=labels),
            "skipped": CounterMetricFamily(
                "disseg_stream_skipped_frames",
                "Frames never segmented (live frames replaced by newer ones, unreadable images)",
                labels=labels,
            ),  # fmt: skip
            "reconnects": CounterMetricFamily("disseg_stream_reconnects", "Reconnects of a live source", labels=labels),
            "fps": GaugeMetricFamily("disseg_stream_fps", "Frames segmented per second over the run", labels=labels),
            "up": GaugeMetricFamily("disseg_stream_up", "1 while a stream delivers frames", labels=labels),
        }
        wall = run.stats.wall()
        with run.lock:
            streams = [s for s in run.streams if not s.removed]
        for s in streams:
            key = [str(s.id), s.name]
            families["frames"].add_metric(key, s.frames)
            families["skipped"].add_metric(key, s.skipped)
            families["reconnects"].add_metric(key, s.source.reconnects)
            families["fps"].add_metric(key, s.frames / wall if wall else 0.0)
            families["up"].add_metric(key, 1.0 if s.state == "running" else 0.0)
        yield from families.values()
        batches = CounterMetricFamily("disseg_batches", "Inference batches run, by batch size", labels=["size"])
        for size, n in sorted(run.stats.batches.items()):
            batches.add_metric([str(size)], n)
        yield batches
        info = run.seg.info
        model = InfoMetricFamily("disseg_model", "The model segmenting now")
        model.add_metric([], {"name": run.seg.name, "iterations": str(info.iterations),
                              "precision": info.precision, "backend": run.seg.backend.name})  # fmt: skip
        yield model
        swaps = CounterMetricFamily("disseg_model_swaps", "Models offered while running, by outcome", labels=["result"])
        for result in ("swapped", "refused"):
            swaps.add_metric([result], sum(1 for s in service.swaps if s["result"] == result))
        yield swaps
        agreement = GaugeMetricFamily(
            "disseg_model_shadow_agreement", "Pixel agreement of the last offered model with the running one"
        )
        last = next((s["agreement"] for s in reversed(service.swaps) if s.get("agreement") is not None), None)
        if last is not None:
            agreement.add_metric([], last)
        yield agreement
        yield from _event_families(service.events)
        yield GaugeMetricFamily("process_threads", "OS threads of this process", value=_threads())


def _event_families(events):
    """Event records made by kind, and those an output dropped (a slow /events client, an absent MQTT broker)."""
    if events is None:
        return
    made = CounterMetricFamily("disseg_events", "Event records made, by type", labels=["type"])
    for kind, n in events.counts.items():
        made.add_metric([kind], n)
    yield made
    facts = events.summary()
    dropped = CounterMetricFamily("disseg_events_dropped", "Event records an output dropped", labels=["output"])
    for output in ("sse", "mqtt"):
        if f"{output}_dropped" in facts:
            dropped.add_metric([output], facts[f"{output}_dropped"])
    yield dropped
    if "mqtt_published" in facts:
        yield CounterMetricFamily("disseg_mqtt_published", "Event records the MQTT broker acknowledged",
                                  value=facts["mqtt_published"])  # fmt: skip
        yield GaugeMetricFamily("disseg_mqtt_connected", "1 while connected to the MQTT broker",
                                value=facts["mqtt_connected"])  # fmt: skip


class Telemetry:
    """The run's metrics registry; `observe` is the pipeline's per-frame hook."""

    def __init__(self, service) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.frame_age = Histogram(
            "disseg_frame_age_seconds", "Capture to inference start, per frame", ["stream"],
            registry=self.registry, buckets=AGE_BUCKETS,
        )  # fmt: skip
        self.latency = Histogram(
            "disseg_inference_latency_seconds", "Preprocess + inference + postprocess, per frame", ["stream"],
            registry=self.registry, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.registry.register(_RunCollector(service))
        service.run.on_frame.append(self.observe)

    def observe(self, stream, frame, result, started: float) -> None:
        key = str(stream.id)
        self.frame_age.labels(key).observe(max(0.0, started - frame.captured))
        self.latency.labels(key).observe(sum(result.timings.values()) / 1000)

    def forget(self, stream) -> None:
        """A removed stream's series go with it."""
        for histogram in (self.frame_age, self.latency):
            try:
                histogram.remove(str(stream.id))
            except KeyError:
                pass

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
