"""dis-import: a foreign ONNX segmentation network -> a disseg model (the contract's input, outputs and metadata),
parity-checked against the foreign model on ONNX Runtime before it is written."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click
import numpy as np

from disseg.runtime.atomic import check_output
from disseg.runtime.cli_util import MAX_COUNT, Command, Finite, handle_errors, parse_size, setup_logging, write_json
from disseg.runtime.contract import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT,
    LABELS,
    MAX_CLASSES,
    SCHEMA_SCENE_TAGS,
    SCORES,
    ModelInfo,
    check_class_names,
    file_sha256,
)
from disseg.runtime.errors import BadInput, DisError
from disseg.runtime.textfile import read_text

from .foreign import Found, Preprocess, parity_frames
from .foreign_facts import Facts, read_facts

log = logging.getLogger("disseg.import")
THRESHOLDS = {"fp32": 99.9, "fp16": 99.0, "litert": 99.5}  # minimum label agreement with the foreign model, percent


def _triple(text: str, option: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise BadInput(f"{option} {text!r}: expected three numbers R,G,B, e.g. {option} 0.485,0.456,0.406")
    return values  # type: ignore[return-value]


def _scale(text: str) -> float:
    try:
        top, _, bottom = text.partition("/")
        value = float(top) / float(bottom or 1)
    except (ValueError, ZeroDivisionError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise BadInput(f"--scale {text!r}: expected a positive number or fraction, e.g. 1/255 or 1")
    return value


def class_names(spec: str | None, found: Found, source: Path, read: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """--classes N, names or FILE (one name per line), checked against the logits' channels; else the names the
    model's files give (`read`), else VOC's 21 by default."""
    from disseg.runtime.palette import VOC_CLASSES

    if spec is None and read is not None and found.num_classes in (None, len(read)):
        check_class_names(read, f"{source}'s class names")
        return read
    if spec is None:
        if found.kind == "foreground":
            return ("background", "foreground")
        if found.num_classes is None:
            raise BadInput(
                f"{source} outputs a label map, which does not say how many classes there are; pass --classes N or "
                "--classes FILE (one name per line)"
            )
        k = found.num_classes
        return VOC_CLASSES if k == len(VOC_CLASSES) else tuple(f"class_{i}" for i in range(k))
    if spec.isascii() and spec.isdigit():  # ASCII: "²".isdigit() is True too
        count = int(spec) if len(spec) < 8 else MAX_CLASSES + 1  # checked before anything is built
        if not 1 <= count <= MAX_CLASSES:
            raise BadInput(f"--classes {spec[:20]}: expected 1 to {MAX_CLASSES} classes")
        names = tuple(f"class_{i}" for i in range(count))
    elif "," in spec and not _exists(Path(spec)):  # names given inline: background,person
        names = tuple(name.strip() for name in spec.split(","))
    else:
        path = Path(spec)
        if not _exists(path):
            raise BadInput(
                f"--classes {spec[:200]!r}: neither a number of classes, a comma list of names nor a file of class "
                "names (one per line)"
            )
        text = read_text(path, "--classes", "a text file of class names, one per line")
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names or len(names) > MAX_CLASSES:
        raise BadInput(f"--classes {spec[:200]!r}: expected 1 to {MAX_CLASSES} classes, got {len(names)}")
    check_class_names(names, f"--classes {spec[:200]}")
    if found.num_classes is not None and len(names) != found.num_classes:
        raise BadInput(
            f"--classes gives {len(names)} classes but output {found.output!r} of {source} has {found.num_classes}; "
            "give one name per output channel"
        )
    return names


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name the system refuses (too long)
        return False


def read_palette(path: Path | None, count: int) -> tuple[tuple[int, int, int], ...]:
    from disseg.runtime.palette import voc_palette

    if path is None:
        return tuple(tuple(int(v) for v in c) for c in voc_palette(count))
    text = read_text(path, "--palette", "a text file of 'R,G,B' lines, one per class")
    try:
        rows = [tuple(int(v) for v in line.replace(",", " ").split()) for line in text.splitlines() if line.strip()]
    except ValueError as err:
        raise BadInput(f"--palette {path}: expected one 'R,G,B' line per class ({err})") from None
    if len(rows) < count or any(len(r) != 3 or min(r) < 0 or max(r) > 255 for r in rows):
        raise BadInput(f"--palette {path}: expected {count} lines of 'R,G,B' (0-255), one per class; got {len(rows)}")
    return tuple(rows)  # type: ignore[return-value]


def foreign_labels(proto, found: Found, pre: Preprocess, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The foreign model's own answer on `frames`, preprocessed in numpy (`labels_from` its output)."""
    import onnxruntime as ort
    from onnx import TensorProto

    from disseg.runtime.console import third_party_output

    with third_party_output():
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    step = found.batch if isinstance(found.batch, int) else len(frames)
    dtype = np.float16 if found.input_type == TensorProto.FLOAT16 else np.float32
    parts = [
        session.run([found.output], {found.input: pre.apply(frames[i : i + step]).astype(dtype)})[0]
        for i in range(0, len(frames), step)
    ]
    return labels_from(np.concatenate(parts), found)


