"""Imported foreign models (dis-import) in the C++ library and dis_run_cpp: the same labels as the Python runtime."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image

from disseg.runtime.cabi import CSegmenter
from disseg.runtime.segmenter import Segmenter
from tests.conftest import run_cmd

pytest.importorskip("torch")  # the foreign models are exported here with torch.onnx


def labels_seen_in_both(cpp_build, model, size: tuple[int, int] | None = None, seed: int = 21) -> set:
    """The C ABI's labels equal the Python runtime's on generated frames (of the model's size unless `size`): the
    classes seen."""
    from disseg.export.foreign import parity_frames

    seen = set()
    with Segmenter(model, backend="onnxruntime") as py, CSegmenter(cpp_build, model, backend="onnxruntime") as cpp:
        h, w = size or (py.info.input_height, py.info.input_width)
        for frame in parity_frames(h, w, 3, seed=seed):
            labels, _ = cpp.segment(frame)
            assert np.array_equal(labels, py(frame).labels)
            seen |= set(np.unique(labels).tolist())
    return seen


@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_large", "eighth", "dynamic"])
def test_cpp_labels_equal_python_for_imported_models(cpp_build, foreign_models, tmp_path, name):
    model = tmp_path / f"{name}.onnx"
    size = ["--input-size", "48x64"] if name == "dynamic" else []
    run_cmd("dis-import", str(foreign_models[name]), "-o", str(model), *size, check=True)
    assert len(labels_seen_in_both(cpp_build, model)) >= 2


def test_dis_run_cpp_writes_the_masks_dis_run_writes(cpp_build, foreign_models, tmp_path):
    import cv2

    from disseg.export.foreign import parity_frames

    model = tmp_path / "fcn.onnx"
    run_cmd("dis-import", str(foreign_models["fcn_resnet50"]), "-o", str(model), check=True)
    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(parity_frames(120, 160, 3, seed=8)):  # frames of another size: both runtimes resize
        cv2.imwrite(str(images / f"{i}.png"), frame)
    run_cmd("dis-run", str(model), "--images", str(images), "--masks", str(tmp_path / "py"), "--no-display", check=True)
    cpp = subprocess.run(
        [str(cpp_build / "dis_run_cpp"), str(model), "--images", str(images), "--masks", str(tmp_path / "cpp"),
         "--no-display"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert cpp.returncode == 0, cpp.stderr
    for i in range(3):
        a, b = (np.array(Image.open(tmp_path / side / f"{i}.png")) for side in ("py", "cpp"))  # palette indices
        assert a.shape == (120, 160) and np.mean(a == b) >= 0.999


@pytest.mark.parametrize("name", ["smp-Unet-resnet34", "smp-DeepLabV3Plus-mobilenet_v2", "hf-segformer"])
def test_cpp_labels_equal_python_for_family_models(cpp_build, family_models, tmp_path, name):
    """segmentation-models-pytorch and transformers' SegFormer, imported, through the C ABI (disseg_segment)."""
    model = tmp_path / f"{name}.onnx"
    run_cmd("dis-import", str(family_models[name][1]), "-o", str(model), check=True)
    assert len(labels_seen_in_both(cpp_build, model, (80, 120), seed=23)) >= 2  # another size: both resize alike


def test_cpp_labels_equal_python_for_ultralytics(cpp_build, ultralytics_model, tmp_path):
    """Ultralytics' own ONNX export (an ArgMax inside: a label map), imported, through the C ABI."""
    model = tmp_path / "yolo.onnx"
    run_cmd("dis-import", str(ultralytics_model[1]), "-o", str(model), check=True)
    assert len(labels_seen_in_both(cpp_build, model, seed=23)) >= 2
    for size in [(96, 160), (50, 120), (37, 61)]:  # letterboxed in both runtimes alike
        assert len(labels_seen_in_both(cpp_build, model, size, seed=23)) >= 2
