"""Supervised like a service: systemd's notify protocol over a real datagram socket (READY=1 after the first batch,
WATCHDOG=1 while frames flow and not while every stream stalls, STOPPING=1 on the way out), and the unit template
checked by systemd-analyze."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, wait_for
from tests.live_servers import LiveServers
from tests.service.test_stop import collect

UNIT = Path(__file__).parents[2] / "deploy" / "disseg@.service"


class NotifySocket:
    """What systemd listens on: (time.monotonic(), message) of every datagram."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path, self.messages, self.closed = path, [], threading.Event()
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while not self.closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.extend((time.monotonic(), line) for line in data.decode().splitlines())

    def times(self, message: str) -> list[float]:
        return [t for t, m in list(self.messages) if m == message]

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)  # the receiver sees `closed` within its 0.2 s timeout: then the socket goes
        self.sock.close()


def test_ready_watchdog_while_frames_flow_none_while_stalled_and_stopping(tiny_onnx, tmp_path):
    servers = LiveServers()
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"}  # a ping every 0.2 s
    cmd = [str(BIN / "dis-run"), str(tiny_onnx), "--source", servers.url("hold"), "--stats", str(tmp_path / "s.json")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = collect(proc.stderr)
    try:
        wait_for(lambda: notify.times("READY=1"), proc=proc, what="READY=1")
        wait_for(lambda: len(notify.times("WATCHDOG=1")) >= 3, proc=proc, what="watchdog pings while frames flow")
        servers.stall.set()  # the only stream goes quiet, connected
        wait_for(lambda: servers.stalled_at is not None, proc=proc, what="the only stream to stall")
        stalled = servers.stalled_at
        wait_for(lambda: time.monotonic() > stalled + 3.0, proc=proc, what="3 s of stall")
        pings = notify.times("WATCHDOG=1")
        assert not [t for t in pings if stalled + 0.5 < t < stalled + 3.0], "pinged while every stream stalled"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.returncode == 143, lines.join()
        wait_for(lambda: notify.times("STOPPING=1"), what="STOPPING=1", timeout=10)
        assert notify.times("READY=1")[0] < notify.times("STOPPING=1")[0]
    finally:
        proc.kill()
        servers.close()
        notify.close()


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """systemd-analyze verify on an instance of the template, its ExecStart pointing at this environment's dis-run."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            raise AssertionError("systemd-analyze is missing (Debian: systemd)")
        pytest.skip("needs systemd-analyze (Debian: systemd)")
    unit = tmp_path / "disseg@site1.service"
    unit.write_text(unit_text.replace("/opt/disseg/.venv/bin/dis-run", str(BIN / "dis-run")))
    return subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True)


def test_the_unit_template_passes_systemd_analyze_verify(tmp_path):
    text = UNIT.read_text()
    for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert key in text, key
    proc = _verify(text, tmp_path)
    assert proc.returncode == 0, proc.stderr
    broken = _verify(text.replace("Type=notify", "Type=notfy"), tmp_path)  # the check can fail
    assert broken.returncode != 0 or "notfy" in broken.stderr, broken
