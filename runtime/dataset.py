"""Data sets on disk: VOC2012 (+ SBD SegmentationClassAug), a plain folder format, and tag-only (weak) images.

Torch-free, so exported models are scored on exactly the samples the trainer saw. Layouts (docs/training.md):

  VOC:    ROOT/JPEGImages/ID.jpg, ROOT/SegmentationClass/ID.png (palette PNG, 255 = void),
          ROOT/ImageSets/Segmentation/{train,val}.txt; with SBD, ROOT/SegmentationClassAug/ID.png and
          ROOT/ImageSets/SegmentationAug/train_aug.txt are used for training when present.
  Folder: ROOT/{train,val}/images/NAME.(jpg|png), ROOT/{train,val}/masks/NAME.png (index PNG).
  Weak:   ROOT/weak_tags.txt (VOC layout) or ROOT/weak/tags.txt (folder layout, images in weak/images/):
          one line per tag-only image, "IMAGE_ID class_name class_name ..."; '#' starts a comment;
          background is implicit.
  Class names: ROOT/classes.txt, one per line (index order); without it the 21 VOC classes.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import BadInput
from .image import IMAGE_SUFFIXES, read_image, resize_to
from .metrics import IGNORE_INDEX
from .palette import VOC_CLASSES
from .textfile import MAX_LIST_BYTES, read_text

log = logging.getLogger("disseg.data")


@dataclasses.dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None = None  # per-pixel labels (full supervision or evaluation)
    tags: tuple[int, ...] | None = None  # image-level tags (weak supervision)


def read_classes(root: Path) -> tuple[str, ...]:
    path = root / "classes.txt"
    if not path.is_file():
        return VOC_CLASSES
    text = read_text(path, "classes.txt", "one class name a line (background first)")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) < 2:
        raise BadInput(f"{path}: needs at least 2 class names (background first), one per line")
    return names


def _read_ids(path: Path) -> list[str]:
    text = read_text(path, "image list", "one image id a line", limit=MAX_LIST_BYTES)
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def read_weak_tags(path: Path, class_names: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Parse a tags file into {image_id: class indices}. Raises BadInput naming the line of an unknown class."""
    index = {name: i for i, name in enumerate(class_names)}
    tags: dict[str, tuple[int, ...]] = {}
    text = read_text(path, "tags file", "one 'IMAGE_ID CLASS ...' line per image", limit=MAX_LIST_BYTES)
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        unknown = [w for w in words[1:] if w not in index]
        if unknown:
            raise BadInput(f"{path}:{number}: unknown class {unknown[0]!r}; known: {', '.join(class_names)}")
        tags[words[0]] = tuple(sorted({0} | {index[w] for w in words[1:]}))
    return tags


def _find_image(folder: Path, image_id: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{image_id}{suffix}"
        if path.is_file():
            return path
    return folder / f"{image_id}.jpg"  # reported as missing by the scan


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def list_samples(root: str | Path, split: str) -> tuple[tuple[str, ...], list[Sample]]:
    """Return (class names, samples) of `split` ("train", "val" or "weak") in any supported layout."""
    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"{root}: no such data folder; make one with: dis-data synth {root}")
    names = read_classes(root)
    if (root / "JPEGImages").is_dir():
        images = root / "JPEGImages"
        if split == "weak":
            tags_file = root / "weak_tags.txt"
            if not tags_file.is_file():
                raise BadInput(f"{root}: no weak_tags.txt for stage 2 (format: 'IMAGE_ID class_name ...' per line)")
            weak = read_weak_tags(tags_file, names)
            masks = root / "SegmentationClass"  # true masks of weak images, when any, are for evaluation only
            return names, [Sample(_find_image(images, i), _existing(masks / f"{i}.png"), t) for i, t in weak.items()]
        aug_list = root / "ImageSets" / "SegmentationAug" / f"{split}_aug.txt"
        if (root / "SegmentationClassAug").is_dir() and aug_list.is_file():
            ids, masks = _read_ids(aug_list), root / "SegmentationClassAug"
        else:
            ids, masks = _read_ids(root / "ImageSets" / "Segmentation" / f"{split}.txt"), root / "SegmentationClass"
        return names, [Sample(_find_image(images, i), masks / f"{i}.png") for i in ids]
    if (root / split / "images").is_dir():
        images = root / split / "images"
        if split == "weak":
            weak = read_weak_tags(root / "weak" / "tags.txt", names)
            return names, [Sample(_find_image(images, i), None, t) for i, t in weak.items()]
        paths = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return names, [Sample(p, root / split / "masks" / f"{p.stem}.png") for p in paths]
    raise BadInput(
        f"{root}: no {split} split found; expected VOC layout (JPEGImages/, SegmentationClass/, ImageSets/) "
        f"or {root}/{split}/images/ with masks/"
    )


def read_mask(path: Path, num_classes: int) -> np.ndarray:
    """Read an index PNG (palette or grayscale). Raises BadInput for a label outside the classes other than 255."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L", "I", "I;16"):
            raise BadInput(f"{path}: mask mode {im.mode}, expected an index PNG (palette or grayscale)")
        labels = np.array(im)
    bad = labels[(labels >= num_classes) & (labels != IGNORE_INDEX)]
    if bad.size:
        raise BadInput(
            f"{path}: label value {int(bad[0])} is outside the {num_classes} classes (255 is void); fix the mask or "
            "classes.txt"
        )
    return labels.astype(np.uint8)


def _check(sample: Sample, num_classes: int) -> str | None:
    """Return why `sample` is unreadable (corrupt or missing), or None. Out-of-range labels raise."""
    try:
        read_image(sample.image)
    except BadInput as err:
        return str(err)
    if sample.mask is not None:
        try:
            read_mask(sample.mask, num_classes)
        except BadInput:
            raise
        except Exception as err:  # PIL raises several types for damaged files
            return f"{sample.mask}: not a readable mask ({type(err).__name__})"
    return None


def scan(samples: list[Sample], num_classes: int, *, workers: int = 4) -> list[Sample]:
    """Drop unreadable samples with a warning that names each file and a count at the end."""
    with ThreadPoolExecutor(workers) as pool:
        problems = list(pool.map(lambda s: _check(s, num_classes), samples))
    good = [s for s, p in zip(samples, problems) if p is None]
    for problem in filter(None, problems):
        log.warning("skipped %s", problem)
    if len(good) < len(samples):
        log.warning("skipped %d of %d samples that could not be read", len(samples) - len(good), len(samples))
    if not good:
        raise BadInput("no readable samples in this split; check the data folder")
    return good


def load_eval_item(sample: Sample, num_classes: int, height: int, width: int, *, resize: bool = True) -> dict:
    """{"bgr": image resized to the model input as the runtime does (as read with `resize` False: a Segmenter
    fits it itself), "mask": native-size labels or None, "tags": image-level tags given with the sample (weak split)
    or None}."""
    bgr = read_image(sample.image)
    item = {"bgr": resize_to(bgr, height, width) if resize else bgr, "mask": None, "tags": None}
    if sample.mask is not None:
        item["mask"] = read_mask(sample.mask, num_classes)
    if sample.tags is not None:
        tags = np.zeros(num_classes, np.float32)
        tags[list(sample.tags)] = 1.0
        item["tags"] = tags
    return item
