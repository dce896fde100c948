"""`dis-data synth`: a VOC-layout data set whose images behave like photographs where DIS needs it.

Each class has its own colour and oriented texture (so the image is predictable from the labelmap, which
the reconstruction subnet relies on); objects of random shapes occlude each other; backgrounds are
textured clutter; lighting varies by image (gain and a gradient) and sensors add noise. Tag-only images
get noisy tags (dropped and spurious), like the IDW data set. Deterministic for a seed.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from disseg.runtime.palette import voc_palette

from disseg.runtime.atomic import atomic_write_text

SYNTH_CLASSES = ("background", "ember", "leaf", "brick", "water", "sand", "plum", "steel")


def class_styles(num_classes: int, rng: np.random.Generator) -> list[dict]:
    styles = []
    for c in range(num_classes):
        hue = (c - 1) / max(1, num_classes - 1)
        hsv = np.uint8([[[int(180 * hue) % 180, 170, 200]]])
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0
        styles.append({
            "colour": colour.astype(np.float32),
            "freq": float(rng.uniform(0.15, 0.6)),
            "angle": float(rng.uniform(0, math.pi)),
            "shape": ("ellipse", "polygon", "rectangle")[c % 3],
        })
    return styles


def _object_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cx, cy = rng.uniform(0.15, 0.85, 2) * size
    r = rng.uniform(0.08, 0.25) * size
    if shape == "ellipse":
        axes = (int(r), int(r * rng.uniform(0.5, 1.0)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif shape == "polygon":
        n = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = r * rng.uniform(0.6, 1.2, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1)
    else:
        box = ((float(cx), float(cy)), (float(2 * r), float(r * rng.uniform(0.6, 1.6))), float(rng.uniform(0, 180)))
        cv2.fillPoly(mask, [cv2.boxPoints(box).astype(np.int32)], 1)
    return mask.astype(bool)


def render(size: int, styles: list[dict], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return one (RGB uint8 image, labelmap uint8) pair."""
    k = len(styles)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    labels = np.zeros((size, size), np.uint8)
    # Textured background: low-contrast grey-ish clutter, different in every image.
    base = rng.uniform(0.3, 0.6, 3).astype(np.float32) * 0.6 + 0.2
    noise = cv2.resize(rng.uniform(-1, 1, (8, 8)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    image = base[None, None] + 0.12 * noise[..., None]
    image += 0.05 * np.sin(rng.uniform(0.05, 0.3) * (xx + yy))[..., None]
    for _ in range(int(rng.integers(1, 5))):  # later objects occlude earlier ones
        c = int(rng.integers(1, k))
        mask = _object_mask(styles[c]["shape"], size, rng)
        s = styles[c]
        texture = 0.15 * np.sin(s["freq"] * (xx * math.cos(s["angle"]) + yy * math.sin(s["angle"])))
        image[mask] = s["colour"][None] + texture[mask][:, None]
        labels[mask] = c
    # Lighting: gain, a linear gradient, sensor noise.
    gradient = 1 + rng.uniform(-0.25, 0.25) * (xx / size - 0.5) + rng.uniform(-0.25, 0.25) * (yy / size - 0.5)
    image = image * rng.uniform(0.7, 1.2) * gradient[..., None] + rng.normal(0, 0.04, image.shape)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), labels


def noisy_tags(labels: np.ndarray, num_classes: int, drop: float, add: float, rng: np.random.Generator) -> list[int]:
    """Tags present in `labels`, each dropped with probability `drop`; absent ones added with `add`."""
    present = set(int(c) for c in np.unique(labels) if 0 < c < num_classes)
    tags = [c for c in range(1, num_classes) if (c in present and rng.random() >= drop) or (c not in present and rng.random() < add)]
    return tags


def write_dataset(
    out: Path,
    *,
    num_train: int = 200,
    num_val: int = 100,
    num_weak: int = 400,
    size: int = 256,
    seed: int = 0,
    tag_drop: float = 0.2,
    tag_add: float = 0.05,
    class_names: tuple[str, ...] = SYNTH_CLASSES,
) -> dict[str, int]:
    """Write the data set under `out` in VOC layout; return the number of images per split."""
    rng = np.random.default_rng(seed)
    styles = class_styles(len(class_names), rng)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    palette = voc_palette(256).reshape(-1).tolist()
    splits = {"train": num_train, "val": num_val, "weak": num_weak}
    weak_lines = ["# image_id class_name ...   (noisy image-level tags; background is implicit)"]
    for split, count in splits.items():
        ids = []
        for i in range(count):
            image_id = f"{split}_{i:05d}"
            image, labels = render(size, styles, rng)
            cv2.imwrite(str(out / "JPEGImages" / f"{image_id}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            mask = Image.fromarray(labels, mode="P")
            mask.putpalette(palette)
            # Weak images keep their true masks too, only to measure pseudo labels and tag cleaning.
            mask.save(out / "SegmentationClass" / f"{image_id}.png")
            if split == "weak":
                tags = noisy_tags(labels, len(class_names), tag_drop, tag_add, rng)
                weak_lines.append(" ".join([image_id] + [class_names[c] for c in tags]))
            ids.append(image_id)
        atomic_write_text(out / "ImageSets" / "Segmentation" / f"{split}.txt", "\n".join(ids) + "\n")
    atomic_write_text(out / "weak_tags.txt", "\n".join(weak_lines) + "\n")
    atomic_write_text(out / "classes.txt", "\n".join(class_names) + "\n")
    return splits


def write_video(path: Path, *, frames: int = 120, size: int = 256, seed: int = 0, fps: float = 15.0,
                class_names: tuple[str, ...] = SYNTH_CLASSES) -> None:
    """A camera panning across a large synthetic scene drawn in the data set's class styles (same seed)."""
    rng = np.random.default_rng(seed)
    styles = class_styles(len(class_names), rng)
    scene_rng = np.random.default_rng(seed + 10_000)
    scene = np.vstack([np.hstack([render(size, styles, scene_rng)[0] for _ in range(2)]) for _ in range(2)])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    for i in range(frames):
        phase = i / max(1, frames - 1)
        x = int(phase * size)
        y = int((0.5 - 0.5 * math.cos(2 * math.pi * phase)) * size)
        writer.write(cv2.cvtColor(np.ascontiguousarray(scene[y : y + size, x : x + size]), cv2.COLOR_RGB2BGR))
    writer.release()
