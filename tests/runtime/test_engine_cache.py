import json

import pytest

from disseg.runtime.backends import tensorrt_available
from disseg.runtime.contract import ModelInfo, file_sha256, read_model_info
from disseg.runtime.engine_cache import cached_engine_path, engine_facts, mismatch, read_sidecar, write_sidecar
from disseg.runtime.errors import ModelFileError


def _info() -> ModelInfo:
    return ModelInfo(input_name="image", input_height=64, input_width=64, batch=1, class_names=("bg", "a"),
                     palette=((0, 0, 0), (128, 0, 0)), iterations=3, step_size=30.0, tag_weight=0.3, precision="fp16",
                     outputs=("labels",))


def test_sidecar_round_trip_carries_engine_facts(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 16)
    facts = engine_facts(_info(), onnx_sha256="ab" * 32, tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="87")
    path = write_sidecar(engine, facts)
    raw = json.loads(path.read_text())["disseg"]  # plain JSON, readable from C++
    assert raw["extra"]["engine"]["compute_capability"] == "87" and raw["precision"] == "fp16"
    back = read_model_info(engine)
    assert back == facts


def test_mismatch_explains_what_differs():
    facts = engine_facts(_info(), onnx_sha256="x", tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="87")
    assert mismatch(facts, tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="87", onnx_sha256="x") is None
    why = mismatch(facts, tensorrt_version="10.8.0", gpu_name="H100", compute_capability="90")
    assert "10.3.0" in why and "sm_87" in why and "10.8.0" in why and "sm_90" in why
    assert "different ONNX" in mismatch(facts, tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="87", onnx_sha256="y")
    assert "Orin" in mismatch(facts, tensorrt_version="10.3.0", gpu_name="Xavier", compute_capability="87")


def test_cache_key_separates_versions_and_gpus(tmp_path):
    a = cached_engine_path(tmp_path / "m.onnx", tensorrt_version="10.3", compute_capability="87")
    b = cached_engine_path(tmp_path / "m.onnx", tensorrt_version="10.8", compute_capability="87")
    c = cached_engine_path(tmp_path / "m.onnx", tensorrt_version="10.3", compute_capability="90", cache_dir=tmp_path / "cache")
    assert len({a, b, c}) == 3 and c.parent == tmp_path / "cache" and a.parent == tmp_path


def test_missing_or_corrupt_sidecar(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="no sidecar"):
        read_sidecar(engine)
    (tmp_path / "m.engine.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="corrupt engine sidecar"):
        read_sidecar(engine)


def test_sha256_changes_with_content(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"one")
    first = file_sha256(p)
    p.write_bytes(b"two")
    assert file_sha256(p) != first and len(first) == 64


@pytest.mark.gpu
@pytest.mark.skipif(not tensorrt_available(), reason="needs TensorRT and a CUDA GPU")
def test_build_engine_from_exported_onnx(tiny_onnx, tmp_path):
    from disseg.runtime.engine_cache import build_engine
    from disseg.runtime.segmenter import Segmenter
    import numpy as np

    engine = tmp_path / "m.engine"
    facts = build_engine(tiny_onnx, engine, timing_cache=tmp_path / "t.cache")
    assert engine.is_file() and facts.onnx_sha256 == file_sha256(tiny_onnx)
    frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with Segmenter(engine, backend="tensorrt") as trt_seg, Segmenter(tiny_onnx, backend="onnxruntime") as ort_seg:
        assert (trt_seg(frame).labels == ort_seg(frame).labels).mean() > 0.99
