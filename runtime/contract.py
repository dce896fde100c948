"""The model-file contract (docs/contract.md): what an exported model says about itself.

An ONNX file carries these keys in `metadata_props` (JSON values); a TensorRT engine carries the same
keys in a JSON sidecar `<engine>.json` so C++ can read them without Python. This module owns the contract:
the tensor names, the metadata's reading and writing (ONNX and sidecar), and the defaults a model falls
back on. runtime/cpp/src/model_info.cpp is its C++ twin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import ModelFileError
from .textfile import read_text

SCHEMA = "disseg-model/1"
MAX_CLASSES = 65536  # the most classes a model may have: a label fits a 16-bit mask PNG
SCHEMA_SCENE_TAGS = "disseg-model/2"  # a model with the scene_tags input: a runtime that reads only /1 refuses it
METADATA_PREFIX = "disseg."
INPUT = "image"  # uint8 N x H x W x 3, BGR
SCENE_TAGS = "scene_tags"  # float32 N x K, the run-time tags of a model exported with --scene-tags (1 = may appear)
SCENE_TAG_MODES = ("energy+mask", "energy", "mask")  # how the graph uses them (export/unroll.py); "" = no such input
MASKED_SCORE = -1e4  # the score a class masked by its scene tag gets (below any logit; FP32 in every precision)
LABELS, SCORES, TAGS = "labels", "scores", "tags"
OUTPUTS = (LABELS, SCORES, TAGS)  # labels always; scores and tags when exported with --outputs
INPUT_LAYOUT, INPUT_DTYPE, COLOR_ORDER = "NHWC", "uint8", "BGR"  # the one input form both runtimes feed
# How a frame becomes the model's input size: stretched (every disseg model), or letterboxed (aspect kept, centred,
# the rest filled with LETTERBOX_PAD grey; Ultralytics' models), and the labels brought back the same way.
RESIZE_MODES = ("stretch", "letterbox")
LETTERBOX_PAD = 114
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB normalisation of torchvision's backbones
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Everything a runtime needs to run and present an exported DIS model."""

    input_name: str
    input_height: int
    input_width: int
    batch: int | str  # an int, or "dynamic"
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # RGB per class
    iterations: int
    step_size: float
    tag_weight: float
    precision: str  # fp32 | fp16 | int8
    outputs: tuple[str, ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_layout: str = INPUT_LAYOUT
    input_dtype: str = INPUT_DTYPE
    color_order: str = COLOR_ORDER
    scene_tags: str = ""  # "" or a SCENE_TAG_MODES entry: the graph's second input SCENE_TAGS, and how it is used
    resize: str = RESIZE_MODES[0]  # a RESIZE_MODES entry
    schema: str = SCHEMA
    checkpoint_sha256: str = ""
    onnx_sha256: str = ""
    config: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)  # parity report, quantization report, engine facts

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_metadata(self) -> dict[str, str]:
        """Return the ONNX metadata_props / sidecar form: prefixed keys, JSON values."""
        return {METADATA_PREFIX + k: json.dumps(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_metadata(cls, props: dict[str, str], *, source: str = "model") -> ModelInfo:
        """Parse metadata written by `to_metadata`. Raises ModelFileError if it is not a disseg model."""
        if METADATA_PREFIX + "schema" not in props:
            raise ModelFileError(
                f"{source} is not a disseg model (no '{METADATA_PREFIX}schema' metadata); export one with: "
                "dis-export CKPT --iters 3"
            )
        try:
            values = {
                k[len(METADATA_PREFIX) :]: json.loads(v) for k, v in props.items() if k.startswith(METADATA_PREFIX)
            }
        except json.JSONDecodeError as err:
            raise ModelFileError(f"{source} has corrupt disseg metadata ({err}); re-export it with dis-export") from err
        if values.get("schema") not in (SCHEMA, SCHEMA_SCENE_TAGS):
            raise ModelFileError(
                f"{source} uses model schema {values.get('schema')!r}, this runtime reads {SCHEMA!r} and "
                f"{SCHEMA_SCENE_TAGS!r}; re-export it with this version's dis-export"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in fields}
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = next((name for name in required if name not in values), None)
        if missing:
            raise ModelFileError(
                f"{source}: disseg metadata lacks '{missing}'; re-export it with this version's dis-export"
            )
        try:
            for key in ("class_names", "outputs", "mean", "std"):
                values[key] = tuple(values[key]) if key in values else getattr(cls, key)
            values["palette"] = tuple(tuple(c) for c in values["palette"])
            info = cls(**values)
        except TypeError as err:
            raise ModelFileError(
                f"{source}: disseg metadata has a value of the wrong type ({err}); re-export it with dis-export"
            ) from err
        info.check(source)
        return info

    def check(self, source: str = "model") -> None:
        """The consistency the runtime relies on (the C++ reader checks the same)."""
        sizes_ok = all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (self.input_height, self.input_width)
        )
        shapes_ok = isinstance(self.input_name, str) and isinstance(self.extra, dict) and isinstance(self.config, dict)
        if not sizes_ok or not shapes_ok or not self.class_names or len(self.palette) < len(self.class_names):
            raise ModelFileError(
                f"{source}: disseg metadata is inconsistent (input name or size, classes, palette or extras); "
                f"re-export it with dis-export"
            )
        check_class_names(self.class_names, source)
        if LABELS not in self.outputs:
            raise ModelFileError(f"{source}: the model has no 'labels' output; re-export it with dis-export")
        if self.resize not in RESIZE_MODES:
            raise ModelFileError(
                f"{source}: disseg metadata names the resize {self.resize!r} (known: {', '.join(RESIZE_MODES)}); "
                "re-export it with this version's dis-export"
            )
        if self.scene_tags not in ("", *SCENE_TAG_MODES) or bool(self.scene_tags) != (self.schema == SCHEMA_SCENE_TAGS):
            raise ModelFileError(
                f"{source}: disseg metadata names scene-tag use {self.scene_tags!r} under schema {self.schema!r} "
                f"(known: {', '.join(SCENE_TAG_MODES)}, under {SCHEMA_SCENE_TAGS}); re-export it with this version's "
                "dis-export"
            )

    def replace(self, **changes: Any) -> ModelInfo:
        return dataclasses.replace(self, **changes)


def _good_name(name) -> bool:
    """A class name: non-empty text without control characters (NUL, newlines), as model_info.cpp checks."""
    return isinstance(name, str) and bool(name) and not any(ord(c) < 32 or ord(c) == 127 for c in name)


def check_class_names(names, source: str = "model") -> None:
    """Class names are unique, non-empty text without control characters; ModelFileError (exit 2) naming the first
    that is not (the C++ reader says the same)."""
    bad = next((n for n in names if not _good_name(n)), None)
    if bad is not None or len(set(names)) != len(names):
        shown = bad if bad is not None else next(n for n in names if list(names).count(n) > 1)
        raise ModelFileError(
            f"{source}: class names must be unique, non-empty text without control characters (found "
            f"{json.dumps(shown)[:60]}); re-export or re-import it"
        )


def attach_metadata(proto, info: ModelInfo):
    """Write `info` into an onnx.ModelProto's metadata_props, replacing what was there (the one writer of ONNX
    metadata: export and calibration both call it). Returns `proto`."""
    del proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    return proto


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


def write_sidecar(engine: str | Path, info: ModelInfo) -> Path:
    """Write `<engine>.json`: the contract's keys (unprefixed JSON), readable from C++ without Python."""
    path = sidecar_path(engine)
    atomic_write_text(
        path,
        json.dumps(
            {"disseg": {k[len(METADATA_PREFIX) :]: json.loads(v) for k, v in info.to_metadata().items()}}, indent=2
        ),
    )
    return path


def read_sidecar(engine: str | Path) -> ModelInfo:
    path = sidecar_path(engine)
    if not path.is_file():
        raise ModelFileError(
            f"{engine}: no sidecar {path.name}; rebuild the engine with: dis-export MODEL.onnx --engine"
        )
    try:
        data = json.loads(read_text(path, "engine sidecar", "the .json dis-export wrote beside the engine"))["disseg"]
        return ModelInfo.from_metadata({METADATA_PREFIX + k: json.dumps(v) for k, v in data.items()}, source=str(path))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ModelFileError(
            f"{path}: corrupt engine sidecar ({type(err).__name__}); rebuild with: dis-export MODEL.onnx --engine"
        ) from err


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated protobuf message")
        yield number, wire, value


# Ops through which an argmax's channel count is the count of what feeds them (elementwise, resize, casts, QDQ).
CHANNEL_KEEPING = frozenset({
    "Cast", "Identity", "Resize", "Upsample", "Relu", "Sigmoid", "Softmax", "LogSoftmax", "Where", "Add", "Sub", "Mul",
    "Div", "Clip", "LeakyRelu", "BatchNormalization", "QuantizeLinear", "DequantizeLinear",
})  # fmt: skip


def _packed(buf: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        values.append(value)
    return values


def _graph_index(graph: bytes) -> tuple[dict, dict]:
    """{output name: (op_type, inputs, int attributes)} of the nodes, {name: dims} of the initializers."""
    nodes, weights = {}, {}
    for number, wire, value in _fields(graph):
        if wire == 2 and number == 1:
            inputs, outputs, op, ints = [], [], "", {}
            for n, w, v in _fields(value):
                if w == 2 and n in (1, 2, 4):
                    text = v.decode("utf-8", errors="replace")
                    inputs.append(text) if n == 1 else outputs.append(text) if n == 2 else None
                    op = text if n == 4 else op
                elif w == 2 and n == 5:  # AttributeProto: name 1, i 3
                    attribute = dict((an, av) for an, aw, av in _fields(v) if (an, aw) in ((1, 2), (3, 0)))
                    ints[attribute.get(1, b"").decode(errors="replace")] = attribute.get(3)
            for out in outputs:
                nodes[out] = (op, inputs, ints)
        elif wire == 2 and number == 5:  # TensorProto: dims 1 (packed or not), name 8
            dims, name = [], ""
            for n, w, v in _fields(value):
                dims += [v] if (n, w) == (1, 0) else _packed(v) if (n, w) == (1, 2) else []
                name = v.decode("utf-8", errors="replace") if (n, w) == (8, 2) else name
            weights[name] = dims
    return nodes, weights


def label_channels(buf: bytes) -> int | None:
    """How many classes the graph's `labels` are an argmax over, where the graph shows it: from the ArgMax (on axis 1)
    behind `labels`, back through channel-keeping ops to a Conv's weights. None where it does not say (another op on
    the way): the run-time check in the Segmenter still holds such a model to its metadata."""
    try:
        graph = next((v for n, w, v in _fields(buf) if n == 7 and w == 2), None)
        nodes, weights = _graph_index(graph) if graph is not None else ({}, {})
    except (ValueError, IndexError, UnicodeDecodeError):  # a graph that does not parse says nothing
        return None
    name = LABELS
    for _ in range(8):
        op, inputs, ints = nodes.get(name, ("", [], {}))
        if op == "ArgMax":
            return _conv_channels(inputs[0], nodes, weights, set()) if ints.get("axis") == 1 and inputs else None
        if op not in ("Cast", "Identity") or not inputs:
            return None
        name = inputs[0]
    return None


def _conv_channels(name: str, nodes: dict, weights: dict, seen: set) -> int | None:
    if name in seen or name not in nodes or len(seen) > 200:
        return None
    seen.add(name)
    op, inputs, _ = nodes[name]
    if op in ("Conv", "ConvInteger") and len(inputs) > 1:
        kernel = inputs[1]
        if kernel not in weights and nodes.get(kernel, ("",))[0] == "DequantizeLinear":  # a quantized model's weights
            kernel = nodes[kernel][1][0]
        dims = weights.get(kernel, [])
        return dims[0] if len(dims) == 4 else None
    if op not in CHANNEL_KEEPING:
        return None
    for source in inputs:
        if source and source not in weights and (found := _conv_channels(source, nodes, weights, seen)) is not None:
            return found
    return None


def read_onnx_metadata(path: str | Path, buf: bytes | None = None) -> dict[str, str]:
    """ModelProto.metadata_props (field 14) of an ONNX file, read without the onnx package or a runtime."""
    buf = Path(path).read_bytes() if buf is None else buf
    props: dict[str, str] = {}
    for number, wire, value in _fields(buf):
        if number == 14 and wire == 2:
            entry = {n: v for n, w, v in _fields(value) if w == 2}
            props[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    return props


def _external_locations(graph: bytes, depth: int = 0):
    """The `location` of every tensor of a GraphProto that keeps its data in an external file: initializers
    (field 5), sparse initializers (15) and the tensors and subgraphs of node attributes (If/Loop bodies)."""
    if depth > 32:
        raise ValueError("subgraphs nested too deep")
    for number, wire, value in _fields(graph):
        if wire != 2:
            continue
        if number == 5:
            yield from _tensor_locations(value)
        elif number == 15:  # SparseTensorProto: values (1) and indices (2) are tensors
            for n, w, v in _fields(value):
                if n in (1, 2) and w == 2:
                    yield from _tensor_locations(v)
        elif number == 1:  # NodeProto: attributes (5)
            for n, w, attribute in _fields(value):
                if n != 5 or w != 2:
                    continue
                for an, aw, av in _fields(attribute):
                    if aw == 2 and an in (5, 10):  # t, tensors
                        yield from _tensor_locations(av)
                    elif aw == 2 and an in (6, 11):  # g, graphs
                        yield from _external_locations(av, depth + 1)


def _tensor_locations(tensor: bytes):
    for number, wire, value in _fields(tensor):
        if number == 13 and wire == 2:  # external_data: StringStringEntryProto {key 1, value 2}
            entry = {n: v for n, w, v in _fields(value) if w == 2}
            if entry.get(1) == b"location":
                yield entry.get(2, b"").decode("utf-8", errors="replace")


def check_external_data(path: str | Path, buf: bytes | None = None) -> list[str]:
    """The external data files an ONNX model names, each checked to lie inside the model's own folder (a relative
    path, no '..' out of it, no symlink out of it, no NUL); ModelFileError (exit 2) otherwise. Read without the onnx
    package; nothing is opened but the model."""
    path = Path(path)
    buf = path.read_bytes() if buf is None else buf
    folder = path.resolve().parent
    found = []
    for number, wire, value in _fields(buf):
        if number == 7 and wire == 2:
            try:
                found.extend(_external_locations(value))
            except (ValueError, IndexError):  # a graph that does not parse names no file; ONNX Runtime refuses it
                found.clear()
    for location in found:
        target = (folder / location).resolve() if location and "\0" not in location else None
        if target is None or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ModelFileError(
                f"{path}: its weights point outside its folder ({location[:100]!r}); a model's external data must "
                "lie beside it (re-save it with onnx.save(..., save_as_external_data=True, location='NAME.data'))"
            )
    return found


def _is_torch_checkpoint(path: Path) -> bool:
    """torch.save's zip archive (entries such as NAME/data.pkl under one folder): what dis-train writes."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") and (b"data.pkl" in head or b"/version" in head or b".data/" in head)


ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
# A model served by Triton (runtime/backends/triton.py): its URL schemes and the protocol each speaks.
REMOTE_SCHEMES = {"triton": "http", "triton+http": "http", "triton+grpc": "grpc"}


def is_remote(model) -> bool:
    """Whether `model` names a served model, triton://HOST:PORT/NAME (a string, not a file)."""
    return isinstance(model, str) and model.split("://", 1)[0] in REMOTE_SCHEMES and "://" in model


_KIND_WORDS = {
    "checkpoint": "a PyTorch checkpoint (what dis-train writes)",
    "onnx": "an ONNX model",
    "engine": "a TensorRT engine",
}


def model_kind(path: str | Path) -> str:
    """What a path given as a model is: "missing", "folder", "checkpoint", "onnx", "engine" (by its suffix or its
    .json sidecar), "remote" (a triton:// URL) or "other". Read from the file's name and first bytes only."""
    if is_remote(path):
        return "remote"
    path = Path(path)
    if path.is_dir():
        return "folder"
    if not path.is_file():
        return "missing"
    if path.suffix in (".pt", ".pth") or _is_torch_checkpoint(path):
        return "checkpoint"
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix in ENGINE_SUFFIXES or sidecar_path(path).is_file():
        return "engine"
    return "other"


def _inside(folder: Path) -> str:
    """What a folder given as a model holds that could be meant: a run's best.pt, or an exported model."""
    found = [folder / "best.pt"] if (folder / "best.pt").is_file() else []
    found += sorted(folder.glob("*.onnx"))[:2]
    return f" (it holds {', '.join(str(f) for f in found)})" if found else ""


def wrong_kind(path: str | Path, kind: str, *, wanted: str, fix: str) -> ModelFileError:
    """One line for a model of the wrong kind: what `path` is, what the command wanted, and the command that makes
    the right one (`fix`)."""
    path = Path(path)
    if kind == "missing":
        return ModelFileError(f"{path}: no such model file; pass {wanted}")
    if kind == "folder":
        return ModelFileError(f"{path}: is a folder{_inside(path)}; pass {wanted}")
    if kind not in _KIND_WORDS:
        return ModelFileError(f"{path}: is not a model file disseg reads; pass {wanted}")
    return ModelFileError(f"{path}: is {_KIND_WORDS[kind]}, not {wanted}; {fix}")


EXPORTED = "an exported model (MODEL.onnx, or MODEL.engine with its .json sidecar)"


def read_model_info(path: str | Path) -> ModelInfo:
    """The contract of an ONNX file (its metadata) or an engine (its `.json` sidecar).

    Raises ModelFileError when the file is missing, damaged, of another kind, or not a disseg model.
    """
    path = Path(path)
    kind = model_kind(path)
    if kind == "checkpoint":
        raise ModelFileError(
            f"{path}: is a PyTorch checkpoint, not an exported model; export it first: dis-export {path} "
            f"(then pass {path.with_suffix('.onnx')})"
        )
    if kind not in ("onnx", "engine"):
        raise wrong_kind(path, kind, wanted=EXPORTED, fix="export a checkpoint with: dis-export CKPT")
    if kind == "engine":
        return read_sidecar(path)
    try:
        buf = path.read_bytes()
        props = read_onnx_metadata(path, buf)
        check_external_data(path, buf)
    except (ValueError, IndexError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path}: not a readable ONNX file ({err}); re-export it with dis-export") from err
    return ModelInfo.from_metadata(props, source=str(path))
