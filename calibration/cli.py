"""dis-calibrate: FP32 ONNX -> INT8 Q/DQ ONNX for ONNX Runtime CPUs or TensorRT, accuracy-guarded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from disseg.runtime.atomic import check_output
from disseg.runtime.cli_util import MAX_COUNT, Command, Finite, handle_errors, setup_logging, write_json
from disseg.runtime.errors import BadInput

from .quantize import METHODS, TARGETS

if TYPE_CHECKING:
    from disseg.runtime.contract import ModelInfo

log = logging.getLogger("disseg.calibrate")
MIN_FRAMES = 8


@click.command(
    cls=Command, help="Quantize an exported FP32 model to INT8 (explicit Q/DQ), keeping the refinement in float."
)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), help="data set: calibrate on train images, score mIoU on val")
@click.option("--images", help="image folder or glob to calibrate on (held-out label agreement only)")
@click.option("--video", type=click.Path(path_type=Path), help="video to calibrate on (frames spread over it)")
@click.option("--target", default="cpu", show_default=True, type=click.Choice(TARGETS))
@click.option("--method", default="minmax", show_default=True, type=click.Choice(list(METHODS)))
@click.option(
    "--samples", default=64, show_default=True, type=click.IntRange(MIN_FRAMES, MAX_COUNT), help="calibration frames"
)
@click.option(
    "--max-drop",
    default=1.0,
    show_default=True,
    type=Finite(0, 100),
    help="largest accepted mIoU drop (points; without labels: % of pixels relabelled)",
)
@click.option(
    "--search/--no-search",
    default=True,
    show_default=True,
    help="keep the most sensitive layer groups in float when over --max-drop",
)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="[default: MODEL.int8.onnx or MODEL.int8-trt.onnx]"
)
@click.option("--force", is_flag=True, help="overwrite an existing output")
@handle_errors
def calibrate_cli(model, data, images, video, target, method, samples, max_drop, search, output, force) -> None:
    setup_logging()
    import onnx

    from disseg.runtime.atomic import atomic_write
    from disseg.runtime.contract import model_kind, read_model_info, wrong_kind

    from .quantize import calibrate, check_quantizable

    sources = [s for s in (data, images, video) if s is not None]
    if len(sources) != 1:
        raise BadInput("give exactly one of --data DIR, --images DIR or --video FILE to calibrate on")
    if model_kind(model) == "engine":
        raise wrong_kind(
            model,
            "engine",
            wanted="the FP32 .onnx an engine is built from",
            fix="calibrate that .onnx, then build the engine from the INT8 model: dis-export MODEL.int8.onnx --engine",
        )
    info = read_model_info(model)
    proto = onnx.load(str(model))
    check_quantizable(proto, info, model)
    out = output or model.with_name(model.stem + (".int8.onnx" if target == "cpu" else ".int8-trt.onnx"))
    if out.exists() and not force:
        raise BadInput(f"{out} exists; pass --force to overwrite it or -o to choose another file")
    check_output(out, option="-o")
    calib, held_out = _frames(data, images, video, info, samples)
    quantized, report = calibrate(
        proto, info, calib, held_out, data=data, target=target, method=method, max_drop=max_drop, search=search
    )
    atomic_write(out, lambda tmp: onnx.save_model(quantized, tmp))
    write_json(out.with_suffix(".quant.json"), report)
    _say_result(out, report, target, method, max_drop)


def _frames(data, images, video, info: ModelInfo, samples: int) -> tuple[list, list]:
    """The calibration frames and the held-out frames the accuracy is checked on, fitted to the model's input as
    its Segmenter fits them (stretched or letterboxed): a data set's train and val splits, or an image folder's or a
    video's frames split in two. BadInput when there are too few."""
    from .reader import frames_from_data, frames_from_images, frames_from_video

    h, w, fit = info.input_height, info.input_width, {"resize": info.resize}

    held = max(MIN_FRAMES, samples // 4)
    if data is not None:
        calib = frames_from_data(data, "train", h, w, samples, **fit)
        held_out = frames_from_data(data, "val", h, w, held, **fit)
    else:
        frames = (
            frames_from_images(images, h, w, samples + held, **fit)
            if images
            else frames_from_video(video, h, w, samples + held, **fit)
        )
        calib, held_out = (
            frames[::2] if len(frames) < samples + held else frames[:samples],
            frames[1::2] if len(frames) < samples + held else frames[samples:],
        )
    if len(calib) < MIN_FRAMES or len(held_out) < 2:
        raise BadInput(
            f"only {len(calib)} calibration and {len(held_out)} held-out frames found; need at least {MIN_FRAMES} and "
            "2 (add images, or lower --samples)"
        )
    return calib, held_out


def _say_result(out, report: dict, target: str, method: str, max_drop: float) -> None:
    fp32, int8 = report["fp32"], report["int8"]
    metric = (
        f"mIoU {fp32['miou']:.2f} -> {int8['miou']:.2f}"
        if "miou" in fp32
        else f"labels agree {int8['label_agreement']:.2f}%"
    )
    click.echo(
        f"wrote {out} ({target}, {method}, {report['calibration_frames']} frames): {metric}, drop {int8['drop']:.2f} "
        f"{report['drop_unit']}; kept in float: refinement"
        + (", " + ", ".join(report["keep_float"]) if report["keep_float"] else "")
    )
    _say_speed(report["speed_here"], target)
    if not report["within_max_drop"]:
        log.warning(
            "the drop stays above --max-drop %.2f even with every layer group in float; prefer the FP32 or FP16 model",
            max_drop,
        )


def _say_speed(speed: dict, target: str) -> None:
    """One line on what INT8 buys on this machine; a warning when it is not faster (and why: the instruction set)."""
    from disseg.runtime.cpu import CpuInfo

    cpu = CpuInfo(
        speed["cpu"]["model"], speed["cpu"]["arch"], tuple(speed["cpu"]["features"]), speed["cpu"]["int8_dot"]
    )
    ratio = f"{speed['speedup']:.2f}x FP32's speed ({speed['int8_ms']:.1f} vs {speed['fp32_ms']:.1f} ms)"
    if target == "tensorrt":
        log.info("on this CPU (ONNX Runtime) the INT8 model runs at %s; a TensorRT engine's speed is the GPU's", ratio)
    elif speed["speedup"] < 1.05:
        why = "" if cpu.int8_dot else f": {cpu.int8_verdict()}"
        log.warning("INT8 is not faster than FP32 on this CPU (%s, %s)%s; the model is kept", cpu.model, ratio, why)
    else:
        log.info("INT8 runs at %s on this CPU (%s)", ratio, cpu.model)
