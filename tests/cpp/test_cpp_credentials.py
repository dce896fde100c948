"""dis_run_cpp keeps camera credentials in the process as dis-run does: open failure (through GStreamer, which
Debian's OpenCV has), bad URL, reconnect and give-up (a real HTTP stream on 127.0.0.1), and the stats file."""

from __future__ import annotations

import subprocess

from tests.conftest import SECRET, closed_port


def _run(build, *args, timeout=120):
    return subprocess.run(
        [str(build / "dis_run_cpp"), *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def test_rtsp_open_failure_goes_through_gstreamer_and_hides_the_password(cpp_build, tiny_onnx, tmp_path):
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{closed_port()}/live"
    proc = _run(cpp_build, tiny_onnx, "--rtsp", url, "--no-display", "--stats", tmp_path / "s.json")
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "rtsp://admin:***@127.0.0.1" in last and "(GStreamer)" in last
    assert SECRET not in proc.stderr + proc.stdout


def test_bad_url_hides_the_password(cpp_build, tiny_onnx, tmp_path):
    proc = _run(
        cpp_build, tiny_onnx, "--rtsp", f"ftp://admin:{SECRET}@host/x", "--no-display", "--stats", tmp_path / "s.json"
    )
    assert proc.returncode == 2 and "ftp://admin:***@host/x" in proc.stderr and SECRET not in proc.stderr


def test_reconnect_and_give_up_hide_the_password(cpp_build, tiny_onnx, http_stream, tmp_path):
    stats = tmp_path / "s.json"
    proc = _run(
        cpp_build,
        tiny_onnx,
        "--rtsp",
        http_stream,
        "--max-reconnects",
        "2",
        "--no-display",
        "--stats",
        stats,
        "--masks",
        tmp_path / "masks",
    )
    output = proc.stdout + proc.stderr
    assert "dropped; reconnecting" in output and "gave up after 2 failed reconnects" in output, output
    assert "http://admin:***@127.0.0.1" in output and SECRET not in output
    assert stats.is_file() and SECRET not in stats.read_text()
    assert len(list((tmp_path / "masks").glob("*.png"))) >= 1


def test_query_credentials_are_hidden_too(cpp_build, tiny_onnx, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/s.mjpg?user=admin&pwd={SECRET}&api_key={SECRET}"
    proc = _run(cpp_build, tiny_onnx, "--source", url, "--no-display", "--stats", tmp_path / "s.json")
    assert proc.returncode == 2, proc.stderr
    assert "pwd=***&api_key=***" in proc.stderr and SECRET not in proc.stderr + proc.stdout
