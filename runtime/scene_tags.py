"""Scene tags at run time: what a site's operator knows a camera may see, as the vector a model exported with
`dis-export --scene-tags` takes (contract.SCENE_TAGS: one value per class, 1 = may appear, 0 = absent, soft values
between). Class names, a file of them, or numbers in; one clear line (BadInput) for anything else."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .contract import ModelInfo
from .errors import BadInput
from .textfile import read_text

NONE = "-"  # a stream given this runs without tags (all ones)
BACKGROUND = "background"  # a class of this name is allowed when tags are named, unless a file gives it a value


def _classes(info: ModelInfo) -> str:
    return ", ".join(info.class_names)


def check_takes_tags(info: ModelInfo, source: str) -> None:
    if not info.scene_tags:
        fix = "dis-import FOREIGN.onnx --scene-tags" if "import" in info.extra else "dis-export CKPT --scene-tags"
        raise BadInput(f"{source} was exported without scene tags, so it cannot take them; export it with: {fix}")


def from_names(names: Iterable[str], info: ModelInfo, *, weights: dict[str, float] | None = None) -> np.ndarray:
    """K float32: 1 for each named class (or its weight), 0 for the others; the background class is 1 unless it is
    given a value."""
    index = {name: i for i, name in enumerate(info.class_names)}
    index.update({name.lower(): i for name, i in list(index.items())})
    vector = np.zeros(info.num_classes, np.float32)
    named = [n.strip() for n in names if n.strip()]
    if not named:
        raise BadInput(f"scene tags: no class named; name some of the model's classes: {_classes(info)}")
    for name in named:
        i = index.get(name, index.get(name.lower()))
        if i is None:
            raise BadInput(f"scene tags: unknown class {name!r}; the model's classes are: {_classes(info)}")
        vector[i] = 1.0 if weights is None else weights.get(name, 1.0)
    valued = {n.lower() for n in (weights or {})}
    for i, name in enumerate(info.class_names):
        if name.lower() == BACKGROUND and BACKGROUND not in valued:
            vector[i] = 1.0
    return vector


def from_values(values, info: ModelInfo, *, what: str = "scene tags") -> np.ndarray:
    """K float32 from numbers, each in 0..1."""
    try:
        vector = np.asarray(values, np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise BadInput(f"{what}: expected {info.num_classes} numbers in 0..1 or class names") from None
    if vector.size != info.num_classes or not np.isfinite(vector).all() or (vector < 0).any() or (vector > 1).any():
        raise BadInput(
            f"{what}: expected {info.num_classes} values in 0..1 (one per class: {_classes(info)}), got "
            f"{vector.size} value(s)" + ("" if vector.size != info.num_classes else " outside 0..1")
        )
    return vector


def parse(given, info: ModelInfo) -> np.ndarray | None:
    """A K vector from what a user gives: None (no tags), "a,b,c", a list of names, or K numbers."""
    if given is None:
        return None
    if isinstance(given, str):
        return None if given.strip() == NONE else from_names(given.split(","), info)
    if isinstance(given, (list, tuple)) and given and all(isinstance(g, str) for g in given):
        return from_names(given, info)
    return from_values(given, info)


def read_file(path: Path, info: ModelInfo) -> np.ndarray:
    """A tags file: one class a line, optionally with its value ("boat 0.2"), or comma lists; '#' starts a comment."""
    text = read_text(path, "--scene-tags-file", "a text file of class names, one a line")
    names, weights = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        for item in line.split("#", 1)[0].split(","):
            parts = item.split()
            if not parts:
                continue
            if len(parts) > 2:
                raise BadInput(f"{path}:{number}: expected 'CLASS' or 'CLASS VALUE', got {item.strip()!r}")
            if len(parts) == 2:
                try:
                    value = float(parts[1])
                except ValueError:
                    value = math.nan
                if not 0 <= value <= 1:
                    raise BadInput(f"{path}:{number}: the value of {parts[0]!r} must be a number in 0..1")
                weights[parts[0]] = value
            names.append(parts[0])
    if not names:
        raise BadInput(f"{path}: names no class; write the classes the camera may see, one a line")
    return from_names(names, info, weights=weights)


def per_stream(texts: tuple[str, ...], files: tuple[Path, ...], info: ModelInfo, streams: int, source: str) -> list:
    """dis-run's --scene-tags / --scene-tags-file (each repeatable): one for every stream, or one per stream in
    order ('-' for a stream without tags). Returns a vector or None per stream."""
    given = [parse(t, info) for t in texts] + [read_file(f, info) for f in files]
    if not given:
        return [None] * streams
    if texts and files:
        raise BadInput("give scene tags with --scene-tags or with --scene-tags-file, not both")
    check_takes_tags(info, source)
    if len(given) == 1:
        return given * streams
    if len(given) != streams:
        raise BadInput(
            f"{len(given)} scene-tag sets for {streams} source(s): give one for every source, or one per source in "
            f"order ('{NONE}' for a source without tags)"
        )
    return given
