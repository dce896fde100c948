"""Many sources in one dis-run: source URIs, batched inference across streams with labels equal to each stream run
alone, per-stream outputs and stats, streams that end or drop while others run, and the live web view (a real
headless Chromium, a real HTTP client, the token)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import BIN, SECRET, assert_stats_keys, closed_port, one_line, run_cmd, wait_for


def _video(path, frames, seed=0, size=(80, 64)):
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for i in range(frames):
        frame = (rng.random((size[1], size[0], 3)) * 80).astype(np.uint8)
        cv2.circle(frame, (5 + 3 * i, size[1] // 2), 14, (0, 170 + seed * 20, 40), -1)
        writer.write(frame)
    writer.release()
    return path


def _images(folder, count, seed):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        cv2.imwrite(str(folder / f"img{i}.png"), rng.integers(0, 256, (50 + i, 70, 3), dtype=np.uint8))
    return folder


def _masks(folder):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_source_uris_name_every_kind(tmp_path):
    from disseg.runtime.errors import BadInput
    from disseg.runtime.sources import parse_uri

    clip = _video(tmp_path / "a.avi", 2)
    assert parse_uri("0") == {"camera": 0} and parse_uri("v4l2:///dev/video3") == {"camera": 3}
    assert parse_uri("csi://1") == {"csi": 1}
    for prefix, kind in (("gst:", "auto"), ("gst+live:", "live"), ("gst+file:", "file")):
        assert parse_uri(f"{prefix}videotestsrc ! appsink") == {"gst": "videotestsrc ! appsink", "gst_kind": kind}
    assert parse_uri("rtsp://cam/live") == {"rtsp": "rtsp://cam/live"}
    assert parse_uri(str(clip)) == {"video": str(clip)} and parse_uri(f"file://{clip}") == {"video": str(clip)}
    assert parse_uri(str(tmp_path)) == {"images": str(tmp_path)} and parse_uri("x/*.jpg") == {"images": "x/*.jpg"}
    for bad in ("v4l2://camera", "csi://left", "ftp://host/x", "gst:", str(tmp_path / "missing.avi")):
        with pytest.raises(BadInput, match="accepted: a camera"):
            parse_uri(bad)


def test_a_bad_uri_is_one_line_with_the_accepted_forms_and_no_credentials(tiny_onnx, tmp_path):
    proc = run_cmd(
        "dis-run", str(tiny_onnx), "--source", f"ftp://admin:{SECRET}@cam/live", "--stats", str(tmp_path / "s")
    )
    line = one_line(proc, 2, "accepted: a camera (0, v4l2:///dev/video0), csi://0, rtsp://", "admin:***@cam")
    assert SECRET not in proc.stderr + proc.stdout and line


def test_streams_file_outputs_per_stream_and_stats(tiny_onnx, tmp_path):
    a, b = _video(tmp_path / "a.avi", 12, seed=1), _video(tmp_path / "b.avi", 5, seed=2)
    images = _images(tmp_path / "imgs", 3, seed=3)
    streams = tmp_path / "cams.txt"
    streams.write_text(f"# the yard\n{a}\n\n  {b}\n# the door\n{images}\n")
    proc = run_cmd(
        "dis-run", str(tiny_onnx), "--streams", str(streams), "--output", str(tmp_path / "out.avi"),
        "--masks", str(tmp_path / "m"), "--stats", str(tmp_path / "s.json"), "--no-display",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "20 frames from 3 streams" in proc.stdout and "fixed batch of 1" in proc.stderr  # said once, in the log
    summary = json.loads((tmp_path / "s.json").read_text())
    assert_stats_keys(summary)
    # a stream that ends (b after 5 frames, the folder after 3) leaves the others running
    assert [s["frames"] for s in summary["streams"]] == [12, 5, 3]
    assert [s["source"] for s in summary["streams"]] == [f"video {a}", f"video {b}", f"images {images}"]
    assert summary["batches"] == {"1": 20}  # the test model has a fixed batch of 1: what actually ran
    for i, frames in enumerate((12, 5)):
        cap = cv2.VideoCapture(str(tmp_path / f"out.s{i}.avi"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["s0", "s1", "s2"]
    assert sorted(_masks(tmp_path / "m" / "s2")) == ["img0.png", "img1.png", "img2.png"]


def _batched_model(tiny_run, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "dyn.onnx"
    run_cmd("dis-export", str(tiny_run / "best.pt"), "--dynamic-batch", "--iters", "2", "-o", str(out), check=True)
    return out


def test_labels_per_stream_equal_each_stream_run_alone(tiny_run, tmp_path):
    model = _batched_model(tiny_run, tmp_path)
    sources = [_video(tmp_path / "a.avi", 9, seed=1), _video(tmp_path / "b.avi", 6, seed=4)]
    sources.append(_images(tmp_path / "imgs", 4, seed=5))
    args = [a for s in sources for a in ("--source", str(s))]
    proc = run_cmd("dis-run", str(model), *args, "--masks", str(tmp_path / "all"), "--stats", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stderr
    batches = json.loads((tmp_path / "s.json").read_text())["batches"]
    assert batches == {"1": 3, "2": 2, "3": 4}  # 4 rounds of 3, then 2 of 2 (a and b), 3 of a alone: batched
    for i, source in enumerate(sources):
        alone = run_cmd("dis-run", str(model), "--source", str(source), "--masks", str(tmp_path / f"alone{i}"))
        assert alone.returncode == 0, alone.stderr
        together, single = _masks(tmp_path / "all" / f"s{i}"), _masks(tmp_path / f"alone{i}")
        assert together.keys() == single.keys() and len(single) > 0
        for name in single:
            assert np.array_equal(together[name], single[name]), (i, name)


def test_a_stream_that_drops_reconnects_while_the_others_run(tiny_onnx, tmp_path, http_stream):
    clip = _video(tmp_path / "a.avi", 30, seed=1)
    proc = run_cmd(
        "dis-run", str(tiny_onnx), "--source", http_stream, "--source", str(clip), "--max-reconnects", "2",
        "--stats", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    live, file = json.loads((tmp_path / "s.json").read_text())["streams"]
    assert file["frames"] == 30 and file["reconnects"] == 0
    assert live["reconnects"] == 2 and 0 < live["frames"] <= 10  # served once, then gone: reconnected, counted
    assert SECRET not in proc.stderr and SECRET not in live["source"] and "admin:***@" in live["source"]


# --- the live web view --------------------------------------------------------------------------------------------


def _serve(model, tmp_path, *args):
    """dis-run on two looping streams with --serve on a free loopback port; (process, base URL) once it listens."""
    a, b = _video(tmp_path / "a.avi", 20, seed=1), _video(tmp_path / "b.avi", 20, seed=2)
    cmd = [str(BIN / "dis-run"), str(model), "--source", str(a), "--source", str(b), "--loop", "100000"]
    proc = subprocess.Popen([*cmd, "--serve", "127.0.0.1:0", *args], stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    wait_for(lambda: seen.append(proc.stderr.readline()) or "serving the live view at" in seen[-1], proc=proc,
             what="the serving line")  # fmt: skip
    return proc, re.search(r"http://\S+?/", seen[-1]).group(0)


def _stop(proc):
    proc.terminate()
    proc.communicate(timeout=60)
    assert proc.returncode == 143


def _mjpeg_frames(url: str, count: int, headers: dict | None = None) -> list[np.ndarray]:
    """Read `count` JPEG parts of an MJPEG stream and decode them with OpenCV."""
    frames, buffer = [], b""
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        while len(frames) < count and (chunk := response.read1(65536)):  # the stream may end early: fewer frames
            buffer += chunk
            while len(frames) < count and (start := buffer.find(b"\xff\xd8")) >= 0:
                if (end := buffer.find(b"\xff\xd9", start)) < 0:
                    break
                image = cv2.imdecode(np.frombuffer(buffer[start : end + 2], np.uint8), cv2.IMREAD_COLOR)
                assert image is not None and image.shape == (64, 80, 3)
                frames.append(image)
                buffer = buffer[end + 2 :]
    return frames


def test_web_view_streams_mjpeg_stats_and_needs_its_token(tiny_onnx, tmp_path):
    proc, url = _serve(tiny_onnx, tmp_path, "--serve-token", "t0k")
    try:
        for path in ("", "stats.json", "streams/0.mjpg", "streams/1.jpg"):
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(url + path, timeout=10)
            assert denied.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as wrong:
            urllib.request.urlopen(url + "stats.json?token=nope", timeout=10)
        assert wrong.value.code == 401
        for i in range(2):  # each stream, by header and by query
            assert len(_mjpeg_frames(f"{url}streams/{i}.mjpg", 10, {"Authorization": "Bearer t0k"})) == 10
            assert len(_mjpeg_frames(f"{url}streams/{i}.mjpg?token=t0k", 10)) == 10
        stats = json.loads(urllib.request.urlopen(url + "stats.json?token=t0k", timeout=10).read())
        assert len(stats["streams"]) == 2 and all(s["frames"] > 0 for s in stats["streams"])
        page = urllib.request.urlopen(url + "?token=t0k", timeout=10).read().decode()
        assert 'id="s0"' in page and 'id="s1"' in page
    finally:
        _stop(proc)


def test_web_view_off_loopback_needs_a_token(tiny_onnx, tmp_path):
    proc = run_cmd("dis-run", str(tiny_onnx), "--video", str(_video(tmp_path / "a.avi", 2)), "--serve", "0.0.0.0:0")
    one_line(proc, 2, "--serve 0.0.0.0:0", "--serve-token")
    proc = run_cmd(
        "dis-run", str(tiny_onnx), "--video", str(tmp_path / "a.avi"), "--serve", f"127.0.0.1:{closed_port()}x"
    )
    one_line(proc, 2, "expected HOST:PORT")


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("DISSEG_REQUIRE_BROWSER") == "1":
        pytest.fail("Chromium is required here (DISSEG_REQUIRE_BROWSER=1) and not installed")
    return found


def test_a_real_browser_shows_every_stream(tiny_onnx, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    proc, url = _serve(tiny_onnx, tmp_path, "--serve-token", "t0k")
    shot = tmp_path / "page.png"
    try:
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=800,600", "--timeout=5000",
             f"--screenshot={shot}", url + "?token=t0k"],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        _stop(proc)
    page = cv2.imread(str(shot))
    assert page is not None and page.shape[:2] == (600, 800)
    # two tiles side by side, each showing its stream's pixels: textured, not the empty dark background
    for left in (12, 406):
        tile = page[60:420, left : left + 380]
        assert tile.std() > 20, tile.std()
        assert len(np.unique(tile.reshape(-1, 3), axis=0)) > 500
    assert page[500:, :].std() < 5  # below the tiles: the page background
