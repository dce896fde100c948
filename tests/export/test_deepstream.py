"""dis-export --deepstream DIR: what DeepStream's nvinfer loads without custom code. DeepStream cannot run here, so:
every key written is one NVIDIA documents, the ONNX goes through TensorRT for RTX's parser and builder, and nvinfer's
documented preprocessing, y = net-scale-factor * (x - offsets[c]), done in numpy from the values in the written
config, followed by the written ONNX on ONNX Runtime, gives the disseg model's labels."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import one_line, run_cmd

onnx = pytest.importorskip("onnx")
pytest.importorskip("cv2")

from disseg.export.foreign import parity_frames  # noqa: E402
from disseg.runtime.contract import read_model_info  # noqa: E402
from disseg.runtime.segmenter import Segmenter  # noqa: E402

# Gst-nvinfer's [property] keys in DeepStream 7.0 (gst-nvinfer's gstnvinfer_property_parser.h, "Gst-nvinfer File
# Configuration Specifications" in the DeepStream 7.0 developer guide).
NVINFER_KEYS = {
    "parse-func", "gie-unique-id", "process-mode", "interval", "labelfile-path", "gpu-id", "secondary-reinfer-interval",
    "output-tensor-meta", "enable-dla", "use-dla-core", "batch-size", "tensor-meta-pool-size", "network-mode",
    "model-engine-file", "int8-calib-file", "workspace-size", "output-blob-names", "is-classifier", "network-type",
    "force-implicit-batch-dim", "infer-dims", "output-io-formats", "layer-device-precision", "model-color-format",
    "net-scale-factor", "offsets", "mean-file", "maintain-aspect-ratio", "symmetric-padding", "scaling-filter",
    "scaling-compute-hw", "network-input-order", "input-tensor-from-meta", "custom-lib-path", "parse-bbox-func-name",
    "parse-bbox-instance-mask-func-name", "engine-create-func-name", "parse-classifier-func-name",
    "custom-network-config", "model-file", "proto-file", "uff-file", "uff-input-order", "input-dims", "uff-input-dims",
    "uff-input-blob-name", "tlt-encoded-model", "tlt-model-key", "onnx-file", "num-detected-classes", "enable-dbscan",
    "cluster-mode", "classifier-type", "classifier-threshold", "classifier-async-mode", "segmentation-threshold",
    "segmentation-output-order", "output-instance-mask", "input-object-min-width", "input-object-min-height",
    "input-object-max-width", "input-object-max-height", "operate-on-gie-id", "operate-on-class-ids",
    "filter-out-class-ids",
}  # fmt: skip
# deepstream-app's groups and the keys of them that the example uses (DeepStream 7.0 "Reference Application
# Configuration": Application, Source, Streammux, Primary GIE, Segvisual and Sink groups).
APP_KEYS = {
    "application": {"enable-perf-measurement", "perf-measurement-interval-sec", "gie-kitti-output-dir"},
    "source0": {
        "enable",
        "type",
        "uri",
        "num-sources",
        "gpu-id",
        "camera-width",
        "camera-height",
        "drop-frame-interval",
    },
    "streammux": {"batch-size", "width", "height", "batched-push-timeout", "gpu-id", "live-source", "enable-padding"},
    "primary-gie": {"enable", "gie-unique-id", "config-file", "batch-size", "gpu-id", "model-engine-file"},
    "segvisual": {"enable", "gpu-id", "batch-size", "width", "height", "nvbuf-memory-type"},
    "sink0": {"enable", "type", "container", "codec", "output-file", "sync", "bitrate", "source-id"},
}


def read_config(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys keep their case
    parser.read(path)
    return parser


def nvinfer_labels(folder: Path, frames: np.ndarray) -> np.ndarray:
    """nvinfer's preprocessing with the written config's values, then the written ONNX; argmax of its probabilities."""
    import onnxruntime as ort

    prop = read_config(folder / "config_infer_primary_disseg.txt")["property"]
    scale = float(prop["net-scale-factor"])
    offsets = np.array([float(v) for v in prop["offsets"].split(";")], np.float32)
    planar = frames.astype(np.float32)
    if prop["model-color-format"] == "0":  # RGB; frames are BGR
        planar = planar[..., ::-1]
    y = (scale * (planar.transpose(0, 3, 1, 2) - offsets.reshape(1, 3, 1, 1))).astype(np.float32)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (name,) = [o.name for o in session.get_outputs()]
    assert name == prop["output-blob-names"]
    batch = session.get_inputs()[0].shape[0]
    step = batch if isinstance(batch, int) else len(y)
    probabilities = np.concatenate([session.run(None, {"input": y[i : i + step]})[0] for i in range(0, len(y), step)])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-4)
    return probabilities.argmax(1)


def check_folder(folder: Path, model: Path) -> None:
    info = read_model_info(model)
    prop = read_config(folder / "config_infer_primary_disseg.txt")
    assert prop.sections() == ["property"] and set(prop["property"]) <= NVINFER_KEYS, (
        set(prop["property"]) - NVINFER_KEYS
    )
    p = prop["property"]
    assert p["network-type"] == "2" and int(p["num-detected-classes"]) == info.num_classes
    assert p["infer-dims"] == f"3;{info.input_height};{info.input_width}" and p["onnx-file"] == "model.onnx"
    assert (folder / p["labelfile-path"]).read_text().split("\n")[:-1] == list(info.class_names)
    app = read_config(folder / "deepstream_app_config.txt")
    for group in app.sections():
        assert set(app[group]) <= APP_KEYS[group], (group, set(app[group]) - APP_KEYS[group])
    assert app["primary-gie"]["config-file"] == "config_infer_primary_disseg.txt"
    assert "nvsegvisual" in (folder / "pipeline.sh").read_text()
    graph = onnx.load(str(folder / "model.onnx")).graph
    (value,) = graph.input
    dims = [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]
    assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and dims[1:] == [
        3,
        info.input_height,
        info.input_width,
    ]
    n = info.batch if isinstance(info.batch, int) else 1
    frames = parity_frames(info.input_height, info.input_width, 4 * n, seed=31)
    with Segmenter(model, backend="onnxruntime") as seg:
        expected = np.stack([r.labels for r in seg.segment_batch(list(frames))])
    assert len(np.unique(expected)) >= 2
    assert (nvinfer_labels(folder, frames) == expected).mean() >= 0.999
    if os.environ.get("CI"):
        import tensorrt_rtx as trt
    else:
        trt = pytest.importorskip("tensorrt_rtx")
    from disseg.runtime.engine_cache import tensorrt_logger

    logger = tensorrt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse((folder / "model.onnx").read_bytes()), [
        str(parser.get_error(i)) for i in range(parser.num_errors)
    ]
    config = builder.create_builder_config()
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM86, 0)
    assert builder.build_serialized_network(network, config) is not None


def test_deepstream_folder_from_a_disseg_export(tiny_onnx, tmp_path):
    proc = run_cmd("dis-export", str(tiny_onnx), "--deepstream", str(tmp_path / "ds"), check=True)
    assert "100.00% of pixels" in proc.stdout or "99.9" in proc.stdout
    check_folder(tmp_path / "ds", tiny_onnx)


@pytest.mark.parametrize("name", ["eighth", "fcn_resnet50"])
def test_deepstream_folder_from_an_imported_model(foreign_models, tmp_path, name):
    model = tmp_path / "m.onnx"
    run_cmd("dis-import", str(foreign_models[name]), "-o", str(model), check=True)
    run_cmd("dis-export", str(model), "--deepstream", str(tmp_path / "ds"), check=True)
    check_folder(tmp_path / "ds", model)


def test_deepstream_folder_from_a_checkpoint(tiny_run, tmp_path):
    out = tmp_path / "m.onnx"
    ds = tmp_path / "d"
    run_cmd(
        "dis-export", str(tiny_run / "best.pt"), "--iters", "1", "-o", str(out), "--deepstream", str(ds), check=True
    )
    check_folder(ds, out)


def test_a_label_map_model_cannot_feed_nvinfers_parser(foreign_models, tmp_path):
    model = tmp_path / "lm.onnx"
    run_cmd("dis-import", str(foreign_models["label_map"]), "-o", str(model), "--classes", "5", check=True)
    proc = run_cmd("dis-export", str(model), "--deepstream", str(tmp_path / "ds"))
    one_line(proc, 2, "per-class scores", "--output")
    assert not list((tmp_path / "ds").glob("*"))  # the folder is checked (and made) first; nothing is written
