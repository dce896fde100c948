"""dis-run --mqtt against a real broker: Debian's mosquitto on 127.0.0.1, a real subscriber (paho-mqtt). Every
frame's records arrive; credentials never show; the broker stopped mid-run costs no frame rate, the drops are
counted (stats, /metrics) and publishing resumes when it is back; TLS with a CA made here. Skips without mosquitto,
unless $DISSEG_REQUIRE_MQTT=1 (CI installs it)."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BIN, SECRET, closed_port, one_line, run_cmd, wait_for
from tests.runtime.test_events import assert_record_keys, moving_video, read_events

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


@pytest.fixture(autouse=True)
def _needs_mosquitto():
    if MOSQUITTO is None:
        if os.environ.get("DISSEG_REQUIRE_MQTT") == "1":
            raise AssertionError("mosquitto is not installed (apt install mosquitto)")
        pytest.skip("needs Debian's mosquitto broker")


class Broker:
    """mosquitto on 127.0.0.1:port with the given extra configuration; start/stop as often as a test needs."""

    def __init__(self, folder: Path, port: int, extra: str = "allow_anonymous true\n") -> None:
        self.port, self.conf = port, folder / "mosquitto.conf"
        # `user`: as root mosquitto would switch to its own user, which cannot read pytest's private tmp folders
        self.conf.write_text(f"listener {port} 127.0.0.1\n{extra}persistence false\nuser {getpass.getuser()}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        wait_for(self._listening, proc=self.proc, timeout=60, what=f"mosquitto on port {self.port}")
        return self

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Subscriber:
    """A real MQTT client subscribed to TOPIC/# with QoS 1, keeping every record it receives."""

    def __init__(self, port: int, topic: str, *, user=None, password=None, ca: Path | None = None) -> None:
        import paho.mqtt.client as paho

        self.records: list[dict] = []
        self.topics: set[str] = set()
        self.pairs: set[tuple[str, int]] = set()  # (topic, the record's stream)
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        if user:
            self.client.username_pw_set(user, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{topic}/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, timeout=60, what="the subscription")

    def _message(self, client, userdata, message) -> None:
        record = json.loads(message.payload)
        self.topics.add(message.topic)
        self.pairs.add((message.topic, record["stream"]))
        self.records.append(record)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _key(record: dict) -> tuple:
    return record["type"], record["stream"], record["frame"], record.get("class")


def test_every_frame_record_reaches_the_broker_per_stream(tiny_onnx, tmp_path):
    broker = Broker(tmp_path, closed_port()).start()
    sub = Subscriber(broker.port, "site/cams")
    try:
        video = moving_video(tmp_path / "in.avi")
        events, stats = tmp_path / "ev.jsonl", tmp_path / "stats.json"
        url = f"mqtt://127.0.0.1:{broker.port}/site/cams"
        args = ["--source", str(video), "--source", str(video), "--events", str(events), "--stats", str(stats)]
        proc = run_cmd("dis-run", str(tiny_onnx), *args, "--mqtt", url, "--no-display")
        assert proc.returncode == 0, proc.stderr
        written = read_events(events)
        wait_for(lambda: len({_key(r) for r in sub.records}) >= len(written), timeout=60, what="every record")
    finally:
        sub.close()
        broker.stop()
    assert_record_keys(sub.records)
    assert {_key(r) for r in sub.records} == {_key(r) for r in written}
    assert sub.topics == {"site/cams/s0", "site/cams/s1"}
    assert sub.pairs == {("site/cams/s0", 0), ("site/cams/s1", 1)}
    summary = json.loads(stats.read_text())["events"]
    assert summary["mqtt_published"] == len(written) and summary["mqtt_dropped"] == 0


def test_credentials_reach_the_broker_and_never_the_output(tiny_onnx, tmp_path):
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "box", SECRET], check=True, capture_output=True)
    broker = Broker(tmp_path, closed_port(), f"allow_anonymous false\npassword_file {passwords}\n").start()
    sub = Subscriber(broker.port, "t", user="box", password=SECRET)
    try:
        video, stats = moving_video(tmp_path / "in.avi", frames=6), tmp_path / "stats.json"
        url = f"mqtt://box:{SECRET}@127.0.0.1:{broker.port}/t"
        proc = run_cmd("dis-run", str(tiny_onnx), "--video", str(video), "--mqtt", url, "--stats", str(stats))
        assert proc.returncode == 0, proc.stderr
        wait_for(lambda: sum(r["type"] == "frame" for r in sub.records) >= 6, timeout=60, what="6 frame records")
        wrong = run_cmd("dis-run", str(tiny_onnx), "--video", str(video), "--no-display",
                        "--mqtt", url.replace(SECRET, "nope" + SECRET[::-1]))  # fmt: skip
    finally:
        sub.close()
        broker.stop()
    assert "publishing events to mqtt://box:***@127.0.0.1" in proc.stderr
    assert "refused the connection" in wrong.stderr  # said once, the run goes on and ends normally
    assert wrong.returncode == 0
    for text in (proc.stdout, proc.stderr, stats.read_text(), wrong.stdout, wrong.stderr):
        assert SECRET not in text and SECRET[::-1] not in text


