"""The serve port of a running dis-run as an operator uses it: /metrics (checked by Prometheus' own promtool and
parsed by prometheus_client's parser; counters move and agree with --stats), /healthz and /readyz, streams listed,
added and removed while it runs (token needed, on loopback too; Host checked against DNS rebinding)."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import signal
import socket
import subprocess

import cv2
import pytest

from tests.conftest import BIN, closed_port, wait_for
from tests.live_servers import LiveServers
from tests.runtime.test_streams import _video
from tests.service.test_stop import collect

TOKEN = "t0k3n"


def serve(model, tmp_path, *sources, extra=()):
    """dis-run with --serve on a free loopback port; (process, port, stderr lines) once it listens."""
    cmd = [str(BIN / "dis-run"), str(model), "--serve", "127.0.0.1:0", "--serve-token", TOKEN]
    if any(not str(source).startswith("http") for source in sources):
        cmd += ["--loop", "100000"]
    for source in sources:
        cmd += ["--source", str(source)]
    cmd += ["--stats", str(tmp_path / "s.json"), "--output", str(tmp_path / "out.mp4"), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = collect(proc.stderr)
    wait_for(lambda: any("serving the live view at" in x for x in list(lines)), proc=proc, what="the serving line")
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", next(x for x in lines if "serving" in x)).group(1))
    return proc, port, lines


def request(port, method, path, body=None, token=TOKEN, host=None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if host is not None:
        headers["Host"] = host
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def stop(proc, lines) -> str:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    err = lines.join()
    assert proc.returncode == 143, err
    return err


def metrics(port) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    status, text = request(port, "GET", "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def per_stream(samples, name) -> dict[str, float]:
    return {dict(labels)["stream"]: v for (n, labels), v in samples.items() if n == name}


@pytest.fixture()
def servers():
    found = LiveServers(drop_after=15)
    yield found
    found.close()


def test_metrics_pass_promtool_move_and_agree_with_stats(tiny_onnx, tmp_path, servers):
    a, b = _video(tmp_path / "a.avi", 20, seed=1), _video(tmp_path / "b.avi", 20, seed=2)
    proc, port, lines = serve(tiny_onnx, tmp_path, a, b, servers.url("flow"))
    try:
        wait_for(lambda: all(v > 0 for v in per_stream(metrics(port), "disseg_stream_frames_total").values()),
                 proc=proc, what="frames on every stream")  # fmt: skip
        first = metrics(port)
        status, text = request(port, "GET", "/metrics")
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.skip("needs promtool (Debian: prometheus)")
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "disseg_model_info{" in text.decode() and 'iterations="3"' in text.decode()
        for name in ("process_resident_memory_bytes", "process_open_fds", "process_threads"):
            assert any(n == name and v > 0 for (n, _), v in first.items()), name
        assert per_stream(first, "disseg_frame_age_seconds_count") and per_stream(
            first, "disseg_inference_latency_seconds_count"
        )
        frames = per_stream(first, "disseg_stream_frames_total")
        wait_for(lambda: all(per_stream(metrics(port), "disseg_stream_frames_total")[k] > v for k, v in frames.items()),
                 proc=proc, what="every counter to move")  # fmt: skip
    finally:
        stop(proc, lines)
    last = metrics_after = json.loads((tmp_path / "s.json").read_text())
    # The stats file at the end holds at least what /metrics said while running, stream by stream, and its batches.
    for key, stream in zip(sorted(frames), last["streams"]):
        assert stream["frames"] >= frames[key]
    assert sum(int(size) * n for size, n in metrics_after["batches"].items()) >= last["frames"]


def test_health_and_readiness_name_the_stream_that_is_down(tiny_onnx, tmp_path, servers):
    dead = f"http://127.0.0.1:{closed_port()}/cam.mjpg?user=admin&password=S3cret"
    proc, port, lines = serve(tiny_onnx, tmp_path, servers.url("flow"), dead, extra=("--max-reconnects", "1000"))
    try:
        assert request(port, "GET", "/healthz", token=None)[0] == 200
        status, why = request(port, "GET", "/readyz")
        assert status == 503 and b"s1" in why and b"cam.mjpg" in why, why
        status, listing = request(port, "GET", "/streams")
        streams = json.loads(listing)["streams"]
        assert [s["id"] for s in streams] == [0, 1] and streams[1]["state"] in ("opening", "reconnecting")
        status, body = request(port, "DELETE", "/streams/1")
        assert status == 200, body
        wait_for(lambda: request(port, "GET", "/readyz")[0] == 200, proc=proc, what="ready without the dead camera")
    finally:
        stop(proc, lines)


def test_streams_are_added_and_removed_while_running_with_the_token_only(tiny_onnx, tmp_path, servers):
    b = _video(tmp_path / "b.avi", 15, seed=2)
    proc, port, lines = serve(tiny_onnx, tmp_path, servers.url("flow"))  # no --loop: an added file plays once
    try:
        for token in (None, "wrong"):
            assert request(port, "POST", "/streams", {"source": str(b)}, token=token)[0] in (401, 403)
        status, body = request(port, "GET", "/stats.json", host="evil.example")
        assert status == 421, body
        assert request(port, "GET", "/stats.json", host=f"localhost:{port}")[0] == 200
        status, body = request(port, "POST", "/streams", {"source": "ftp://nowhere/x"})
        assert status == 400 and b"not a source this runtime knows" in body
        status, body = request(port, "POST", "/streams", {"source": str(b)})
        assert status == 201, body
        added = json.loads(body)["id"]
        assert added == 1
        wait_for(lambda: json.loads(request(port, "GET", "/streams")[1])["streams"][1]["state"] == "ended",
                 proc=proc, what="the added file to end")  # fmt: skip
        added_video = tmp_path / "out.s1.mp4"
        wait_for(added_video.is_file, proc=proc, what="the ended stream's video, finalized while running")
        cap = cv2.VideoCapture(str(added_video))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
        cap.release()
        assert request(port, "DELETE", "/streams/0", token=None)[0] in (401, 403)
        assert request(port, "DELETE", "/streams/0")[0] == 200
        assert request(port, "DELETE", "/streams/0")[0] == 404
        assert request(port, "DELETE", "/streams/%C2%B2")[0] == 404
        wait_for((tmp_path / "out.mp4").is_file, proc=proc, what="the removed stream's video")
        assert proc.poll() is None  # an operator emptied it: the service waits for streams, it does not end
    finally:
        stop(proc, lines)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [s["frames"] for s in summary["streams"]][1] == 15


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_serve_on_ipv6_loopback(tiny_onnx, tmp_path):
    cmd = [str(BIN / "dis-run"), str(tiny_onnx), "--serve", "[::1]:0", "--loop", "100000",
           "--source", str(_video(tmp_path / "a.avi", 5)), "--stats", str(tmp_path / "s.json")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = collect(proc.stderr)
    wait_for(lambda: any("serving the live view at" in x for x in list(lines)), proc=proc, what="the serving line")
    port = int(re.search(r"http://\[::1\]:(\d+)/", next(x for x in lines if "serving" in x)).group(1))
    conn = http.client.HTTPConnection("::1", port, timeout=30)
    conn.request("GET", "/healthz", headers={"Host": f"[::1]:{port}"})
    assert conn.getresponse().status == 200
    stop(proc, lines)
