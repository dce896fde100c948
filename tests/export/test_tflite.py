"""dis-import MODEL.tflite: TensorFlow Lite segmentation models converted by tf2onnx, wrapped as any foreign model, and
held to the .tflite itself run by Google's LiteRT. The models are made here with TensorFlow's own converter (random
weights; nothing downloaded); quantized ones are refused. CI runs this in an environment with the `tflite` profile
and no torch (DISSEG_REQUIRE_TFLITE=1); elsewhere it skips without TensorFlow, tf2onnx or LiteRT."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import one_line, run_cmd


def _require(module: str):
    if os.environ.get("DISSEG_REQUIRE_TFLITE") == "1":
        return __import__(module, fromlist=["_"])
    return pytest.importorskip(module)


tf = _require("tensorflow")
_require("tf2onnx")
litert = _require("ai_edge_litert.interpreter")
cv2 = pytest.importorskip("cv2")

from disseg.export.foreign import parity_frames  # noqa: E402
from disseg.runtime.contract import read_model_info  # noqa: E402
from disseg.runtime.segmenter import Segmenter  # noqa: E402

SIZE = 64


def _keras_net(head: str) -> tf.keras.Model:
    """A small encoder-decoder: strided convolutions down, a transpose convolution up; `head` "logits" (3 classes at
    full size) or "sigmoid" (one class's probability at half size)."""
    tf.keras.utils.set_random_seed(3)
    x = inputs = tf.keras.Input((SIZE, SIZE, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2DTranspose(8, 2, strides=2, padding="same", activation="relu")(x)
    if head == "logits":
        return tf.keras.Model(
            inputs, tf.keras.layers.UpSampling2D(2, interpolation="bilinear")(tf.keras.layers.Conv2D(3, 1)(x))
        )
    last = tf.keras.layers.Conv2D(1, 1)
    logit = last(x)
    # the bias redrawn so that the class covers about half of the varied frames' pixels (random weights alone put
    # every pixel on one side of 0.5, and two constant answers agree 100 %)
    frames = parity_frames(SIZE, SIZE, 4, seed=2)[..., ::-1] / np.float32(255)
    median = float(np.median(tf.keras.Model(inputs, logit)(frames.astype(np.float32)).numpy()))
    kernel, bias = last.get_weights()
    last.set_weights([kernel, bias - median])
    return tf.keras.Model(inputs, tf.keras.layers.Activation("sigmoid")(logit))


def _tflite(path: Path, head: str, *, int8: bool = False) -> Path:
    converter = tf.lite.TFLiteConverter.from_keras_model(_keras_net(head))
    if int8:
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.random((1, SIZE, SIZE, 3), np.float32)] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def _litert_labels(path: Path, frames_bgr: np.ndarray, threshold: float | None) -> np.ndarray:
    """The .tflite on LiteRT, RGB scaled to 0..1 as the import was told: argmax (or > threshold) at the frame size."""
    interpreter = litert.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    labels = []
    for frame in frames_bgr:
        interpreter.set_tensor(source["index"], (frame[None, ..., ::-1] / 255.0).astype(np.float32))
        interpreter.invoke()
        out = interpreter.get_tensor(target["index"])[0]
        out = cv2.resize(out, frame.shape[1::-1], interpolation=cv2.INTER_LINEAR).reshape(*frame.shape[:2], -1)
        labels.append((out[..., 0] > threshold).astype(np.uint8) if threshold is not None else out.argmax(-1))
    return np.stack(labels)


UNIT = ["--mean", "0,0,0", "--std", "1,1,1", "--scale", "1/255"]


@pytest.mark.parametrize("head, classes", [("logits", 3), ("sigmoid", 2)])
def test_a_float_tflite_model_imports_at_parity_with_litert(tmp_path, head, classes):
    source = _tflite(tmp_path / f"{head}.tflite", head)
    model = tmp_path / f"{head}.disseg.onnx"
    proc = run_cmd("dis-import", str(source), "-o", str(model), *UNIT, check=True)
    report = json.loads(model.with_suffix(".parity.json").read_text())
    assert report["passed"] and report["litert"]["label_agreement"] >= 99.5, report
    info = read_model_info(model)
    assert info.num_classes == classes and info.extra["import"]["tflite"]["converter"].startswith("tf2onnx ")
    if head == "sigmoid":  # one class's probability: its threshold read from the Sigmoid, its default names
        assert info.extra["import"]["threshold"] == 0.5 and info.class_names == ("background", "foreground")
        assert "a probability" in proc.stderr
    frames = parity_frames(SIZE, SIZE, 6, seed=11)
    with Segmenter(model, backend="onnxruntime") as seg:
        ours = np.stack([r.labels for r in seg.segment_batch(list(frames))])
    theirs = _litert_labels(source, frames, 0.5 if head == "sigmoid" else None)
    assert len(np.unique(theirs)) > 1  # the frames tell the classes apart: agreement means something
    assert (ours == theirs).mean() >= 0.995


def test_the_imported_model_runs_in_dis_run(tmp_path):
    model = tmp_path / "m.onnx"
    run_cmd("dis-import", str(_tflite(tmp_path / "m.tflite", "logits")), "-o", str(model), *UNIT, check=True)
    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(parity_frames(48, 80, 3, seed=5)):
        cv2.imwrite(str(images / f"{i}.png"), frame)
    run_cmd("dis-run", str(model), "--images", str(images), "--masks", str(tmp_path / "masks"), "--no-display",
            check=True)  # fmt: skip
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert [cv2.imread(str(m), cv2.IMREAD_UNCHANGED).shape[:2] for m in masks] == [(48, 80)] * 3


@pytest.mark.parametrize("head", ["logits", "sigmoid"])
def test_tensorrt_for_rtx_builds_an_imported_tflite_model(tmp_path, head):
    """What a .tflite becomes (tf2onnx's graph wrapped) goes through TensorRT for RTX's parser and builder."""
    _require("tensorrt_rtx")
    model = tmp_path / "m.onnx"
    run_cmd("dis-import", str(_tflite(tmp_path / "m.tflite", head)), "-o", str(model), *UNIT, check=True)
    engine = tmp_path / "m.engine"
    run_cmd("dis-export", str(model), "--engine", "--gpu-arch", "sm86", "-o", str(engine), check=True)
    sidecar = json.loads(engine.with_name("m.engine.json").read_text())["disseg"]
    assert engine.stat().st_size > 10_000 and sidecar["extra"]["import"]["tflite"]["converter"].startswith("tf2onnx")


def test_a_quantized_tflite_model_is_refused_in_one_line(tmp_path):
    source = _tflite(tmp_path / "int8.tflite", "logits", int8=True)
    proc = run_cmd("dis-import", str(source), "-o", str(tmp_path / "q.onnx"), *UNIT)
    one_line(proc, 2, "quantized TFLite model", "int8", "dis-calibrate")
    assert not (tmp_path / "q.onnx").exists()


def test_a_damaged_tflite_file_is_one_line(tmp_path):
    whole = _tflite(tmp_path / "whole.tflite", "logits").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(whole[: len(whole) // 3])
    proc = run_cmd("dis-import", str(cut), "-o", str(tmp_path / "c.onnx"))
    one_line(proc, 2, "cut.tflite", "LiteRT cannot load it")
    assert not (tmp_path / "c.onnx").exists()
