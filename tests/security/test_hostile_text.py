"""Odd text where a command takes text, as an unfriendly user types it: Unicode digits, control characters, very long
strings, percent-encoding, NUL; and files that are not the text they should be (/dev/zero, a FIFO, a huge or binary
file). Each is one line and exit 2, from both runtimes where the option exists in both, never a traceback, a hang or
an unbounded read; a message quotes at most 200 characters of what it was given."""

from __future__ import annotations

import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from tests.conftest import BIN, one_line, run_cmd, wait_for

LONG = "x" * 5000
SOURCES = [
    "²",  # a Unicode digit: str.isdigit() says yes, int() says no
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "v4l2:///dev/video²",
    "v4l2:///dev/video" + "9" * 20,
    "csi://¹",
    "csi://" + "1" * 20,
    "12345678901234567890",
    "a\x01b\x1b[2J",
    "%00",
    "file://%2e%2e/%2e%2e/etc",
    "gst:",
    "ünï.mp4",
    LONG,
    LONG + ".png",
    LONG + "/*.png",
    "http://" + LONG,
]


def _cpp(build, *args):
    return subprocess.run([str(build / "dis_run_cpp"), *map(str, args)], capture_output=True, text=True, timeout=120)


def _short(line: str) -> str:
    assert len(line) < 700, f"{len(line)} characters: {line[:300]}"
    return line


@pytest.mark.parametrize("source", SOURCES, ids=range(len(SOURCES)))
def test_odd_sources_are_one_short_line(tiny_onnx, tmp_path, source):
    masks = tmp_path / "out" / "masks"
    proc = run_cmd("dis-run", str(tiny_onnx), "--source", source, "--no-display", "--stats", str(tmp_path / "s.json"),
                   "--masks", str(masks))  # fmt: skip
    _short(one_line(proc, 2))
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "out").exists()  # exit 2 leaves nothing behind


@pytest.mark.parametrize("source", SOURCES, ids=range(len(SOURCES)))
def test_odd_sources_are_one_short_line_in_cpp(cpp_build, tiny_onnx, tmp_path, source):
    proc = _cpp(cpp_build, tiny_onnx, "--source", source, "--no-display", "--stats", tmp_path / "s.json", "--masks",
                tmp_path / "out" / "masks")  # fmt: skip
    _short(one_line(proc, 2))
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "out").exists()  # exit 2 leaves nothing behind


def _not_text(tmp_path, kind: str) -> tuple[str, str]:
    """A path that is not a text file of the kind asked, and a word the one line must hold."""
    if kind == "device":
        return "/dev/zero", "not a regular file"
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)  # no writer: an open() without O_NONBLOCK would wait for ever
        return str(path), "a FIFO"
    if kind == "folder":
        path.mkdir()
        return str(path), "a folder"
    if kind == "huge":
        with open(path, "wb") as f:
            f.truncate(64 << 20)  # sparse: 64 MiB of zeros that take no disk
        return str(path), "more than the"
    if kind == "nul":
        path.write_bytes(b"0\n\0\n")
        return str(path), "NUL"
    path.write_bytes(b"\xff\xfe0\n")
    return str(path), "not UTF-8"


KINDS = ["device", "fifo", "folder", "huge", "nul", "latin1"]


@pytest.mark.parametrize("kind", KINDS)
def test_streams_file_that_is_not_text(tiny_onnx, tmp_path, kind):
    path, word = _not_text(tmp_path, kind)
    proc = run_cmd("dis-run", str(tiny_onnx), "--streams", path, "--no-display", "--stats", str(tmp_path / "s.json"),
                   timeout=60)  # fmt: skip
    _short(one_line(proc, 2, "--streams", word))


@pytest.mark.parametrize("kind", ["device", "fifo", "huge", "nul"])
def test_streams_file_that_is_not_text_in_cpp(cpp_build, tiny_onnx, tmp_path, kind):
    path, word = _not_text(tmp_path, kind)
    proc = _cpp(cpp_build, tiny_onnx, "--streams", path, "--no-display", "--stats", tmp_path / "s.json")
    _short(one_line(proc, 2, "--streams", word))


