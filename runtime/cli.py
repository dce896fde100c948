"""dis-run and dis-bench: the runtime's commands (no torch)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click
import numpy as np

from .atomic import atomic_write, check_output
from .backends import CHOICES
from .choices import DEFAULT_MAX_RECONNECTS, VIEWS
from .cli_util import (
    MAX_BATCH,
    MAX_COUNT,
    MODEL,
    Command,
    Finite,
    handle_errors,
    parse_int_list,
    setup_logging,
    threads_option,
    write_json,
)
from .deps import extra
from .errors import BadInput
from .redaction import redact

log = logging.getLogger("disseg.run")
MAX_FRAMES = 2**31 - 1  # the C++ runtime counts frames in an int


SINGLE_SOURCES = ("camera", "video", "images", "rtsp", "gst", "csi")
REPLAYABLE = {"video", "images", "gst"}  # --loop plays these again (a pipeline only when it is a file)


def source_options(func):
    """One way to name sources, as one group of options the source layer brings: --source URI, repeatable,
    --streams FILE, and the one-source flags."""
    for option in reversed(
        [
            click.option(
                "--source",
                "uris",
                multiple=True,
                help="a source URI, repeatable: 0, v4l2:///dev/video0, csi://0, rtsp://..., http(s)://..., a video "
                "file, an image folder or glob, gst:PIPELINE",
            ),
            click.option("--streams", type=click.Path(path_type=Path), help="a file of source URIs, one a line"),
            click.option("--camera", type=click.IntRange(0, 1023), help="camera index (V4L2 /dev/videoN)"),
            click.option("--video", help="video file, read frame by frame, nothing dropped"),
            click.option("--images", help="image folder or glob, e.g. 'photos/*.jpg'"),
            click.option("--rtsp", help="RTSP/HTTP stream URL (reconnects when it drops)"),
            click.option("--gst", help="raw GStreamer pipeline ending in appsink"),
            click.option("--csi", type=click.IntRange(0, 15), help="Jetson CSI camera sensor id (nvarguscamerasrc)"),
            click.option(
                "--max-reconnects",
                default=DEFAULT_MAX_RECONNECTS,
                show_default=True,
                type=click.IntRange(0, MAX_COUNT),
                help="a live source that drops is reopened this many times in a row before giving up",
            ),
        ]
    ):
        func = option(func)
    return func


@click.command(
    cls=Command,
    help="Segment cameras, videos, image folders or streams with an exported DIS model; several sources run as one "
    "batch per round.",
)
@click.argument("model", type=MODEL)
@source_options
@click.option("--backend", default="auto", show_default=True, type=click.Choice(CHOICES))
@click.option(
    "--output",
    "outputs_given",
    multiple=True,
    metavar="FILE|rtsp://@:PORT/NAME",
    help="write the rendered view to this video file, and/or serve it over RTSP (rtsp://@:8554/NAME on loopback, "
    "rtsp://@0.0.0.0:8554/NAME off it, with --serve-token; several sources: NAME.sN); once each",
)
@click.option("--rtsp-bitrate", default=4000, show_default=True, type=click.IntRange(100, 100_000), metavar="KBPS",
              help="RTSP output: H.264 bitrate in kbit/s")  # fmt: skip
@click.option("--rtsp-keyint", default=30, show_default=True, type=click.IntRange(1, 1000), metavar="FRAMES",
              help="RTSP output: a key frame every this many frames (a client joins at the next one)")  # fmt: skip
@click.option("--stamp-time", "stamp", is_flag=True,
              help="draw each frame's capture time as cells across the top of the view (benchmarks/rtsp_latency.py "
              "reads them back)")  # fmt: skip
@click.option("--events", "events_to", metavar="FILE|-",
              help="write one JSON line per segmented frame (class areas, scene tags) and appeared/gone records "
              "here ('-': standard output)")  # fmt: skip
@click.option(
    "--event-min-area",
    "min_area",
    default=0.01,
    show_default=True,
    type=Finite(0, 1),
    metavar="FRACTION",
    help="a class has appeared when it covers at least this share of the frame, gone when it falls below",
)
@click.option("--mqtt", "mqtt_url", metavar="mqtt://[USER:PASS@]HOST:PORT/TOPIC",
              help="publish the event records to this broker (QoS 1, one subtopic per stream: TOPIC/sN); mqtts:// "
              "for TLS [env DISSEG_MQTT]", envvar="DISSEG_MQTT")  # fmt: skip
@click.option("--mqtt-ca", type=click.Path(path_type=Path), help="mqtts://: the CA certificate (PEM) that signed "
              "the broker's; without it the system's CAs")  # fmt: skip
@click.option(
    "--output-segment",
    "segment_s",
    type=Finite(1, 31 * 24 * 3600),
    metavar="SECONDS",
    help="with --output: a new file every SECONDS (out.000000.mp4, out.000001.mp4, ...), each finalized when done; "
    "for a service that runs for months",
)
@click.option("--masks", type=click.Path(path_type=Path), help="write one palette PNG of labels per frame here")
@click.option(
    "--stats", "stats_path", type=click.Path(path_type=Path), help="write latency/FPS/frame-age/class-area JSON here"
)
@click.option("--view", default="overlay", show_default=True, type=click.Choice(VIEWS))
@click.option("--alpha", default=0.5, show_default=True, type=Finite(0, 1))
@click.option("--legend/--no-legend", default=True, show_default=True)
@click.option("--no-display", is_flag=True, help="no window (headless)")
@click.option(
    "--max-frames",
    type=click.IntRange(1, MAX_FRAMES),
    help="stop each stream after this many frames read from it (a live stream's frames replaced by newer ones count)",
)
@threads_option("ONNX Runtime CPU threads; leave a core free for capture and rendering on small CPUs")
@click.option(
    "--loop",
    "loops",
    default=1,
    show_default=True,
    type=click.IntRange(1, MAX_COUNT),
    help="play each video or image folder this many times",
)
@click.option(
    "--scene-tags",
    "tag_texts",
    multiple=True,
    metavar="CLASSES",
    help="classes the camera may see, e.g. road,car,person (a model exported with --scene-tags); once for every "
    "source, or repeated once per source in order ('-': none)",
)
@click.option(
    "--scene-tags-file",
    "tag_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="the same from a file: one class a line, optionally with a value in 0..1 ('boat 0.2')",
)
@click.option("--serve", "serve_at", metavar="HOST:PORT", help="serve a live web view here, e.g. 127.0.0.1:8080")
@click.option(
    "--serve-token",
    envvar="DISSEG_SERVE_TOKEN",
    help="token every web-view request must carry; required off loopback and for every change (POST/DELETE) "
    "[env DISSEG_SERVE_TOKEN]",
)
@click.option(
    "--serve-host",
    "serve_hosts",
    multiple=True,
    metavar="NAME",
    help="a host name the web view answers to besides IP addresses and localhost (requests naming any other "
    "Host are refused: DNS rebinding); repeatable",
)
@handle_errors
def run_cli(model, backend, outputs_given, masks, stats_path, no_display, threads, loops, serve_at, serve_token,
            **options):  # fmt: skip
    setup_logging()
    _quiet_opencv()
    import threading

    from .signals import StopOnSignals

    output, rtsp_out = _split_outputs(outputs_given)
    data = _data_outputs(options, rtsp_out, serve_token)
    asked = any(data.get(k) is not None for k in ("rtsp", "events_to", "mqtt_url"))
    specs = _source_specs(options, served=serve_at is not None or rtsp_out is not None)
    if loops > 1 and not any(REPLAYABLE & s.keys() for s in specs):
        raise BadInput("--loop applies to video files, image folders and GStreamer pipelines that are files only")
    if options.get("segment_s") is not None and output is None:
        raise BadInput("--output-segment needs --output FILE (the name the segments are numbered after)")
    if stats_path is not None:
        check_output(stats_path, option="--stats")
    if masks is not None:
        check_output(masks, option="--masks", kind="folder")
    if serve_at is not None:
        from .serve import check_serve

        check_serve(serve_at, serve_token)
    window = not no_display and _display()
    if not window and output is None and masks is None and stats_path is None and serve_at is None and not asked:
        raise BadInput(
            "nothing to show or write: give --output FILE or rtsp://@:8554/NAME, --masks DIR, --stats FILE, --events "
            "FILE, --mqtt URL or --serve HOST:PORT (or run with a display)"
        )
    # From here a stop signal (Ctrl-C, SIGTERM) ends the run cleanly, even while the model loads; SIGHUP (systemctl
    # reload) re-reads the --streams file and swaps in the model file if it changed.
    reload = threading.Event()
    with StopOnSignals(reload=reload.set) as signals:
        outputs = {"output": output, "masks": masks, "window": window, "serve_at": serve_at, "token": serve_token}
        outputs["scene_tags"] = (options.pop("tag_texts"), options.pop("tag_files"))
        outputs["hosts"], outputs["reload"] = options.pop("serve_hosts"), reload
        outputs["segment_s"], outputs["loops"] = options.pop("segment_s"), loops
        outputs.update(data)
        summary, failure = _run_model(model, backend, threads, specs, loops, outputs, signals, options)
        if stats_path:
            write_json(stats_path, summary)
    produced = summary["frames"] > 0  # no frame, no video or mask: the line does not claim one
    click.echo(_summary_line(summary, output=output if produced else None, masks=masks if produced else None,
                             stats=stats_path), err=data.get("events_to") == "-")  # fmt: skip
    if failure is not None:
        raise failure
    signals.raise_if_stopped()


def _split_outputs(given: tuple[str, ...]) -> tuple[Path | None, str | None]:
    """--output, once or twice: (a video file, an rtsp:// URL to serve)."""
    rtsp = [g for g in given if g.lower().startswith("rtsp://")]
    files = [g for g in given if not g.lower().startswith("rtsp://")]
    if len(rtsp) > 1 or len(files) > 1 or any(not g.strip() for g in given):
        raise BadInput(
            "--output: at most one video file and one rtsp://@:PORT/NAME, e.g. --output run.mp4 --output "
            "rtsp://@:8554/cam"
        )
    return (Path(files[0]) if files else None), (rtsp[0] if rtsp else None)


def _data_outputs(options: dict, rtsp_out: str | None, token: str | None) -> dict:
    """The outputs beside pictures: RTSP, events (file, MQTT), checked before any work; popped from the options."""
    data = {k: options.pop(k) for k in ("rtsp_bitrate", "rtsp_keyint", "events_to", "min_area", "mqtt_url", "mqtt_ca")}
    if rtsp_out is not None:
        from .rtsp import check_output as check_rtsp

        data["rtsp"] = check_rtsp(rtsp_out, token)
    if data["mqtt_ca"] is not None and data["mqtt_url"] is None:
        raise BadInput("--mqtt-ca: only with --mqtt mqtts://BROKER/TOPIC")
    if data["mqtt_url"] is not None:
        from .mqtt import check

        check(data["mqtt_url"], data["mqtt_ca"])
    if data["events_to"] not in (None, "-"):
        check_output(Path(data["events_to"]), option="--events")
    return data


def _source_specs(options: dict, *, served: bool = False) -> list[dict]:
    """Every source asked for, in order: --source URIs, the --streams file's, then the one-source flags; each an
    open_source keyword dict. Pops the source options."""
    from .sources import parse_uri, read_streams

    uris = list(options.pop("uris"))
    streams = options["streams_file"] = options.pop("streams")
    if streams is not None:
        uris += read_streams(streams)
    reconnects = options["max_reconnects"] = options.pop("max_reconnects")
    specs = [{**parse_uri(uri), "uri": uri} for uri in uris]
    specs += [{k: v} for k in SINGLE_SOURCES if (v := options.pop(k)) is not None]
    if not specs:
        raise BadInput(
            "no source given: --source URI (repeatable), --streams FILE, or one of --camera N, --video FILE, "
            "--images DIR, --rtsp URL, --gst PIPELINE, --csi N"
        )
    # A service (several sources, a --streams file or --serve) starts while a camera is down: a live source that
    # cannot be opened is retried in the background; one source typed alone fails with its one line.
    service = len(specs) > 1 or streams is not None or served
    return [{**spec, "max_reconnects": reconnects, "retry": service} for spec in specs]


def _stream_path(path: Path | None, index: int, count: int, *, folder: bool = False) -> Path | None:
    """One stream's output: as given for one source; with several (or one added while running), out.mp4 ->
    out.s0.mp4 and masks/ -> masks/s0/."""
    if path is None or (count == 1 and index == 0):
        return path
    return path / f"s{index}" if folder else path.with_name(f"{path.stem}.s{index}{path.suffix}")


def _run_model(model, backend, threads, specs, loops, outputs, signals, render) -> tuple[dict, Exception | None]:
    """Open the sinks, the sources and the model, run the pipeline; (stats summary, a write failure or None)."""
    service = {"streams_file": render.pop("streams_file"), "max_reconnects": render.pop("max_reconnects")}
    if outputs.get("rtsp") is not None:
        from .rtsp import Server

        host, port, _ = outputs["rtsp"]
        outputs["rtsp_server"] = Server(host, port, token=outputs["token"], bitrate_kbps=outputs["rtsp_bitrate"],
                                        keyint=outputs["rtsp_keyint"])  # fmt: skip
    try:
        return _run_streams(model, backend, threads, specs, loops, outputs, signals, render, service)
    finally:
        if outputs.get("rtsp_server") is not None:
            outputs["rtsp_server"].close()


def _run_streams(model, backend, threads, specs, loops, outputs, signals, render, service):
    from .scene_tags import per_stream
    from .segmenter import Segmenter

    n = len(specs)
    streams = [_make_stream(spec, i, n, outputs, loops) for i, spec in enumerate(specs)]
    for i, stream in enumerate(streams):
        stream.id = i  # as the pipeline numbers them
    if n == 1 and not specs[0]["retry"] and hasattr(streams[0].source, "wait_open"):
        try:
            streams[0].source.wait_open(signals.event)  # its one line (exit 2) before the model loads
        except BadInput:
            streams[0].source.close()
            raise
    seg = Segmenter(model, backend=backend, threads=threads)
    try:
        _describe(model, seg, streams)
        tags = per_stream(*outputs["scene_tags"], seg.info, len(streams), _name(model))
        for i, stream in enumerate(streams):
            _attach(stream, seg, tags[i], outputs, n, model)
        return _segment(seg, streams, model, signals=signals, serve=outputs, service=service, **render)
    finally:
        seg.close()


def _make_stream(spec: dict, index: int, count: int, outputs: dict, loops: int = 1):
    """A Stream for one source spec, with its video sink (the rest is attached once the model is known)."""
    from .pipeline import Stream
    from .sinks import VideoSink
    from .sources import Looped, describe, open_source

    path = _stream_path(outputs["output"], index, count)
    video = VideoSink(path, segment_s=outputs.get("segment_s")) if path else None
    uri = spec.pop("uri", "")
    source = open_source(**spec)
    if loops > 1 and REPLAYABLE & spec.keys() and not source.live:
        source = Looped(source, loops, lambda spec=spec: open_source(**spec))
    if video is not None and "video" in spec:
        video.fps = getattr(source, "fps", video.fps)  # a video file keeps its frame rate
    rtsp = None
    if outputs.get("rtsp_server") is not None:
        from .rtsp import mount_name

        rtsp = outputs["rtsp_server"].mount(mount_name(outputs["rtsp"][2], index, count))
    return Stream(source, name=describe(spec), video=video, rtsp=rtsp, uri=redact(uri.strip()))


def _attach(stream, seg, tags, outputs: dict, count: int, model) -> None:
    """A stream's scene tags, mask sink and window, from the model's classes and palette."""
    from .sinks import MaskSink, WindowSink

    stream.scene_tags = tags
    tag = f"s{stream.id if stream.id >= 0 else 0} " if count > 1 or stream.id > 0 else ""
    if tags is not None:
        log.info("%sscene tags: %s", tag, describe_tags(seg.class_names, tags, seg.info.scene_tags))
    index = max(stream.id, 0)
    if outputs["masks"] is not None:
        stream.masks = MaskSink(_stream_path(outputs["masks"], index, count, folder=True), seg.info.palette)
    if outputs["window"]:
        stream.window = WindowSink(f"dis-run {_name(model)}" + (f" s{index}" if tag else ""))


def describe_tags(names, tags, mode: str) -> str:
    """The log line's list: every class with a tag above 0, and what a soft value does. A value below 0.5 is a prior
    for the energy but masks the class where the graph masks ("mask", "energy+mask": docs/scene-tags.md)."""
    listed = []
    for name, value in zip(names, tags):
        if value <= 0:
            continue
        if value >= 1:
            listed.append(name)
        elif "mask" in mode and value < 0.5:
            listed.append(f"{name} {value:g} (below 0.5: masked)")
        else:
            listed.append(f"{name} {value:g}")
    return ", ".join(listed) or "none"


def _name(model) -> str:
    """A model's short name: the file's, or a served model's URL."""
    return model.name if isinstance(model, Path) else str(model)


def _display() -> bool:
    """Whether there is a display for windows (said once when there is none)."""
    from .sinks import display_available

    if display_available():
        return True
    log.warning("no display here; running headless (pass --no-display to silence this)")
    return False


def _describe(model: Path, seg, streams) -> None:
    info = seg.info
    providers = getattr(seg.backend, "providers", None)  # ONNX Runtime's; a served model runs on a server
    where = f"{seg.backend.name} on {', '.join(providers)}" if providers else seg.backend.name
    log.info(
        "%s: %s, %dx%d, %d classes, %d refinement steps, %s",
        _name(model), info.precision, info.input_height, info.input_width, info.num_classes, info.iterations, where,
    )  # fmt: skip
    if len(streams) > 1:
        for i, stream in enumerate(streams):
            log.info("s%d: %s", i, stream.name)


def _segment(seg, streams, model: Path, *, signals, serve, service, **render) -> tuple[dict, Exception | None]:
    """Run the pipeline into the sinks (and the web view, with the service's endpoints); the stats summary of what
    was produced (a stop signal or a failed write included) and the write failure, if any, to raise once the stats
    are written."""
    from .pipeline import Run

    pipeline = Run(seg, stop=signals.event, max_frames=render.pop("max_frames", None), render=render)
    for stream in streams:
        pipeline.add(stream)
    ops = _service(pipeline, model, serve, service, seg.backend.name, len(streams))
    facts = lambda: {  # noqa: E731
        **({"events": ops.events.summary()} if ops.events is not None else {}),
        "model": redact(str(model)),
        "backend": _backend_label(pipeline.seg.backend),
        "skipped": sum(s.skipped for s in pipeline.streams),
        "reconnects": sum(s.source.reconnects for s in pipeline.streams),
        "interrupted": signals.signum is not None,
        "truncated": next((s.source.truncated for s in pipeline.streams if s.source.truncated), None),
    }
    if serve["serve_at"]:
        from .serve import Viewer
        from .telemetry import Telemetry

        ops.telemetry = Telemetry(ops)
        pipeline.viewer = Viewer(serve["serve_at"], token=serve["token"], service=ops, hosts=serve["hosts"],
                                 stats=lambda: pipeline.stats.summary(**facts()))  # fmt: skip
    ops.events = _events(serve, pipeline)
    failure = None
    try:
        pipeline.run()
    except Exception as err:  # noqa: BLE001 (a sink or the backend failed mid-run: every sink is closed and flushed;
        failure = err  # the stats of what was produced are written, then the error goes on)
    finally:
        if ops.events is not None:
            ops.events.close()
        ops.notifier.stopping()
        if pipeline.viewer is not None:
            pipeline.viewer.close()
        if pipeline.seg is not seg:  # a model swapped in while running
            pipeline.seg.close()
        ops.close()
    return pipeline.stats.summary(**facts()), failure


def _events(outputs: dict, pipeline):
    """The event records' outputs (--events, the web view's /events, --mqtt), fed from the writer thread; None when
    there is none."""
    from .events import DEFAULT_MIN_AREA, Events, JsonLines

    targets = []
    if outputs.get("mqtt_url") is not None:  # first: a broker setting it refuses leaves no events file behind
        from .mqtt import Publisher

        targets.append(Publisher(outputs["mqtt_url"], ca=outputs.get("mqtt_ca")))
    if outputs.get("events_to") is not None:
        targets.append(JsonLines(outputs["events_to"]))
    if pipeline.viewer is not None:
        targets.append(pipeline.viewer.hub)
    if not targets:
        return None
    events = Events(targets, min_area=outputs.get("min_area", DEFAULT_MIN_AREA))
    pipeline.on_result.append(events.frame)
    return events


def _service(pipeline, model, serve: dict, service: dict, backend: str, count: int):
    """The run's service side: streams added while running get sinks as the command line's do; a model offered is
    opened with the same backend."""
    from .scene_tags import check_takes_tags, parse
    from .segmenter import Segmenter
    from .service import Service

    def make_stream(spec: dict, tags, index: int):
        stream = _make_stream(spec, index, max(count, 2), serve, serve["loops"])  # --loop, as the first sources
        vector = parse(tags, pipeline.seg.info)
        if vector is not None:
            check_takes_tags(pipeline.seg.info, _name(model))
        stream.id = index
        _attach(stream, pipeline.seg, vector, serve, max(count, 2), model)
        return stream

    ops = Service(
        pipeline, make_stream=make_stream, open_model=lambda path: Segmenter(path, backend=backend),
        model_path=model if isinstance(model, Path) else None, streams_file=service["streams_file"],
        max_reconnects=service["max_reconnects"], reload=serve["reload"],
    )  # fmt: skip
    return ops


def _summary_line(summary: dict, **outputs) -> str:
    lat = summary["latency_ms"]["total_ms"]
    streams = len(summary["streams"])
    line = (
        f"{summary['frames']} frames"
        + (f" from {streams} streams" if streams > 1 else "")
        + f" in {summary['wall_s']:.1f} s ({summary['fps'] or 0:.1f} FPS), latency p50 {lat.get('p50', 0):.1f} ms"
        + (f", {summary['skipped']} skipped" if summary["skipped"] else "")
        + (f", {summary['reconnects']} reconnects" if summary["reconnects"] else "")
    )
    wrote = [f"{k} {v}" for k, v in outputs.items() if v is not None]
    return line + (f"; wrote {', '.join(wrote)}" if wrote else "")


def _backend_label(backend) -> str:
    """The backend and, for ONNX Runtime, the provider that runs the model: "onnxruntime (CUDAExecutionProvider)"."""
    providers = getattr(backend, "providers", None)
    return f"{backend.name} ({providers[0]})" if providers else backend.name


def _quiet_opencv() -> None:
    """OpenCV prints its own warnings for a missing camera; our one line says it better."""
    import os

    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own "moov atom not found" and the like
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # builds without the logging module
        pass


def bench_model(path: Path, *, backend: str, batch: int | None, iterations: int, warmup: int) -> dict:
    """Latency of the backend alone (model input already prepared), warm-up excluded."""
    from .backends import scene_tag_feed
    from .segmenter import Segmenter

    with Segmenter(path, backend=backend) as seg:
        spec = seg.backend.inputs[seg.info.input_name]
        if seg.batch is not None and batch is not None and batch != seg.batch:
            raise BadInput(f"{path} has a fixed batch of {seg.batch}; drop --batch or export with --dynamic-batch")
        n = seg.batch or batch or 1
        rng = np.random.default_rng(0)
        feed = {seg.info.input_name: rng.integers(0, 256, (n, *[d for d in spec.shape[1:]]), dtype=np.uint8)}
        feed.update(scene_tag_feed(seg.backend, n))  # all-ones scene tags: the same work as any others
        for _ in range(warmup):
            seg.backend.infer(feed)
        times = []
        for _ in range(iterations):
            t = time.perf_counter()
            seg.backend.infer(feed)
            times.append((time.perf_counter() - t) * 1000)
        a = np.asarray(times)
        return {
            "model": str(path),
            "backend": seg.backend.name,
            "providers": getattr(seg.backend, "providers", None),
            "precision": seg.info.precision,
            "iterations_unrolled": seg.info.iterations,
            "batch": n,
            "input": f"{seg.info.input_height}x{seg.info.input_width}",
            "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p90_ms": round(float(np.percentile(a, 90)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3),
            "throughput_fps": round(float(n * 1000 / a.mean()), 2),
            "runs": iterations,
            "warmup": warmup,
        }


@click.command(cls=Command, help="Latency (p50/p90/p99) and throughput per model, backend and batch.")
@click.argument("models", nargs=-1, required=True, type=MODEL)
@click.option("--backend", default="auto", show_default=True, type=click.Choice(CHOICES))
@click.option("--batch", "batches", default=None, help="comma list of batch sizes (dynamic-batch models), e.g. 1,4")
@click.option("--runs", default=50, show_default=True, type=click.IntRange(1, MAX_COUNT))
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0, MAX_COUNT))
@click.option("--json", "json_path", type=click.Path(path_type=Path))
@click.option(
    "--plot", "plot_path", type=click.Path(path_type=Path), help="PNG: latency against refinement steps, per precision"
)
@handle_errors
def bench_cli(models, backend, batches, runs, warmup, json_path, plot_path) -> None:
    setup_logging()
    for path, option in ((json_path, "--json"), (plot_path, "--plot")):
        if path is not None:
            check_output(path, option=option)
    batch_list = parse_int_list(batches, name="--batch", low=1, high=MAX_BATCH) if batches else [None]
    rows = [
        bench_model(m, backend=backend, batch=b, iterations=runs, warmup=warmup) for m in models for b in batch_list
    ]
    click.echo(
        f"{'model':40s} {'backend':12s} {'prec':5s} {'iters':>5s} {'batch':>5s} {'p50 ms':>8s} {'p90 ms':>8s} "
        f"{'p99 ms':>8s} {'FPS mean':>8s}"  # frames per second from the mean latency (batch / mean), beside p50
    )
    for r in rows:
        click.echo(
            f"{Path(r['model']).name[:40]:40s} {r['backend']:12s} {r['precision']:5s} {r['iterations_unrolled']:5d} "
            f"{r['batch']:5d} "
            f"{r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f} {r['throughput_fps']:8.1f}"
        )
    if json_path:
        from .cpu import machine_facts

        write_json(json_path, {"host_cpu": machine_facts(), "results": rows})
    if plot_path:
        _plot(rows, plot_path)


def _plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInput(f"--plot needs matplotlib: {extra('plot')}") from None
    fig, ax = plt.subplots(figsize=(6, 4))
    for precision in sorted({r["precision"] for r in rows}):
        pts = sorted((r["iterations_unrolled"], r["p50_ms"]) for r in rows if r["precision"] == precision)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=precision)
    ax.set_xlabel("refinement steps unrolled")
    ax.set_ylabel("p50 latency (ms)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
