"""Many streams through one dis-run: aggregate throughput for 1, 2, 4 and 8 file streams of the same video, batched in
one process, against the same streams run one after another and against N dis-run processes at once (all three in
this one run, wall clock of the whole commands); and the frame age of live-paced streams (a video replayed at its
frame rate, newest frame kept, as a camera) for 1..8 streams in one process.

    python benchmarks/bench_streams.py MODEL.onnx --frames 120 --json benchmarks/results/streams.json

MODEL should be a dynamic-batch export (dis-export CKPT --dynamic-batch), or the streams run one frame at a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from disseg.runtime.cli_util import write_json  # atomic
from disseg.runtime.cpu import machine_facts
from disseg.runtime.pipeline import Stream, run_streams
from disseg.runtime.segmenter import Segmenter
from disseg.runtime.sources import Frame, Source, VideoSource

BIN = Path(sys.executable).parent


def dis_run(model: Path, videos: list[Path], threads: int) -> list[str]:
    sources = [a for v in videos for a in ("--source", str(v))]
    return [str(BIN / "dis-run"), str(model), *sources, "--no-display", "--threads", str(threads), "--stats", "-"]


def timed(commands: list[list[str]], *, together: bool, tmp: Path) -> float:
    """Wall seconds of the commands, started together or one after another; each writes its stats to a file."""
    start = time.perf_counter()
    procs = []
    for i, cmd in enumerate(commands):
        cmd = [*cmd[:-1], str(tmp / f"stats{i}.json")]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if together:
            procs.append(proc)
        elif proc.wait() != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}")
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"failed: {' '.join(proc.args)}")
    return time.perf_counter() - start


def throughput(model: Path, video: Path, frames: int, counts: list[int], threads: int, tmp: Path) -> list[dict]:
    rows = []
    for n in counts:
        videos = [video] * n
        total = n * frames
        batched = timed([dis_run(model, videos, threads)], together=True, tmp=tmp)
        batches = json.loads((tmp / "stats0.json").read_text())["batches"]
        sequential = timed([dis_run(model, [v], threads) for v in videos], together=False, tmp=tmp)
        parallel = timed([dis_run(model, [v], threads) for v in videos], together=True, tmp=tmp)
        row = {
            "streams": n,
            "frames": total,
            "batches_run": batches,
            "one_process_batched_fps": round(total / batched, 2),
            "one_after_another_fps": round(total / sequential, 2),
            "separate_processes_fps": round(total / parallel, 2),
            "batched_over_one_after_another": round(sequential / batched, 3),
            "batched_over_separate_processes": round(parallel / batched, 3),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


class Paced(Source):
    """A video replayed at its frame rate in a thread that keeps only the newest frame: a camera, for frame age."""

    live = True

    def __init__(self, path: Path, fps: float, frames: int) -> None:
        self.images = [f.image for f in VideoSource(str(path))][:frames]
        self.fps, self._latest, self._done = fps, None, False
        self._cond = threading.Condition()
        threading.Thread(target=self._play, daemon=True).start()

    def _play(self) -> None:
        start = time.perf_counter()
        for i, image in enumerate(self.images):
            time.sleep(max(0.0, start + i / self.fps - time.perf_counter()))
            with self._cond:
                self._latest = Frame(i, image, f"{i:06d}", time.perf_counter())
                self._cond.notify()
        with self._cond:
            self._done = True
            self._cond.notify()

    def __iter__(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._latest is not None or self._done)
                if self._latest is None:
                    return
                frame, self._latest = self._latest, None
            yield frame


def frame_age(model: Path, video: Path, fps: float, frames: int, counts: list[int], threads: int) -> list[dict]:
    rows = []
    with Segmenter(model, backend="onnxruntime", threads=threads) as seg:
        for n in counts:
            streams = [Stream(Paced(video, fps, frames), name=f"paced {i}") for i in range(n)]
            stats = run_streams(seg, streams, stop=threading.Event())
            ages = np.concatenate([np.asarray(s.frame_age_ms) for s in streams])
            row = {
                "streams": n,
                "fps_each": fps,
                "frames_segmented": stats.frames,
                "frames_offered": n * frames,
                "frame_age_ms_mean": round(float(ages.mean()), 2),
                "frame_age_ms_p95": round(float(np.percentile(ages, 95)), 2),
                "batches_run": {str(k): v for k, v in sorted(stats.batches.items())},
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def _facts(model: Path) -> str:
    from disseg.runtime.contract import read_model_info

    info = read_model_info(model)
    backbone = info.config.get("backbone", "?")
    return f"{backbone}, {info.precision}, {info.input_height}x{info.input_width}, {info.iterations} refinement steps"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--frames", type=int, default=120, help="frames per stream")
    ap.add_argument("--size", type=int, default=320, help="video side in pixels")
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--fps", type=float, default=15.0, help="frame rate of the paced (live) streams")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per process (0: all cores)")
    ap.add_argument("--parts", default="throughput,live", help="which parts to measure (others kept from --json)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    from disseg.train.synth import write_video

    counts = [int(n) for n in args.streams.split(",")]
    parts = set(args.parts.split(","))
    kept = (
        json.loads(args.json.read_text())
        if args.json and args.json.is_file() and parts != {"throughput", "live"}
        else {}
    )
    result = {
        **kept,
        "model": str(args.model),
        "machine": f"{platform.machine()}, {shutil.os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "model_facts": _facts(args.model),
        "frames_per_stream": args.frames,
        "video": f"{args.size}x{args.size}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "in.mp4"
        write_video(video, frames=args.frames, size=args.size)
        if "throughput" in parts:
            result["throughput"] = throughput(args.model, video, args.frames, counts, args.threads, Path(tmp))
        if "live" in parts:
            result["live_paced"] = frame_age(args.model, video, args.fps, args.frames, counts, args.threads)
    if args.json:
        write_json(args.json, {"host_cpu": machine_facts(), **result})


if __name__ == "__main__":
    main()
