"""A model repository for NVIDIA's Triton Inference Server, made from a disseg model's contract, and the one naming of
tensors, batching and metadata that `dis-serve` (runtime/triton_serve.py) and the Triton client backend
(runtime/backends/triton.py) share, so a client cannot tell a repository served by NGC's Triton from `dis-serve`.

    DIR/NAME/config.pbtxt        platform, max_batch_size, inputs/outputs, dynamic_batching, instance_group,
                                 optimization (TensorRT accelerator for ONNX), parameters {"disseg.*": contract}
    DIR/NAME/labels.txt          class names, one a line (label_filename of the scores/tags output)
    DIR/NAME/1/model.onnx        or model.plan, a TensorRT engine (built for the server's GPU and TensorRT)

The contract's metadata travels as model-config `parameters` (string values, the same JSON as the ONNX file's
metadata), which Triton returns from its model-configuration endpoint: that is how a remote client learns the
classes, palette and input size.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from .atomic import atomic_write, atomic_write_text
from .contract import INPUT, LABELS, SCENE_TAGS, SCORES, TAGS, ModelInfo, check_external_data
from .errors import BadInput

NAME_RULE = re.compile(r"^[A-Za-z0-9_.\-]+$")  # what Triton and pytriton accept as a model name
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
PRECISION_MODE = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}  # ONNX Runtime's TensorRT accelerator
DTYPES = {"uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "float32": "TYPE_FP32"}


MAX_NAME = 128


def check_name(name: str) -> str:
    """A model name is one path component of Triton's characters: never '.', '..' or only dots (it would write into
    the repository's folder or its parent), at most MAX_NAME characters."""
    if not NAME_RULE.match(name or "") or set(name) == {"."} or len(name) > MAX_NAME:
        shown = repr(name[:60]) + ("..." if len(name or "") > 60 else "")
        raise BadInput(
            f"model name {shown}: use 1 to {MAX_NAME} letters, digits, '_', '.' or '-' (Triton's rule), not only "
            "dots, e.g. disseg"
        )
    return name


def tensors(info: ModelInfo) -> tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    """(inputs, outputs) as (name, numpy dtype name, dims without the batch dimension)."""
    h, w, k = info.input_height, info.input_width, info.num_classes
    label_type = "uint8" if k <= 256 else "int32"
    shapes = {LABELS: (label_type, [h, w]), SCORES: ("float32", [k, h, w]), TAGS: ("float32", [k])}
    outputs = [(name, *shapes[name]) for name in info.outputs]
    inputs = [(INPUT, "uint8", [h, w, 3])] + ([(SCENE_TAGS, "float32", [k])] if info.scene_tags else [])
    return inputs, outputs


def preferred_sizes(max_batch: int) -> list[int]:
    """Powers of two up to max_batch, and max_batch itself: batch sizes a GPU runs well."""
    sizes = [b for b in (2, 4, 8, 16, 32, 64) if b < max_batch]
    return [*sizes, max_batch] if max_batch > 1 else []


def metadata_parameters(info: ModelInfo) -> dict[str, str]:
    return dict(info.to_metadata())


def _text(value: str) -> str:
    """A protobuf text-format string literal (JSON's escapes of quote, backslash and control characters are
    valid C escapes; no \\u escapes: non-ASCII stays UTF-8)."""
    return json.dumps(value, ensure_ascii=False)


def _tensor_block(kind: str, rows, *, label_file: str | None = None, fixed_batch: int | None = None) -> list[str]:
    lines = [f"{kind} ["]
    for i, (name, dtype, dims) in enumerate(rows):
        shown = [fixed_batch, *dims] if fixed_batch else dims
        extra = f'\n    label_filename: "{label_file}"' if label_file and name in (SCORES, TAGS) else ""
        comma = "," if i < len(rows) - 1 else ""
        lines.append(f'  {{\n    name: "{name}"\n    data_type: {DTYPES[dtype]}\n    dims: {shown}{extra}\n  }}{comma}')
    lines.append("]")
    return lines


def config_pbtxt(info: ModelInfo, *, name: str, platform: str, max_batch: int, instances: int, gpu: bool = True) -> str:
    """config.pbtxt for `info`. A dynamic-batch model gets max_batch_size and dynamic batching; a fixed batch N
    cannot be batched by Triton (its first dimension is not -1), so it gets max_batch_size 0 and dims with N."""
    inputs, outputs = tensors(info)
    dynamic = info.batch == "dynamic"
    fixed = None if dynamic else int(info.batch)
    lines = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {max_batch if dynamic else 0}"]
    if not dynamic:
        lines.insert(
            0,
            f"# fixed batch of {fixed}: Triton batches only a model whose batch dimension is dynamic "
            "(dis-export CKPT --dynamic-batch)",
        )
    lines += _tensor_block("input", inputs, fixed_batch=fixed)
    lines += _tensor_block("output", outputs, label_file="labels.txt", fixed_batch=fixed)
    if dynamic and max_batch > 1:
        lines.append(
            f"dynamic_batching {{\n  preferred_batch_size: {preferred_sizes(max_batch)}\n"
            "  max_queue_delay_microseconds: 100\n}"
        )
    lines.append(
        f"instance_group [\n  {{\n    count: {instances}\n    kind: {'KIND_GPU' if gpu else 'KIND_CPU'}\n  }}\n]"
    )
    if platform == "onnxruntime_onnx" and gpu:
        lines.append(
            "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n      {\n"
            '        name: "tensorrt"\n'
            f'        parameters {{ key: "precision_mode" value: "{PRECISION_MODE[info.precision]}" }}\n'
            '        parameters { key: "max_workspace_size_bytes" value: "2147483648" }\n'
            '        parameters { key: "trt_engine_cache_enable" value: "1" }\n'
            "      }\n    ]\n  }\n}"
        )
    for key, value in metadata_parameters(info).items():
        lines.append(f"parameters {{\n  key: {_text(key)}\n  value: {{ string_value: {_text(value)} }}\n}}")
    return "\n".join(lines) + "\n"


def write_repository(model: Path, info: ModelInfo, folder: Path, *, name: str, max_batch: int, instances: int) -> Path:
    """DIR/NAME/{config.pbtxt, labels.txt, 1/model.onnx|model.plan}; an engine goes in as model.plan."""
    check_name(name)
    is_engine = model.suffix != ".onnx"
    platform = "tensorrt_plan" if is_engine else "onnxruntime_onnx"
    root = folder / name
    (root / "1").mkdir(parents=True, exist_ok=True)
    target = root / "1" / ("model.plan" if is_engine else "model.onnx")
    for location in [] if is_engine else sorted(set(check_external_data(model))):  # its weights go along
        (target.parent / location).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target.parent / location, lambda tmp, src=model.parent / location: shutil.copyfile(src, tmp))
    atomic_write(target, lambda tmp: shutil.copyfile(model, tmp))
    atomic_write_text(root / "labels.txt", "\n".join(info.class_names) + "\n")
    text = config_pbtxt(info, name=name, platform=platform, max_batch=max_batch, instances=instances)
    atomic_write_text(root / "config.pbtxt", text)
    return root