def labels_from(out: np.ndarray, found: Found) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels at the input size from a foreign output: the argmax of its logits resized to the input (bilinear,
    half-pixel centres; a one-class map p as [2t - p, p]) or its label map (nearest); and the logits at that size."""
    import cv2

    size = (found.width, found.height)
    if found.kind == "labels":
        maps = out.reshape(len(out), *found.output_size)
        return np.stack([cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_NEAREST) for m in maps]), None
    logits = out.astype(np.float32)
    if found.kind == "foreground":
        logits = np.concatenate([np.float32(2 * (found.threshold or 0.0)) - logits, logits], axis=1)
    if found.output_size != (found.height, found.width):
        logits = np.stack(
            [np.stack([cv2.resize(c, size, interpolation=cv2.INTER_LINEAR) for c in sample]) for sample in logits]
        )
    return logits.argmax(1), logits


def _real_frames(spec: str, found: Found, count: int) -> np.ndarray:
    """Up to `count` images of a folder or glob (--parity-from), at the model's input size; repeated to fill a batch."""
    from disseg.runtime.image import list_images, read_image, resize_to

    paths = list_images(spec)[:count]
    if not paths:
        raise BadInput(f"--parity-from {spec}: no images there; give a folder or a glob such as 'photos/*.jpg'")
    frames = [resize_to(read_image(p), found.height, found.width) for p in paths]
    n = found.batch if isinstance(found.batch, int) else 1
    while len(frames) % n:
        frames.append(frames[-1])
    return np.stack(frames)


def _degenerate(reference: np.ndarray, logits: np.ndarray | None, frames: int) -> str | None:
    """Why the foreign model's answer cannot prove a wrapping right, or None: logits that are not finite (NaN or inf
    weights), or one label on every pixel of every varied frame."""
    if logits is not None and not np.isfinite(logits).all():
        return f"its logits are not finite ({int((~np.isfinite(logits)).sum())} NaN or inf values)"
    if np.unique(reference).size == 1:
        return f"it gives class {int(reference.flat[0])} to every pixel of {frames} varied frames"
    return None


def parity(
    foreign,
    wrapped,
    found: Found,
    pre: Preprocess,
    *,
    images: int,
    precision: str,
    threshold,
    tflite: Path | None,
    real: str | None = None,
) -> dict:
    """Labels of the wrapped model against the foreign model's argmax on the same frames (ONNX Runtime, CPU); for a
    TFLite model also against the .tflite itself run by LiteRT (THRESHOLDS["litert"])."""
    from disseg.runtime.backends import cpu_backend, infer_in_batches

    n = found.batch if isinstance(found.batch, int) else 1
    count = max(n, images - images % n)
    frames = parity_frames(found.height, found.width, count) if real is None else _real_frames(real, found, count)
    reference, logits = foreign_labels(foreign, found, pre, frames)
    backend = cpu_backend(wrapped.SerializeToString())
    out = infer_in_batches(backend, INPUT, frames, n if isinstance(found.batch, int) else len(frames))
    agreement = float(100 * (out[LABELS] == reference).mean())
    threshold = THRESHOLDS[precision] if threshold is None else threshold
    degenerate = _degenerate(reference, logits, len(frames))
    report = {
        "against": "the foreign model's argmax on ONNX Runtime (CPU), same frames, preprocessing in numpy",
        "precision": precision,
        "images": len(frames),
        "source": f"generated ({len(frames)} synthetic frames)" if real is None else f"{len(frames)} images of {real}",
        "threshold_label_agreement": threshold,
        "outputs": {LABELS: {"label_agreement": round(agreement, 4)}},
        "passed": bool(agreement >= threshold) and degenerate is None,
    }
    if degenerate is not None:  # two constant outputs agree 100 %: that proves nothing
        report["degenerate"] = degenerate
    if SCORES in out and logits is not None:
        report["outputs"][SCORES] = {"max_abs_score_error": float(np.abs(out[SCORES] - logits).max())}
    if tflite is not None:
        from .tflite import litert_outputs

        litert, _ = labels_from(litert_outputs(tflite, found.output, pre.apply(frames)), found)
        against = float(100 * (out[LABELS] == litert).mean())
        report["litert"] = {
            "against": "the .tflite run by Google's LiteRT, same frames",
            "label_agreement": round(against, 4),
            "threshold_label_agreement": THRESHOLDS["litert"],
        }
        report["passed"] = report["passed"] and against >= THRESHOLDS["litert"]
    return report


