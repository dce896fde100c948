import numpy as np
import pytest

from disseg.runtime import ModelFileError, Segmenter, read_model_info
from disseg.runtime.backends import OnnxRuntimeBackend
from disseg.runtime.errors import BadInput


def test_model_describes_itself(tiny_onnx):
    info = read_model_info(tiny_onnx)
    assert (
        info.iterations == 3 and info.precision == "fp32" and info.input_dtype == "uint8" and info.color_order == "BGR"
    )
    assert info.class_names[0] == "background" and len(info.palette) == info.num_classes
    assert info.outputs == ("labels", "tags")
    assert info.extra["parity"]["passed"] is True


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((64, 64, 3), np.uint8),
        ((37, 91, 3), np.uint8),
        ((1, 1, 3), np.uint8),
        ((40, 30), np.uint8),
        ((40, 30, 4), np.uint8),
        ((33, 20, 3), np.uint16),
        ((1500, 2100, 3), np.uint8),
    ],
)
def test_any_size_and_channel_count(tiny_onnx, shape, dtype):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    with Segmenter(tiny_onnx, backend="onnxruntime") as seg:
        result = seg(frame)
        assert result.labels.shape == shape[:2] and result.labels.dtype == np.uint8
        assert result.labels.max() < seg.info.num_classes
        assert result.tags.shape == (seg.info.num_classes,) and ((0 <= result.tags) & (result.tags <= 1)).all()
        assert set(result.timings) == {"preprocess_ms", "infer_ms", "postprocess_ms"}
        shown = seg.overlay(frame, result)
        assert shown.shape == (*shape[:2], 3)


def test_batch_equals_single_frames(tiny_onnx):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    with Segmenter(tiny_onnx, backend="onnxruntime") as seg:
        batched = seg.segment_batch(frames)
        for frame, result in zip(frames, batched):
            assert np.array_equal(seg(frame).labels, result.labels)


def test_overlay_leaves_background_and_colours_classes(tiny_onnx):
    with Segmenter(tiny_onnx, backend="onnxruntime") as seg:
        frame = np.full((8, 8, 3), 100, np.uint8)
        from disseg.runtime.segmenter import Result

        labels = np.zeros((8, 8), np.uint8)
        labels[:4] = 1
        shown = seg.overlay(frame, Result(labels), alpha=1.0)
        assert (shown[4:] == 100).all()
        assert (shown[:4] == seg.palette_bgr[1]).all()


def test_backend_checks_inputs(tiny_onnx):
    backend = OnnxRuntimeBackend(tiny_onnx)
    with pytest.raises(BadInput, match="expected uint8"):
        backend.infer({"image": np.zeros((1, 64, 64, 3), np.float32)})
    with pytest.raises(BadInput, match="expected shape"):
        backend.infer({"image": np.zeros((1, 32, 64, 3), np.uint8)})
    with pytest.raises(BadInput, match="model inputs"):
        backend.infer({"x": np.zeros((1, 64, 64, 3), np.uint8)})


def test_bad_model_files(tmp_path, tiny_onnx):
    with pytest.raises(ModelFileError, match="no such model"):
        Segmenter(tmp_path / "missing.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny_onnx.read_bytes()[:5000])
    with pytest.raises(ModelFileError):
        Segmenter(truncated)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(ModelFileError):
        Segmenter(junk)
    with pytest.raises(BadInput, match="TensorRT"):
        Segmenter(_engine_without_trt(tmp_path, tiny_onnx))


def _engine_without_trt(tmp_path, tiny_onnx):
    from disseg.runtime.contract import write_sidecar
    from disseg.runtime.engine_cache import Target, engine_facts

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    target = Target("tensorrt", "10.3.0", "87", "Orin")
    write_sidecar(engine, engine_facts(read_model_info(tiny_onnx), onnx_sha256="x", target=target))
    return engine


def test_foreign_onnx_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ModelFileError, match="not a disseg model"):
        Segmenter(path)
