"""The live web view of a running dis-run, for boxes without a screen: a page at / with every stream live (overlay,
legend, per-stream FPS and frame age), each stream as MJPEG at /streams/N.mjpg (and its newest frame at
/streams/N.jpg), and /stats.json. The standard library's threaded HTTP server: a handful of viewers on a local
network need no more, and it adds no dependency to a Jetson install.

Camera feeds are private: bound to 127.0.0.1 unless told otherwise, and any other address needs a token that every
request carries (`Authorization: Bearer TOKEN` or `?token=TOKEN`; the page passes its own on). A viewer always gets
the newest frame, never a queue, and encoding happens in its own request thread: a slow or vanished browser never
slows inference."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from .errors import BadInput

log = logging.getLogger("disseg.serve")
BOUNDARY = "dissegframe"


def parse_address(text: str) -> tuple[str, int]:
    """ "127.0.0.1:8080", ":8080" (loopback), "0.0.0.0:8080", "[::1]:8080" -> (host, port). BadInput otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port.isdigit() or int(port) > 65535:
        raise BadInput(f"--serve {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free port)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_serve(address: str, token: str | None) -> tuple[str, int]:
    """(host, port) of a --serve address that may be used: off loopback only with a token. BadInput otherwise."""
    host, port = parse_address(address)
    if not is_loopback(host) and not token:
        raise BadInput(
            f"--serve {address}: reachable from the network, and camera feeds are private: give --serve-token "
            f"TOKEN (or set DISSEG_SERVE_TOKEN); viewers then open http://{host}:{port}/?token=TOKEN"
        )
    return host, port


class Viewer:
    """Holds the newest rendered frame of each stream and serves them; `publish` is all the pipeline calls."""

    def __init__(
        self, address: str, *, names: list[str], token: str | None, stats: Callable[[], dict], quality: int = 80
    ) -> None:
        host, port = check_serve(address, token)
        self.names, self.token, self.stats, self.quality = names, token, stats, quality
        self._frames: list[tuple[int, np.ndarray | None]] = [(0, None)] * len(names)
        self._jpegs: list[tuple[int, bytes | None]] = [(0, None)] * len(names)
        self._cond = threading.Condition()
        self.closed = False
        try:
            self.server = ThreadingHTTPServer((host, port), _handler(self))
        except OSError as err:
            raise BadInput(f"--serve {address}: cannot listen there ({err.strerror}); choose another port") from None
        self.server.daemon_threads = True
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        log.info("serving the live view at %s%s", self.url, "?token=..." if token else "")

    def publish(self, index: int, image: np.ndarray) -> None:
        with self._cond:
            self._frames[index] = (self._frames[index][0] + 1, image)
            self._cond.notify_all()

    def jpeg(self, index: int, after: int = 0, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """(sequence, JPEG) of the newest frame of stream `index`, waiting up to `timeout` for one newer than
        `after`; encoded once per frame, in the caller's (a request's) thread."""
        with self._cond:
            self._cond.wait_for(lambda: self._frames[index][0] > after or self.closed, timeout=timeout)
            seq, image = self._frames[index]
            cached_seq, cached = self._jpegs[index]
        if image is None or seq == cached_seq:
            return seq, cached
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        data = buf.tobytes() if ok else None
        with self._cond:
            if self._jpegs[index][0] < seq:
                self._jpegs[index] = (seq, data)
        return seq, data

    def authorized(self, headers, query: dict) -> bool:
        if not self.token:
            return True
        given = headers.get("Authorization", "")
        given = given[len("Bearer ") :] if given.startswith("Bearer ") else query.get("token", [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


def _live_stats(viewer: Viewer) -> bytes:
    """The run's stats now (read while the pipeline adds to them: retried if a window changed under it)."""
    for _ in range(5):
        try:
            return json.dumps(viewer.stats(), default=str).encode()
        except RuntimeError:  # a deque mutated during iteration
            time.sleep(0.01)
    return b"{}"


def _handler(viewer: Viewer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # requests are not the run's business
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            if not viewer.authorized(self.headers, parse_qs(url.query)):
                self._send(401, b"401: give the token (Authorization: Bearer TOKEN or ?token=TOKEN)\n", "text/plain",
                           extra={"WWW-Authenticate": "Bearer"})  # fmt: skip
                return
            parts = url.path.strip("/").split("/")
            if url.path == "/":
                self._send(200, page(viewer.names).encode(), "text/html; charset=utf-8")
            elif url.path == "/stats.json":
                self._send(200, _live_stats(viewer), "application/json")
            elif len(parts) == 2 and parts[0] == "streams" and self._stream(parts[1]) is not None:
                index, kind = self._stream(parts[1])
                self._mjpeg(index) if kind == "mjpg" else self._snapshot(index)
            else:
                self._send(404, b"404: try / , /stats.json or /streams/N.mjpg\n", "text/plain")

        def _stream(self, name: str) -> tuple[int, str] | None:
            stem, _, kind = name.partition(".")
            if stem.isdigit() and int(stem) < len(viewer.names) and kind in ("mjpg", "jpg"):
                return int(stem), kind
            return None

        def _send(self, status: int, body: bytes, kind: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _snapshot(self, index: int) -> None:
            _, data = viewer.jpeg(index, timeout=2.0)
            if data is None:
                self._send(503, b"no frame yet\n", "text/plain", extra={"Retry-After": "1"})
            else:
                self._send(200, data, "image/jpeg")

        def _mjpeg(self, index: int) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            seq = 0
            try:
                while not viewer.closed:
                    newest, data = viewer.jpeg(index, after=seq)
                    if data is None or newest == seq:
                        continue
                    seq = newest
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    self.wfile.write(head.encode() + data + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the viewer went away
                pass
            self.close_connection = True

    return Handler


def page(names: list[str]) -> str:
    """The live page: one tile per stream, each refreshed with its newest frame as soon as the last one loaded
    (never a backlog), FPS and frame age from /stats.json every second."""
    tiles = "\n".join(
        f'<figure><img id="s{i}" alt="stream {i}"><figcaption><b>s{i}</b> {_escape(name)} '
        f'<span id="f{i}"></span></figcaption></figure>'
        for i, name in enumerate(names)
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>disseg live</title>
<style>body{{font:14px sans-serif;background:#111;color:#ddd;margin:12px}}
main{{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px}}
figure{{margin:0}}img{{width:100%;background:#222;min-height:120px}}span{{color:#8c8}}</style></head>
<body><h3>disseg: {len(names)} stream{"s" if len(names) != 1 else ""} <span id="total"></span></h3>
<main>{tiles}</main>
<script>
const q = new URLSearchParams(location.search).get("token");
const auth = q ? "token=" + encodeURIComponent(q) + "&" : "";
function refresh(i) {{
  const img = document.getElementById("s" + i);
  img.onload = () => setTimeout(() => refresh(i), 30);
  img.onerror = () => setTimeout(() => refresh(i), 500);
  img.src = "/streams/" + i + ".jpg?" + auth + "t=" + Date.now();
}}
async function stats() {{
  try {{
    const s = await (await fetch("/stats.json?" + auth)).json();
    document.getElementById("total").textContent = (s.fps || 0).toFixed(1) + " FPS in total";
    (s.streams || []).forEach((t, i) => {{
      const age = (t.frame_age_ms || {{}}).p50;
      document.getElementById("f" + i).textContent =
        (t.fps || 0).toFixed(1) + " FPS, frame age " + (age === undefined ? "-" : age.toFixed(0) + " ms");
    }});
  }} catch (e) {{}}
  setTimeout(stats, 1000);
}}
for (let i = 0; i < {len(names)}; i++) refresh(i);
stats();
</script></body></html>
"""


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
