"""dis-export --triton-repo: a model repository for NVIDIA's Triton, parsed with Triton's own schema (tritonclient's
model_config_pb2 through protobuf's text_format, which refuses any field the schema lacks)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import one_line, run_cmd

text_format = pytest.importorskip("google.protobuf.text_format")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

from disseg.runtime.contract import ModelInfo, read_model_info  # noqa: E402


def parse(folder: Path):
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def contract_of(config) -> ModelInfo:
    return ModelInfo.from_metadata({k: v.string_value for k, v in config.parameters.items()}, source="config.pbtxt")


def test_the_schema_parse_is_strict():
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sise: 4", model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def dynamic_model(tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "dyn.onnx"
    run_cmd("dis-export", str(tiny_run / "best.pt"), "--iters", "1", "--dynamic-batch", "--outputs",
            "labels,scores,tags", "-o", str(out), check=True)  # fmt: skip
    return out


def test_a_dynamic_batch_model_gets_batching_instances_and_its_contract(dynamic_model, tmp_path):
    repo = tmp_path / "repo"
    proc = run_cmd("dis-export", str(dynamic_model), "--triton-repo", str(repo), "--model-name", "seg", "--instances",
                   "2", "--max-batch", "16", check=True)  # fmt: skip
    assert "dynamic batching up to 16" in proc.stdout
    config = parse(repo / "seg")
    info = read_model_info(dynamic_model)
    assert (config.name, config.platform, config.max_batch_size) == ("seg", "onnxruntime_onnx", 16)
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("image", model_config_pb2.TYPE_UINT8, [info.input_height, info.input_width, 3])
    ]
    k, h, w = info.num_classes, info.input_height, info.input_width
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("labels", model_config_pb2.TYPE_UINT8, [h, w]),
        ("scores", model_config_pb2.TYPE_FP32, [k, h, w]),
        ("tags", model_config_pb2.TYPE_FP32, [k]),
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8, 16]
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_GPU)]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP32"
    assert contract_of(config) == info
    assert (repo / "seg" / "labels.txt").read_text().splitlines() == list(info.class_names)
    assert (repo / "seg" / "1" / "model.onnx").read_bytes() == dynamic_model.read_bytes()


def test_a_scene_tags_model_declares_its_second_input(scene_tags_model, tmp_path):
    repo = tmp_path / "repo"
    run_cmd("dis-export", str(scene_tags_model), "--triton-repo", str(repo), check=True)
    config = parse(repo / "disseg")
    info = read_model_info(scene_tags_model)
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("image", model_config_pb2.TYPE_UINT8, [info.input_height, info.input_width, 3]),
        ("scene_tags", model_config_pb2.TYPE_FP32, [info.num_classes]),
    ]
    assert contract_of(config).scene_tags == "energy+mask"


def test_a_fixed_batch_model_is_not_batched_and_says_why(tiny_onnx, tmp_path):
    proc = run_cmd("dis-export", str(tiny_onnx), "--triton-repo", str(tmp_path / "r"), check=True)
    assert "which Triton does not batch" in proc.stdout
    text = (tmp_path / "r" / "disseg" / "config.pbtxt").read_text()
    config = parse(tmp_path / "r" / "disseg")
    info = read_model_info(tiny_onnx)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching") and "--dynamic-batch" in text
    assert list(config.input[0].dims) == [info.batch, info.input_height, info.input_width, 3]


def test_an_engine_goes_in_as_model_plan(dynamic_model, tmp_path):
    if os.environ.get("CI"):
        import tensorrt_rtx  # noqa: F401
    else:
        pytest.importorskip("tensorrt_rtx")
    model = tmp_path / "m.onnx"
    model.write_bytes(dynamic_model.read_bytes())
    run_cmd("dis-export", str(model), "--engine", "--gpu-arch", "sm86", "--triton-repo", str(tmp_path / "r"),
            check=True)  # fmt: skip
    config = parse(tmp_path / "r" / "disseg")
    assert config.platform == "tensorrt_plan" and not config.HasField("optimization")
    plan = tmp_path / "r" / "disseg" / "1" / "model.plan"
    assert plan.read_bytes() == (tmp_path / "m.engine").read_bytes()
    sidecar = json.loads((tmp_path / "m.engine.json").read_text())["disseg"]
    assert contract_of(config).extra["engine"] == sidecar["extra"]["engine"]


def test_a_bad_model_name_is_one_line(tiny_onnx, tmp_path):
    proc = run_cmd("dis-export", str(tiny_onnx), "--triton-repo", str(tmp_path / "r"), "--model-name", "a b")
    one_line(proc, 2, "model name 'a b'")
    assert not (tmp_path / "r").exists()
