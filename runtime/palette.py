"""Class colours: the PASCAL VOC palette, extended for any number of classes."""

from __future__ import annotations

import numpy as np

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def voc_palette(num_classes: int = 256) -> np.ndarray:
    """Return the VOC colour map as an (num_classes, 3) uint8 RGB array (bit-interleaved, as VOC's devkit)."""
    palette = np.zeros((num_classes, 3), np.uint8)
    for index in range(num_classes):
        c, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[index] = (r, g, b)
    return palette
