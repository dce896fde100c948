"""C++ runtime (runtime/cpp) against the Python runtime on the same model and frames.

1. In one process, per-frame latency of the Python `Segmenter` and of libdisseg's Segmenter through its C ABI
   (ctypes), alternating in rounds so machine noise hits both alike; labels compared on every frame.
2. In one command, `dis_run_cpp` against `dis-run` on the same video (masks + stats, no display),
   alternating; per-frame total latency and FPS from their stats files, and their masks compared.

3. With --soak N, each command for N frames (the video looped): first vs last 1000 frames' latency, RSS.

    python benchmarks/bench_cpp.py MODEL.onnx --build build/cpp --soak 10000 --json benchmarks/results/cpp.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from disseg.runtime.cabi import CSegmenter
from disseg.runtime.cli_util import write_json  # atomic
from disseg.runtime.cpu import machine_facts
from disseg.runtime.segmenter import Segmenter
from disseg.runtime.sources import VideoSource
from disseg.train.synth import write_video

BIN = Path(sys.executable).parent


def per_frame_ms(segment, frames) -> list[float]:
    times = []
    for f in frames:
        start = time.perf_counter()
        segment(f)
        times.append((time.perf_counter() - start) * 1000)
    return times


def in_process(model: Path, build: Path, frames: list[np.ndarray], threads: int, rounds: int) -> dict:
    with (
        Segmenter(model, backend="onnxruntime", threads=threads) as py,
        CSegmenter(build, model, backend="onnxruntime", threads=threads) as cpp,
    ):
        agree = np.mean([np.mean(py(f).labels == cpp.segment(f)[0]) for f in frames])  # also the warm-up
        times = {"python": [], "cpp": []}
        for _ in range(rounds):
            times["python"] += per_frame_ms(py, frames)
            times["cpp"] += per_frame_ms(cpp.segment, frames)
    p50 = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "threads": threads or "all",
        "frames_timed": len(times["cpp"]),
        "python_p50_ms": round(p50["python"], 3),
        "cpp_p50_ms": round(p50["cpp"], 3),
        "cpp_over_python": round(p50["cpp"] / p50["python"], 3),
        "label_agreement": round(float(agree), 6),
    }


def end_to_end(model: Path, build: Path, video: Path, tmp: Path, threads: int, rounds: int) -> dict:
    runs = {"python": [], "cpp": []}
    for r in range(rounds):
        for name, cmd in (
            ("python", [str(BIN / "dis-run"), "--backend", "onnxruntime"]),
            ("cpp", [str(build / "dis_run_cpp")]),
        ):
            out = tmp / f"{name}{r}"
            subprocess.run(
                [
                    *cmd,
                    str(model),
                    "--video",
                    str(video),
                    "--no-display",
                    "--threads",
                    str(threads),
                    "--masks",
                    str(out),
                    "--stats",
                    str(out) + ".json",
                ],
                check=True,
                capture_output=True,
            )
            stats = json.loads(Path(str(out) + ".json").read_text())
            runs[name].append((stats["latency_ms"]["total_ms"]["p50"], stats["fps"]))
    masks = sorted((tmp / "python0").glob("*.png"))
    agree = np.mean([np.mean(np.array(Image.open(m)) == np.array(Image.open(tmp / "cpp0" / m.name))) for m in masks])
    med = {k: (float(np.median([p for p, _ in v])), float(np.median([f for _, f in v]))) for k, v in runs.items()}
    return {
        "threads": threads or "all",
        "frames": len(masks),
        "dis_run_total_p50_ms": round(med["python"][0], 3),
        "dis_run_cpp_total_p50_ms": round(med["cpp"][0], 3),
        "total_cpp_over_python": round(med["cpp"][0] / med["python"][0], 3),
        "dis_run_fps": round(med["python"][1], 2),
        "dis_run_cpp_fps": round(med["cpp"][1], 2),
        "mask_agreement": round(float(agree), 6),
    }


def soak(model: Path, build: Path, video: Path, tmp: Path, frames: int, clip_frames: int) -> dict:
    """A long run of each command (the video looped): latency of the first vs last 1000 frames, and memory."""
    loops = -(-frames // clip_frames)
    row = {"frames": frames}
    for name, cmd in (
        ("python", [str(BIN / "dis-run"), "--backend", "onnxruntime"]),
        ("cpp", [str(build / "dis_run_cpp")]),
    ):
        out = tmp / f"soak_{name}.json"
        subprocess.run(
            [
                *cmd,
                str(model),
                "--video",
                str(video),
                "--loop",
                str(loops),
                "--max-frames",
                str(frames),
                "--no-display",
                "--stats",
                str(out),
            ],
            check=True,
            capture_output=True,
        )
        stats = json.loads(out.read_text())
        row[name] = {
            "fps": round(stats["fps"], 2),
            "first_1000_p50_ms": stats["first_1000_total_ms"]["p50"],
            "last_1000_p50_ms": stats["last_1000_total_ms"]["p50"],
            "rss_mb": stats["rss_mb"],
        }
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--build", type=Path, default=Path("build/cpp"))
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--soak", type=int, default=0, help="frames for a long run of each command (0: skip)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = {"model": str(args.model), "in_process": [], "end_to_end": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "in.mp4"
        write_video(video, frames=args.frames, size=320)
        frames = [f.image for f in VideoSource(str(video))]
        for threads in (0, 1):
            row = in_process(args.model, args.build, frames, threads, args.rounds)
            result["in_process"].append(row)
            print(json.dumps(row), flush=True)
        for threads in (0, 1):
            row = end_to_end(args.model, args.build, video, tmp, threads, args.rounds)
            result["end_to_end"].append(row)
            print(json.dumps(row), flush=True)
        if args.soak:
            result["soak"] = soak(args.model, args.build, video, tmp, args.soak, len(frames))
            print(json.dumps(result["soak"]), flush=True)
    if args.json:
        write_json(args.json, {"host_cpu": machine_facts(), **result})


if __name__ == "__main__":
    main()
