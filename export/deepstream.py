"""dis-export --deepstream DIR: a disseg model as DeepStream's Gst-nvinfer loads it without custom code.

nvinfer feeds a network float planar frames it has already normalised, y = net-scale-factor * (x - offsets[c]), and
its semantic-segmentation parser (network-type=2) reads per-class probabilities, N x K x H x W. So the model's own
preprocessing (Cast, channel order, layout, mean/std) is cut off, the input becomes that float NCHW tensor, and the
output is softmax over the scores that the model's ArgMax reads. nvinfer has one scalar scale and per-channel
offsets; what per-channel scaling is left (std differs by channel) stays in the graph as one Mul. The cut is
checked with ONNX Runtime before anything is written: nvinfer's arithmetic in numpy followed by the new graph must
give the model's labels.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from disseg.runtime.atomic import atomic_write, atomic_write_text
from disseg.runtime.contract import INPUT, LABELS, ModelInfo, read_model_info
from disseg.runtime.errors import BadInput, DisError

log = logging.getLogger("disseg.export")

DS_INPUT, DS_OUTPUT = "input", "probabilities"
FOREIGN = "foreign/"  # export/foreign.py's prefix: where an imported model's network begins
PREPROCESSING_OPS = {"Cast", "Transpose", "Gather", "Slice", "Div", "Mul", "Sub", "Add"}  # uint8 frame -> normalised
SEGMENTATION_THRESHOLD = 0.0  # nvinfer marks a pixel -1 below this class probability; 0 keeps every argmax
DEEPSTREAM_VERSION = "7.0"  # the nvinfer keys written here are those of this release's property parser


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def preprocessing_cut(graph: onnx.GraphProto, source: str) -> tuple[str, set[int]]:
    """The normalised NCHW tensor and the indices of the nodes that make it: the chain of elementwise and layout
    nodes that starts at the uint8 input's Cast and ends where the tensor is read by anything else (the network)."""
    readers = _consumers(graph)
    index = {id(n): i for i, n in enumerate(graph.node)}
    chain: set[int] = set()
    current = INPUT
    while not current.startswith(FOREIGN):  # an imported model's own graph starts there
        users = readers.get(current, [])
        node = users[0] if len(users) == 1 else None
        if node is None or node.op_type not in PREPROCESSING_OPS or len(node.output) != 1:
            break
        if not all(_is_constant(graph, name) for name in node.input if name and name != current):
            break
        chain.add(index[id(node)])
        current = node.output[0]
    if not chain:
        raise BadInput(f"{source}: no preprocessing found after its '{INPUT}' input; re-export it with dis-export")
    return current, chain


def _is_constant(graph: onnx.GraphProto, name: str) -> bool:
    if any(t.name == name for t in graph.initializer):
        return True
    return any(n.op_type == "Constant" and name in n.output for n in graph.node)


def nvinfer_preprocessing(info: ModelInfo) -> tuple[float, np.ndarray, np.ndarray, int]:
    """(net-scale-factor, offsets, the per-channel factor left in the graph, model-color-format) for `info`'s
    mean/std, in the channel order the network reads (RGB, or BGR for an imported BGR model)."""
    mean, std = np.array(info.mean, np.float64), np.array(info.std, np.float64)  # RGB, on 0..1 pixels
    bgr = (info.extra.get("import") or {}).get("preprocessing", {}).get("channel_order") == "BGR"
    if bgr:
        mean, std = mean[::-1], std[::-1]
    scale = 1.0 / (255.0 * float(std.mean()))
    offsets = 255.0 * mean
    leftover = 1.0 / (scale * 255.0 * std)
    return scale, offsets, leftover, 1 if bgr else 0


