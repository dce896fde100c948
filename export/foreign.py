"""dis-import's graph work: a foreign ONNX segmentation network wrapped into the model-file contract.

The foreign graph is kept as it is (its names prefixed `foreign/`) between two small graphs of ours:

    image (uint8 N x H x W x 3, BGR) -> Cast -> [BGR->RGB] -> NCHW -> x * a + b -> foreign network
    foreign logits -> [Resize to H x W, bilinear] -> ArgMax -> labels (uint8) [, scores (float32)]
    foreign label map -> [Resize, nearest] -> labels (uint8)
    foreign one-class map p (N x 1 x h x w) -> [2t - p, p] -> as logits (t: 0.5 after a Sigmoid, else 0)

where a = scale / std and b = -mean / std per channel, the foreign model's own preprocessing. Every foreign node is
marked as the feature extractor (calibration/scopes.py) and every node of ours as float, so `dis-import --fp16` and
`dis-calibrate` treat the foreign network as dis-export's FP16 and INT8 paths treat DIS's backbone. No torch here.
"""

from __future__ import annotations

import ast
import dataclasses
import logging

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from disseg.calibration.scopes import FEATURES, FLOAT, PART_KEY
from disseg.runtime.contract import INPUT, LABELS, MASKED_SCORE, SCENE_TAGS, SCORES
from disseg.runtime.errors import BadInput

log = logging.getLogger("disseg.import")

