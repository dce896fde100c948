"""`dis-data synth`: a VOC-layout data set whose images behave like photographs where DIS needs it.

Preset "easy": each class has its own colour and oriented texture (so the image is predictable from the
labelmap, which the reconstruction subnet relies on); objects of random shapes occlude each other;
backgrounds are textured clutter; lighting varies by image (gain and a gradient) and sensors add noise.

Preset "hard" (the paper's regime): classes come in look-alike groups, one member per scene. All members
of a group share colour, texture and shape; which member an object is depends only on the scene it stands
in (the background's colour and pattern, which an object's interior never shows) and hence on which
classes it co-occurs with. A classifier that looks at a patch cannot tell them apart; the image-level
branch and the tags can.

Tag-only images get noisy tags (dropped and spurious), like the IDW data set. Deterministic for a seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from disseg.runtime.atomic import atomic_write, atomic_write_text
from disseg.runtime.palette import voc_palette
from disseg.runtime.sinks import VideoSink

SYNTH_CLASSES = ("background", "ember", "leaf", "brick", "water", "sand", "plum", "steel")
HARD_GROUPS = ("ember", "leaf", "brick", "water", "sand", "plum", "steel")
HARD_SCENES = ("field", "street", "night")
HARD_CLASSES = ("background", *(f"{g}_{s}" for g in HARD_GROUPS for s in HARD_SCENES))


def class_styles(num_classes: int, rng: np.random.Generator) -> list[dict]:
    styles = []
    for c in range(num_classes):
        hue = (c - 1) / max(1, num_classes - 1)
        hsv = np.uint8([[[int(180 * hue) % 180, 170, 200]]])
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0
        styles.append(
            {
                "colour": colour.astype(np.float32),
                "freq": float(rng.uniform(0.15, 0.6)),
                "angle": float(rng.uniform(0, math.pi)),
                "shape": ("ellipse", "polygon", "rectangle")[c % 3],
            }
        )
    return styles


def _object_mask(
    shape: str, size: int, rng: np.random.Generator, rows: tuple[float, float] = (0.15, 0.85)
) -> np.ndarray:
    """A filled shape centred anywhere across, and between `rows` (fractions of the height) down, the image."""
    mask = np.zeros((size, size), np.uint8)
    cx, cy = rng.uniform(0.15, 0.85) * size, rng.uniform(*rows) * size
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


def _clutter(size: int, rng: np.random.Generator) -> np.ndarray:
    """Textured background: low-contrast grey-ish clutter, different in every image."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(0.3, 0.6, 3).astype(np.float32) * 0.6 + 0.2
    noise = cv2.resize(rng.uniform(-1, 1, (8, 8)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    image = base[None, None] + 0.12 * noise[..., None]
    return image + 0.05 * np.sin(rng.uniform(0.05, 0.3) * (xx + yy))[..., None]


def _scene(scene: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """The hard preset's backgrounds: the same clutter for every scene, under a horizon band (the top fifth) that
    shows the scene: field (green, blotchy), street (grey, a grid of seams), night (dark blue, scattered lights).
    Objects stand below the band, so what tells look-alikes apart is out of sight of a patch of the object."""
    image = _clutter(size, rng)
    band = max(2, size // 5)
    yy, xx = np.mgrid[0:band, 0:size].astype(np.float32)
    blotch = cv2.resize(rng.uniform(-1, 1, (3, 6)).astype(np.float32), (size, band), interpolation=cv2.INTER_CUBIC)
    if scene == 0:
        top = np.float32([0.35, 0.55, 0.25])[None, None] + 0.1 * blotch[..., None]
    elif scene == 1:
        pitch = rng.uniform(6, 12)
        seams = ((xx % pitch) < 2) | ((yy % pitch) < 2)
        top = np.float32([0.55, 0.55, 0.58])[None, None] + 0.05 * blotch[..., None] - 0.25 * seams[..., None]
    else:
        lights = cv2.dilate((rng.random((band, size)) < 0.01).astype(np.uint8), np.ones((2, 2), np.uint8))
        top = np.float32([0.08, 0.1, 0.25])[None, None] + 0.04 * blotch[..., None] + 0.8 * lights[..., None]
    image[:band] = top
    return image.astype(np.float32)


def _paint(image: np.ndarray, mask: np.ndarray, style: dict) -> None:
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float32)
    texture = 0.15 * np.sin(style["freq"] * (xx * math.cos(style["angle"]) + yy * math.sin(style["angle"])))
    image[mask] = style["colour"][None] + texture[mask][:, None]


def _light(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting (gain, a linear gradient) and sensor noise; RGB float in [0, 1] -> uint8."""
    size_y, size_x = image.shape[:2]
    yy, xx = np.mgrid[0:size_y, 0:size_x].astype(np.float32)
    gradient = 1 + rng.uniform(-0.25, 0.25) * (xx / size_x - 0.5) + rng.uniform(-0.25, 0.25) * (yy / size_y - 0.5)
    image = image * rng.uniform(0.7, 1.2) * gradient[..., None] + rng.normal(0, 0.04, image.shape)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def render(size: int, styles: list[dict], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return one (RGB uint8 image, labelmap uint8) pair of the easy preset."""
    image, labels = _clutter(size, rng), np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 5))):  # later objects occlude earlier ones
        c = int(rng.integers(1, len(styles)))
        mask = _object_mask(styles[c]["shape"], size, rng)
        _paint(image, mask, styles[c])
        labels[mask] = c
    return _light(image, rng), labels


def render_hard(size: int, styles: list[dict], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One pair of the hard preset: a scene, then 1-3 objects of random groups, each labelled with its group's
    member for that scene. `styles` has one entry per group (class_styles of len(HARD_GROUPS) + 1, entry 0 unused)."""
    scene = int(rng.integers(len(HARD_SCENES)))
    image, labels = _scene(scene, size, rng), np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        g = int(rng.integers(len(HARD_GROUPS)))
        mask = _object_mask(styles[g + 1]["shape"], size, rng, rows=(0.5, 0.85))
        _paint(image, mask, styles[g + 1])
        labels[mask] = 1 + g * len(HARD_SCENES) + scene
    return _light(image, rng), labels


def noisy_tags(labels: np.ndarray, num_classes: int, drop: float, add: float, rng: np.random.Generator) -> list[int]:
    """Tags present in `labels`, each dropped with probability `drop`; absent ones added with `add`."""
    present = set(int(c) for c in np.unique(labels) if 0 < c < num_classes)
    tags = [
        c
        for c in range(1, num_classes)
        if (c in present and rng.random() >= drop) or (c not in present and rng.random() < add)
    ]
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
    preset: str = "easy",
) -> dict[str, int]:
    """Write the data set under `out` in VOC layout; return the number of images per split."""
    rng = np.random.default_rng(seed)
    if preset == "hard":
        class_names, draw = HARD_CLASSES, render_hard
        styles = class_styles(len(HARD_GROUPS) + 1, rng)
    else:
        class_names, draw = SYNTH_CLASSES, render
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
            image, labels = draw(size, styles, rng)
            _write_jpeg(out / "JPEGImages" / f"{image_id}.jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            mask = Image.fromarray(labels, mode="P")
            mask.putpalette(palette)
            # Weak images keep their true masks too, only to measure pseudo labels and tag cleaning.
            atomic_write(out / "SegmentationClass" / f"{image_id}.png", lambda tmp, m=mask: m.save(tmp, format="PNG"))
            if split == "weak":
                tags = noisy_tags(labels, len(class_names), tag_drop, tag_add, rng)
                weak_lines.append(" ".join([image_id] + [class_names[c] for c in tags]))
            ids.append(image_id)
        atomic_write_text(out / "ImageSets" / "Segmentation" / f"{split}.txt", "\n".join(ids) + "\n")
    atomic_write_text(out / "weak_tags.txt", "\n".join(weak_lines) + "\n")
    atomic_write_text(out / "classes.txt", "\n".join(class_names) + "\n")
    return splits


def _write_jpeg(path: Path, bgr: np.ndarray) -> None:
    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"OpenCV could not write {path.name}")

    atomic_write(path, write)


def write_video(
    path: Path, *, frames: int = 120, size: int = 256, seed: int = 0, fps: float = 15.0, preset: str = "easy"
):
    """A synthetic clip in the data set's class styles (same seed): easy, a camera panning across a large scene;
    hard, a camera drifting over one scene after another (each scene's horizon band stays at the top)."""
    rng = np.random.default_rng(seed)
    scene_rng = np.random.default_rng(seed + 10_000)
    writer = VideoSink(path, fps, option="video")  # written atomically and checked
    if preset == "hard":
        styles = class_styles(len(HARD_GROUPS) + 1, rng)
        shots = max(1, frames // 30)
        scenes = [render_hard(size + size // 4, styles, scene_rng)[0] for _ in range(shots)]
        for i in range(frames):
            shot, phase = divmod(i * shots / max(1, frames), 1.0)
            x = int(phase * (size // 4))
            _write_rgb(writer, scenes[int(shot)][:size, x : x + size])
    else:
        styles = class_styles(len(SYNTH_CLASSES), rng)
        scene = np.vstack([np.hstack([render(size, styles, scene_rng)[0] for _ in range(2)]) for _ in range(2)])
        for i in range(frames):
            phase = i / max(1, frames - 1)
            x = int(phase * size)
            y = int((0.5 - 0.5 * math.cos(2 * math.pi * phase)) * size)
            _write_rgb(writer, scene[y : y + size, x : x + size])
    writer.close()


def _write_rgb(writer: VideoSink, rgb: np.ndarray) -> None:
    writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
