"""INT8 by explicit quantization (Q/DQ) with onnxruntime.quantization, an accuracy guard, and a
sensitivity search that keeps the most damaging layer groups in float.

--target cpu:      uint8 activations (asymmetric) + int8 per-channel weights: what ONNX Runtime runs fast.
--target tensorrt: symmetric int8 activations and per-channel weights, which TensorRT 10/11 builds as a
                   strongly typed network (no implicit calibrator, no INT8 builder flag).
The unrolled refinement, the heads and the final logits are never quantized (calibration/scopes.py).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    create_calibrator,
    quantize_static,
    save_tensors_data,
)

from disseg.runtime.backends import cpu_backend, infer_in_batches, scene_tag_feed
from disseg.runtime.console import progress, third_party_output
from disseg.runtime.contract import LABELS, SCENE_TAGS, ModelInfo, attach_metadata
from disseg.runtime.errors import BadInput

from .reader import FrameReader
from .scopes import in_feature_extractor, layer_group

log = logging.getLogger("disseg.calibrate")
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
TARGETS = ("cpu", "tensorrt")
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "Add", "MaxPool", "Relu")  # residual adds too: fewer DQ->float->Q hops
# Entropy (KL) calibration as TensorRT's calibrator does it: a 2048-bin histogram searched for the 128-bin window
# that loses least. ONNX Runtime's default histogram has 128 bins, one window only: its entropy is then min/max.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128


@dataclass(frozen=True)
class Plan:
    target: str
    method: str
    keep_float: tuple[str, ...] = ()  # layer groups of the feature extractor kept in float


def check_quantizable(model: onnx.ModelProto, info: ModelInfo, path: Path) -> None:
    if info.precision == "int8" or any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise BadInput(f"{path} is already quantized; calibrate the FP32 export (dis-export CKPT --iters T)")
    if info.precision != "fp32":
        raise BadInput(
            f"{path} is {info.precision}; calibrate the FP32 export (dis-export CKPT --iters T without --fp16)"
        )
    if not any(in_feature_extractor(n) for n in model.graph.node):
        raise BadInput(
            f"{path} has no feature-extractor marks on its nodes; re-export it with this version's dis-export"
        )


def groups(model: onnx.ModelProto) -> list[str]:
    """The feature extractor's layer groups that hold quantizable ops, in graph order."""
    seen: list[str] = []
    for node in model.graph.node:
        group = layer_group(node)
        if node.op_type in QUANTIZED_OPS and group and group not in seen:
            seen.append(group)
    return seen


def quantize(
    model: onnx.ModelProto, frames: list[np.ndarray], plan: Plan, *, input_name: str, batch: int, workdir: Path
) -> onnx.ModelProto:
    """Return the Q/DQ model for `plan`, calibrated on `frames` (ranges cached in workdir between plans)."""
    exclude = [n.name for n in model.graph.node if not in_feature_extractor(n) or layer_group(n) in plan.keep_float]
    src, dst = workdir / "fp32.onnx", workdir / "int8.onnx"
    if not src.exists():
        onnx.save_model(model, src)
    symmetric = plan.target == "tensorrt"
    tag_classes = scene_tag_classes(model)
    with third_party_output():  # the reader's progress bar as before: inside
        reader = FrameReader(frames, input_name, batch, scene_tag_classes=tag_classes)
        _quantize_static(src, dst, reader, plan, exclude, symmetric, workdir)
    return onnx.load(dst)


def scene_tag_classes(model: onnx.ModelProto) -> int:
    """K of the model's scene_tags input (dis-export --scene-tags), 0 without one."""
    found = next((i for i in model.graph.input if i.name == SCENE_TAGS), None)
    return found.type.tensor_type.shape.dim[1].dim_value if found is not None else 0


def _entropy_ranges(src: Path, reader: FrameReader, cache: Path) -> None:
    """Entropy ranges with TensorRT's histogram size, written where quantize_static reads its calibration cache
    (quantize_static itself cannot be given a histogram size)."""
    calibrator = create_calibrator(
        src,
        list(QUANTIZED_OPS),
        augmented_model_path=str(cache.with_suffix(".augmented.onnx")),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS},
    )
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)
    reader.rewind()


def _quantize_static(src, dst, reader: FrameReader, plan, exclude, symmetric, workdir) -> None:
    cache = workdir / f"ranges.{plan.method}.json"
    if plan.method == "entropy" and not cache.exists():
        _entropy_ranges(src, reader, cache)
    quantize_static(
        src,
        dst,
        reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OPS),
        per_channel=True,
        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        calibrate_method=METHODS[plan.method],
        calibration_cache_path=cache,
        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": False},
    )


def labels_of(model: onnx.ModelProto, frames: list[np.ndarray], input_name: str, batch: int) -> np.ndarray:
    """The labels `model` gives `frames` on the runtime's CPU backend."""
    return infer_in_batches(cpu_backend(model.SerializeToString()), input_name, np.stack(frames), batch)[LABELS]