def _lines(proc) -> list[str]:
    """Every stderr line of `proc`, collected by a thread (for readiness on what it says)."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    return lines


def _stats(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url + "stats.json", timeout=10).read())


def test_the_broker_going_away_costs_no_frame_rate_and_publishing_resumes(tiny_onnx, tmp_path):
    broker = Broker(tmp_path, closed_port()).start()
    video = moving_video(tmp_path / "in.avi")
    stats_file = tmp_path / "stats.json"
    cmd = [str(BIN / "dis-run"), str(tiny_onnx), "--video", str(video), "--loop", "1000000", "--serve", "127.0.0.1:0"]
    url = f"mqtt://127.0.0.1:{broker.port}/site"
    proc = subprocess.Popen([*cmd, "--mqtt", url, "--stats", str(stats_file)], stderr=subprocess.PIPE, text=True)
    lines = _lines(proc)
    try:
        wait_for(lambda: any("serving the live view at" in line for line in lines), proc=proc, what="the web view")
        web = re.search(r"http://\S+?/", next(line for line in lines if "serving the live view" in line)).group(0)
        wait_for(lambda: _events(web).get("mqtt_published", 0) > 200, proc=proc, what="records acknowledged")
        before = _rate(web)
        broker.stop()
        wait_for(lambda: any("MQTT: lost" in line for line in lines), proc=proc, what="the broker lost")
        wait_for(lambda: _events(web)["mqtt_dropped"] > 0, proc=proc, what="dropped records counted")
        during = _rate(web)
        metrics = urllib.request.urlopen(web + "metrics", timeout=10).read().decode()
        assert re.search(r'disseg_events_dropped_total\{output="mqtt"\} [1-9]', metrics), metrics
        assert "disseg_mqtt_connected 0.0" in metrics
        broker.start()
        sub = Subscriber(broker.port, "site")
        wait_for(lambda: any("connected to" in line and "again" in line for line in lines), proc=proc,
                 what="the reconnect")  # fmt: skip
        wait_for(lambda: len(sub.records) > 50, proc=proc, what="records after the broker came back")
        sub.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        broker.stop()
    assert proc.returncode == 143
    assert during > 0.5 * before, (before, during)  # the run never waited on the broker
    summary = json.loads(stats_file.read_text())["events"]
    assert summary["mqtt_dropped"] > 0 and summary["mqtt_connects"] == 2
    assert (
        summary["mqtt_published"] + summary["mqtt_dropped"] <= summary["frame"] + summary["appeared"] + summary["gone"]
    )


def _events(web: str) -> dict:
    return _stats(web).get("events", {})  # there once the run's outputs are open


def _rate(web: str) -> float:
    """Frames per second over the next stretch of at least 200 frames (read from the run's own counts)."""
    first, t0 = _stats(web)["frames"], time.monotonic()
    wait_for(lambda: _stats(web)["frames"] > first + 200, timeout=120, what="200 more frames")
    return (_stats(web)["frames"] - first) / (time.monotonic() - t0)


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it, made with openssl."""
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    run = lambda *a: subprocess.run(["openssl", *map(str, a)], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj",
        "/CN=disseg test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
        "-extfile", ext)  # fmt: skip
    return ca, cert, key


def test_mqtts_with_a_ca_made_here(tiny_onnx, tmp_path):
    ca, cert, key = _tls_files(tmp_path)
    broker = Broker(tmp_path, closed_port(), f"allow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    broker.start()
    sub = Subscriber(broker.port, "secure", ca=ca)
    try:
        video = moving_video(tmp_path / "in.avi", frames=6)
        url = f"mqtts://127.0.0.1:{broker.port}/secure"
        proc = run_cmd("dis-run", str(tiny_onnx), "--video", str(video), "--mqtt", url, "--mqtt-ca", str(ca),
                       "--no-display")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        wait_for(lambda: sum(r["type"] == "frame" for r in sub.records) >= 6, timeout=60, what="6 records over TLS")
        plain = run_cmd("dis-run", str(tiny_onnx), "--video", str(video), "--no-display",
                        "--mqtt", f"mqtt://127.0.0.1:{broker.port}/secure")  # fmt: skip
    finally:
        sub.close()
        broker.stop()
    assert plain.returncode == 0 and sum(r["type"] == "frame" for r in sub.records) == 6  # plain MQTT got nowhere


@pytest.mark.parametrize(
    "args, words",
    [
        (["--mqtt", "mqtt://127.0.0.1:1883/a/#"], "without + or #"),
        (["--mqtt", "http://127.0.0.1/a"], "expected mqtt://"),
        (["--mqtt", f"mqtt://u:{SECRET}@127.0.0.1:99999/a"], "expected mqtt://"),
        (["--mqtt", "mqtt://127.0.0.1/a", "--mqtt-ca", "ca.pem"], "only for an mqtts://"),
        (["--mqtt", "mqtts://127.0.0.1/a", "--mqtt-ca", "missing.pem"], "no such file"),
        (["--mqtt-ca", "ca.pem", "--events", "-"], "only with --mqtt"),
        (["--mqtt", "mqtts://127.0.0.1/a", "--mqtt-ca", "junk.pem", "--events", "ev.jsonl"], "not a CA certificate"),
    ],
)
def test_bad_mqtt_options_are_one_line(tiny_onnx, tmp_path, args, words, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    video = moving_video(tmp_path / "in.avi", frames=2)
    proc = run_cmd("dis-run", str(tiny_onnx), "--video", str(video), *args)
    line = one_line(proc, 2, words)
    assert SECRET not in line
    assert "refinement steps" not in proc.stderr and not (tmp_path / "ev.jsonl").exists()  # refused before any work
