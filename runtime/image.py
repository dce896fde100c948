"""Reading images into the one format every backend takes (uint8 BGR, H x W x 3) and resizing to the model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .contract import LETTERBOX_PAD
from .errors import BadInput

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def to_bgr8(image: np.ndarray, *, source: str = "image") -> np.ndarray:
    """Return `image` as contiguous uint8 BGR (H x W x 3).

    Accepts grayscale (H x W or H x W x 1), BGR, BGRA (alpha dropped), uint8, uint16 (high byte kept)
    and float images in [0, 1]. Raises BadInput for anything else.
    """
    image = np.asarray(image)
    if image.size == 0 or image.ndim not in (2, 3):
        raise BadInput(f"{source}: expected an H x W (x C) image, got shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise BadInput(
            f"{source}: expected uint8, uint16 or float pixels, got {image.dtype}; convert the image to 8-bit"
        )
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.shape[2] != 3:
        raise BadInput(f"{source}: expected 1, 3 or 4 channels, got {image.shape[2]}; save it as RGB or grayscale")
    return np.ascontiguousarray(image)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 BGR. Raises BadInput if it is missing or not a decodable image."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such image file")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BadInput(f"{path}: not a decodable image (corrupt or unsupported format)")
    return to_bgr8(image, source=str(path))


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to the model's input size: area filter when shrinking, bilinear when enlarging. The bilinear one is
    OpenCV's bit-exact variant: plain INTER_LINEAR takes other code paths on aarch64 (the KleidiCV HAL in pip's
    OpenCV, NEON in Debian's), whose rounding moved scores by 3e-4 against x86_64; the exact one is equal everywhere."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    shrinking = image.shape[0] * image.shape[1] > height * width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR_EXACT)


Box = tuple[int, int, int, int]  # where a letterboxed frame sits in the model input: top, left, height, width


def letterbox_box(frame_hw: tuple[int, int], height: int, width: int) -> Box:
    """Ultralytics' LetterBox arithmetic (aspect kept, centred, the odd pixel's rounding as it does it)."""
    r = min(height / frame_hw[0], width / frame_hw[1])
    nh, nw = int(round(frame_hw[0] * r)), int(round(frame_hw[1] * r))
    top, left = int(round((height - nh) / 2 - 0.1)), int(round((width - nw) / 2 - 0.1))
    return top, left, nh, nw


def fit_to(image: np.ndarray, height: int, width: int, resize: str = "stretch") -> tuple[np.ndarray, Box | None]:
    """The model input for a frame: stretched (`resize_to`), or letterboxed: resized keeping its aspect into a
    LETTERBOX_PAD grey canvas with OpenCV's INTER_LINEAR, exactly as Ultralytics' LetterBox does (its labels then
    agree to the pixel; the bit-exact variant moved 0.3-3 % of a random net's labels). The box, or None."""
    if resize == "stretch":
        return resize_to(image, height, width), None
    top, left, nh, nw = box = letterbox_box(image.shape[:2], height, width)
    canvas = np.full((height, width, 3), LETTERBOX_PAD, np.uint8)
    inner = image if image.shape[:2] == (nh, nw) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas[top : top + nh, left : left + nw] = inner
    return canvas, box


def labels_back(labels: np.ndarray, box: Box | None, height: int, width: int) -> np.ndarray:
    """Model-size labels back to the frame: the letterbox's box cut out first, then nearest neighbour."""
    if box is not None:
        top, left, nh, nw = box
        labels = labels[top : top + nh, left : left + nw]
    return resize_labels(labels, height, width)


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a labelmap back to a frame's size (nearest neighbour: labels never blend)."""
    if labels.shape[0] == height and labels.shape[1] == width:
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def list_images(folder: str | Path) -> list[Path]:
    """Image files in `folder` (sorted, by suffix), or the files a glob pattern matches; none where the system
    refuses the name (too long)."""
    text = str(folder)
    try:
        if any(ch in text for ch in "*?["):
            base = Path(text).parent
            return sorted(p for p in base.glob(Path(text).name) if p.is_file())
        return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except (OSError, ValueError):
        return []


def unique_names(paths: list[Path]) -> list[str]:
    """Output names (masks, per-frame files) for `paths`, one each, never two alike even on a file system that
    ignores case. The rule (README "Outputs"): an image's stem (street.jpg -> street); when several images share a
    stem, ignoring case, each keeps its extension (a.jpg -> a.jpg, a.png -> a.png); a name that still collides,
    ignoring case, gets -2, -3, ... in sorted order (a.JPG, a.jpg -> a.JPG, a.jpg-2). Case is folded for ASCII
    letters only, as the C++ runtime does."""
    fold = lambda name: name.translate(_ASCII_LOWER)  # noqa: E731
    stems: dict[str, int] = {}
    for p in paths:
        stems[fold(p.stem)] = stems.get(fold(p.stem), 0) + 1
    taken: set[str] = set()
    names = []
    for p in paths:
        name = p.name if stems[fold(p.stem)] > 1 else p.stem
        candidate, n = name, 1
        while fold(candidate) in taken:
            n += 1
            candidate = f"{name}-{n}"
        taken.add(fold(candidate))
        names.append(candidate)
    return names
