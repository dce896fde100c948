"""The runtime on another architecture gives what it gives on x86_64: labels equal, tags within float noise.
$DISSEG_REFERENCE names an npz written by tests/cross_arch_reference.py on the reference machine (CI's aarch64
leg sets it; elsewhere this skips)."""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from disseg.runtime import Segmenter

REFERENCE = os.environ.get("DISSEG_REFERENCE")


@pytest.mark.skipif(not REFERENCE, reason="set DISSEG_REFERENCE to an npz from tests/cross_arch_reference.py")
def test_outputs_equal_the_reference_machine(tiny_onnx):
    ref = np.load(REFERENCE)
    count = sum(1 for k in ref.files if k.startswith("frame"))
    assert count == 5
    worst = 0.0
    with Segmenter(tiny_onnx, backend="onnxruntime") as seg:
        for i in range(count):
            result = seg(ref[f"frame{i}"])
            assert np.array_equal(result.labels, ref[f"labels{i}"]), f"frame {i}: labels differ on {platform.machine()}"
            worst = max(worst, float(np.abs(result.tags - ref[f"tags{i}"]).max()))
    assert worst < 1e-4, worst
    print(f"{platform.machine()} vs {ref['machine']}: labels equal on {count} frames, tags max |diff| {worst:.2e}")
