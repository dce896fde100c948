"""RTSP out: dis-run --output rtsp://@:PORT/NAME serves each stream's overlay through GStreamer's RTSP server, read
here by a real RTSP client (GStreamer's rtspsrc, H.264 decoded by avdec_h264, through OpenCV's GStreamer backend) on
127.0.0.1; off loopback the server asks for the token. Needs PyGObject with gst-rtsp-server and an OpenCV with
GStreamer (Debian's python3-gi, gir1.2-gst-rtsp-server-1.0 and python3-opencv in a --system-site-packages venv, as
.ci/run's GStreamer leg); they skip elsewhere, unless $DISSEG_REQUIRE_GSTREAMER=1."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest

from tests.conftest import BIN, closed_port, one_line, run_cmd, wait_for
from tests.runtime.test_streams import _video


def _have_rtsp() -> bool:
    try:
        import gi

        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GstRtspServer  # noqa: F401
    except (ImportError, ValueError):
        return False
    return any(
        line.strip().startswith("GStreamer:") and "YES" in line for line in cv2.getBuildInformation().splitlines()
    )


@pytest.fixture(autouse=True)
def _needs_rtsp():
    if not _have_rtsp():
        if os.environ.get("DISSEG_REQUIRE_GSTREAMER") == "1":
            raise AssertionError("PyGObject with gst-rtsp-server, or an OpenCV with GStreamer, is missing here")
        pytest.skip("needs PyGObject with gst-rtsp-server and an OpenCV with GStreamer")


def _start(model, tmp_path, *args) -> tuple[subprocess.Popen, list[str]]:
    """dis-run on two looping videos serving RTSP; (process, the RTSP URLs it logged) once every mount is up."""
    a, b = (
        _video(tmp_path / "a.avi", 20, seed=1, size=(160, 96)),
        _video(tmp_path / "b.avi", 20, seed=2, size=(160, 96)),
    )
    cmd = [str(BIN / "dis-run"), str(model), "--source", str(a), "--source", str(b), "--loop", "100000", "--no-display"]
    proc = subprocess.Popen([*cmd, *args], stderr=subprocess.PIPE, text=True)
    urls: list[str] = []

    def ready() -> bool:
        line = proc.stderr.readline()
        if line.startswith("RTSP: "):
            urls.append(line.split()[1])
        return len(urls) == 2

    wait_for(ready, proc=proc, what="the RTSP lines")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
    return proc, urls


class Refused(Exception):
    """The RTSP client's error: the server refused it, or the stream failed."""


def read_frames(url: str, count: int, *, user: str | None = None, password: str | None = None) -> list[np.ndarray]:
    """`count` decoded frames of an RTSP URL through a real client (rtspsrc ! rtph264depay ! avdec_h264), with a
    deadline: Refused with GStreamer's message when the server says no."""
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    auth = f" user-id={user} user-pw={password}" if user else ""
    pipe = Gst.parse_launch(
        f"rtspsrc location={url} latency=0 protocols=tcp{auth} ! rtph264depay ! avdec_h264 ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink name=sink sync=false max-buffers=2 drop=true"
    )
    sink, bus = pipe.get_by_name("sink"), pipe.get_bus()
    pipe.set_state(Gst.State.PLAYING)
    frames, deadline = [], time.monotonic() + CLIENT_DEADLINE_S
    try:
        while len(frames) < count:
            error = bus.pop_filtered(Gst.MessageType.ERROR)
            if error is not None:
                raise Refused(error.parse_error()[0].message)
            assert time.monotonic() < deadline, f"{url}: {len(frames)} of {count} frames in {CLIENT_DEADLINE_S} s"
            sample = sink.emit("try-pull-sample", Gst.SECOND // 2)
            if sample is None:
                continue
            caps = sample.get_caps().get_structure(0)
            data = sample.get_buffer().extract_dup(0, sample.get_buffer().get_size())
            frames.append(np.frombuffer(data, np.uint8).reshape(caps.get_value("height"), caps.get_value("width"), 3))
        return frames
    finally:
        pipe.set_state(Gst.State.NULL)


CLIENT_DEADLINE_S = 120  # qemu and loaded CI machines: a bound that only a broken server reaches


def _stop(proc) -> None:
    proc.terminate()
    proc.wait(timeout=60)
    assert proc.returncode == 143


def test_two_streams_are_served_over_rtsp_with_their_overlay(tiny_onnx, tmp_path):
    from disseg.runtime.sinks import read_time_stamp

    port = closed_port()
    proc, urls = _start(tiny_onnx, tmp_path, "--output", f"rtsp://@:{port}/cam", "--stamp-time")
    try:
        assert urls == [f"rtsp://127.0.0.1:{port}/cam.s0", f"rtsp://127.0.0.1:{port}/cam.s1"]
        for url in urls:
            frames = read_frames(url, 30)
            assert all(f.shape == (96, 160, 3) for f in frames)
            now_ms = int(time.time() * 1000) & 0xFFFFFFFF
            ages = [(now_ms - read_time_stamp(f)) & 0xFFFFFFFF for f in frames[-5:]]
            assert all(0 <= age < 60_000 for age in ages), ages  # the overlay carries this run's capture times
    finally:
        _stop(proc)


def test_off_loopback_rtsp_asks_for_the_token(tiny_onnx, tmp_path):
    port = closed_port()
    out = f"rtsp://@0.0.0.0:{port}/cam"
    proc = run_cmd("dis-run", str(tiny_onnx), "--video", str(_video(tmp_path / "a.avi", 2)), "--output", out)
    one_line(proc, 2, f"--output {out}", "--serve-token")
    proc, urls = _start(tiny_onnx, tmp_path, "--output", out, "--serve-token", "t0k")
    try:
        assert urls[0] == f"rtsp://disseg:***@0.0.0.0:{port}/cam.s0"
        local = f"rtsp://127.0.0.1:{port}/cam.s0"
        for auth in ({}, {"user": "disseg", "password": "nope"}):
            with pytest.raises(Refused, match="(?i)unauthorized|not authorized"):
                read_frames(local, 1, **auth)
        assert len(read_frames(local, 30, user="disseg", password="t0k")) == 30
    finally:
        _stop(proc)


@pytest.mark.parametrize(
    "given, words",
    [
        ("rtsp://@:99999/cam", "expected rtsp://@:8554/NAME"),
        ("rtsp://cam.local:8554/x", "expected rtsp://@:8554/NAME"),
        ("rtsp://@:8554/a/b", "expected rtsp://@:8554/NAME"),
    ],
)
def test_bad_rtsp_outputs_are_one_line(tiny_onnx, tmp_path, given, words):
    proc = run_cmd("dis-run", str(tiny_onnx), "--video", str(_video(tmp_path / "a.avi", 2)), "--output", given)
    one_line(proc, 2, words)


def test_a_taken_port_is_one_line(tiny_onnx, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cmd("dis-run", str(tiny_onnx), "--video", str(_video(tmp_path / "a.avi", 2)), "--output",
                       f"rtsp://@127.0.0.1:{port}/cam")  # fmt: skip
    assert proc.returncode == 2 and re.search(r"cannot listen there", proc.stderr), proc.stderr
