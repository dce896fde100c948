"""RTSP out, measured: glass-to-client latency and the CPU an RTSP stream costs.

Each source is a live GStreamer camera stand-in (videotestsrc is-live at 30 FPS, 640x480); dis-run serves every
stream over RTSP with --stamp-time, which draws each frame's capture time into the overlay; a real RTSP client per
stream (rtspsrc ! rtph264depay ! avdec_h264, in this process) decodes the frames and reads the stamp back: latency =
the client's clock at decode - the capture time, p50/p95 over the frames read. CPU: dis-run's own CPU time (from
/proc) per second of wall time while the clients read, against the same command without --output rtsp (the
baseline, run in the same invocation), per stream. The client's decoding is in this process and not counted.

    .venv-gst/bin/python benchmarks/rtsp_latency.py MODEL.onnx --streams 1 2 --frames 300 \\
        --json benchmarks/results/rtsp_latency.json

Needs PyGObject with gst-rtsp-server and an OpenCV with GStreamer (the GStreamer leg's environment)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.service.test_rtsp's client

from disseg.runtime.cli_util import write_json  # noqa: E402 (atomic)
from disseg.runtime.cpu import machine_facts  # noqa: E402
from disseg.runtime.sinks import read_time_stamp  # noqa: E402

BIN = Path(sys.executable).parent
CAMERA = "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=480,framerate=30/1 ! videoconvert ! "
CAMERA += "video/x-raw,format=BGR ! appsink"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(model: Path, streams: int, extra: list[str]) -> tuple[subprocess.Popen, list[str]]:
    cmd = [str(BIN / "dis-run"), str(model), "--no-display", "--stamp-time", *extra]
    for _ in range(streams):
        cmd += ["--source", f"gst:{CAMERA}"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    deadline = time.monotonic() + 120
    while not any("refinement steps" in line for line in lines):  # readiness: the model is loaded
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"dis-run did not start: {''.join(lines)}")
        time.sleep(0.05)
    return proc, lines


def read_stamps(url: str, count: int, out: list[float]) -> None:
    """Latencies in ms of `count` decoded frames (after 30 to settle)."""
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    pipe = Gst.parse_launch(
        f"rtspsrc location={url} latency=0 protocols=tcp ! rtph264depay ! avdec_h264 ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink name=sink sync=false max-buffers=1 drop=true"
    )
    sink = pipe.get_by_name("sink")
    pipe.set_state(Gst.State.PLAYING)
    seen, deadline = 0, time.monotonic() + 300
    try:
        while len(out) < count and time.monotonic() < deadline:
            sample = sink.emit("try-pull-sample", Gst.SECOND)
            if sample is None:
                continue
            now_ms = int(time.time() * 1000) & 0xFFFFFFFF
            caps = sample.get_caps().get_structure(0)
            buf = sample.get_buffer()
            image = np.frombuffer(buf.extract_dup(0, buf.get_size()), np.uint8)
            image = image.reshape(caps.get_value("height"), caps.get_value("width"), 3)
            seen += 1
            if seen > 30:
                out.append(float((now_ms - read_time_stamp(image)) & 0xFFFFFFFF))
    finally:
        pipe.set_state(Gst.State.NULL)


def measure(model: Path, streams: int, frames: int) -> dict:
    port = free_port()
    proc, lines = start(model, streams, ["--output", f"rtsp://@:{port}/lat"])
    try:
        names = ["lat"] if streams == 1 else [f"lat.s{i}" for i in range(streams)]
        results: list[list[float]] = [[] for _ in names]
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        clients = [
            threading.Thread(target=read_stamps, args=(f"rtsp://127.0.0.1:{port}/{n}", frames, r))
            for n, r in zip(names, results)
        ]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        cores = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        encoder = next((line.split("(")[-1].rstrip(")\n") for line in lines if line.startswith("RTSP: ")), None)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    base_cores = baseline(model, streams)
    all_ms = np.asarray([v for r in results for v in r])
    return {
        "streams": streams,
        "encoder": encoder,
        "frames_read_per_stream": [len(r) for r in results],
        "latency_ms": {
            "p50": round(float(np.percentile(all_ms, 50)), 1),
            "p95": round(float(np.percentile(all_ms, 95)), 1),
        },
        "cpu_cores_with_rtsp": round(cores, 3),
        "cpu_cores_without_rtsp": round(base_cores, 3),
        "cpu_cores_per_rtsp_stream": round((cores - base_cores) / streams, 3),
    }


def baseline(model: Path, streams: int, seconds: float = 10.0) -> float:
    """dis-run's CPU (cores) on the same sources with no RTSP output (events to /dev/null: nothing rendered)."""
    proc, _ = start(model, streams, ["--events", os.devnull])
    try:
        time.sleep(2.0)  # past the start: the sources are live at their own 30 FPS, so a window is a fair sample
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--frames", type=int, default=300, help="decoded frames per stream measured")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [measure(args.model, n, args.frames) for n in args.streams]
    for row in rows:
        print(
            f"{row['streams']} stream(s), {row['encoder']}: latency p50 {row['latency_ms']['p50']} ms, p95 "
            f"{row['latency_ms']['p95']} ms; dis-run {row['cpu_cores_with_rtsp']} cores with RTSP, "
            f"{row['cpu_cores_without_rtsp']} without: {row['cpu_cores_per_rtsp_stream']} cores per RTSP stream"
        )
    if args.json:
        write_json(args.json, {"host_cpu": machine_facts(), "model": str(args.model), "results": rows})


if __name__ == "__main__":
    main()