@click.command(
    cls=Command,
    help="Wrap a foreign ONNX or TFLite segmentation network (float image in; logits, a one-class map or a label "
    "map out) into a disseg model.",
)
@click.argument("foreign", type=click.Path(path_type=Path))
@click.option(
    "-o", "--out", "output", type=click.Path(path_type=Path), help="the model to write [default: FOREIGN.disseg.onnx]"
)
@click.option(
    "--classes",
    help="number of classes, names (background,person) or a file of names, one per line [default: from the logits]",
)
@click.option(
    "--palette", type=click.Path(path_type=Path), help="file of 'R,G,B' lines, one per class [default: VOC's]"
)
@click.option(
    "--mean", help="per-channel mean [default: the model's files' (Ultralytics, Hugging Face), else ImageNet's]"
)
@click.option("--std", help="per-channel std [default: as --mean]")
@click.option("--scale", help="pixel scale before mean/std: y = (x*scale - mean)/std [default: as --mean, else 1/255]")
@click.option("--rgb/--bgr", default=None, help="channel order the foreign model expects [default: RGB]")
@click.option("--input-size", "size_text", help="HxW to fix a dynamic spatial size at [default: 512x512]")
@click.option(
    "--output", "output_name", help="the foreign output tensor to wrap [default: 'out', or the only candidate]"
)
@click.option("--logits", "kind", flag_value="logits", help="the output is per-class logits (N x K x h x w)")
@click.option("--labels", "kind", flag_value="labels", help="the output is a label map (N x h x w)")
@click.option("--outputs", default="labels", show_default=True, help="labels, or labels,scores (logits models)")
@click.option(
    "--scene-tags",
    is_flag=True,
    help="add the input scene_tags (N x K, 1 = may appear, 0 = absent) that masks absent classes at run time "
    "(logits models)",
)
@click.option("--name", help="a name for the model, kept in its metadata [default: the file's]")
@click.option("--fp16", is_flag=True, help="FP16 foreign network; preprocessing, resize and outputs stay FP32")
@click.option("--parity-images", default=8, show_default=True, type=click.IntRange(1, MAX_COUNT))
@click.option(
    "--parity-from",
    help="compare on these images (folder or glob) instead of generated frames, e.g. photos of what the model finds",
)
@click.option("--min-agreement", type=Finite(0, 100), help="parity threshold, percent of labels [fp32 99.9, fp16 99]")
@click.option("--force", is_flag=True, help="overwrite an existing output")
@handle_errors
def import_cli(foreign: Path, output, classes, palette, mean, std, scale, rgb, size_text, **rest) -> None:
    setup_logging()
    started = time.perf_counter()
    given = _given_preprocessing(mean, std, scale, rgb)
    out = output or foreign.with_name(foreign.stem + (".disseg.fp16.onnx" if rest["fp16"] else ".disseg.onnx"))
    if out.exists() and not rest["force"]:
        raise BadInput(f"{out} exists; pass --force to overwrite it or -o to choose another file")
    check_output(out, option="-o")
    proto, found = inspect(foreign, parse_size(size_text, option="--input-size"), rest["output_name"], rest["kind"])
    wanted = _wanted_outputs(rest, found, foreign)
    facts = read_facts(foreign, proto)
    pre = _preprocessing(given, facts)
    names = class_names(classes, found, foreign, facts.names)
    if found.kind == "labels" and len(names) > 256:
        raise BadInput(f"{foreign}: a label map past 256 classes is not supported; import the model's logits instead")
    if facts.source:
        log.info("read from %s: %s", ", ".join(facts.source), _what_was_read(facts, classes, given))
    info = contract(foreign, found, pre, names, read_palette(palette, len(names)), wanted, rest["name"])
    info = info.replace(extra={**info.extra, "import": {**info.extra["import"], "read_from": list(facts.source)}},
                        resize=facts.resize or "stretch")  # fmt: skip
    if rest["scene_tags"]:
        info = info.replace(scene_tags="mask", schema=SCHEMA_SCENE_TAGS)
    wrapped, info = build(proto, found, pre, info, fp16=rest["fp16"])
    report = parity(
        proto, wrapped, found, pre, images=rest["parity_images"], precision=info.precision,
        threshold=rest["min_agreement"], tflite=foreign if "tflite" in info.extra["import"] else None,
        real=rest["parity_from"],
    )  # fmt: skip
    _gate(report, foreign, out)
    _save(wrapped, info.replace(extra={**info.extra, "parity": report}), out)
    write_json(out.with_suffix(".parity.json"), report)  # with the model or not at all
    for note in found.notes:
        log.warning("%s", note)
    resize = "" if found.output_size == (found.height, found.width) else f", resized from {found.output_size[0]}x" \
        f"{found.output_size[1]}"  # fmt: skip
    click.echo(
        f"wrote {out} ({info.precision}, {len(names)} classes, {found.kind} {found.output!r}{resize}, "
        f"{found.height}x{found.width}, batch {found.batch}; labels agree "
        f"{report['outputs'][LABELS]['label_agreement']:.2f}% with {foreign.name}) in "
        f"{time.perf_counter() - started:.1f} s"
    )


