"""Camera credentials never leave the process: every message, log line and stats file carries the URL with
its password replaced (rtsp://admin:***@host/live). The stream is real: a video served once over HTTP on
127.0.0.1 (what --rtsp also takes), so dis-run opens it, sees it drop, fails to reconnect and gives up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disseg.runtime.redaction import redact
from disseg.runtime.sources import rtsp_pipeline
from tests.conftest import SECRET, closed_port, run_cmd

CASES = json.loads((Path(__file__).parents[1] / "redact_cases.json").read_text())["cases"]


@pytest.mark.parametrize("url, shown", CASES)
def test_redact(url, shown):  # the C++ twin reads the same cases (runtime/cpp/tests/test_io.cpp)
    assert redact(url) == shown and "SECRET" not in shown


def test_rtsp_pipelines_pick_the_decoder():
    hw = rtsp_pipeline("rtsp://h/live", hardware_decoder=True)
    sw = rtsp_pipeline("rtsp://h/live", hardware_decoder=False)
    assert "nvv4l2decoder" in hw and "decodebin" not in hw
    assert "decodebin" in sw and "nvv4l2decoder" not in sw
    assert all(p.startswith('rtspsrc location="rtsp://h/live"') and p.endswith("sync=false") for p in (hw, sw))


def test_open_failure_hides_the_password(tiny_onnx, tmp_path):
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{closed_port()}/live"
    proc = run_cmd(
        "dis-run", str(tiny_onnx), "--rtsp", url, "--no-display", "--stats", str(tmp_path / "s.json"), timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "rtsp://admin:***@127.0.0.1" in proc.stderr and SECRET not in proc.stderr + proc.stdout


def test_bad_url_hides_the_password(tiny_onnx, tmp_path):
    proc = run_cmd(
        "dis-run",
        str(tiny_onnx),
        "--rtsp",
        f"ftp://admin:{SECRET}@host/x",
        "--no-display",
        "--stats",
        str(tmp_path / "s.json"),
    )
    assert proc.returncode == 2 and "ftp://admin:***@host/x" in proc.stderr and SECRET not in proc.stderr


def test_reconnect_and_give_up_hide_the_password(tiny_onnx, http_stream, tmp_path):
    stats = tmp_path / "s.json"
    proc = run_cmd(
        "dis-run",
        str(tiny_onnx),
        "--rtsp",
        http_stream,
        "--max-reconnects",
        "2",
        "--no-display",
        "--stats",
        str(stats),
        "--masks",
        str(tmp_path / "masks"),
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert "dropped; reconnecting" in output and "gave up after 2 failed reconnects" in output, output
    assert "http://admin:***@127.0.0.1" in output and SECRET not in output
    assert stats.is_file() and SECRET not in stats.read_text()
    assert len(list((tmp_path / "masks").glob("*.png"))) >= 1
