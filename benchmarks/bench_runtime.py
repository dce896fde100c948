"""Runtime figures: dis-run end-to-end throughput on a video against the backend alone on the same
frames (one process), and a long run's latency and memory (first vs last 1000 frames).

    python benchmarks/bench_runtime.py MODEL.onnx --frames 300 --soak 10000 --json benchmarks/results/runtime.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from disseg.runtime.cli_util import write_json  # atomic
from disseg.runtime.cpu import machine_facts
from disseg.runtime.pipeline import run
from disseg.runtime.segmenter import Segmenter
from disseg.runtime.sinks import VideoSink
from disseg.runtime.sources import Looped, VideoSource


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--soak", type=int, default=0, help="frames for the long run (0: skip)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    from disseg.train.synth import write_video

    result = {"model": str(args.model), "throughput": {}}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "in.mp4"
        write_video(video, frames=args.frames, size=320)
        frames = [f.image for f in VideoSource(str(video))]
        for threads in (0, 1):  # 0: ONNX Runtime takes every core; 1: one core left for capture and rendering
            with Segmenter(args.model, backend="onnxruntime", threads=threads) as seg:
                for f in frames[:5]:
                    seg(f)
                start = time.perf_counter()
                for f in frames:
                    seg(f)
                alone = time.perf_counter() - start
                e2e = run(seg, VideoSource(str(video)), video=VideoSink(Path(tmp) / "out.mp4", 15)).summary()
            row = {
                "frames": len(frames),
                "backend_alone_fps": round(len(frames) / alone, 2),
                "dis_run_fps": e2e["fps"],
                "ratio": round(e2e["fps"] / (len(frames) / alone), 3),
            }
            result["throughput"][f"ort_threads_{threads or 'all'}"] = row
            print(json.dumps({"threads": threads, **row}), flush=True)
        seg = Segmenter(args.model, backend="onnxruntime")
        if args.soak:
            loops = int(np.ceil(args.soak / len(frames)))
            src = Looped(VideoSource(str(video)), loops, lambda: VideoSource(str(video)))
            soak = run(seg, src, max_frames=args.soak).summary()
            result["soak"] = {
                "frames": soak["frames"],
                "fps": soak["fps"],
                "first_1000_total_ms": soak["first_1000_total_ms"],
                "last_1000_total_ms": soak["last_1000_total_ms"],
                "rss_mb": soak["rss_mb"],
            }
            print(json.dumps(result["soak"]), flush=True)
        seg.close()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, {"host_cpu": machine_facts(), **result})


if __name__ == "__main__":
    main()