NAME_PREFIX = "foreign/"
MIN_OPSET = 13  # Resize, Squeeze and ArgMax in the input forms the wrapper writes
DEFAULT_SIZE = (512, 512)  # a foreign model with a dynamic spatial size is fixed here unless --input-size says
FLOATS = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16"}
TORCH_SCOPES = "pkg.torch.onnx.name_scopes"
GROUPS = 8  # layer groups for dis-calibrate's sensitivity search when the graph names none


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """y = (x * scale - mean) / std on the model's channel order (RGB unless bgr)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float
    bgr: bool

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        mean, std = np.array(self.mean, np.float64), np.array(self.std, np.float64)
        return (self.scale / std).astype(np.float32), (-mean / std).astype(np.float32)

    def apply(self, frames_bgr: np.ndarray) -> np.ndarray:
        """The same arithmetic as the graph, in numpy: uint8 N x H x W x 3 BGR -> float32 N x 3 x H x W."""
        a, b = self.affine()
        x = frames_bgr.astype(np.float32)
        if not self.bgr:
            x = x[..., ::-1]
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x * a[None, :, None, None] + b[None, :, None, None]

    def contract_mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """mean/std as the contract states them: RGB order, on pixels scaled to 0..1."""
        unit = 255.0 * self.scale
        order = slice(None, None, -1) if self.bgr else slice(None)
        mean = tuple(round(float(m) / unit, 8) for m in self.mean[order])
        std = tuple(round(float(s) / unit, 8) for s in self.std[order])
        return mean, std


@dataclasses.dataclass(frozen=True)
class Found:
    """What dis-import found in the foreign file and chose from it."""

    input: str
    input_type: int
    batch: int | str  # an int or "dynamic"
    height: int
    width: int
    output: str
    kind: str  # "logits", "labels", or "foreground" (one channel: a class's probability or logit against the rest)
    num_classes: int | None  # None for a label map; 2 for a foreground map
    output_size: tuple[int, int]  # the chosen output's spatial size at height x width
    output_rank: int
    notes: tuple[str, ...]
    threshold: float | None = None  # a foreground map's: the class where the map is above it


def describe(proto: onnx.ModelProto) -> str:
    """The inputs and outputs of a graph, for the line that says why it cannot be wrapped."""

    def one(v: onnx.ValueInfoProto) -> str:
        t = v.type.tensor_type
        dims = "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
        return f"{v.name} {TensorProto.DataType.Name(t.elem_type).lower()} [{dims}]"

    ins = ", ".join(one(v) for v in graph_inputs(proto))
    return f"inputs: {ins or 'none'}; outputs: {', '.join(one(v) for v in proto.graph.output) or 'none'}"


def graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in proto.graph.initializer}
    return [v for v in proto.graph.input if v.name not in initializers]


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim
    ]


def find_input(proto: onnx.ModelProto, source: str, size: tuple[int, int] | None) -> tuple[onnx.ValueInfoProto, list]:
    """The one float N x 3 x H x W input, its batch and spatial size (fixed where dynamic), and what was fixed."""
    inputs = graph_inputs(proto)
    value = inputs[0] if len(inputs) == 1 else None
    dims = _dims(value) if value is not None else []
    if value is None or value.type.tensor_type.elem_type not in FLOATS or len(dims) != 4 or dims[1] not in (3, None):
        raise BadInput(
            f"{source} is not a segmentation network dis-import can wrap ({describe(proto)}); expected one float "
            "N x 3 x H x W image input"
        )
    notes = []
    static = (dims[2], dims[3])
    if None not in static:
        if size is not None and tuple(size) != static:
            raise BadInput(
                f"{source} takes a fixed {static[0]}x{static[1]} input; drop --input-size or pass "
                f"--input-size {static[0]}x{static[1]}"
            )
        height, width = static
    else:
        height, width = size or DEFAULT_SIZE
        notes.append(
            f"the foreign input's spatial size is dynamic; fixed at {height}x{width}"
            + ("" if size else " (choose with --input-size HxW)")
        )
    batch = dims[0] if dims[0] is not None else "dynamic"
    if batch == "dynamic":
        notes.append("the foreign input's batch is dynamic; kept dynamic")
    return value, [batch, height, width, tuple(notes)]


def _looks(dtype, shape) -> str | None:
    if np.issubdtype(dtype, np.floating) and len(shape) == 4:
        return "logits" if shape[1] > 1 else "foreground"
    if np.issubdtype(dtype, np.integer) and (len(shape) == 3 or (len(shape) == 4 and shape[1] == 1)):
        return "labels"
    return None


def choose_output(
    source: str, proto: onnx.ModelProto, shapes: dict[str, tuple[np.dtype, tuple]], name: str | None, kind: str | None
) -> tuple[str, str, int | None, tuple[int, int], int]:
    """Pick the output to wrap from what a probe run produced: --output NAME, else `out` (torchvision's), else the
    only one that looks like logits (float N x K x h x w), a one-class map (float N x 1 x h x w: a probability or a
    logit, e.g. a person against the rest) or a label map (integer N x h x w or N x 1 x h x w)."""
    if name is not None and name not in shapes:
        raise BadInput(f"{source} has no output {name!r} ({describe(proto)}); pass one of {', '.join(shapes)}")
    if name is None:
        candidates = [n for n, (d, s) in shapes.items() if _looks(d, s)]
        name = "out" if "out" in candidates else (candidates[0] if len(candidates) == 1 else None)
        if name is None:
            raise BadInput(
                f"{source}: {'no' if not candidates else 'more than one'} output looks like per-class logits (float "
                f"N x K x h x w) or a label map (integer N x h x w) ({describe(proto)}); if it is a segmentation "
                "network, name the output with --output NAME (and --logits or --labels)"
            )
    dtype, shape = shapes[name]
    seen = _looks(dtype, shape)
    found = seen if kind is None or (kind == "logits" and seen == "foreground") else kind
    if found in ("logits", "foreground") and (len(shape) != 4 or not np.issubdtype(dtype, np.floating)):
        found = None
    if found == "labels" and len(shape) not in (3, 4):
        found = None
    if found is None:
        raise BadInput(
            f"{source}: output {name!r} is {dtype} {list(shape)}, neither float N x K x h x w logits nor an "
            "N x h x w label map; choose another with --output"
        )
    classes = {"logits": int(shape[1]), "foreground": 2}.get(found)
    return name, found, classes, (int(shape[-2]), int(shape[-1])), len(shape)


def foreground_threshold(proto: onnx.ModelProto, output: str) -> float:
    """A one-class map's threshold: 0.5 when a Sigmoid makes it (a probability), through ops that keep values
    (Transpose, Reshape, Identity, Squeeze, Unsqueeze, Cast, Resize); else 0 (a logit)."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    name = output
    for _ in range(16):
        node = producers.get(name)
        if node is None:
            break
        if node.op_type == "Sigmoid":
            return 0.5
        if node.op_type not in ("Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Cast", "Resize"):
            break
        name = node.input[0]
    return 0.0


def run_once(proto: onnx.ModelProto, value: onnx.ValueInfoProto, height: int, width: int, batch) -> dict:
    """Run the foreign model once on zeros: every output's dtype and shape at this size."""
    import onnxruntime as ort

    from disseg.runtime.console import third_party_output

    n = batch if isinstance(batch, int) else 1
    dtype = np.float16 if value.type.tensor_type.elem_type == TensorProto.FLOAT16 else np.float32
    with third_party_output():
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {value.name: np.zeros((n, 3, height, width), dtype)})
    return {o.name: (r.dtype, r.shape) for o, r in zip(session.get_outputs(), outputs)}