def deepstream_graph(proto: onnx.ModelProto, info: ModelInfo, source: str) -> onnx.ModelProto:
    """The model with nvinfer's input (float N x 3 x H x W, normalised by nvinfer up to `leftover`) and one output,
    softmax probabilities N x K x H x W."""
    graph = proto.graph
    cut, chain = preprocessing_cut(graph, source)
    argmax = _scores_argmax(graph, source)
    _, _, leftover, _ = nvinfer_preprocessing(info)
    nodes = [n for i, n in enumerate(graph.node) if i not in chain]
    extra_inits = []
    feed = DS_INPUT
    if not np.allclose(leftover, 1.0, atol=1e-6):
        extra_inits.append(numpy_helper.from_array(leftover.astype(np.float32).reshape(1, 3, 1, 1), "ds/leftover"))
        nodes.insert(0, helper.make_node("Mul", [DS_INPUT, "ds/leftover"], ["ds/normalized"], name="ds/leftover"))
        feed = "ds/normalized"
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == cut:
                node.input[i] = feed
    nodes.append(helper.make_node("Softmax", [argmax.input[0]], [DS_OUTPUT], name="ds/softmax", axis=1))
    batch = info.batch if isinstance(info.batch, int) else "batch"
    h, w, k = info.input_height, info.input_width, info.num_classes
    new = helper.make_graph(
        nodes,
        "disseg_deepstream",
        [helper.make_tensor_value_info(DS_INPUT, TensorProto.FLOAT, [batch, 3, h, w])],
        [helper.make_tensor_value_info(DS_OUTPUT, TensorProto.FLOAT, [batch, k, h, w])],
        initializer=[*graph.initializer, *extra_inits],
    )
    model = helper.make_model(new, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    model.functions.extend(proto.functions)
    return _prune(model)


def _scores_argmax(graph: onnx.GraphProto, source: str) -> onnx.NodeProto:
    """The ArgMax that `labels` is made from (labels <- Cast* <- ArgMax(scores))."""
    producer = {o: n for n in graph.node for o in n.output}
    node = producer.get(LABELS)
    while node is not None and node.op_type == "Cast":
        node = producer.get(node.input[0])
    if node is None or node.op_type != "ArgMax":
        raise BadInput(
            f"{source}: its labels are not an ArgMax over class scores (an imported label-map model?); nvinfer's "
            "segmentation parser needs per-class scores: import the foreign model's logits (dis-import --output NAME)"
        )
    return node


def _prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the nodes and initializers no output needs (the labels and tags branches)."""
    graph = model.graph
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
    needed, stack = set(), [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        i = producer.get(name)
        if i is None or i in needed:
            continue
        needed.add(i)
        stack.extend(x for x in graph.node[i].input if x)
    keep = [n for i, n in enumerate(graph.node) if i in needed]
    used = {x for n in keep for x in n.input}
    del graph.node[:]
    graph.node.extend(keep)
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.value_info[:]
    return model


def nvinfer_config(info: ModelInfo, onnx_name: str) -> dict[str, str]:
    """The [property] group of the config_infer file: every key one that DeepStream's nvinfer documents."""
    scale, offsets, _, color = nvinfer_preprocessing(info)
    batch = info.batch if isinstance(info.batch, int) else 1
    return {
        "gpu-id": "0",
        "gie-unique-id": "1",
        "onnx-file": onnx_name,
        "labelfile-path": "labels.txt",
        "batch-size": str(batch),
        "network-mode": {"fp32": "0", "int8": "1", "fp16": "2"}[info.precision],
        "network-type": "2",
        "infer-dims": f"3;{info.input_height};{info.input_width}",
        "net-scale-factor": f"{scale:.10g}",
        "offsets": ";".join(f"{o:.6g}" for o in offsets),
        "model-color-format": str(color),
        "maintain-aspect-ratio": "1" if info.resize == "letterbox" else "0",  # as the runtimes fit frames
        **({"symmetric-padding": "1"} if info.resize == "letterbox" else {}),
        "output-blob-names": DS_OUTPUT,
        "num-detected-classes": str(info.num_classes),
        "segmentation-threshold": f"{SEGMENTATION_THRESHOLD}",
        "segmentation-output-order": "0",
    }


def render_config(groups: dict[str, dict[str, str]], header: str) -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    for group, keys in groups.items():
        lines += ["", f"[{group}]", *(f"{k}={v}" for k, v in keys.items())]
    return "\n".join(lines) + "\n"


def app_config(info: ModelInfo) -> dict[str, dict[str, str]]:
    """A minimal deepstream-app configuration: one file source, the model, nvsegvisual's masks, a file sink."""
    w, h = str(info.input_width), str(info.input_height)
    return {
        "application": {"enable-perf-measurement": "1", "perf-measurement-interval-sec": "5"},
        "source0": {"enable": "1", "type": "3", "uri": "file:///path/to/video.mp4", "num-sources": "1"},
        "streammux": {"batch-size": "1", "width": w, "height": h, "batched-push-timeout": "40000"},
        "primary-gie": {"enable": "1", "gie-unique-id": "1", "config-file": "config_infer_primary_disseg.txt"},
        "segvisual": {"enable": "1", "width": w, "height": h},
        "sink0": {"enable": "1", "type": "3", "container": "1", "codec": "1", "output-file": "disseg_out.mp4"},
    }


PIPELINE = """#!/bin/sh
# The model in a plain GStreamer pipeline: decode, batch, nvinfer, nvsegvisual's class masks, an MP4 file.
# usage: sh pipeline.sh VIDEO.mp4 (H.264 in MP4); run it in this folder on a machine with DeepStream.
set -e
gst-launch-1.0 filesrc location="$1" ! qtdemux ! h264parse ! nvv4l2decoder ! m.sink_0 \\
  nvstreammux name=m batch-size=1 width={w} height={h} ! \\
  nvinfer config-file-path=config_infer_primary_disseg.txt ! \\
  nvsegvisual width={w} height={h} ! nvvideoconvert ! nvv4l2h264enc ! h264parse ! qtmux ! \\
  filesink location=disseg_segmentation.mp4
"""


def check_against_model(model_path: Path, ds: onnx.ModelProto, info: ModelInfo, frames: np.ndarray) -> float:
    """Percent of pixels where nvinfer's documented preprocessing (y = net-scale-factor * (x - offsets), planar, in
    model-color-format's order) followed by the DeepStream graph labels a frame as the disseg model does."""
    from disseg.runtime.backends import cpu_backend, infer_in_batches

    scale, offsets, _, color = nvinfer_preprocessing(info)
    n = info.batch if isinstance(info.batch, int) else len(frames)
    labels = infer_in_batches(cpu_backend(model_path.read_bytes()), INPUT, frames, n)[LABELS]
    planar = frames.astype(np.float32)[..., ::-1] if color == 0 else frames.astype(np.float32)  # BGR -> RGB
    y = scale * (planar.transpose(0, 3, 1, 2) - offsets.reshape(1, 3, 1, 1))
    probabilities = infer_in_batches(cpu_backend(ds.SerializeToString()), DS_INPUT, y.astype(np.float32), n)
    return float(100 * (probabilities[DS_OUTPUT].argmax(1) == labels).mean())


def write_deepstream(model_path: Path, folder: Path, *, frames: np.ndarray, min_agreement: float = 99.9) -> dict:
    """Write FOLDER/{model.onnx, config_infer_primary_disseg.txt, labels.txt, deepstream_app_config.txt,
    pipeline.sh}; refuse (DisError) when nvinfer's preprocessing + the new graph does not reproduce the labels."""
    info = read_model_info(model_path)
    ds = deepstream_graph(onnx.load(str(model_path)), info, str(model_path))
    agreement = check_against_model(model_path, ds, info, frames)
    if agreement < min_agreement:
        raise DisError(
            f"the DeepStream graph of {model_path} agrees with the model on {agreement:.2f}% of pixels "
            f"(below {min_agreement}%); not writing {folder}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "model.onnx", lambda tmp: onnx.save_model(ds, tmp))
    note = (
        f"Gst-nvinfer configuration for {model_path.name}, written by dis-export --deepstream (keys of DeepStream "
        f"{DEEPSTREAM_VERSION}'s nvinfer).\nnvinfer normalises: y = net-scale-factor * (x - offsets); the network "
        "outputs class probabilities."
    )
    atomic_write_text(
        folder / "config_infer_primary_disseg.txt",
        render_config({"property": nvinfer_config(info, "model.onnx")}, note),
    )
    atomic_write_text(folder / "labels.txt", "\n".join(info.class_names) + "\n")
    atomic_write_text(
        folder / "deepstream_app_config.txt",
        render_config(app_config(info), "deepstream-app -c deepstream_app_config.txt (set source0's uri first)"),
    )
    atomic_write_text(folder / "pipeline.sh", PIPELINE.format(w=info.input_width, h=info.input_height))
    return {"folder": str(folder), "label_agreement": round(agreement, 4), "frames": len(frames)}
