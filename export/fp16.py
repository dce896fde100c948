"""FP16 conversion of an exported graph's feature extractor (onnxconverter-common), for dis-export and dis-import:
the nodes marked as the feature extractor (calibration/scopes.py) compute in FP16, everything else in FP32, and the
graph's inputs and outputs keep their types. No torch here: dis-import converts foreign models without it."""

from __future__ import annotations

import onnx

from disseg.calibration.scopes import in_feature_extractor


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """FP16 compute for the feature extractor only, through onnxconverter-common: the refinement update
    (whose per-pixel gradients are ~1e-5 and underflow in FP16), the heads and the final logits compute
    in FP32, from FP32 weights and constants; inputs and outputs keep their types."""
    from onnxconverter_common import float16

    originals = {
        t.name: onnx.TensorProto.FromString(t.SerializeToString())
        for t in proto.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
    }
    blocked = [n.name for n in proto.graph.node if not in_feature_extractor(n)]
    converted = float16.convert_float_to_float16(
        proto, keep_io_types=True, node_block_list=blocked, disable_shape_infer=False
    )
    return keep_float_between_float_nodes(restore_float_initializers(converted, originals))


def restore_float_initializers(proto: onnx.ModelProto, originals: dict[str, onnx.TensorProto]) -> onnx.ModelProto:
    """The converter stores every initializer as FP16, clamped to +-1e4, and casts it back up for FP32 nodes:
    at 512 px the energy's normaliser 3hw = 12288 became 10000 and every refinement step 23% too long. An
    initializer that only FP32 nodes read (through Casts to float) gets its FP32 original back; the Casts
    become no-ops."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    value_info = {v.name: v for v in proto.graph.value_info}
    for i, tensor in enumerate(proto.graph.initializer):
        users = readers.get(tensor.name, [])
        to_float = all(
            u.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in u.attribute)
            for u in users
        )
        if tensor.data_type == onnx.TensorProto.FLOAT16 and tensor.name in originals and users and to_float:
            proto.graph.initializer[i].CopyFrom(originals[tensor.name])
            if tensor.name in value_info:
                value_info[tensor.name].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return proto


def keep_float_between_float_nodes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Undo the converter's FP16 round trips outside the feature extractor. It stores every tensor between two
    FP32 nodes as FP16 (Cast to half, Cast back) and leaves `scores`/`tags` HALF; the contract wants the
    refinement state and the logits in FP32 and float32 outputs in every precision. A Cast to half whose
    readers are all FP32 nodes, Casts or graph outputs becomes a Cast to float (a no-op TensorRT removes)."""
    graph = proto.graph
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name: o for o in graph.output}
    value_info = {v.name: v for v in graph.value_info}
    half, single = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    for node in graph.node:
        to = next((a for a in node.attribute if a.name == "to"), None)
        if node.op_type != "Cast" or to is None or to.i != half:
            continue
        users = readers.get(node.output[0], [])
        if any(in_feature_extractor(u) and u.op_type != "Cast" for u in users):
            continue  # feeds FP16 compute: a real conversion
        to.i = single
        for holder in (outputs.get(node.output[0]), value_info.get(node.output[0])):
            if holder is not None:
                holder.type.tensor_type.elem_type = single
    return proto