def _given_preprocessing(mean, std, scale, rgb) -> dict:
    """The preprocessing options given on the command line, checked before anything is loaded (None: not given)."""
    given = {
        "mean": None if mean is None else _triple(mean, "--mean"),
        "std": None if std is None else _triple(std, "--std"),
        "scale": None if scale is None else _scale(scale),
        "bgr": None if rgb is None else not rgb,
    }
    if given["std"] is not None and min(given["std"]) <= 0:
        raise BadInput(f"--std {std!r}: every channel's std must be positive")
    return given


def _preprocessing(given: dict, facts: Facts) -> Preprocess:
    """The options given, else what the model's files say, else torchvision's convention (ImageNet's, RGB, 1/255)."""

    def pick(key, default):
        return next(v for v in (given[key], getattr(facts, key), default) if v is not None)

    pre = Preprocess(pick("mean", IMAGENET_MEAN), pick("std", IMAGENET_STD), pick("scale", 1 / 255), pick("bgr", False))
    if min(pre.std) <= 0 or pre.scale <= 0:
        raise BadInput(f"the model's files give a std or scale that is not positive ({pre}); pass --std and --scale")
    return pre


def _what_was_read(facts: Facts, classes, given: dict) -> str:
    read = ["class names"] if facts.names and classes is None else []
    read += [k for k in ("mean", "std", "scale") if getattr(facts, k) is not None and given[k] is None]
    read += ["frames are letterboxed"] if facts.resize == "letterbox" else []
    return ", ".join(read) or "nothing the options did not already say"


def _wanted_outputs(rest: dict, found: Found, foreign: Path) -> tuple[str, ...]:
    wanted = tuple(o.strip() for o in rest["outputs"].split(",") if o.strip())
    if LABELS not in wanted or set(wanted) - {LABELS, SCORES} or (SCORES in wanted and found.kind == "labels"):
        raise BadInput(f"--outputs {rest['outputs']!r}: choose labels or labels,scores (scores need a logits output)")
    if rest["scene_tags"] and found.kind == "labels":
        raise BadInput(f"--scene-tags: {foreign} outputs a label map, and masking classes needs per-class scores; "
                       "import its logits (--output NAME --logits) instead")  # fmt: skip
    return wanted


def _gate(report: dict, foreign: Path, out: Path) -> None:
    """The parity gate's verdict in the log, and a DisError (exit 1, nothing written) when it did not pass."""
    agreement = report["outputs"][LABELS]["label_agreement"]
    log.info("parity: labels agree %.3f%% with the foreign model (threshold %.1f%%)", agreement, report[
        "threshold_label_agreement"])  # fmt: skip
    if "degenerate" in report:
        raise DisError(f"parity check cannot pass: {foreign}: {report['degenerate']}; check its weights, or compare "
                       f"on images it segments with --parity-from DIR; not writing {out}")  # fmt: skip
    if "litert" in report:
        log.info("parity: labels agree %.3f%% with LiteRT running %s (threshold %.1f%%)",
                 report["litert"]["label_agreement"], foreign.name, THRESHOLDS["litert"])  # fmt: skip
    if not report["passed"]:
        litert = f", with LiteRT on {report['litert']['label_agreement']:.2f}%" if "litert" in report else ""
        raise DisError(
            f"parity check failed: the wrapped model agrees with {foreign} on {agreement:.2f}% of labels{litert} "
            f"(thresholds {report['threshold_label_agreement']}%"
            + (f", {THRESHOLDS['litert']}%" if litert else "")
            + f"); not writing {out}"
        )


