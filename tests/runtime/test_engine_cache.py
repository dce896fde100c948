import json

import pytest

from disseg.runtime.backends import tensorrt_available
from disseg.runtime.contract import ModelInfo, file_sha256, read_model_info, read_sidecar, write_sidecar
from disseg.runtime.engine_cache import (
    Target,
    cached_engine_path,
    engine_facts,
    mismatch,
    parse_gpu_arch,
    short_version,
)
from disseg.runtime.errors import BadInput, ModelFileError

ORIN = Target("tensorrt", "10.3.0", "87", "Orin")


def _info() -> ModelInfo:
    return ModelInfo(
        input_name="image",
        input_height=64,
        input_width=64,
        batch=1,
        class_names=("bg", "a"),
        palette=((0, 0, 0), (128, 0, 0)),
        iterations=3,
        step_size=30.0,
        tag_weight=0.3,
        precision="fp16",
        outputs=("labels",),
    )


def test_sidecar_round_trip_carries_engine_facts(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 16)
    facts = engine_facts(_info(), onnx_sha256="ab" * 32, target=ORIN)
    path = write_sidecar(engine, facts)
    raw = json.loads(path.read_text())["disseg"]  # plain JSON, readable from C++
    assert raw["extra"]["engine"]["compute_capability"] == "87" and raw["precision"] == "fp16"
    back = read_model_info(engine)
    assert back == facts


def test_mismatch_explains_what_differs():
    facts = engine_facts(_info(), onnx_sha256="x", target=ORIN)
    assert mismatch(facts, ORIN, onnx_sha256="x") is None
    why = mismatch(facts, Target("tensorrt", "10.8.0", "90", "H100"))
    assert "10.3.0" in why and "sm_87" in why and "10.8.0" in why and "sm_90" in why
    assert "different ONNX" in mismatch(facts, ORIN, onnx_sha256="y")
    assert "Orin" in mismatch(facts, Target("tensorrt", "10.3.0", "87", "Xavier"))
    assert "tensorrt_rtx" in mismatch(facts, Target("tensorrt_rtx", "10.3.0", "87", "Orin"))


def test_versions_compare_on_major_minor_patch():
    """C++ reads 10.3.0 from the headers, the wheel says 10.3.0.30: the same TensorRT."""
    assert short_version("10.3.0.30") == "10.3.0" == short_version("10.3.0")
    facts = engine_facts(_info(), onnx_sha256="x", target=Target("tensorrt", "10.3.0.30", "87", "Orin"))
    assert mismatch(facts, ORIN) is None
    assert mismatch(facts, Target("tensorrt", "10.3.1", "87", "Orin")) is not None


def test_ahead_of_time_engine_fits_any_gpu_of_its_compute_capability():
    facts = engine_facts(_info(), onnx_sha256="x", target=Target("tensorrt_rtx", "1.7.1", "86", None))
    assert facts.extra["engine"]["ahead_of_time"] is True
    assert mismatch(facts, Target("tensorrt_rtx", "1.7.1", "86", "NVIDIA GeForce RTX 3090")) is None
    assert "sm_89" in mismatch(facts, Target("tensorrt_rtx", "1.7.1", "89", "NVIDIA GeForce RTX 4090"))


@pytest.mark.parametrize("text, cc", [("sm86", "86"), ("sm_89", "89"), ("120", "120"), ("8.6", "86"), (" SM75 ", "75")])
def test_gpu_arch_spellings(text, cc):
    assert parse_gpu_arch(text) == cc


@pytest.mark.parametrize("text", ["ampere", "sm", "8.6.1", ""])
def test_bad_gpu_arch_is_one_line(text):
    with pytest.raises(BadInput, match="compute capability"):
        parse_gpu_arch(text)


def test_cache_key_separates_versions_gpus_and_flavours(tmp_path):
    a = cached_engine_path(tmp_path / "m.onnx", ORIN)
    b = cached_engine_path(tmp_path / "m.onnx", Target("tensorrt", "10.8.0", "87", "Orin"))
    c = cached_engine_path(
        tmp_path / "m.onnx", Target("tensorrt", "10.3.0", "90", "H100"), cache_dir=tmp_path / "cache"
    )
    d = cached_engine_path(tmp_path / "m.onnx", Target("tensorrt_rtx", "10.3.0", "87", "Orin"))
    assert len({a, b, c, d}) == 4 and c.parent == tmp_path / "cache" and a.parent == tmp_path
    assert a.name == "m.trt10.3.0.sm87.engine"


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
@pytest.mark.skipif(not tensorrt_available("tensorrt"), reason="needs TensorRT and a CUDA GPU")
def test_build_engine_from_exported_onnx(tiny_onnx, tmp_path):
    import numpy as np

    from disseg.runtime.engine_cache import build_engine
    from disseg.runtime.segmenter import Segmenter

    engine = tmp_path / "m.engine"
    facts = build_engine(tiny_onnx, engine, flavour="tensorrt", timing_cache=tmp_path / "t.cache")
    assert engine.is_file() and facts.onnx_sha256 == file_sha256(tiny_onnx)
    frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with Segmenter(engine, backend="tensorrt") as trt_seg, Segmenter(tiny_onnx, backend="onnxruntime") as ort_seg:
        assert (trt_seg(frame).labels == ort_seg(frame).labels).mean() > 0.99
