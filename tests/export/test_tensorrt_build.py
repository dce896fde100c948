"""Every kind of model we export goes through NVIDIA's ONNX parser and engine builder.

No machine here can run a TensorRT engine, but TensorRT for RTX (`tensorrt-rtx-cu13`) parses and builds
engines ahead of time on a CPU, with TensorRT's type rules. Each kind is exported by `dis-export` /
`dis-calibrate` and built by the project's own builder, `dis-export MODEL.onnx --engine --gpu-arch sm86`.
In CI (CI=true) a missing TensorRT for RTX fails these tests; elsewhere they skip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_cmd

if os.environ.get("CI"):
    import tensorrt_rtx as trt  # .ci/run installs it: never skip there
else:
    trt = pytest.importorskip("tensorrt_rtx")
onnx = pytest.importorskip("onnx")

# kind: (run, dis-export flags or ("int8", target[, the kind it quantizes]))
KINDS = {
    "t0": ("resnet", ["--iters", "0"]),
    "t1": ("resnet", ["--iters", "1"]),
    "t3_labels_scores_tags": ("resnet", ["--iters", "3", "--outputs", "labels,scores,tags"]),
    "t5": ("resnet", ["--iters", "5"]),
    "fp16": ("resnet", ["--iters", "3", "--fp16", "--outputs", "labels,scores,tags"]),
    "batch2": ("resnet", ["--iters", "3", "--batch", "2", "--outputs", "labels,tags"]),
    "dynamic_batch": ("resnet", ["--iters", "3", "--dynamic-batch", "--outputs", "labels,tags"]),
    "non_square_64x96": ("resnet", ["--iters", "3", "--size", "64x96"]),
    "mobilenet_v3_large": ("mobilenet", ["--iters", "3", "--outputs", "labels,scores,tags"]),
    "int8_tensorrt": ("resnet", ("int8", "tensorrt")),
    "int8_cpu": ("resnet", ("int8", "cpu")),
    "scene_tags_dynamic": ("resnet", ["--iters", "3", "--scene-tags", "--dynamic-batch", "--outputs", "labels,tags"]),
    "scene_tags_mask_fp16": ("resnet", ["--iters", "3", "--scene-tags", "mask", "--fp16"]),
    "scene_tags_int8_tensorrt": ("resnet", ("int8", "tensorrt", "scene_tags_dynamic")),
}
DYNAMIC = ("dynamic_batch", "scene_tags_dynamic", "scene_tags_int8_tensorrt")
CONTRACT_TYPES = {"labels": "UINT8", "scores": "FLOAT", "tags": "FLOAT"}


@pytest.fixture(scope="module")
def mobilenet_run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "mobilenet"
    run_cmd(
        "dis-train",
        "--data",
        str(tiny_data),
        "--out",
        str(out),
        "--backbone",
        "mobilenet_v3_large",
        "--output-stride",
        "16",
        "--size",
        "64",
        "--epochs",
        "1",
        "--batch",
        "4",
        "--steps-per-epoch",
        "2",
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def exported(tiny_run, mobilenet_run, tiny_data, tmp_path_factory):
    """kind -> ONNX path, exported on first use."""
    folder = tmp_path_factory.mktemp("trt")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind in made:
            return made[kind]
        run, flags = KINDS[kind]
        out = folder / f"{kind}.onnx"
        if flags[0] == "int8":
            source = get(flags[2] if len(flags) > 2 else "t3_labels_scores_tags")
            run_cmd(
                "dis-calibrate",
                str(source),
                "--data",
                str(tiny_data),
                "--target",
                flags[1],
                "--samples",
                "8",
                "--max-drop",
                "100",
                "-o",
                str(out),
                check=True,
            )
        else:
            ckpt = (tiny_run if run == "resnet" else mobilenet_run) / "best.pt"
            run_cmd("dis-export", str(ckpt), *flags, "-o", str(out), check=True)
        made[kind] = out
        return out

    return get


def _graph_facts(path: Path) -> tuple[list[str], dict[str, int], list[int]]:
    """(ops reading the input, output element types, element types of every DequantizeLinear's quantized input:
    an initializer's own type, or the zero point's type of the QuantizeLinear that made it)."""
    graph = onnx.load(str(path)).graph
    readers = [n.op_type for n in graph.node if graph.input[0].name in n.input]
    inits = {t.name: t.data_type for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def quantized_type(name: str) -> int:
        if name in inits:
            return inits[name]
        q = producer.get(name)
        return inits.get(q.input[2], -1) if q is not None and q.op_type == "QuantizeLinear" and len(q.input) > 2 else -1

    dq_types = [quantized_type(n.input[0]) for n in graph.node if n.op_type == "DequantizeLinear"]
    return readers, {o.name: o.type.tensor_type.elem_type for o in graph.output}, dq_types


@pytest.mark.parametrize("kind", list(KINDS))
def test_onnx_follows_tensorrt_type_rules(exported, kind):
    """TensorRT's rules that ONNX Runtime does not enforce: the uint8 input feeds only a Cast; outputs keep the
    contract's types in every precision; no int32 (quantized bias) into DequantizeLinear; uint8 labels are cast
    from a float tensor (TensorRT 10.3 converts to uint8 only from FLOAT/HALF)."""
    path = exported(kind)
    readers, outputs, dq_types = _graph_facts(path)
    assert readers == ["Cast"], readers
    expected = {"labels": onnx.TensorProto.UINT8, "scores": onnx.TensorProto.FLOAT, "tags": onnx.TensorProto.FLOAT}
    assert outputs == {name: expected[name] for name in outputs}
    assert onnx.TensorProto.INT32 not in dq_types
    if "int8" in kind:
        assert dq_types and set(dq_types) <= {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    to_uint8 = producer["labels"]
    before = producer[to_uint8.input[0]]
    assert to_uint8.op_type == "Cast" and before.op_type == "Cast"
    assert next(a.i for a in before.attribute if a.name == "to") == onnx.TensorProto.FLOAT


def _parsed_io(path: Path) -> tuple[dict[str, str], dict[str, str], str]:
    """NVIDIA's parser on what the builder gives it: input and output types, and the first layer's type."""
    from disseg.runtime.contract import read_model_info
    from disseg.runtime.engine_cache import onnx_bytes_for_tensorrt

    data, _ = onnx_bytes_for_tensorrt(path, read_model_info(path))
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(data), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    inputs = {network.get_input(i).name: network.get_input(i).dtype.name for i in range(network.num_inputs)}
    outputs = {network.get_output(i).name: network.get_output(i).dtype.name for i in range(network.num_outputs)}
    return inputs, outputs, network.get_layer(0).type.name


@pytest.mark.parametrize("kind", list(KINDS))
def test_engine_builds_with_the_project_builder(exported, kind, tmp_path):
    path = exported(kind)
    inputs, outputs, first = _parsed_io(path)
    tagged = {"scene_tags": "FLOAT"} if kind.startswith("scene_tags") else {}
    assert inputs == {"image": "UINT8", **tagged} and first == "CAST"
    assert outputs == {name: CONTRACT_TYPES[name] for name in outputs} and "labels" in outputs
    engine = tmp_path / f"{kind}.engine"
    proc = run_cmd("dis-export", str(path), "--engine", "--gpu-arch", "sm86", "-o", str(engine))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert engine.stat().st_size > 100_000
    sidecar = json.loads(Path(str(engine) + ".json").read_text())["disseg"]
    facts = sidecar["extra"]["engine"]
    assert facts["flavour"] == "tensorrt_rtx" and facts["compute_capability"] == "86" and facts["ahead_of_time"] is True
    assert facts["tensorrt_version"] == ".".join(trt.__version__.split(".")[:3]) and facts["gpu_name"] is None
    from disseg.runtime.contract import file_sha256

    assert sidecar["onnx_sha256"] == file_sha256(path)
    assert facts["max_batch"] == (8 if kind in DYNAMIC else None)
    assert bool(facts["notes"]) == (kind == "int8_cpu")  # the asymmetric model is re-quantized for TensorRT


def test_requantized_cpu_model_labels_like_a_tensorrt_calibration(exported, tiny_data):
    """The symmetric copy TensorRT gets of a `--target cpu` model agrees with the FP32 model as well as a model
    calibrated with `--target tensorrt` does (ONNX Runtime, the validation frames)."""
    import numpy as np
    import onnxruntime as ort

    from disseg.runtime.contract import read_model_info
    from disseg.runtime.dataset import list_samples
    from disseg.runtime.engine_cache import onnx_bytes_for_tensorrt
    from disseg.runtime.image import read_image, resize_to

    frames = [resize_to(read_image(s.image), 64, 64)[None] for s in list_samples(tiny_data, "val")[1]]

    def labels(model) -> np.ndarray:
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(["labels"], {"image": f})[0] for f in frames])

    path = exported("int8_cpu")
    data, notes = onnx_bytes_for_tensorrt(path, read_model_info(path))
    assert notes and not any(
        i.data_type == onnx.TensorProto.UINT8 for i in onnx.load_from_string(data).graph.initializer
    )
    reference = labels(str(exported("t3_labels_scores_tags")))
    requantized = (labels(data) == reference).mean()
    calibrated = (labels(str(exported("int8_tensorrt"))) == reference).mean()
    assert requantized >= calibrated - 0.02, (requantized, calibrated)


def test_engine_needs_a_gpu_to_run_and_says_so(exported, tmp_path):
    """An ahead-of-time engine on a machine without a GPU: one line, exit 2 (never a traceback)."""
    path = exported("t1")
    engine = tmp_path / "m.engine"
    run_cmd("dis-export", str(path), "--engine", "--gpu-arch", "sm86", "-o", str(engine), check=True)
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "frame.png"), np.zeros((64, 64, 3), np.uint8))
    proc = run_cmd(
        "dis-run", str(engine), "--images", str(tmp_path), "--no-display", "--stats", str(tmp_path / "s.json")
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no CUDA GPU is visible" in proc.stderr.strip().splitlines()[-1]
    doctor = run_cmd("dis-doctor", str(engine), "--json")
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 1 and "no CUDA GPU is visible" in report["check"]["backends"]["tensorrt"]["error"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--flavour", "tensorrt"], "not installed"),
        (["--gpu-arch", "ampere"], "compute capability"),
        (["--gpu-arch", "sm70"], "builds for sm"),
        (["--gpu-arch", "sm86", "--dla-core", "0"], "DLA"),
        ([], "no CUDA GPU is visible"),
    ],
)
def test_engine_build_refusals_are_one_line(exported, tmp_path, flags, message):
    import importlib.util

    if flags[:2] == ["--flavour", "tensorrt"] and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    proc = run_cmd("dis-export", str(exported("t1")), "--engine", *flags, "-o", str(tmp_path / "x.engine"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert message in lines[-1], lines
    assert not (tmp_path / "x.engine").exists()


def test_engine_build_reports_its_phases(exported, tmp_path, monkeypatch):
    """The builder's progress monitor is attached and sees TensorRT's phases (the bars a terminal shows)."""
    from disseg.runtime import engine_cache

    monitors = []
    attach = engine_cache.build_progress

    def keep(trt_module):
        monitors.append(attach(trt_module))
        return monitors[-1]

    monkeypatch.setattr(engine_cache, "build_progress", keep)
    model = exported("t0")
    engine_cache.build_engine(model, tmp_path / "m.engine", flavour="tensorrt_rtx", gpu_arch="sm86")
    assert len(monitors) == 1 and "Building engine" in monitors[0].phases, monitors and monitors[0].phases
    assert not monitors[0].bars  # every phase that started finished
