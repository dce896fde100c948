"""dis-import's TensorFlow Lite front: a .tflite segmentation model becomes a foreign ONNX graph, and Google's LiteRT
runs the .tflite itself as the parity gate's reference.

The converter is tf2onnx (the ONNX project's own TensorFlow and TFLite converter, Apache-2.0, maintained beside
onnx; pinned in the `tflite` install profile): it maps each builtin TFLite op to ONNX and turns the NHWC input and
output into NCHW (`inputs_as_nchw`/`outputs_as_nchw`), so the result is a foreign model like any other. What it
leaves unconverted is a custom op; MediaPipe's `Convolution2DTransposeBias` (a transpose convolution with its bias,
in MediaPipe's segmentation models) is mapped here to ONNX's ConvTranspose, with its padding and strides read from
the op's own options. Any other custom op is refused in one line. Quantized (int8/uint8) models are refused: their
arithmetic is not ONNX's float arithmetic, and `dis-calibrate` quantizes the imported float model for the target.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from disseg.runtime.console import native_output
from disseg.runtime.deps import extra
from disseg.runtime.errors import BadInput

log = logging.getLogger("disseg.import")

MAGIC = b"TFL3"  # the FlatBuffer file identifier at bytes 4..8 of every .tflite
OPSET = 17
TRANSPOSE_CONV_BIAS = "Convolution2DTransposeBias"  # MediaPipe's custom op
SAME, VALID = 1, 2  # TfLitePadding


def is_tflite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8)[4:8] == MAGIC
    except OSError:
        return False


def _litert(path: Path):
    """LiteRT's interpreter on the file, tensors allocated; BadInput when LiteRT is missing or refuses the file."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BadInput(f"{path}: reading a TFLite model needs LiteRT and tf2onnx: {extra('tflite')}") from None
    try:
        with native_output():  # LiteRT's own lines (the XNNPACK delegate it creates)
            interpreter = Interpreter(model_path=str(path))
            interpreter.allocate_tensors()
    except Exception as err:  # LiteRT raises ValueError/RuntimeError with its own text
        raise BadInput(f"{path}: LiteRT cannot load it ({str(err).strip().splitlines()[0][:200]})") from None
    return interpreter


def _check_float(path: Path, interpreter) -> None:
    for detail in (*interpreter.get_input_details(), *interpreter.get_output_details()):
        dtype = np.dtype(detail["dtype"])
        if dtype.kind != "f":
            raise BadInput(
                f"{path} is a quantized TFLite model ({detail['name']} is {dtype}): dis-import takes float TFLite "
                "models, whose arithmetic ONNX reproduces; import the float model and quantize it with dis-calibrate "
                "(--target cpu or tensorrt)"
            )


def to_onnx(path: Path) -> onnx.ModelProto:
    """The .tflite converted to an ONNX graph with NCHW input and output; BadInput in one line when it cannot be."""
    interpreter = _litert(path)
    _check_float(path, interpreter)
    inputs = [d["name"] for d in interpreter.get_input_details()]
    outputs = [d["name"] for d in interpreter.get_output_details() if len(d["shape"]) == 4]
    try:
        with native_output():  # TensorFlow's and tf2onnx's lines
            import tf2onnx

            proto, _ = tf2onnx.convert.from_tflite(
                str(path), opset=OPSET, inputs_as_nchw=inputs, outputs_as_nchw=outputs
            )
    except ImportError:
        raise BadInput(f"{path}: converting a TFLite model needs tf2onnx and TensorFlow: {extra('tflite')}") from None
    except Exception as err:  # the converter's own failure on this file
        raise BadInput(f"{path}: tf2onnx cannot convert it ({type(err).__name__}: {str(err)[:200]})") from None
    _map_custom_ops(proto, path)
    return proto


def _custom_options(path: Path) -> dict[str, bytes]:
    """The custom options of every custom op in the file, by the name of its first output tensor (the name tf2onnx
    gives the node it could not convert)."""
    from tf2onnx.tflite.Model import Model

    model = Model.GetRootAsModel(path.read_bytes(), 0)
    found = {}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            if model.OperatorCodes(op.OpcodeIndex()).CustomCode() and op.OutputsLength():
                name = graph.Tensors(op.Outputs(0)).Name().decode()
                found[name] = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
    return found


