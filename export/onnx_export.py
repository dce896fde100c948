"""Checkpoint -> unrolled, self-describing ONNX (FP32 or FP16), with a parity gate against PyTorch."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from disseg.calibration.scopes import FEATURES, FLOAT, PART_KEY
from disseg.runtime.choices import MAX_BATCH
from disseg.runtime.console import third_party_output
from disseg.runtime.contract import (
    INPUT,
    SCENE_TAGS,
    SCHEMA,
    SCHEMA_SCENE_TAGS,
    ModelInfo,
    file_sha256,
)
from disseg.runtime.palette import voc_palette
from disseg.train.model import DIS

from .fp16 import to_fp16
from .model_file import attach
from .unroll import UnrolledDIS

OPSET = 18
TORCH_SCOPES = "pkg.torch.onnx.name_scopes"  # the module scopes torch.onnx records per node


def export_graph(
    model: DIS,
    iters: int,
    *,
    height: int,
    width: int,
    batch: int | None,
    outputs: tuple[str, ...],
    fp16: bool,
    scene_tags: str = "",
) -> onnx.ModelProto:
    """Trace the unrolled module with torch.onnx (dynamo) and return the ONNX model; batch None = dynamic;
    `scene_tags` a contract.SCENE_TAG_MODES entry adds the float32 N x K input SCENE_TAGS."""
    unrolled = UnrolledDIS(model, iters, outputs=outputs, scene_tags=scene_tags).eval()
    example = (torch.zeros((batch or 2, height, width, 3), dtype=torch.uint8),)
    names = [INPUT]
    if scene_tags:
        example += (torch.ones((batch or 2, model.cfg.num_classes)),)
        names.append(SCENE_TAGS)
    # The graph's batch stays symbolic whatever the bound; the bound is what the options allow (torch.export checks
    # its guards over it while tracing), one figure for both.
    batch_dim = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic = tuple({0: batch_dim} for _ in example) if batch is None else None
    with torch.no_grad(), third_party_output():  # torch.onnx and onnxscript's optimizer print as they go
        program = torch.onnx.export(
            unrolled,
            example,
            dynamo=True,
            opset_version=OPSET,
            input_names=names,
            output_names=list(unrolled.outputs),
            dynamic_shapes=dynamic,
            verbose=False,
        )
    proto = mark_parts(program.model_proto)
    if fp16:
        with third_party_output():
            proto = to_fp16(proto)
    return proto


def mark_parts(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Replace each node's debug metadata by its part (calibration/scopes.py): "features/<group>" for the
    feature extractor, a group being one backbone stage or the image-level feature, else "float"."""
    features = tuple(f"{UnrolledDIS.MODEL_SCOPE}.{m}" for m in DIS.FEATURE_MODULES)
    for node in proto.graph.node:
        scopes = next((ast.literal_eval(p.value) for p in node.metadata_props if p.key == TORCH_SCOPES), [])
        owner = next((s for s in scopes if s in features), None)
        part = FLOAT
        if owner is not None:
            stage = next(
                (s for s in scopes if s.startswith(owner + ".") and s.count(".") == owner.count(".") + 1), owner
            )
            part = FEATURES + stage[len(UnrolledDIS.MODEL_SCOPE) + 1 :]
        del node.metadata_props[:]
        node.metadata_props.add(key=PART_KEY, value=part)
    return proto


def model_info(
    model: DIS,
    *,
    iters: int,
    height: int,
    width: int,
    batch: int | None,
    outputs: tuple[str, ...],
    precision: str,
    checkpoint_sha256: str,
    scene_tags: str = "",
) -> ModelInfo:
    cfg = model.cfg
    return ModelInfo(
        input_name=INPUT,
        input_height=height,
        input_width=width,
        batch=batch if batch else "dynamic",
        class_names=cfg.class_names,
        palette=tuple(tuple(int(v) for v in c) for c in voc_palette(cfg.num_classes)),
        iterations=iters,
        step_size=cfg.step_size,
        tag_weight=cfg.tag_weight,
        precision=precision,
        outputs=outputs,
        mean=cfg.mean,
        std=cfg.std,
        checkpoint_sha256=checkpoint_sha256,
        scene_tags=scene_tags,
        schema=SCHEMA_SCENE_TAGS if scene_tags else SCHEMA,
        config=cfg.to_dict(),
    )


def export_checkpoint(
    model: DIS,
    checkpoint: Path,
    *,
    iters: int,
    height: int,
    width: int,
    batch: int | None,
    outputs: tuple[str, ...],
    fp16: bool,
    scene_tags: str = "",
) -> tuple[onnx.ModelProto, ModelInfo, float]:
    """Return (ONNX model with metadata, its contract, export seconds)."""
    start = time.perf_counter()
    proto = export_graph(
        model, iters, height=height, width=width, batch=batch, outputs=outputs, fp16=fp16, scene_tags=scene_tags
    )
    info = model_info(
        model,
        iters=iters,
        height=height,
        width=width,
        batch=batch,
        outputs=outputs,
        precision="fp16" if fp16 else "fp32",
        checkpoint_sha256=file_sha256(checkpoint),
        scene_tags=scene_tags,
    )
    return attach(proto, info), info, time.perf_counter() - start


def held_out_images(
    data: Path | None, height: int, width: int, count: int, *, seed: int = 123
) -> tuple[list[np.ndarray], str]:
    """uint8 BGR images at the model size: the checkpoint's val split when it is on this machine, else generated."""
    from disseg.runtime.dataset import list_samples
    from disseg.runtime.errors import BadInput
    from disseg.runtime.image import read_image, resize_to

    if data is not None:
        try:
            _, samples = list_samples(data, "val")
            images = [resize_to(read_image(s.image), height, width) for s in samples[:count]]
            if images:
                return images, f"{data} (val split, {len(images)} images)"
        except BadInput:
            pass
    from disseg.train.synth import SYNTH_CLASSES, class_styles, render

    rng = np.random.default_rng(seed)
    styles = class_styles(len(SYNTH_CLASSES), rng)
    images = [
        np.ascontiguousarray(render(max(height, width), styles, rng)[0][:height, :width, ::-1]) for _ in range(count)
    ]
    return images, f"generated ({count} synthetic images)"
