"""tests/test_faults.py's twin for the C++ runtime: dis_run_cpp on a full disk, a read-only one, stop signals, names
that differ by extension or case, options out of sense, a model whose graph disagrees with its metadata and a video
cut short, each held to what the Python dis-run does."""

from __future__ import annotations

import json
import signal
import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image

from disseg.runtime.cabi import CSegmenter
from disseg.runtime.errors import ModelFileError
from tests.conftest import assert_stats_keys, one_line, run_cmd
from tests.test_faults import (
    _fewer_classes,
    _frames,
    _temp_files,
    _video,
    check_stopped_cleanly,
    check_truncation_reported,
    labels_only_lying,
)


def _run_cpp(build, *args, timeout=300):
    return subprocess.run(
        [str(build / "dis_run_cpp"), *map(str, args)], check=False, capture_output=True, text=True, timeout=timeout
    )


def test_full_disk_leaves_the_existing_video_untouched(cpp_build, tiny_onnx, tmp_path, small_disk):
    disk = small_disk("200k")
    clip = _video(tmp_path / "in.avi")
    first = _run_cpp(cpp_build, tiny_onnx, "--video", clip, "--output", disk / "out.mp4", "--no-display")
    assert first.returncode == 0, first.stderr
    good = (disk / "out.mp4").read_bytes()
    proc = _run_cpp(cpp_build, tiny_onnx, "--video", clip, "--loop", 50, "--output", disk / "out.mp4",
                    "--no-display", "--stats", tmp_path / "s.json")  # fmt: skip
    one_line(proc, 1, str(disk / "out.mp4"), "ENOSPC", "nothing was replaced")
    assert (disk / "out.mp4").read_bytes() == good and _temp_files(disk) == []
    summary = json.loads((tmp_path / "s.json").read_text())
    assert_stats_keys(summary)
    assert summary["frames"] > 40


def test_full_disk_for_masks_keeps_the_video_and_every_mask_whole(cpp_build, tiny_onnx, tmp_path, small_disk):
    disk = small_disk("128k")
    clip = _video(tmp_path / "in.avi", frames=200)
    proc = _run_cpp(cpp_build, tiny_onnx, "--video", clip, "--masks", disk / "masks", "--output",
                    tmp_path / "out.avi", "--no-display", "--stats", tmp_path / "s.json")  # fmt: skip
    one_line(proc, 1, "ENOSPC", str(disk / "masks"))
    masks = sorted((disk / "masks").glob("*.png"))
    assert 0 < len(masks) < 200 and _temp_files(disk) == []
    assert all(np.asarray(Image.open(m)).shape == (64, 64) for m in masks)  # palette PNGs, whole
    assert _frames(tmp_path / "out.avi") == len(masks) <= json.loads((tmp_path / "s.json").read_text())["frames"]


@pytest.mark.parametrize("case", ["read-only --output", "--masks is a file", "--stats under a file"])
def test_unusable_outputs_are_refused_before_any_work(cpp_build, tiny_onnx, tmp_path, small_disk, case):
    clip = _video(tmp_path / "in.avi", frames=2)
    (tmp_path / "a-file").write_text("x")
    args = {
        "read-only --output": lambda: ["--output", small_disk(ro=True) / "out.mp4"],
        "--masks is a file": lambda: ["--masks", tmp_path / "a-file"],
        "--stats under a file": lambda: ["--stats", tmp_path / "a-file" / "s.json"],
    }[case]()
    proc = _run_cpp(cpp_build, tiny_onnx, "--video", clip, "--no-display", *args)
    line = one_line(proc, 2, args[0])
    assert ("EROFS" in line) == case.startswith("read-only") and "frames in" not in proc.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_finalize_video_masks_and_stats(cpp_build, tiny_onnx, tmp_path, sig):
    check_stopped_cleanly(cpp_build / "dis_run_cpp", tiny_onnx, tmp_path, sig)


def test_mask_names_are_those_of_dis_run(cpp_build, tiny_onnx, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.jpg", "a.JPG", "a.png", "b.png"):
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    cpp = _run_cpp(cpp_build, tiny_onnx, "--images", folder, "--masks", tmp_path / "cpp", "--no-display")
    py = run_cmd("dis-run", str(tiny_onnx), "--images", str(folder), "--masks", str(tmp_path / "py"), "--no-display")
    assert cpp.returncode == 0 and py.returncode == 0, cpp.stderr + py.stderr
    names = sorted(p.name for p in (tmp_path / "cpp").iterdir())
    assert (
        names
        == sorted(p.name for p in (tmp_path / "py").iterdir())
        == [
            "a.JPG.png",
            "a.jpg-2.png",
            "a.png.png",
            "b.png",
        ]
    )


@pytest.mark.parametrize(
    "args, option",
    [
        (["--alpha", "nan"], "--alpha"),
        (["--alpha", "inf"], "--alpha"),
        (["--threads", "100000"], "--threads"),
        (["--loop", "99999999"], "--loop"),
        (["--camera", "1e30"], "--camera"),
    ],
)
def test_options_out_of_sense_are_one_line(cpp_build, tiny_onnx, tmp_path, args, option):
    proc = _run_cpp(cpp_build, tiny_onnx, "--video", tmp_path / "x.avi", "--no-display", *args)
    one_line(proc, 2, option)


@pytest.mark.parametrize(
    "make, said",
    [(_fewer_classes, "'tags' output has 8 classes, its metadata names 7"),  # an output's shape shows it
     (labels_only_lying, "'labels' output has 8 classes, its metadata names 2")],  # only the argmax behind labels
    ids=["tags", "labels only"],
)  # fmt: skip
def test_a_model_whose_graph_has_more_classes_than_its_metadata_is_refused(cpp_build, tiny_onnx, tmp_path, make, said):
    model = make(tiny_onnx, tmp_path)
    proc = _run_cpp(cpp_build, model, "--video", _video(tmp_path / "in.avi", frames=2), "--stats", tmp_path / "s.json",
                    "--no-display")  # fmt: skip
    one_line(proc, 2, said)
    with pytest.raises(ModelFileError, match=said.split(",")[0]):  # the C ABI refuses it too
        CSegmenter(cpp_build, model)


def test_a_lie_the_graph_hides_stops_at_the_first_frame_that_shows_it(cpp_build, tiny_onnx, tmp_path):
    model = labels_only_lying(tiny_onnx, tmp_path, hidden=True)
    proc = _run_cpp(cpp_build, model, "--video", _video(tmp_path / "in.avi", frames=20), "--masks", tmp_path / "m",
                    "--stats", tmp_path / "s.json", "--no-display")  # fmt: skip
    one_line(proc, 1, "the model produced class", "its metadata names 2 classes")
    assert (tmp_path / "s.json").is_file()


def test_a_video_cut_short_is_reported_in_one_line_and_in_the_stats(cpp_build, tiny_onnx, tmp_path):
    run = lambda video, stats: _run_cpp(cpp_build, tiny_onnx, "--video", video, "--stats", stats, "--no-display")  # noqa: E731
    check_truncation_reported(run, tmp_path)
