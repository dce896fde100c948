"""Scene tags in the C++ runtime: the C ABI and dis_run_cpp give the Python runtime's labels for the same tags, and
refuse what the Python runtime refuses."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image

from disseg.runtime.cabi import CSegmenter
from disseg.runtime.errors import BadInput
from disseg.runtime.segmenter import Segmenter
from tests.conftest import BIN, one_line
from tests.cpp.test_cpp_runtime import FRAMES


def test_c_abi_takes_tags_as_numbers_and_names(cpp_build, scene_tags_model):
    with (
        Segmenter(scene_tags_model, backend="onnxruntime", threads=1) as py,
        CSegmenter(cpp_build, scene_tags_model, backend="onnxruntime", threads=1) as cpp,
    ):
        k = len(py.class_names)
        numbers = np.zeros(k, np.float32)
        numbers[[2, 5]], numbers[6] = 1, 0.5
        names = f"{py.class_names[1]},{py.class_names[3]}"
        for given in (numbers, names, None):
            cpp.set_scene_tags(given)
            py.scene_tags = given
            for i, frame in enumerate(FRAMES):
                expected = py(frame)
                labels, tags = cpp.segment(frame)
                assert np.array_equal(labels, expected.labels), (given, i)
                np.testing.assert_allclose(tags, expected.tags, rtol=1e-5, atol=1e-6)
                if given is numbers:
                    assert set(np.unique(labels)) <= {2, 5, 6}
        cpp.set_scene_tags(numbers)  # the batch call uses them too
        batch = cpp.segment_batch(FRAMES[:3])
        assert all(np.array_equal(b[0], cpp.segment(f)[0]) for b, f in zip(batch, FRAMES[:3]))


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("ember,boat", ["unknown class 'boat'", "the model's classes are: background, ember"]),
        ([1.0, 0.0], ["expected 8 values in 0..1", "got 2 value(s)"]),
        ([1.5] * 8, ["outside 0..1"]),
    ],
)
def test_c_abi_bad_tags_are_bad_input(cpp_build, scene_tags_model, given, words):
    with CSegmenter(cpp_build, scene_tags_model) as cpp:
        with pytest.raises(BadInput) as err:
            cpp.set_scene_tags(given)
        for word in words:
            assert word in str(err.value)


def test_c_abi_refuses_tags_for_a_model_without_them(cpp_build, tiny_onnx):
    with CSegmenter(cpp_build, tiny_onnx) as cpp:
        with pytest.raises(BadInput, match="exported without scene tags"):
            cpp.set_scene_tags("ember")
        cpp.set_scene_tags(None)  # clearing is always fine


def test_dis_run_cpp_masks_equal_dis_run_per_stream(cpp_build, scene_tags_model, tmp_path):
    names = Segmenter(scene_tags_model).class_names
    folder = tmp_path / "in"
    folder.mkdir()
    for i, frame in enumerate(FRAMES[:4]):
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    tags = [f"{names[2]},{names[4]}", "-"]
    common = ["--source", folder, "--source", folder, "--scene-tags", tags[0], "--scene-tags", tags[1], "--no-display"]
    cpp = subprocess.run(
        [cpp_build / "dis_run_cpp", scene_tags_model, *common, "--masks", tmp_path / "cpp"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert cpp.returncode == 0, cpp.stderr
    py = subprocess.run(
        [BIN / "dis-run", scene_tags_model, *common, "--masks", tmp_path / "py"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert py.returncode == 0, py.stderr
    for s in ("s0", "s1"):
        written = sorted((tmp_path / "cpp" / s).glob("*.png"))
        assert len(written) == 4
        for path in written:
            a, b = np.asarray(Image.open(path)), np.asarray(Image.open(tmp_path / "py" / s / path.name))
            assert np.array_equal(a, b), (s, path.name)
            if s == "s0":
                assert set(np.unique(a)) <= {0, 2, 4}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--scene-tags", "boat"], ["unknown class 'boat'"]),
        (["--scene-tags", "ember", "--scene-tags", "leaf"], ["2 scene-tag sets for 1 source(s)"]),
    ],
)
def test_dis_run_cpp_bad_tags_are_one_line(cpp_build, scene_tags_model, tmp_path, args, words):
    cv2.imwrite(str(tmp_path / "f.png"), FRAMES[0])
    proc = subprocess.run(
        [cpp_build / "dis_run_cpp", scene_tags_model, "--images", tmp_path, "--masks", tmp_path / "m", "--no-display",
         *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    one_line(proc, 2, *words)
    assert not list(tmp_path.glob("m/**/*.png"))
