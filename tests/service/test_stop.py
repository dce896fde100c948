"""A stop is prompt whatever the sources are doing: dead, stalled (connected, no bytes), opening (a server that never
answers), reconnecting, flowing, and files; every output is final when the process has exited, within 3 s of
SIGTERM (issue: docker stop kills after 10 s). Real HTTP servers on 127.0.0.1 and OpenCV's own FFmpeg reader."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import cv2
import pytest

from tests.conftest import BIN, assert_stats_keys, closed_port, wait_for
from tests.live_servers import LiveServers
from tests.runtime.test_streams import _video

STOP_LIMIT_S = 3.0  # what the service promises (docs/deployment.md: docker --stop-timeout, systemd TimeoutStopSec)


@pytest.fixture()
def servers():
    found = LiveServers(drop_after=20, stall_after=10)
    yield found
    found.close()


def _frames_in(path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 0:  # the last counted frame decodes: the file plays to its end
            cap.set(cv2.CAP_PROP_POS_FRAMES, count - 1)
            assert cap.read()[0], path
        return count
    finally:
        cap.release()


def _sources(servers, tmp_path) -> list[str]:
    videos = [str(_video(tmp_path / f"v{i}.avi", 20, seed=i)) for i in range(3)]
    dead = f"http://127.0.0.1:{closed_port()}/dead.mjpg"
    return [servers.url(k) for k in ("flow", "stall", "silent", "drop")] + [dead, *videos]


class collect(list):  # noqa: N801 (a list)
    """The lines of a process's pipe as they come, read in a thread; join() once the process has ended."""

    def __init__(self, stream) -> None:
        super().__init__()
        self.thread = threading.Thread(target=lambda: self.extend(iter(stream.readline, "")), daemon=True)
        self.thread.start()

    def join(self) -> str:
        self.thread.join(timeout=30)
        return "".join(self)


def _ready(servers, masks, lines) -> bool:
    """Flowing, stalled, opening and reconnecting all at once, and files segmented."""
    flowing = all(any((masks / f"s{i}").glob("*.png")) for i in (0, 5, 6, 7))
    return (
        flowing
        and all(any(f"{k}.mjpg dropped" in x and "(reconnect 2)" in x for x in list(lines)) for k in ("dead", "drop"))
        and servers.frames_sent.get("stall", 0) >= 10
        and servers.connections.get("silent", 0) >= 1
    )


def _command(runtime: str, request) -> str:
    if runtime == "python":
        return str(BIN / "dis-run")
    return str(request.getfixturevalue("cpp_build") / "dis_run_cpp")


@pytest.mark.parametrize(
    "runtime, sig", [("python", signal.SIGTERM), ("python", signal.SIGINT), ("cpp", signal.SIGTERM)]
)
def test_a_stop_with_dead_stalled_opening_and_reconnecting_sources_is_prompt_and_loses_nothing(
    tiny_onnx, tmp_path, servers, runtime, sig, request
):
    masks, out, stats = tmp_path / "masks", tmp_path / "out.mp4", tmp_path / "s.json"
    cmd = [_command(runtime, request), str(tiny_onnx), "--loop", "100000", "--max-reconnects", "1000", "--no-display"]
    for uri in _sources(servers, tmp_path):
        cmd += ["--source", uri]
    proc = subprocess.Popen([*cmd, "--output", str(out), "--masks", str(masks), "--stats", str(stats)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines = collect(proc.stderr)
    wait_for(lambda: _ready(servers, masks, lines), proc=proc, what="every kind of source at once", timeout=120)
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    took = time.monotonic() - sent
    err = lines.join()
    assert proc.returncode == 128 + sig, err
    assert took < STOP_LIMIT_S, f"the stop took {took:.1f} s"
    summary = json.loads(stats.read_text())
    assert_stats_keys(summary)
    assert summary["interrupted"] is True and len(summary["streams"]) == 8
    for i, stream in enumerate(summary["streams"]):
        video = out.with_name(f"out.s{i}.mp4")
        assert _frames_in(video) == stream["frames"] if stream["frames"] else not video.exists(), (i, stream)
        assert len(list((masks / f"s{i}").glob("*.png"))) == stream["frames"], i
    flow, stall, silent, drop, dead = summary["streams"][:5]
    assert flow["frames"] > 0 and stall["frames"] > 0 and silent["frames"] == 0 and dead["frames"] == 0
    assert drop["reconnects"] >= 1 and dead["reconnects"] >= 1
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name], "a temporary file was left"
    assert "Traceback" not in err


def test_a_segmented_output_is_finalized_file_by_file_and_at_the_stop(tiny_onnx, tmp_path):
    """--output-segment: one file per interval, each complete as soon as it is done; the stop finalizes the last."""
    clip = _video(tmp_path / "a.avi", 20, seed=1)
    out, stats = tmp_path / "out.mp4", tmp_path / "s.json"
    cmd = [str(BIN / "dis-run"), str(tiny_onnx), "--source", str(clip), "--loop", "100000", "--no-display"]
    proc = subprocess.Popen([*cmd, "--output", str(out), "--output-segment", "1", "--stats", str(stats)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines = collect(proc.stderr)
    done = lambda: sorted(tmp_path.glob("out.0*.mp4"))  # noqa: E731
    wait_for(lambda: len(done()) >= 2, proc=proc, what="two finished segments")
    assert _frames_in(done()[0]) > 0  # complete while the run goes on
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 143, lines.join()
    files = done()
    assert [f.name for f in files] == [f"out.{i:06d}.mp4" for i in range(len(files))] and not out.exists()
    assert sum(_frames_in(f) for f in files) == json.loads(stats.read_text())["frames"]
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
