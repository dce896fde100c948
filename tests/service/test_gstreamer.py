"""GStreamer pipelines in both runtimes: a pipeline that is a file ends at its end with every frame and no reconnect,
--loop plays it again, a GStreamer-decoded file loses no frame, a live one reconnects when it ends and counts what it
drops, and gst+live:/gst+file: override the guess. dis_run_cpp links Debian's OpenCV, which has GStreamer; dis-run
needs an OpenCV with it too (pip's wheels have none: JetPack's, or Debian's python3-opencv in a venv made with
--system-site-packages, as .ci/run's GStreamer leg does). Where the runtime's OpenCV has none, its cases skip, unless
$DISSEG_REQUIRE_GSTREAMER=1."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import BIN
from tests.runtime.test_streams import _video

SIZE = "video/x-raw,width=96,height=72,framerate={fps}/1 ! videoconvert ! video/x-raw,format=BGR ! appsink"


def _pipeline(n: int, *, live: bool = False, fps: int = 30) -> str:
    return f"videotestsrc {'is-live=true ' if live else ''}num-buffers={n} pattern=ball ! " + SIZE.format(fps=fps)


@pytest.fixture(params=["python", "cpp"])
def runtime(request):
    """The command under test: dis-run or dis_run_cpp."""
    if request.param == "python":
        return BIN / "dis-run"
    return request.getfixturevalue("cpp_build") / "dis_run_cpp"


def _run(exe, model, tmp_path, *args, timeout=120):
    masks, stats = tmp_path / "m", tmp_path / "s.json"
    cmd = [str(exe), str(model), *map(str, args), "--masks", str(masks), "--stats", str(stats)]
    proc = subprocess.run([*cmd, "--no-display"], capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 2 and "needs OpenCV built with GStreamer" in proc.stderr:
        if os.environ.get("DISSEG_REQUIRE_GSTREAMER") == "1":
            raise AssertionError(f"{exe.name}: {proc.stderr}")
        pytest.skip(f"{exe.name}'s OpenCV has no GStreamer")
    assert proc.returncode == 0, proc.stderr
    return json.loads(stats.read_text()), sorted(p.name for p in masks.rglob("*.png")), proc.stderr


def test_a_finite_pipeline_ends_with_exactly_its_frames(runtime, tiny_onnx, tmp_path):
    stats, masks, err = _run(runtime, tiny_onnx, tmp_path, "--gst", _pipeline(25))
    assert stats["frames"] == 25 and len(masks) == 25 and stats["reconnects"] == 0 and stats["skipped"] == 0
    assert "a file" in err and "reconnecting" not in err


def test_loop_plays_a_finite_pipeline_again(runtime, tiny_onnx, tmp_path):
    stats, masks, _ = _run(runtime, tiny_onnx, tmp_path, "--source", "gst:" + _pipeline(10), "--loop", "3")
    assert stats["frames"] == 30 and masks == [f"{i:06d}.png" for i in range(30)] and stats["reconnects"] == 0


def test_a_gstreamer_decoded_file_loses_no_frame(runtime, tiny_onnx, tmp_path):
    clip = _video(tmp_path / "clip.avi", 37, seed=3)
    decode = f"filesrc location={clip} ! avidemux ! jpegdec ! videoconvert ! video/x-raw,format=BGR ! appsink"
    stats, masks, err = _run(runtime, tiny_onnx, tmp_path, "--gst", decode)
    assert stats["frames"] == 37 and len(masks) == 37 and stats["skipped"] == 0 and "reconnecting" not in err


def test_a_live_pipeline_reconnects_and_counts_what_it_drops(runtime, tiny_onnx, tmp_path):
    # 300 frames a second, 20 a connection, against rounds of four streams at a fixed batch of 1: live frames are
    # replaced by newer ones before inference takes them, and each is counted. A live source that reconnects runs
    # until stopped: --max-frames ends it here.
    videos = [_video(tmp_path / f"v{i}.avi", 40, seed=i) for i in range(3)]
    live = "gst:" + _pipeline(20, live=True, fps=300)
    args = ["--source", live, *[a for v in videos for a in ("--source", v)], "--max-frames", "40"]
    stats, _, err = _run(runtime, tiny_onnx, tmp_path, *args)
    stream = stats["streams"][0]
    assert stream["reconnects"] >= 1 and err.count("GStreamer pipeline dropped; reconnecting") == stream["reconnects"]
    # the reader handed on 40 frames: each was segmented or replaced (counted), and the source skipped more before
    assert stream["frames"] < 40 <= stream["frames"] + stream["skipped"], stream
    assert [s["frames"] for s in stats["streams"][1:]] == [40, 40, 40]


def test_the_guess_is_overridden(runtime, tiny_onnx, tmp_path):
    said_live = "gst+live:" + _pipeline(10)
    stats, _, err = _run(runtime, tiny_onnx, tmp_path, "--source", said_live, "--max-frames", 15)
    assert stats["reconnects"] >= 1 and "dropped; reconnecting" in err  # its end: a drop
    # live: a frame read while inference was busy is replaced by the next (counted), on a loaded machine too
    assert stats["frames"] <= 15 <= stats["frames"] + stats["skipped"], stats
    said_file = "gst+file:" + _pipeline(10, live=True)
    stats, _, err = _run(runtime, tiny_onnx, tmp_path / "file", "--source", said_file)
    assert stats["frames"] == 10 and stats["reconnects"] == 0  # said a file: is-live=true notwithstanding
