"""Reference outputs of a model on fixed frames, to compare another machine's run against (CI: x86_64 writes,
the aarch64 leg under emulation compares in tests/runtime/test_cross_arch.py).

    python tests/cross_arch_reference.py MODEL.onnx OUT.npz
"""

from __future__ import annotations

import platform
import sys

import numpy as np


def frames() -> list[np.ndarray]:
    """Deterministic frames of several sizes and channel counts (the preprocessing runs on each machine too)."""
    rng = np.random.default_rng(7)
    out = []
    for h, w, c in ((64, 64, 3), (50, 70, 3), (96, 64, 1), (64, 80, 4), (128, 128, 3)):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 64) * 4], -1).astype(
            np.uint8
        )
        for _ in range(3):
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            base[y : y + h // 3, x : x + w // 3] = rng.integers(0, 256, 3)
        out.append(
            base[..., :1]
            if c == 1
            else np.concatenate([base, np.full((h, w, 1), 255, np.uint8)], -1)
            if c == 4
            else base
        )
    return out


def main(model: str, out: str) -> None:
    from disseg.runtime import Segmenter

    arrays = {"machine": np.array(platform.machine())}
    with Segmenter(model, backend="onnxruntime") as seg:
        for i, frame in enumerate(frames()):
            result = seg(frame)
            arrays[f"frame{i}"], arrays[f"labels{i}"], arrays[f"tags{i}"] = frame, result.labels, result.tags
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