def inspect(path: Path, size, output_name, kind) -> tuple:
    """Load the foreign file and find its input, the output to wrap and their sizes (one run on zeros)."""
    import onnx

    from disseg.runtime.contract import METADATA_PREFIX, check_external_data, model_kind, wrong_kind

    from .foreign import choose_output, find_input, foreground_threshold, run_once
    from .tflite import is_tflite, to_onnx

    if is_tflite(path):
        proto = to_onnx(path)
    else:
        found_kind = model_kind(path)
        if found_kind != "onnx":
            raise wrong_kind(path, found_kind, wanted="a foreign .onnx or .tflite model",
                             fix="dis-import reads ONNX and TFLite files")  # fmt: skip
        try:
            check_external_data(path)  # before onnx.load opens anything a hostile file names
            proto = onnx.load(str(path))
        except BadInput:
            raise
        except Exception as err:  # onnx raises DecodeError and friends: one line whatever the damage
            raise BadInput(f"{path}: not a readable ONNX file ({type(err).__name__}); export it again") from None
    computed = {out for node in proto.graph.node for out in node.output}
    if not any(o.name in computed for o in proto.graph.output):  # no nodes, or outputs that are inputs or constants
        raise BadInput(f"{path}: its graph computes none of its outputs ({len(proto.graph.node)} nodes): not a "
                       "segmentation network; export the network itself")  # fmt: skip
    if any(p.key.startswith(METADATA_PREFIX) for p in proto.metadata_props):
        raise BadInput(f"{path} is already a disseg model; pass it to dis-run, dis-export --engine or dis-calibrate")
    value, (batch, height, width, notes) = find_input(proto, str(path), size)
    try:
        shapes = run_once(proto, value, height, width, batch)
    except Exception as err:
        raise BadInput(f"{path} does not run on ONNX Runtime at {height}x{width} ({str(err)[:200]})") from None
    name, found, classes, out_size, rank = choose_output(str(path), proto, shapes, output_name, kind)
    threshold = foreground_threshold(proto, name) if found == "foreground" else None
    if threshold is not None:
        notes = (*notes, f"output {name!r} is one class's map ({'a probability' if threshold else 'a logit'}): "
                 f"class 1 where it is above {threshold:g}, class 0 elsewhere")  # fmt: skip
    return proto, Found(value.name, value.type.tensor_type.elem_type, batch, height, width, name, found, classes,
                        out_size, rank, notes, threshold)  # fmt: skip


def contract(path: Path, found: Found, pre: Preprocess, names, palette, outputs, name) -> ModelInfo:
    """The metadata: classes, palette, mean/std as the contract states them, and the import's provenance."""
    mean, std = pre.contract_mean_std()
    provenance = {
        "name": name or path.stem,
        "source": path.name,
        "sha256": file_sha256(path),
        "input": found.input,
        "output": found.output,
        "output_kind": found.kind,
        "output_size": list(found.output_size),
        "preprocessing": {
            "mean": list(pre.mean),
            "std": list(pre.std),
            "scale": pre.scale,
            "channel_order": "BGR" if pre.bgr else "RGB",
        },
        "fixed": list(found.notes),
    }
    from .tflite import is_tflite

    if is_tflite(path):
        import importlib.metadata

        provenance["tflite"] = {"converter": f"tf2onnx {importlib.metadata.version('tf2onnx')}"}
    if found.threshold is not None:
        provenance["threshold"] = found.threshold
    return ModelInfo(
        input_name=INPUT,
        input_height=found.height,
        input_width=found.width,
        batch=found.batch,
        class_names=tuple(names),
        palette=palette,
        iterations=0,
        step_size=0.0,
        tag_weight=0.0,
        precision="fp32",
        outputs=outputs,
        mean=mean,
        std=std,
        extra={"import": provenance},
    )


def build(proto, found: Found, pre: Preprocess, info: ModelInfo, *, fp16: bool):
    from disseg.runtime.cli_util import third_party_output

    from .foreign import wrap

    try:
        wrapped = wrap(proto, found, pre, info.outputs, scene_tags=bool(info.scene_tags))
    except Exception as err:  # the opset converter or ONNX's checker on a graph we did not write: one line
        raise BadInput(
            f"{info.extra['import']['source']}: could not be wrapped ({type(err).__name__}: {str(err)[:200]}); "
            "re-export it with a recent opset (torch.onnx.export(..., opset_version=18))"
        ) from None
    if fp16:
        from .fp16 import to_fp16

        with third_party_output():
            wrapped = to_fp16(wrapped)
        info = info.replace(precision="fp16")
    return wrapped, info


def _save(proto, info: ModelInfo, out: Path) -> None:
    from .model_file import attach, save

    save(attach(proto, info), out)
