"""dis-export: checkpoint -> unrolled ONNX (parity-gated), and ONNX -> TensorRT engine on the target."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import click

from disseg.runtime.atomic import check_output
from disseg.runtime.cli_util import (
    MAX_BATCH,
    MAX_COUNT,
    MAX_ITERS,
    Command,
    Finite,
    handle_errors,
    max_batch_option,
    parse_size,
    setup_logging,
    write_json,
)
from disseg.runtime.contract import LABELS, OUTPUTS, SCENE_TAG_MODES, model_kind, wrong_kind
from disseg.runtime.engine_cache import FLAVOURS
from disseg.runtime.errors import BadInput, DisError

log = logging.getLogger("disseg.export")


@click.command(
    cls=Command,
    help="Export a checkpoint as an unrolled, self-describing ONNX model; optionally build a TensorRT engine.",
)
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--iters",
    type=click.IntRange(0, MAX_ITERS),
    help="refinement steps unrolled into the graph [default: the checkpoint's iters_test]",
)
@click.option("--fp16", is_flag=True, help="FP16 feature extractor; refinement update and logits stay FP32")
@click.option("--size", "size_text", help="input HxW [default: the training size]")
@click.option("--batch", type=click.IntRange(1, MAX_BATCH), default=1, show_default=True, help="static batch")
@click.option("--dynamic-batch", is_flag=True, help="dynamic batch dimension instead of --batch")
@click.option("--outputs", default="labels", show_default=True, help="comma list of labels,scores,tags")
@click.option(
    "--scene-tags",
    "scene_tags",
    type=click.Choice(SCENE_TAG_MODES),
    is_flag=False,
    flag_value=SCENE_TAG_MODES[0],
    help="add the input scene_tags (N x K, 1 = may appear, 0 = absent) for tags given at run time, used in the "
    f"refinement energy and/or to mask absent classes [bare flag: {SCENE_TAG_MODES[0]}]",
)
@click.option("--tag-weight", type=Finite(0, 100), help="weight of the tags in the energy [default: the checkpoint's]")
@click.option("--engine", is_flag=True, help="also build a TensorRT engine (needs TensorRT and a GPU)")
@click.option("--workspace-gib", default=2.0, show_default=True, type=Finite(0, 1024, min_open=True))
@click.option(
    "--dla-core", type=click.IntRange(0, 15), help="build for this DLA core (Jetson; FP16/INT8 models), GPU fallback on"
)
@click.option(
    "--gpu-arch",
    help="build ahead of time for this compute capability (e.g. sm86), no GPU needed: TensorRT for RTX only",
)
@click.option(
    "--flavour", type=click.Choice(FLAVOURS), help="which TensorRT builds the engine [default: the one installed]"
)
@max_batch_option("largest batch of a --dynamic-batch engine")
@click.option(
    "--deepstream",
    type=click.Path(path_type=Path),
    help="also write this folder for DeepStream's nvinfer: float-input ONNX, config_infer, labels, pipeline",
)
@click.option(
    "--triton-repo",
    type=click.Path(path_type=Path),
    help="also write a model repository for NVIDIA's Triton here (with --engine: the engine as model.plan)",
)
@click.option("--model-name", default="disseg", show_default=True, help="the model's name in the Triton repository")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(1, 64), help="Triton model instances")
@click.option("--parity/--no-parity", default=True, show_default=True, help="check against PyTorch before writing")
@click.option("--min-agreement", type=Finite(0, 100), help="parity threshold, percent of labels [fp32 99.9, fp16 99]")
@click.option("--parity-images", default=8, show_default=True, type=click.IntRange(1, MAX_COUNT))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="[default: beside the checkpoint, .onnx]")
@click.option("--force", is_flag=True, help="overwrite an existing output")
@handle_errors
def export_cli(
    model: Path, iters, fp16, size_text, batch, dynamic_batch, outputs, engine, output, force, deepstream, **rest
) -> None:
    setup_logging()
    started = time.perf_counter()
    engine_options = {k: rest.pop(k) for k in ("workspace_gib", "dla_core", "gpu_arch", "flavour", "max_batch")}
    handoff = {"deepstream": deepstream, **{k: rest.pop(k) for k in ("triton_repo", "model_name", "instances")}}
    kind = model_kind(model)
    if kind not in ("checkpoint", "onnx"):
        raise wrong_kind(
            model,
            kind,
            wanted="a checkpoint (RUN/best.pt) or an exported .onnx",
            fix="dis-export takes the checkpoint or the .onnx the engine was built from",
        )
    _check_handoff(handoff, rest["scene_tags"], force=force)
    if kind == "onnx":
        if rest["scene_tags"] or rest["tag_weight"] is not None:
            raise BadInput(f"--scene-tags and --tag-weight export a checkpoint; {model} is already ONNX")
        if not engine and handoff["deepstream"] is None and handoff["triton_repo"] is None:
            raise BadInput(
                f"{model} is already ONNX; pass --engine to build a TensorRT engine from it, --deepstream DIR or "
                "--triton-repo DIR, or export a .pt checkpoint"
            )
        _after_onnx(model, output, engine=engine, force=force, options=engine_options, handoff=handoff)
        return
    batch = None if dynamic_batch else batch
    out = _export_checkpoint(model, iters, fp16, size_text, batch, outputs, output, force, started=started, **rest)
    _after_onnx(out, None, engine=engine, force=force, options=engine_options, handoff=handoff)


def _export_checkpoint(
    model: Path, iters, fp16, size_text, batch, outputs, output, force, *, started, scene_tags, tag_weight, **rest
) -> Path:
    """The checkpoint as a parity-checked ONNX file (the command's main path); returns the file written."""
    wanted = tuple(o.strip() for o in outputs.split(",") if o.strip())
    if LABELS not in wanted or set(wanted) - set(OUTPUTS):
        raise BadInput(f"--outputs {outputs!r}: choose from {','.join(OUTPUTS)} and include {LABELS}")

    from disseg.train.checkpoint import model_from_checkpoint

    from .model_file import attach, save
    from .onnx_export import export_checkpoint

    net, ckpt = model_from_checkpoint(model)
    iters = net.cfg.iters_test if iters is None else iters
    if tag_weight is not None:
        net.cfg = net.cfg.replace(tag_weight=tag_weight)
    scene_tags = _scene_tag_use(scene_tags or "", iters, net.cfg.tag_weight)
    height, width = parse_size(size_text) or (net.cfg.size, net.cfg.size)
    net.check_size(height, width)
    out = output or model.with_suffix(".onnx" if not fp16 else ".fp16.onnx")
    if out.exists() and not force:
        raise BadInput(f"{out} exists; pass --force to overwrite it or -o to choose another file")
    check_output(out, option="-o")
    log.info("exporting %d refinement step%s at %dx%d with torch.onnx", iters, "s" * (iters != 1), height, width)
    shape = {"height": height, "width": width, "batch": batch}
    proto, info, seconds = export_checkpoint(
        net, model, iters=iters, **shape, outputs=wanted, fp16=fp16, scene_tags=scene_tags
    )
    log.info("exported %s in %.1f s", info.precision, seconds)
    if rest["parity"]:
        data = Path(ckpt["data"]) if ckpt.get("data") else None
        report = _parity_gate(
            net, proto, out, data=data, size=(height, width), batch=batch or 1, fp16=fp16, iters=iters,
            scene_tags=scene_tags, **rest,
        )  # fmt: skip
        info = info.replace(extra={**info.extra, "parity": report})
    save(attach(proto, info), out)
    if "parity" in info.extra:
        write_json(out.with_suffix(".parity.json"), info.extra["parity"])  # after the model: never an orphan report
    size_mb = out.stat().st_size / 1e6
    tags = f", scene tags: {scene_tags}" if scene_tags else ""
    click.echo(
        f"wrote {out} ({info.precision}, {iters} refinement step{'s' * (iters != 1)}, {height}x{width}, {size_mb:.1f} "
        f"MB{tags}) in {time.perf_counter() - started:.1f} s"
    )
    return out


def _scene_tag_use(use: str, iters: int, tag_weight: float) -> str:
    """The --scene-tags mode to export: the energy needs refinement steps and a tag weight."""
    if not use or "energy" not in use:
        return use
    lacking = "--iters 0 runs no refinement step" if iters == 0 else "the tag weight is 0" if tag_weight == 0 else ""
    if lacking and use == "energy":
        raise BadInput(f"--scene-tags energy: {lacking}, so the tags would do nothing; use --iters 3 --tag-weight 0.3 "
                       "or --scene-tags mask")  # fmt: skip
    if lacking:
        log.info("scene tags: %s, so the tags only mask absent classes", lacking)
        return "mask"
    return use


def _check_handoff(handoff: dict, scene_tags: str | None, *, force: bool) -> None:
    if scene_tags and handoff["deepstream"] is not None:
        raise BadInput(
            "--deepstream with --scene-tags: nvinfer feeds a model one input, the image; export the DeepStream "
            "folder without --scene-tags"
        )
    if handoff["deepstream"] is not None:
        check_output(handoff["deepstream"] / "model.onnx", option="--deepstream")
    if handoff["triton_repo"] is not None:
        from disseg.runtime.triton_repo import check_name

        config = handoff["triton_repo"] / check_name(handoff["model_name"]) / "config.pbtxt"
        if config.exists() and not force:
            raise BadInput(f"{config.parent} exists; pass --force to overwrite it or --model-name to choose another")
        check_output(config, option="--triton-repo")


def _after_onnx(onnx_path: Path, output: Path | None, *, engine: bool, force: bool, options, handoff) -> None:
    """What follows an ONNX model: its DeepStream folder, its TensorRT engine, its Triton repository (from the
    engine when one was built)."""
    if handoff["deepstream"] is not None:
        _deepstream(onnx_path, handoff["deepstream"])
    built = _engine_from_onnx(onnx_path, output, force=force, options=options) if engine else None
    if handoff["triton_repo"] is not None:
        _triton_repo(built or onnx_path, handoff, max_batch=options["max_batch"])


def _triton_repo(model: Path, handoff: dict, *, max_batch: int) -> None:
    from disseg.runtime.contract import read_model_info
    from disseg.runtime.triton_repo import write_repository

    info = read_model_info(model)
    name, instances = handoff["model_name"], handoff["instances"]
    root = write_repository(model, info, handoff["triton_repo"], name=name, max_batch=max_batch, instances=instances)
    batching = (
        f"dynamic batching up to {max_batch}"
        if info.batch == "dynamic"
        else f"fixed batch {info.batch}, which Triton does not batch (export with --dynamic-batch for that)"
    )
    weights = "model.plan" if model.suffix != ".onnx" else "model.onnx"
    click.echo(f"wrote {root}/ for Triton (1/{weights}, config.pbtxt, labels.txt; {batching}, {instances} instance(s))")


def _deepstream(model: Path, folder: Path) -> None:
    """FOLDER for DeepStream's nvinfer (export/deepstream.py), checked against the model on ONNX Runtime."""
    from disseg.runtime.contract import read_model_info

    from .deepstream import write_deepstream
    from .foreign import parity_frames

    info = read_model_info(model)
    if info.scene_tags:
        raise BadInput(
            f"--deepstream: {model} takes scene tags (a second input) and nvinfer feeds a model one input, the image; "
            "export the DeepStream folder from the checkpoint without --scene-tags"
        )
    batch = info.batch if isinstance(info.batch, int) else 1
    frames = parity_frames(info.input_height, info.input_width, batch * -(-8 // batch))
    report = write_deepstream(model, folder, frames=frames)
    click.echo(
        f"wrote {folder}/ for DeepStream (model.onnx, config_infer_primary_disseg.txt, labels.txt, "
        f"deepstream_app_config.txt, pipeline.sh); nvinfer's preprocessing + model.onnx give the model's labels on "
        f"{report['label_agreement']:.2f}% of pixels ({report['frames']} frames, ONNX Runtime)"
    )


def _parity_gate(
    net, proto, out: Path, *, data, size, batch, fp16, iters, scene_tags, parity_images, min_agreement, **_
) -> dict:
    """Compare PyTorch with the export on held-out images; the report, or DisError below the bar (the caller writes
    OUT.parity.json after the model)."""
    from .onnx_export import held_out_images
    from .parity import parity_report

    images, source = held_out_images(data, *size, batch * math.ceil(parity_images / batch))
    report = parity_report(
        net, proto, images, iters=iters, fp16=fp16, source=source, min_agreement=min_agreement, scene_tags=scene_tags
    )
    for row in report["per_iteration"]:
        log.info(
            "parity t=%d: labels agree %.3f%%, max |score error| %.2e%s",
            row["iters"],
            row["label_agreement"],
            row["max_abs_score_error"],
            "" if row["finite"] else ", NaN/Inf!",
        )
    agreement = report["outputs"][LABELS]["label_agreement"]
    threshold = report["threshold_label_agreement"]
    log.info("parity shipped model: labels agree %.3f%% (threshold %.1f%%) on %s", agreement, threshold, source)
    if "scene_tags" in report:
        log.info(
            "parity scene tags: all-ones tags give the model without tags on %.3f%% of labels",
            report["scene_tags"]["all_ones_vs_untagged_label_agreement"],
        )
    if not report["passed"]:  # the report is written with the model or not at all: its figures go in the line
        raise DisError(
            f"parity check failed: the ONNX model's labels agree with PyTorch's on {agreement:.2f}% (threshold "
            f"{threshold}%) on {source}; not writing {out}"
        )
    return report


def _engine_from_onnx(onnx_path: Path, output: Path | None, *, force: bool, options: dict) -> Path:
    """Build `<model>.engine` + `<model>.engine.json` with TensorRT or TensorRT for RTX (runtime/engine_cache.py)."""
    from disseg.runtime.contract import read_model_info
    from disseg.runtime.engine_cache import build_engine, import_trt

    read_model_info(onnx_path)  # refuses a model that is not ours before TensorRT spends minutes on it
    try:
        import_trt(options["flavour"])
    except BadInput as err:
        raise BadInput(
            f"--engine: {err}; {onnx_path} is written, build the engine where TensorRT is: "
            f"dis-export {onnx_path} --engine"
        ) from None
    engine_path = output or onnx_path.with_suffix(".engine")
    if engine_path.exists() and not force:
        raise BadInput(f"{engine_path} exists; pass --force to rebuild it")
    check_output(engine_path, option="-o")
    start = time.perf_counter()
    facts = build_engine(
        onnx_path,
        engine_path,
        timing_cache=onnx_path.with_suffix(".timing.cache"),
        announce=lambda: log.info(
            "building %s (on a GPU this takes minutes: TensorRT times its kernels)", engine_path.name
        ),
        **options,
    )
    built = facts.extra["engine"]
    where = built["gpu_name"] or f"any sm_{built['compute_capability']} GPU, built ahead of time"
    click.echo(
        f"wrote {engine_path} ({engine_path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s) and "
        f"{engine_path.name}.json ({built['flavour']} {built['tensorrt_version']}, {where})"
    )
    for note in built["notes"]:
        log.warning("%s", note)
    return engine_path