def layer_groups(proto: onnx.ModelProto) -> list[str]:
    """A layer group per foreign node, for dis-calibrate: torch.onnx's module scope (two levels, e.g.
    `backbone.layer2`) when the exporter recorded it, the node name's path (`/backbone/layer2/...`) when named so,
    else the node's eighth of the graph."""
    nodes = proto.graph.node
    result = []
    for i, node in enumerate(nodes):
        scopes = next((ast.literal_eval(p.value) for p in node.metadata_props if p.key == TORCH_SCOPES), None)
        modules = [s for s in (scopes or [])[:-1] if s]  # the last scope names the op itself
        path = [p for p in node.name.split("/") if p]
        if modules:
            group = ".".join(modules[-1].split(".")[:2])
        elif node.name.startswith("/") and len(path) > 1:
            group = ".".join(path[:2][: len(path) - 1])
        else:
            group = f"part{i * GROUPS // max(len(nodes), 1)}"
        result.append(group)
    return result


def mark(node: onnx.NodeProto, part: str) -> onnx.NodeProto:
    del node.metadata_props[:]
    node.metadata_props.add(key=PART_KEY, value=part)
    return node


def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def pre_nodes(found: Found, pre: Preprocess, foreign_input: str) -> tuple[list, list]:
    """uint8 NHWC BGR -> the foreign input: Cast first (TensorRT's rule for a uint8 input), then channel order,
    layout and the per-channel affine; a half-precision input gets a final Cast."""
    a, b = pre.affine()
    inits = [_const("pre/a", a.reshape(1, 3, 1, 1)), _const("pre/b", b.reshape(1, 3, 1, 1))]
    nodes = [helper.make_node("Cast", [INPUT], ["pre/float"], name="pre/cast", to=TensorProto.FLOAT)]
    current = "pre/float"
    if not pre.bgr:
        inits.append(_const("pre/rgb", np.array([2, 1, 0], np.int64)))
        nodes.append(helper.make_node("Gather", [current, "pre/rgb"], ["pre/rgb_hwc"], name="pre/to_rgb", axis=3))
        current = "pre/rgb_hwc"
    nodes += [
        helper.make_node("Transpose", [current], ["pre/nchw"], name="pre/nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["pre/nchw", "pre/a"], ["pre/scaled"], name="pre/scale"),
    ]
    if found.input_type == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Add", ["pre/scaled", "pre/b"], ["pre/normalized"], name="pre/shift"))
        nodes.append(
            helper.make_node("Cast", ["pre/normalized"], [foreign_input], name="pre/half", to=found.input_type)
        )
    else:
        nodes.append(helper.make_node("Add", ["pre/scaled", "pre/b"], [foreign_input], name="pre/shift"))
    return nodes, inits


def _resize_sizes(found: Found, tensor: str, channels: int) -> tuple[list, list, str]:
    """The sizes of a Resize to N x C x H x W: constant for a fixed batch, else Shape(tensor)[0] ++ [C, H, W]."""
    if isinstance(found.batch, int):
        return (
            [],
            [_const("post/sizes", np.array([found.batch, channels, found.height, found.width], np.int64))],
            "post/sizes",
        )
    inits = [
        _const("post/zero", np.array([0], np.int64)),
        _const("post/one", np.array([1], np.int64)),
        _const("post/chw", np.array([channels, found.height, found.width], np.int64)),
    ]
    nodes = [
        helper.make_node("Shape", [tensor], ["post/shape"], name="post/shape"),
        helper.make_node("Slice", ["post/shape", "post/zero", "post/one"], ["post/n"], name="post/n"),
        helper.make_node("Concat", ["post/n", "post/chw"], ["post/sizes"], name="post/sizes", axis=0),
    ]
    return nodes, inits, "post/sizes"


def post_nodes(
    found: Found, foreign_output: str, outputs: tuple[str, ...], half: bool, scene_tags: bool = False
) -> tuple[list, list]:
    """The foreign output -> labels [, scores] at the input size, labels ArgMax -> float -> uint8 (TensorRT's rule);
    with `scene_tags`, the classes whose tag (input SCENE_TAGS, N x K) is below 0.5 are sunk first (a DIS mask)."""
    nodes, inits = [], []
    current = foreign_output
    if half or found.kind == "labels":
        nodes.append(helper.make_node("Cast", [current], ["post/float"], name="post/float", to=TensorProto.FLOAT))
        current = "post/float"
    if found.kind == "labels":
        return _label_map_nodes(found, current, nodes, inits)
    if found.kind == "foreground":  # [2t - p, p]: the class wins where p > t (a probability's [1 - p, p])
        inits.append(_const("post/twice_threshold", np.array(2 * (found.threshold or 0.0), np.float32)))
        nodes += [
            helper.make_node("Sub", ["post/twice_threshold", current], ["post/rest"], name="post/rest"),
            helper.make_node("Concat", ["post/rest", current], ["post/two"], name="post/two", axis=1),
        ]
        current = "post/two"
    if found.output_size != (found.height, found.width):
        more, consts, sizes = _resize_sizes(found, current, found.num_classes)
        nodes += more
        inits += consts
        nodes.append(
            helper.make_node(
                "Resize", [current, "", "", sizes], ["post/resized"], name="post/resize", mode="linear",
                coordinate_transformation_mode="half_pixel",
            )
        )  # fmt: skip
        current = "post/resized"
    if scene_tags:
        inits += [
            _const("post/half", np.array(0.5, np.float32)),
            _const("post/absent", np.array(MASKED_SCORE, np.float32)),
            _const("post/axes23", np.array([2, 3], np.int64)),
        ]
        nodes += [
            helper.make_node("Less", [SCENE_TAGS, "post/half"], ["post/is_absent"], name="post/is_absent"),
            helper.make_node("Unsqueeze", ["post/is_absent", "post/axes23"], ["post/absent_nk11"], name="post/nk11"),
            helper.make_node("Where", ["post/absent_nk11", "post/absent", current], ["post/masked"], name="post/mask"),
        ]
        current = "post/masked"
    nodes.append(helper.make_node("ArgMax", [current], ["post/argmax"], name="post/argmax", axis=1, keepdims=0))
    nodes += _label_type_nodes("post/argmax", found.num_classes, index=True)
    if SCORES in outputs:
        nodes.append(helper.make_node("Identity", [current], [SCORES], name="post/scores"))
    return nodes, inits


def _label_type_nodes(tensor: str, num_classes: int | None, *, index: bool) -> list:
    """int64 indices (or float labels) -> the contract's label type: uint8 through float, int32 past 256 classes."""
    if num_classes is not None and num_classes > 256:
        return [helper.make_node("Cast", [tensor], [LABELS], name="post/labels", to=TensorProto.INT32)]
    nodes = []
    if index:
        nodes.append(helper.make_node("Cast", [tensor], ["post/index"], name="post/index", to=TensorProto.FLOAT))
        tensor = "post/index"
    nodes.append(helper.make_node("Cast", [tensor], [LABELS], name="post/labels", to=TensorProto.UINT8))
    return nodes


def _label_map_nodes(found: Found, current: str, nodes: list, inits: list) -> tuple[list, list]:
    """A float copy of an integer label map -> N x 1 x h x w -> [nearest Resize] -> N x H x W -> uint8."""
    inits.append(_const("post/axis1", np.array([1], np.int64)))
    if found.output_rank == 3:
        nodes.append(helper.make_node("Unsqueeze", [current, "post/axis1"], ["post/n1hw"], name="post/n1hw"))
        current = "post/n1hw"
    if found.output_size != (found.height, found.width):
        more, consts, sizes = _resize_sizes(found, current, 1)
        nodes += more
        inits += consts
        nodes.append(
            helper.make_node(
                "Resize", [current, "", "", sizes], ["post/resized"], name="post/resize", mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor",
            )
        )  # fmt: skip
        current = "post/resized"
    nodes.append(helper.make_node("Squeeze", [current, "post/axis1"], ["post/nhw"], name="post/nhw"))
    nodes += _label_type_nodes("post/nhw", None, index=False)
    return nodes, inits


def wrap(
    proto: onnx.ModelProto, found: Found, pre: Preprocess, outputs: tuple[str, ...], *, scene_tags: bool = False
) -> onnx.ModelProto:
    """The contract graph around `proto` (see the module's docstring); nodes marked by part, no metadata yet;
    `scene_tags` adds the input that masks absent classes (logits only)."""
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        from onnx import version_converter

        proto = version_converter.convert_version(proto, MIN_OPSET)
        log.warning("the foreign model's opset %d was converted to %d", opset, MIN_OPSET)
    groups = layer_groups(proto)
    foreign = compose.add_prefix(proto, NAME_PREFIX)
    graph = foreign.graph
    half = any(
        o.name == NAME_PREFIX + found.output and o.type.tensor_type.elem_type == TensorProto.FLOAT16
        for o in graph.output
    )
    pre_n, pre_i = pre_nodes(found, pre, NAME_PREFIX + found.input)
    kept, output = _without_byte_cast(list(zip(graph.node, groups)), NAME_PREFIX + found.output, found)
    post_n, post_i = post_nodes(found, output, outputs, half, scene_tags)
    nodes = [mark(n, FLOAT) for n in pre_n]
    nodes += [mark(n, FEATURES + g) for n, g in kept]
    nodes += [mark(n, FLOAT) for n in post_n]
    batch = found.batch if isinstance(found.batch, int) else "batch"
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, [batch, found.height, found.width, 3])]
    if scene_tags:
        inputs.append(helper.make_tensor_value_info(SCENE_TAGS, TensorProto.FLOAT, [batch, found.num_classes]))
    label_type = TensorProto.INT32 if (found.num_classes or 0) > 256 else TensorProto.UINT8
    outs = [helper.make_tensor_value_info(LABELS, label_type, [batch, found.height, found.width])]
    if SCORES in outputs:
        outs.append(
            helper.make_tensor_value_info(
                SCORES, TensorProto.FLOAT, [batch, found.num_classes, found.height, found.width]
            )
        )
    initializers = [*graph.initializer, *pre_i, *post_i]
    wrapped = helper.make_graph(nodes, "disseg_import", inputs, outs, initializer=initializers)
    wrapped.sparse_initializer.extend(graph.sparse_initializer)
    model = helper.make_model(wrapped, opset_imports=list(foreign.opset_import), ir_version=foreign.ir_version)
    model.functions.extend(foreign.functions)
    onnx.checker.check_model(model)
    return model


