"""Q/DQ rewrites a TensorRT build needs. Uses the `onnx` package (imported here only, on demand)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BadInput

Q_OPS = ("QuantizeLinear", "DequantizeLinear")


def symmetric_int8(onnx_path: str | Path) -> bytes:
    """The model with every uint8 (asymmetric) Q/DQ pair turned into symmetric int8 over the same range:
    a uint8 scale s and zero point z cover [s * (0 - z), s * (255 - z)]; the int8 scale is
    max(|low|, |high|) / 127 with zero point 0. Int8 weights (already symmetric) are left as they are.
    A uint8 QuantizeLinear with zero point 0 clamps negatives to 0, and ONNX Runtime's quantizer relies on
    that to drop the ReLU before it; such a Q gets a ReLU in front, so the int8 copy clamps the same way."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise BadInput(
            f"{onnx_path} was calibrated for --target cpu (uint8 zero points, which TensorRT cannot build); "
            "pip install onnx to convert it here, or calibrate with dis-calibrate --target tensorrt"
        ) from None
    model = onnx.load(str(onnx_path))
    inits = {t.name: t for t in model.graph.initializer}
    made: dict[tuple[str, str], tuple[str, str]] = {}
    for node in model.graph.node:
        if node.op_type not in Q_OPS or len(node.input) < 3 or node.input[2] not in inits:
            continue
        zero = inits[node.input[2]]
        if zero.data_type != onnx.TensorProto.UINT8:
            continue
        key = (node.input[1], node.input[2])
        if key not in made:
            scale = numpy_helper.to_array(inits[key[0]]).astype(np.float64)
            z = numpy_helper.to_array(zero).astype(np.float64)
            reach = np.maximum(np.abs(scale * (0 - z)), np.abs(scale * (255 - z)))
            new_scale = np.maximum(reach / 127.0, np.finfo(np.float32).tiny).astype(
                numpy_helper.to_array(inits[key[0]]).dtype
            )
            names = (f"{key[0]}_sym", f"{key[1]}_sym")
            model.graph.initializer.extend(
                [
                    numpy_helper.from_array(new_scale, names[0]),
                    numpy_helper.from_array(np.zeros(z.shape, np.int8), names[1]),
                ]
            )
            made[key] = names
        node.input[1], node.input[2] = made[key]
    _relu_before_zero_point_q(model, inits, onnx)
    used = {name for node in model.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model.SerializeToString()


def _relu_before_zero_point_q(model, inits: dict, onnx) -> None:
    from onnx import numpy_helper

    nodes = []
    for node in model.graph.node:
        original = node.input[2][: -len("_sym")] if len(node.input) > 2 and node.input[2].endswith("_sym") else None
        if node.op_type == "QuantizeLinear" and original in inits and not numpy_helper.to_array(inits[original]).any():
            clamped = f"{node.input[0]}_relu_{node.name}"
            nodes.append(onnx.helper.make_node("Relu", [node.input[0]], [clamped], name=f"{node.name}_relu"))
            node.input[0] = clamped
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