@pytest.mark.parametrize("kind", KINDS)
def test_scene_tags_file_that_is_not_text(tiny_onnx, tmp_path, kind):
    path, word = _not_text(tmp_path, kind)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    proc = run_cmd("dis-run", str(tiny_onnx), "--images", str(tmp_path / "in"), "--scene-tags-file", path,
                   "--no-display", "--stats", str(tmp_path / "s.json"), timeout=60)  # fmt: skip
    _short(one_line(proc, 2, word))


@pytest.mark.parametrize(
    "classes, word",
    [("99999999999999999999", "expected 1 to 65536"), ("²", "neither a number"), ("0", "expected 1 to 65536"),
     ("/dev/zero", "not a regular file"), (LONG, "neither a number")],
)  # fmt: skip
def test_import_classes_are_checked_before_anything_is_built(foreign_models, tmp_path, classes, word):
    proc = run_cmd("dis-import", str(foreign_models["label_map"]), "-o", str(tmp_path / "m.onnx"), "--classes",
                   classes, timeout=120)  # fmt: skip
    _short(one_line(proc, 2, word))
    assert not (tmp_path / "m.onnx").exists()


def _folder_removed_mid_run(cmd: list, images, masks) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: masks.is_dir() and any(masks.iterdir()), proc=proc, what="the first mask")
    shutil.rmtree(images)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("runtime", ["python", "cpp"])
def test_an_image_folder_deleted_mid_run_is_one_line(  # and a second if --loop cannot reopen it
    request, tiny_onnx, tmp_path, runtime
):
    images, masks = tmp_path / "in", tmp_path / "masks"
    images.mkdir()
    for i in range(300):
        cv2.imwrite(str(images / f"{i:03d}.png"), np.full((16, 16, 3), i % 256, np.uint8))
    exe = BIN / "dis-run" if runtime == "python" else request.getfixturevalue("cpp_build") / "dis_run_cpp"
    cmd = [str(exe), str(tiny_onnx), "--images", str(images), "--loop", "1000", "--masks", str(masks), "--no-display"]
    proc = _folder_removed_mid_run(cmd, images, masks)
    said = [
        x for x in proc.stderr.splitlines() if x.strip() and not x.startswith("tiny.onnx") and "ended after" not in x
    ]
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert 1 <= len(said) <= 2 and "images were removed while running" in said[0], said[:5]


def test_the_summary_names_no_video_that_was_not_written(tiny_onnx, tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    (images / "a.png").write_bytes(b"not a png at all")  # skipped: no frame, so no video
    proc = run_cmd("dis-run", str(tiny_onnx), "--images", str(images), "--output", str(tmp_path / "out.mp4"),
                   "--stats", str(tmp_path / "s.json"), "--no-display")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "out.mp4").exists() and "out.mp4" not in proc.stdout and "s.json" in proc.stdout


@pytest.mark.parametrize("runtime", ["python", "cpp"])
@pytest.mark.parametrize("source", ["camera", "unreachable"])
def test_an_absent_source_is_our_one_line_without_opencv_s_own(request, tiny_onnx, tmp_path, runtime, source):
    from tests.conftest import closed_port

    given = ["--camera", "9"] if source == "camera" else ["--source", f"http://127.0.0.1:{closed_port()}/x.mjpg"]
    exe = BIN / "dis-run" if runtime == "python" else request.getfixturevalue("cpp_build") / "dis_run_cpp"
    proc = subprocess.run([str(exe), str(tiny_onnx), *given, "--no-display", "--stats", str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    one_line(proc, 2, "cannot open it")
    assert "WARN" not in proc.stderr and "GStreamer" not in proc.stderr, proc.stderr  # OpenCV's lines stay out
