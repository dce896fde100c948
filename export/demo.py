"""dis-demo: the whole path on this machine, no camera, GPU or download.

synthetic data -> stage-1 and stage-2 training -> evaluation over refinement steps -> unrolled ONNX
export (parity-gated) -> dis-run on a rendered video -> dis-bench -> OUT/report.md
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click

from disseg.runtime.cli_util import handle_errors
from disseg.runtime.errors import BadInput, DisError

BIN = Path(sys.executable).parent


def _run(*args: str) -> float:
    click.echo("$ " + " ".join(shlex.quote(str(a)) for a in args), err=True)
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / args[0]), *map(str, args[1:])])
    if proc.returncode != 0:
        raise DisError(f"step failed (exit {proc.returncode}): {' '.join(map(str, args))}")
    return time.perf_counter() - start


@click.command(help="Run the whole DIS pipeline on synthetic data and write OUT/report.md.")
@click.argument("out", type=click.Path(path_type=Path), default=Path("demo_out"))
@click.option("--epochs1", default=12, show_default=True, type=click.IntRange(1), help="stage-1 epochs")
@click.option("--epochs2", default=3, show_default=True, type=click.IntRange(0), help="stage-2 epochs (0: skip)")
@click.option("--iters", default=3, show_default=True, type=click.IntRange(0), help="refinement steps exported")
@click.option("--frames", default=150, show_default=True, type=click.IntRange(1), help="frames of the rendered video")
@click.option("--quick", is_flag=True, help="tiny sizes, for a smoke run in about a minute")
@handle_errors
def demo_cli(out: Path, epochs1: int, epochs2: int, iters: int, frames: int, quick: bool) -> None:
    from disseg.train.synth import write_video

    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} exists and is not empty; choose a new folder or remove it")
    out.mkdir(parents=True, exist_ok=True)
    data, s1, s2 = out / "data", out / "s1", out / "s2"
    size = ["--size", "128"] if quick else []
    counts = ["--num-train", "24", "--num-val", "12", "--num-weak", "24"] if quick else []
    if quick:
        epochs1, epochs2, frames = 2, min(epochs2, 1), min(frames, 30)
    timings = {"data_s": _run("dis-data", "synth", data, *counts, *size)}
    common = ["--stages", "2", *size]
    timings["stage1_s"] = _run("dis-train", "--data", data, "--out", s1, "--epochs", epochs1, *common)
    best = s1 / "best.pt"
    if epochs2:
        timings["stage2_s"] = _run(
            "dis-train",
            "--data",
            data,
            "--out",
            s2,
            "--stage",
            "2",
            "--init",
            best,
            "--epochs",
            epochs2,
            "--lr",
            "0.002",
            *size,
        )
    evals = {}
    for name, run in (("stage 1", s1), ("stage 2", s2)):
        if (run / "best.pt").exists():
            _run("dis-eval", run / "best.pt", "--data", data, "--iters", "0,1,3,5", "--json", run / "eval.json")
            evals[name] = json.loads((run / "eval.json").read_text())["results"]
    final = s2 / "best.pt" if (s2 / "best.pt").exists() else best
    model = out / "model.onnx"
    timings["export_s"] = _run("dis-export", final, "--iters", iters, "--outputs", "labels,tags", "-o", model)
    _run("dis-eval", model, "--data", data, "--json", out / "eval_onnx.json")
    video = out / "scene.mp4"
    write_video(video, frames=frames, size=128 if quick else 256)
    _run(
        "dis-run",
        model,
        "--video",
        video,
        "--output",
        out / "overlay.mp4",
        "--no-display",
        "--stats",
        out / "stats.json",
        "--view",
        "side-by-side",
    )
    _run("dis-bench", model, "--runs", "30", "--json", out / "bench.json")
    report = _report(
        out,
        evals,
        json.loads((out / "eval_onnx.json").read_text())["results"][0],
        json.loads((out / "stats.json").read_text()),
        json.loads((out / "bench.json").read_text())["results"][0],
        timings,
        iters,
    )
    (out / "report.md").write_text(report)
    click.echo(report)


def _report(out: Path, evals: dict, onnx_eval: dict, stats: dict, bench: dict, timings: dict, iters: int) -> str:
    lines = [
        "# disseg demo report",
        "",
        "Validation mIoU (%) against test-time refinement steps t:",
        "",
        "| model | " + " | ".join(f"t={r['iters']}" for r in next(iter(evals.values()))) + " |",
        "|---|" + "---|" * len(next(iter(evals.values()))),
    ]
    for name, rows in evals.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['miou']:.2f}" for r in rows) + " |")
    lines += [
        "",
        f"Exported ONNX (t={iters}, fp32) on ONNX Runtime: mIoU {onnx_eval['miou']:.2f}, pixel accuracy "
        f"{onnx_eval['pixel_acc']:.2f}.",
        "",
        f"dis-run on {stats['frames']} frames of scene.mp4: {stats['fps']:.1f} FPS end to end, "
        f"latency p50 {stats['latency_ms']['total_ms']['p50']:.1f} ms (inference p50 "
        f"{stats['latency_ms']['infer_ms']['p50']:.1f} ms).",
        f"dis-bench ({bench['backend']}, batch {bench['batch']}): p50 {bench['p50_ms']:.1f} ms, p90 "
        f"{bench['p90_ms']:.1f} ms, "
        f"p99 {bench['p99_ms']:.1f} ms, {bench['throughput_fps']:.1f} FPS.",
        "",
        "Step times (s): " + ", ".join(f"{k[:-2]} {v:.0f}" for k, v in timings.items()),
        "",
        f"Files: {out}/overlay.mp4 (input | labels), {out}/stats.json, {out}/model.onnx (+ .parity.json), eval JSONs "
        "per run.",
        "",
    ]
    return "\n".join(lines)