def score(
    model: onnx.ModelProto,
    info: ModelInfo,
    *,
    data: Path | None,
    held_out: list[np.ndarray],
    reference: np.ndarray,
    batch: int,
    workdir: Path,
) -> dict:
    """Label agreement (%) with the FP32 model on held-out frames, and mIoU on the data's val split when labels
    exist."""
    from disseg.runtime.evaluate import evaluate_exported

    labels = labels_of(model, held_out, info.input_name, batch)
    result = {"label_agreement": round(float(100 * (labels == reference).mean()), 3)}
    if data is not None:
        path = workdir / "scored.onnx"
        onnx.save_model(attach_metadata(model, info), path)
        result["miou"] = evaluate_exported(path, data, backend="onnxruntime")[0]["miou"]
    return result


def drop_of(base: dict, candidate: dict) -> float:
    """mIoU points lost, or (without labels) the percentage of pixels whose label changed."""
    if "miou" in base:
        return round(base["miou"] - candidate["miou"], 3)
    return round(100 - candidate["label_agreement"], 3)


def calibrate(
    model: onnx.ModelProto,
    info: ModelInfo,
    calib: list[np.ndarray],
    held_out: list[np.ndarray],
    *,
    data: Path | None,
    target: str,
    method: str,
    max_drop: float,
    search: bool = True,
) -> tuple[onnx.ModelProto, dict]:
    """Quantize; while the accuracy drop exceeds max_drop, keep in float the layer group whose float copy
    recovers the most (greedy sensitivity search). Returns (INT8 model with contract, report)."""
    batch = info.batch if isinstance(info.batch, int) else 1
    calib = calib[: len(calib) - len(calib) % batch]
    held_out = held_out[: len(held_out) - len(held_out) % batch]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        reference = labels_of(model, held_out, info.input_name, batch)
        base = score(model, info, data=data, held_out=held_out, reference=reference, batch=batch, workdir=workdir)
        plan = Plan(target, method)
        quantized = quantize(model, calib, plan, input_name=info.input_name, batch=batch, workdir=workdir)
        result = score(quantized, info, data=data, held_out=held_out, reference=reference, batch=batch, workdir=workdir)
        trials = [{"keep_float": [], **result, "drop": drop_of(base, result)}]
        candidates = groups(model)
        while search and trials[-1]["drop"] > max_drop and len(plan.keep_float) < len(candidates):
            options = []
            for group in progress(
                [g for g in candidates if g not in plan.keep_float], desc="sensitivity", unit="group"
            ):
                trial = Plan(target, method, plan.keep_float + (group,))
                q = quantize(model, calib, trial, input_name=info.input_name, batch=batch, workdir=workdir)
                r = score(q, info, data=data, held_out=held_out, reference=reference, batch=batch, workdir=workdir)
                options.append((drop_of(base, r), group, q, r))
                log.info("sensitivity: keeping %s in float -> drop %.2f", group, options[-1][0])
            best_drop, group, quantized, result = min(options, key=lambda o: o[0])
            plan = Plan(target, method, plan.keep_float + (group,))
            trials.append({"keep_float": list(plan.keep_float), **result, "drop": best_drop})
    report = {
        "target": target,
        "method": method,
        "calibration_frames": len(calib),
        "held_out_frames": len(held_out),
        "activations": "int8 symmetric" if target == "tensorrt" else "uint8 asymmetric",
        "weights": "int8 symmetric per-channel",
        "float_always": "refinement, heads, final logits",
        "keep_float": list(plan.keep_float),
        "fp32": base,
        "int8": trials[-1],
        "trials": trials,
        "max_drop": max_drop,
        "within_max_drop": trials[-1]["drop"] <= max_drop,
        "drop_unit": "mIoU points" if data is not None else "% of pixels relabelled",
    }
    report["speed_here"] = speed_here(model, quantized, held_out, info.input_name, batch)
    out_info = info.replace(precision="int8", extra={**info.extra, "quantization": report})
    return attach_metadata(quantized, out_info), report


def speed_here(
    fp32: onnx.ModelProto,
    int8: onnx.ModelProto,
    frames: list[np.ndarray],
    input_name: str,
    batch: int,
    rounds: int = 15,
) -> dict:
    """FP32 against INT8 on this machine's CPU (ONNX Runtime's CPU provider, one batch of held-out frames): the
    median of `rounds` alternating runs each, after a warm-up, and the CPU's instruction set beside the ratio."""
    import time

    from disseg.runtime.cpu import read_cpu

    backends = {name: cpu_backend(m.SerializeToString()) for name, m in (("fp32", fp32), ("int8", int8))}
    feed = {input_name: np.stack(frames[:batch]), **scene_tag_feed(backends["fp32"], batch)}
    times: dict[str, list[float]] = {name: [] for name in backends}
    for backend in backends.values():
        backend.infer(feed)
    for _ in range(rounds):
        for name, backend in backends.items():
            start = time.perf_counter()
            backend.infer(feed)
            times[name].append((time.perf_counter() - start) * 1000)
    fp32_ms, int8_ms = (float(np.median(times[name])) for name in ("fp32", "int8"))
    cpu = read_cpu()
    return {
        "backend": "ONNX Runtime, CPU provider",
        "fp32_ms": round(fp32_ms, 3),
        "int8_ms": round(int8_ms, 3),
        "speedup": round(fp32_ms / int8_ms, 3),
        "cpu": cpu.as_dict(),
    }
