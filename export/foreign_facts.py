"""What a foreign model's own files say about it, so that dis-import needs no flags for it: class names and
preprocessing from Ultralytics' ONNX metadata (`names`, `task`), and from the Hugging Face files an export leaves
beside the model (`config.json`'s `id2label`, `preprocessor_config.json`'s rescale factor, mean and std), as
optimum-cli and `save_pretrained` write them. Read as data only (JSON, Python literals through ast.literal_eval);
nothing in them is executed. The command's own options win over what is read here."""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
from pathlib import Path

import onnx

from disseg.runtime.errors import BadInput
from disseg.runtime.textfile import read_text

log = logging.getLogger("disseg.import")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Facts:
    names: tuple[str, ...] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    scale: float | None = None
    bgr: bool | None = None
    resize: str | None = None  # "letterbox" where the model's own predictor letterboxes (Ultralytics)
    source: tuple[str, ...] = ()  # where each fact came from, for the log and the metadata


def read_facts(path: Path, proto: onnx.ModelProto) -> Facts:
    """Ultralytics' metadata inside the ONNX first, else Hugging Face's files beside it; an empty Facts if neither."""
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("author", "").startswith("Ultralytics") or "names" in props and "imgsz" in props:
        return _ultralytics(props)
    return _hugging_face(path.parent)


def _ultralytics(props: dict[str, str]) -> Facts:
    """Ultralytics writes `names` ({0: 'road', ...}, a Python literal) and `task`; its predictors letterbox the frame
    into the input and feed RGB scaled to 0..1, no mean or std (ultralytics/engine/predictor.py preprocess)."""
    names = None
    try:
        found = ast.literal_eval(props.get("names", "None"))
        if isinstance(found, dict) and sorted(found) == list(range(len(found))):
            names = tuple(str(found[i]) for i in range(len(found)))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        log.warning("Ultralytics metadata: 'names' is not a literal dict of class names; ignored")
    source = ("the model's Ultralytics metadata",)
    unit = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "scale": 1 / 255, "bgr": False}
    return Facts(names=names, resize="letterbox", source=source, **unit)


def _json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(read_text(path, path.name, "a JSON file"))
    except (BadInput, ValueError) as err:
        log.warning("%s beside the model is not readable JSON (%s); ignored", path.name, str(err)[:120])
        return None
    return value if isinstance(value, dict) else None


def _hugging_face(folder: Path) -> Facts:
    config, processor = _json(folder / "config.json"), _json(folder / "preprocessor_config.json")
    names, mean, std, scale, source = None, None, None, None, []
    labels = (config or {}).get("id2label")
    if isinstance(labels, dict) and labels:
        try:
            keyed = {int(k): str(v) for k, v in labels.items()}
            if sorted(keyed) == list(range(len(keyed))):
                names = tuple(keyed[i] for i in range(len(keyed)))
                source.append("config.json's id2label")
        except ValueError:
            log.warning("config.json's id2label has keys that are not class indices; ignored")
    if processor is not None:
        triple = lambda key: tuple(float(v) for v in processor[key]) if len(processor.get(key) or ()) == 3 else None  # noqa: E731
        try:
            if processor.get("do_normalize", True):
                mean, std = triple("image_mean"), triple("image_std")
            else:
                mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
            if processor.get("do_rescale", True) and "rescale_factor" in processor:
                scale = float(processor["rescale_factor"])
            source.append("preprocessor_config.json")
        except (TypeError, ValueError):
            log.warning("preprocessor_config.json has a mean, std or rescale factor that is not numbers; ignored")
            mean = std = scale = None
    bgr = False if processor is not None else None
    return Facts(names=names, mean=mean, std=std, scale=scale, bgr=bgr, source=tuple(source))