def _map_custom_ops(proto: onnx.ModelProto, path: Path) -> None:
    custom = [n for n in proto.graph.node if n.op_type.startswith("TFL_")]
    if not custom:
        return
    options = _custom_options(path)
    for node in custom:
        op = node.op_type.removeprefix("TFL_")
        if op != TRANSPOSE_CONV_BIAS:
            raise BadInput(
                f"{path}: its custom TFLite op {op!r} has no ONNX equivalent dis-import knows (it maps MediaPipe's "
                f"{TRANSPOSE_CONV_BIAS}); export the model without custom ops"
            )
        _transpose_conv_bias(proto, node, options.get(node.output[0], b""), path)
    used = {name for node in proto.graph.node for name in node.input}
    kept = [t for t in proto.graph.initializer if t.name in used]  # the custom ops' weights, now copied
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    log.info("mapped %d MediaPipe %s op(s) to ONNX ConvTranspose", len(custom), TRANSPOSE_CONV_BIAS)


def _constant(proto: onnx.ModelProto, name: str) -> np.ndarray:
    for tensor in proto.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    raise KeyError(name)


def _transpose_conv_bias(proto: onnx.ModelProto, node: onnx.NodeProto, options: bytes, path: Path) -> None:
    """MediaPipe's transpose convolution (NHWC in and out, kernel [out, kh, kw, in], bias [out]; options: padding,
    stride_w, stride_h as int32) -> Transpose, ConvTranspose with its bias, Transpose, in the node's place."""
    try:
        padding, stride_w, stride_h = struct.unpack("<iii", options[:12])
        kernel = _constant(proto, node.input[1])
        bias = _constant(proto, node.input[2]) if len(node.input) > 2 else None
    except (struct.error, KeyError):
        raise BadInput(
            f"{path}: its {TRANSPOSE_CONV_BIAS} op has no options or constant weights dis-import reads"
        ) from None
    if padding not in (SAME, VALID) or kernel.ndim != 4 or min(stride_w, stride_h) < 1:
        raise BadInput(f"{path}: its {TRANSPOSE_CONV_BIAS} op has options dis-import does not know ({options[:12]!r})")
    out_c, kh, kw, _ = kernel.shape
    pads = [0, 0, 0, 0]
    if padding == SAME:  # output = input * stride; TensorFlow puts the odd pixel at the end
        th, tw = max(kh - stride_h, 0), max(kw - stride_w, 0)
        pads = [th // 2, tw // 2, th - th // 2, tw - tw // 2]
    name = node.name or node.output[0]
    weight = numpy_helper.from_array(np.ascontiguousarray(kernel.transpose(3, 0, 1, 2)), f"{name}/weight")
    proto.graph.initializer.append(weight)
    conv_inputs = [f"{name}/nchw", weight.name]
    if bias is not None:
        proto.graph.initializer.append(numpy_helper.from_array(bias.reshape(out_c), f"{name}/bias"))
        conv_inputs.append(f"{name}/bias")
    replacement = [
        helper.make_node("Transpose", [node.input[0]], [f"{name}/nchw"], name=f"{name}/to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node(
            "ConvTranspose",
            conv_inputs,
            [f"{name}/conv"],
            name=f"{name}/conv_transpose",
            kernel_shape=[kh, kw],
            strides=[stride_h, stride_w],
            pads=pads,
        ),  # fmt: skip
        helper.make_node("Transpose", [f"{name}/conv"], [node.output[0]], name=f"{name}/to_nhwc", perm=[0, 2, 3, 1]),
    ]
    nodes = list(proto.graph.node)
    at = nodes.index(node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes[:at] + replacement + nodes[at + 1 :])


def litert_outputs(path: Path, output: str, inputs_nchw: np.ndarray) -> np.ndarray:
    """The .tflite run by LiteRT on preprocessed N x C x H x W frames, one at a time when its batch is 1: the output
    named `output` (the converted graph's name for it), NCHW."""
    interpreter = _litert(path)
    source = interpreter.get_input_details()[0]
    target = next((d for d in interpreter.get_output_details() if d["name"] == output), None)
    if target is None:
        target = interpreter.get_output_details()[0]
    step = int(source["shape"][0]) or 1
    results = []
    for i in range(0, len(inputs_nchw), step):
        chunk = np.ascontiguousarray(inputs_nchw[i : i + step].transpose(0, 2, 3, 1)).astype(source["dtype"])
        interpreter.set_tensor(source["index"], chunk)
        with native_output():
            interpreter.invoke()
        value = interpreter.get_tensor(target["index"])
        results.append(value.transpose(0, 3, 1, 2) if value.ndim == 4 else value)
    return np.concatenate(results)
