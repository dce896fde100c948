"""Soak: dis-run as a service for a long while, watched as an operator would. Four streams (two video files looped, a
local HTTP MJPEG camera that drops every 60 s, a GStreamer source where this OpenCV has GStreamer, else a third file),
--serve with 4 MJPEG viewers and a metrics scraper every 5 s; at the end a SIGTERM. Reports resident memory (mean of
the first against the last 5 minutes, or quarter of a shorter run), open descriptors and threads over time,
reconnects, per-stream frame age p95 (from /metrics' histograms over the last window), and whether every output was
complete after the stop.

    python benchmarks/soak.py MODEL.onnx --minutes 30 --json benchmarks/results/soak.json
    python benchmarks/soak.py MODEL.onnx --minutes 2 --check   # CI: descriptors and threads flat, outputs complete

Targets: memory growth < 5 %, descriptors and threads flat, nothing lost. Run from a checkout (it uses the tests'
local camera server)."""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.live_servers, tests.runtime.test_streams

from disseg.runtime.cli_util import write_json  # noqa: E402 (atomic)
from disseg.runtime.cpu import machine_facts  # noqa: E402
from disseg.runtime.sources import gstreamer_available  # noqa: E402
from tests.live_servers import LiveServers  # noqa: E402
from tests.runtime.test_streams import _video  # noqa: E402

BIN = Path(sys.executable).parent
TOKEN = "soak"
GST = (
    "gst:videotestsrc is-live=true pattern=ball ! video/x-raw,width=96,height=72,framerate=15/1 ! videoconvert ! "
    "video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
)
FLAT_SLACK = 4  # descriptors/threads a viewer's reconnect or a camera's reconnect may hold for a moment


def get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    return conn.getresponse().read()


def viewer(port: int, stream: int, done: threading.Event, counts: list) -> None:
    """An MJPEG client that reads as fast as frames come and reconnects when the connection ends."""
    while not done.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", f"/streams/{stream}.mjpg", headers={"Authorization": f"Bearer {TOKEN}"})
            response = conn.getresponse()
            while not done.is_set() and (chunk := response.read1(65536)):
                counts[stream] += chunk.count(b"\xff\xd8")
        except OSError:
            done.wait(0.5)


def scrape(port: int) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    sample = {"t": time.monotonic(), "buckets": {}}
    for family in text_string_to_metric_families(get(port, "/metrics").decode()):
        for s in family.samples:
            if s.name in ("process_resident_memory_bytes", "process_open_fds", "process_threads"):
                sample[s.name] = s.value
            elif s.name == "disseg_stream_reconnects_total":
                sample.setdefault("reconnects", {})[s.labels["stream"]] = s.value
            elif s.name == "disseg_stream_frames_total":
                sample.setdefault("frames", {})[s.labels["stream"]] = s.value
            elif s.name == "disseg_frame_age_seconds_bucket":
                sample["buckets"].setdefault(s.labels["stream"], {})[float(s.labels["le"])] = s.value
    return sample


