"""Several sources through libdisseg: dis_run_cpp takes dis-run's --source/--streams, batches the streams per round,
writes per-stream outputs under the same naming rule and stats with the same keys, and its labels per stream equal
the Python runtime's; the C ABI's batch call equals its one-frame call."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from disseg.runtime.cabi import CSegmenter
from tests.conftest import SECRET, assert_stats_keys, one_line, run_cmd
from tests.runtime.test_streams import _batched_model, _images, _masks, _video


def _run_cpp(build, *args, timeout=300):
    return subprocess.run(
        [str(build / "dis_run_cpp"), *map(str, args)], check=False, capture_output=True, text=True, timeout=timeout
    )


def _both(cpp_build, model, tmp_path, *args):
    """dis_run_cpp and dis-run on the same sources into masks and stats; their stats files."""
    cpp = _run_cpp(cpp_build, model, *args, "--masks", tmp_path / "cpp", "--stats", tmp_path / "cpp.json")
    py = run_cmd("dis-run", str(model), *map(str, args), "--masks", str(tmp_path / "py"), "--stats",
                 str(tmp_path / "py.json"))  # fmt: skip
    assert cpp.returncode == 0 and py.returncode == 0, cpp.stderr + py.stderr
    return json.loads((tmp_path / "cpp.json").read_text()), json.loads((tmp_path / "py.json").read_text())


def _same_masks(tmp_path, count):
    for i in range(count):
        cpp, py = _masks(tmp_path / "cpp" / f"s{i}"), _masks(tmp_path / "py" / f"s{i}")
        assert cpp.keys() == py.keys() and len(cpp) > 0, i
        for name in cpp:
            assert np.array_equal(cpp[name], py[name]), (i, name)


def test_streams_per_stream_outputs_and_stats_equal_dis_run(cpp_build, tiny_onnx, tmp_path):
    a, b = _video(tmp_path / "a.avi", 12, seed=1), _video(tmp_path / "b.avi", 5, seed=2)
    images = _images(tmp_path / "imgs", 3, seed=3)
    streams = tmp_path / "cams.txt"
    streams.write_text(f"# the yard\n{a}\n\n{b}\n")
    cpp, py = _both(cpp_build, tiny_onnx, tmp_path, "--streams", streams, "--source", images)
    assert_stats_keys(cpp)
    assert sorted(cpp) == sorted(py) and sorted(cpp["streams"][0]) == sorted(py["streams"][0])
    # --source URIs first, then the --streams file's (README "Many cameras")
    assert [s["frames"] for s in cpp["streams"]] == [s["frames"] for s in py["streams"]] == [3, 12, 5]
    assert [s["source"] for s in cpp["streams"]] == [s["source"] for s in py["streams"]]
    assert cpp["batches"] == py["batches"] == {"1": 20}
    _same_masks(tmp_path, 3)


def test_batched_streams_equal_python_on_a_dynamic_batch_model(cpp_build, tiny_run, tmp_path):
    model = _batched_model(tiny_run, tmp_path)
    sources = [_video(tmp_path / "a.avi", 9, seed=1), _video(tmp_path / "b.avi", 6, seed=4)]
    sources.append(_images(tmp_path / "imgs", 4, seed=5))
    cpp, py = _both(cpp_build, model, tmp_path, *[a for s in sources for a in ("--source", s)])
    assert cpp["batches"] == py["batches"] == {"1": 3, "2": 2, "3": 4}
    _same_masks(tmp_path, 3)


def test_per_stream_video_names(cpp_build, tiny_onnx, tmp_path):
    a, b = _video(tmp_path / "a.avi", 4, seed=1), _video(tmp_path / "b.avi", 3, seed=2)
    proc = _run_cpp(cpp_build, tiny_onnx, "--source", a, "--video", b, "--output", tmp_path / "out.avi", "--no-display")
    assert proc.returncode == 0, proc.stderr
    assert "7 frames from 2 streams" in proc.stdout
    assert (tmp_path / "out.s0.avi").is_file() and (tmp_path / "out.s1.avi").is_file()


def test_a_bad_uri_is_one_line_with_the_accepted_forms(cpp_build, tiny_onnx, tmp_path):
    proc = _run_cpp(cpp_build, tiny_onnx, "--source", f"ftp://admin:{SECRET}@cam/x", "--stats", tmp_path / "s.json")
    one_line(proc, 2, "accepted: a camera (0, v4l2:///dev/video0), csi://0", "admin:***@cam")
    assert SECRET not in proc.stderr + proc.stdout


def test_c_abi_batch_equals_one_frame_calls_and_names_its_version(cpp_build, tiny_onnx):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, c), dtype=np.uint8) for h, w, c in ((64, 64, 3), (40, 90, 4), (100, 50, 3))]
    frames.append(np.ascontiguousarray(rng.integers(0, 256, (30, 30), dtype=np.uint8)))
    with CSegmenter(cpp_build, tiny_onnx) as seg:
        assert seg.version == "0.1.0"
        batched = seg.segment_batch(frames)
        for frame, (labels, tags) in zip(frames, batched):
            one_labels, one_tags = seg.segment(frame)
            assert labels.shape == frame.shape[:2] and np.array_equal(labels, one_labels)
            assert np.array_equal(tags, one_tags)
        with pytest.raises(Exception, match="1, 3 or 4 channels"):
            seg.segment_batch([frames[0], rng.integers(0, 256, (8, 8, 2), dtype=np.uint8)])
