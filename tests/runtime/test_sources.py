import threading
import time

import cv2
import numpy as np
import pytest

from disseg.runtime.errors import SourceError
from disseg.runtime.sources import ImageSource, LiveSource, csi_pipeline, open_source


def _video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (32, 24))
    for i in range(frames):
        writer.write(np.full((24, 32, 3), i, np.uint8))
    writer.release()
    return path


def test_a_dropped_stream_is_reconnected_and_counted(tmp_path):
    # A file opened as a "stream" ends like a dropped connection; the reader reopens it and counts that.
    video = _video(tmp_path / "s.mp4", 5)
    source = LiveSource(str(video), description="test stream", max_reconnects=3)
    got = []
    for frame in source:
        got.append(frame)
        if source.reconnects >= 2 and len(got) >= 3:
            break
    source.close()
    assert source.reconnects >= 2
    assert all(b.index > a.index for a, b in zip(got, got[1:]))  # newest-only: indices only move forward


def test_live_reader_keeps_only_the_newest_frame(tmp_path):
    video = _video(tmp_path / "s.mp4", 60)
    source = LiveSource(str(video), description="test stream", max_reconnects=0)
    first = next(iter(source))
    # A slow consumer: it waits until the reader has read the whole stream (and given up on reconnecting),
    # which on a loaded machine may take a while; all that time the reader replaced the pending frame.
    deadline = time.monotonic() + 30
    while not source._ended and time.monotonic() < deadline:
        threading.Event().wait(0.02)
    later = [f.index for f in source]
    source.close()
    # one frame was pending, the last the reader read (the opening probe read takes one): the rest were dropped,
    # not queued
    assert len(later) == 1 and later[0] >= 57 and later[0] - first.index > 1


def test_gives_up_after_max_reconnects(tmp_path):
    video = _video(tmp_path / "s.mp4", 2)
    source = LiveSource(str(video), description="test stream", max_reconnects=0)
    frames = list(source)  # ends once reading fails and no reconnect is allowed
    source.close()
    assert 1 <= len(frames) <= 2


def test_glob_and_sorted_order(tmp_path):
    for name in ("b.png", "a.png", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
    assert [f.name for f in ImageSource(str(tmp_path))] == ["a", "b", "c"]
    assert [f.name for f in ImageSource(str(tmp_path / "*.png"))] == ["a", "b"]
    with pytest.raises(SourceError, match="no images"):
        ImageSource(str(tmp_path / "*.bmp"))


def test_csi_pipeline_names_the_sensor():
    pipeline = csi_pipeline(1, width=640, height=480, fps=15)
    assert "nvarguscamerasrc sensor-id=1" in pipeline and "width=640" in pipeline and pipeline.endswith("max-buffers=1")
    with pytest.raises(Exception, match="exactly one"):
        open_source(camera=0, video="x.mp4")


def test_a_gstreamer_pipeline_is_live_or_a_file_from_what_it_says():
    from disseg.runtime.sources import gst_is_live

    sink = " ! videoconvert ! appsink"
    for live in (
        "v4l2src device=/dev/video0",
        "nvarguscamerasrc sensor-id=0",
        'rtspsrc location="rtsp://cam/live" ! decodebin',
        "videotestsrc is-live=true",
        "videotestsrc IS-LIVE=1",
        "uridecodebin uri=rtsp://cam/live",
        "udpsrc port=5000 ! application/x-rtp ! rtph264depay ! avdec_h264",
    ):
        assert gst_is_live(live + sink), live
    for file in (
        "filesrc location=a.mp4 ! qtdemux ! h264parse ! nvv4l2decoder",
        "videotestsrc num-buffers=20",
        "videotestsrc is-live=false",
        "uridecodebin uri=file:///data/a.mp4",
        "multifilesrc location=img%05d.jpg ! jpegdec",
    ):
        assert not gst_is_live(file + sink), file