def _without_byte_cast(nodes: list, output: str, found: Found) -> tuple[list, str]:
    """A label map that the foreign graph casts to 8 bits last (Ultralytics' export: ArgMax -> Cast uint8) is read
    before that Cast, which is dropped: TensorRT allows no 8-bit tensor inside a network, and the wrapper casts the
    map to float next anyway (class ids below 256 are the same numbers either way)."""
    if found.kind != "labels":
        return nodes, output
    last = next((i for i, (n, _) in enumerate(nodes) if output in n.output), None)
    if last is None:
        return nodes, output
    node = nodes[last][0]
    to = next((a.i for a in node.attribute if a.name == "to"), None)
    used = any(output in n.input for n, _ in nodes)
    if node.op_type != "Cast" or to not in (TensorProto.UINT8, TensorProto.INT8) or used:
        return nodes, output
    return nodes[:last] + nodes[last + 1 :], node.input[0]


def parity_frames(height: int, width: int, count: int, seed: int = 7) -> np.ndarray:
    """uint8 BGR frames with structure at several scales (smooth colour fields and blocks), reproducible."""
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (4 + rng.integers(0, 8), 4 + rng.integers(0, 8), 3), dtype=np.uint8)
        frame = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        for _ in range(4):
            y, x = rng.integers(0, height), rng.integers(0, width)
            frame[y : y + height // 4, x : x + width // 4] = rng.integers(0, 256, 3, dtype=np.uint8)
        frames.append(frame)
    return np.stack(frames)