def quantile(q: float, first: dict, last: dict) -> float | None:
    """Prometheus' histogram_quantile over the increase between two scrapes of one stream's buckets (seconds)."""
    bounds = sorted(last)
    counts = [last[b] - first.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return None
    rank, previous_bound, previous_count = q * total, 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / max(
                count - previous_count, 1e-9
            )
        previous_bound, previous_count = bound, count
    return previous_bound


def frames_in(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, count - 1)
            count = count if cap.read()[0] else -1
        return count
    finally:
        cap.release()


def start(model: Path, folder: Path, camera: str, exe: str) -> tuple[subprocess.Popen, int, list[str]]:
    videos = [_video(folder / f"v{i}.avi", 90, seed=i) for i in range(3)]
    gst = GST if gstreamer_available() else str(videos[2])
    sources = [str(videos[0]), str(videos[1]), camera, gst]
    cmd = [exe, str(model), "--loop", "1000000", "--max-reconnects", "1000000", "--no-display"]
    cmd += [a for s in sources for a in ("--source", s)]
    cmd += ["--serve", "127.0.0.1:0", "--serve-token", TOKEN, "--output", str(folder / "out.mp4")]
    cmd += ["--output-segment", "60"]  # a file a minute, each finalized: what a months-long service writes
    cmd += ["--stats", str(folder / "stats.json")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"dis-run ended before serving (exit {proc.wait()})")
        if found := re.search(r"serving the live view at http://127\.0\.0\.1:(\d+)/", line):
            threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()  # keep the pipe drained
            return proc, int(found.group(1)), sources


def window_mean(samples: list[dict], key: str, first: bool, span_s: float) -> float:
    edge = samples[0]["t"] + span_s if first else samples[-1]["t"] - span_s
    chosen = [s[key] for s in samples if (s["t"] <= edge if first else s["t"] >= edge)]
    return float(np.mean(chosen))


def report(samples: list[dict], minutes: float, proc_status: int, folder: Path, sources: list, viewers: list) -> dict:
    span = min(300.0, minutes * 60 / 4)  # 5 minutes, or a quarter of a shorter run
    rss_first, rss_last = (window_mean(samples, "process_resident_memory_bytes", f, span) for f in (True, False))
    half = len(samples) // 2
    flat = {}
    for key in ("process_open_fds", "process_threads"):
        early, late = [s[key] for s in samples[1:half]], [s[key] for s in samples[half:]]
        flat[key] = {"first": samples[0][key], "last": samples[-1][key], "max_first_half": max(early),
                     "max_second_half": max(late), "flat": max(late) <= max(early) + FLAT_SLACK}  # fmt: skip
    last = samples[-1]
    back = next((s for s in samples if s["t"] >= last["t"] - span), samples[0])
    stats = json.loads((folder / "stats.json").read_text()) if (folder / "stats.json").is_file() else {}
    outputs = []
    for i, stream in enumerate(stats.get("streams", [])):
        counts = [frames_in(f) for f in sorted(folder.glob(f"out.s{i}.*.mp4"))]  # every segment plays to its end
        complete = min(counts, default=0) >= 0 and sum(counts) == stream["frames"]
        outputs.append({"stream": i, "frames": stream["frames"], "video_frames": sum(counts), "files": len(counts),
                        "complete": complete})  # fmt: skip
    partial = [p.name for p in folder.iterdir() if "partial" in p.name]
    return {
        "minutes": minutes,
        "sources": sources,
        "samples": len(samples),
        "rss_mb": {
            "first_window": round(rss_first / 1e6, 1),
            "last_window": round(rss_last / 1e6, 1),
            "window_s": span,
            "growth_pct": round(100 * (rss_last - rss_first) / rss_first, 2),
        },  # fmt: skip
        "descriptors": flat["process_open_fds"],
        "threads": flat["process_threads"],
        "reconnects": last.get("reconnects", {}),
        "frames": last.get("frames", {}),
        "frame_age_p95_ms": {
            k: (round(1000 * v, 1) if (v := quantile(0.95, back["buckets"].get(k, {}), b)) is not None else None)
            for k, b in last["buckets"].items()
        },  # fmt: skip
        "viewer_frames": viewers,
        "exit_status": proc_status,
        "outputs": outputs,
        "partial_files": partial,
        "complete": proc_status == 143 and bool(outputs) and all(o["complete"] for o in outputs) and not partial,
        "machine": machine_facts(),
    }


def soak(model: Path, minutes: float, exe: str) -> dict:
    camera = LiveServers(fps=30, drop_after=60 * 30)  # drops its viewers every 60 s
    with tempfile.TemporaryDirectory(prefix="disseg-soak-") as tmp:
        folder = Path(tmp)
        proc, port, sources = start(model, folder, camera.url("drop"), exe)
        done, counts = threading.Event(), [0] * 4
        for i in range(4):
            threading.Thread(target=viewer, args=(port, i, done, counts), daemon=True).start()
        samples, end = [], time.monotonic() + minutes * 60
        try:
            while time.monotonic() < end and proc.poll() is None:
                samples.append(scrape(port))
                done.wait(5.0)
        finally:
            done.set()
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=60)
            camera.close()
        return report(samples, minutes, status, folder, sources, counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--exe", default=str(BIN / "dis-run"), help="the dis-run to soak")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless descriptors/threads are flat and outputs complete"
    )
    args = parser.parse_args()
    result = soak(args.model, args.minutes, args.exe)
    if args.json:
        write_json(args.json, result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    if args.check and not (result["descriptors"]["flat"] and result["threads"]["flat"] and result["complete"]):
        raise SystemExit("soak: descriptors or threads grew, or an output was incomplete")


if __name__ == "__main__":
    main()
