"""The live web view of a running dis-run, for boxes without a screen: a page at / with every stream live (overlay,
legend, per-stream FPS and frame age), each stream as MJPEG at /streams/N.mjpg (and its newest frame at
/streams/N.jpg), its newest label map as data (/streams/N/labels.png, /streams/N/scores.npy), the per-frame event
records as Server-Sent Events (/events), and /stats.json. The standard library's threaded HTTP server: a handful of
viewers on a local network need no more, and it adds no dependency to a Jetson install.

Camera feeds are private: bound to 127.0.0.1 unless told otherwise, and any other address needs a token that every
request carries (`Authorization: Bearer TOKEN` or `?token=TOKEN`; the page passes its own on). A viewer always gets
the newest frame, never a queue, and encoding happens in its own request thread: a slow or vanished browser never
slows inference."""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from .errors import BadInput
from .telemetry import CONTENT_TYPE

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


DATA = {"labels.png": "image/png", "scores.npy": "application/octet-stream"}
SSE_KEEPALIVE_S = 5.0
MAX_BODY = 64 * 1024  # a control request's JSON body
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def host_allowed(header: str | None, bound: str, names: tuple[str, ...]) -> bool:
    """Whether a request's Host may reach this server: an IP address (a name an attacker's DNS can point at us is not
    one: DNS rebinding), a loopback name, the bind address, or a name given with --serve-host."""
    if not header:
        return False
    host = header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return host in LOOPBACK_NAMES or host == bound.lower() or host in {n.lower() for n in names}


class EventHub:
    """The /events stream: every record (events.Events) goes to each connected client's own bounded queue; a client
    that reads too slowly loses its oldest records (counted), never slowing the run."""

    QUEUE = 256

    def __init__(self) -> None:
        self.clients: list[queue.Queue] = []
        self.dropped = 0
        self._lock = threading.Lock()

    def publish(self, record: dict) -> None:
        if not self.clients:  # nobody listens: nothing to encode
            return
        line = (str(record.get("stream")), json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        with self._lock:
            for client in self.clients:
                while True:
                    try:
                        client.put_nowait(line)
                        break
                    except queue.Full:
                        try:
                            client.get_nowait()
                            self.dropped += 1
                        except queue.Empty:
                            pass

    def subscribe(self) -> queue.Queue:
        client: queue.Queue = queue.Queue(maxsize=self.QUEUE)
        with self._lock:
            self.clients.append(client)
        return client

    def unsubscribe(self, client: queue.Queue) -> None:
        with self._lock:
            self.clients.remove(client)

    def facts(self) -> dict:
        return {"sse_clients": len(self.clients), "sse_dropped": self.dropped}

    def close(self) -> None:
        with self._lock:
            for client in self.clients:
                try:
                    client.put_nowait(None)
                except queue.Full:
                    pass


class Viewer:
    """Holds the newest rendered frame of each stream and serves them, with /metrics, /healthz, /readyz and, given a
    service, the control endpoints (/streams, /model); `publish` is all the pipeline calls."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None,
        stats: Callable[[], dict],
        names: list[str] | None = None,
        service=None,
        hosts: tuple[str, ...] = (),
        quality: int = 80,
    ) -> None:
        host, port = check_serve(address, token)
        self.token, self.stats, self.quality, self.service, self.hosts = token, stats, quality, service, hosts
        self._names = names or []
        self._frames: dict[int, tuple[int, np.ndarray | None]] = {}
        self._jpegs: dict[int, tuple[int, bytes | None]] = {}
        self._results: dict[int, object] = {}  # stream id -> its newest segmenter.Result
        self.hub = EventHub()
        self._cond = threading.Condition()
        self.closed = False
        self.bound = host
        try:
            server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
            self.server = server_class((host, port), _handler(self))
        except (OSError, OverflowError) as err:
            why = getattr(err, "strerror", None) or str(err)
            raise BadInput(f"--serve {address}: cannot listen there ({why}); choose another port") from None
        self.server.daemon_threads = True
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="serve")
        self._thread.start()
        log.info("serving the live view at %s%s", self.url, "?token=..." if token else "")

    def streams(self) -> list[tuple[int, str]]:
        """(id, name) of every stream shown now."""
        if self.service is not None:
            return [(s["id"], s["source"]) for s in self.service.listing()]
        return list(enumerate(self._names))

    def known(self, index: int) -> bool:
        return any(i == index for i, _ in self.streams())

    def publish(self, index: int, image: np.ndarray) -> None:
        with self._cond:
            self._frames[index] = (self._frames.get(index, (0, None))[0] + 1, image)
            self._cond.notify_all()

    def keep_result(self, index: int, result) -> None:
        """The newest result of a stream, for /streams/N/labels.png and scores.npy (encoded only when asked)."""
        self._results[index] = result

    def labels_png(self, index: int) -> bytes | None:
        """The newest label map as a PNG of class ids: 8-bit, 16-bit above 256 classes."""
        result = self._results.get(index)
        if result is None:
            return None
        labels = result.labels
        labels = labels if labels.dtype == np.uint8 else np.ascontiguousarray(labels, dtype=np.uint16)
        ok, buf = cv2.imencode(".png", labels)
        return buf.tobytes() if ok else None

    def scores_npy(self, index: int) -> bytes | None | bool:
        """The newest per-class scores (K x h x w, the model's size) as a .npy file; False when the model outputs no
        scores, None before a frame."""
        result = self._results.get(index)
        if result is None:
            return None
        if result.scores is None:
            return False
        out = io.BytesIO()
        np.save(out, np.ascontiguousarray(result.scores), allow_pickle=False)
        return out.getvalue()

    def jpeg(self, index: int, after: int = 0, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """(sequence, JPEG) of the newest frame of stream `index`, waiting up to `timeout` for one newer than
        `after`; encoded once per frame, in the caller's (a request's) thread."""
        with self._cond:
            self._cond.wait_for(lambda: self._frames.get(index, (0, None))[0] > after or self.closed, timeout=timeout)
            seq, image = self._frames.get(index, (0, None))
            cached_seq, cached = self._jpegs.get(index, (0, None))
        if image is None or seq == cached_seq:
            return seq, cached
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        data = buf.tobytes() if ok else None
        with self._cond:
            if self._jpegs.get(index, (0, None))[0] < seq:
                self._jpegs[index] = (seq, data)
        return seq, data

    def forget(self, index: int) -> None:
        with self._cond:
            self._frames.pop(index, None)
            self._jpegs.pop(index, None)
            self._results.pop(index, None)
            self._cond.notify_all()

    def authorized(self, headers, query: dict) -> bool:
        if not self.token:
            return True
        return self.token_given(headers, query)

    def token_given(self, headers, query: dict) -> bool:
        """Whether the request carries this server's token (False when it has none)."""
        if not self.token:
            return False
        given = headers.get("Authorization", "")
        given = given[len("Bearer ") :] if given.startswith("Bearer ") else query.get("token", [""])[0]
        return hmac.compare_digest(given.encode(errors="replace"), self.token.encode())

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self.hub.close()
        self.server.shutdown()
        self.server.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _live_stats(viewer: Viewer) -> bytes:
    """The run's stats now (read while the pipeline adds to them: retried if a window changed under it)."""
    for _ in range(5):
        try:
            stats = viewer.stats()
            if viewer.service is not None:
                stats["service"] = viewer.service.live_facts()
            return json.dumps(stats, default=str).encode()
        except RuntimeError:  # a deque mutated during iteration
            time.sleep(0.01)
    return b"{}"


def _reply(handler, status: int, text: str, extra: dict | None = None) -> None:
    handler._send(status, (text.rstrip("\n") + "\n").encode(), "text/plain; charset=utf-8", extra=extra)


class _Handler(BaseHTTPRequestHandler):
    """One request to a Viewer's server (`viewer` is set per server by _handler)."""

    viewer: Viewer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # requests are not the run's business
        pass

    def _url(self):
        """The request's path and query, or None after answering 400/421/401 (a Host that is not ours: DNS
        rebinding; a path that is not ASCII text)."""
        try:
            url = urlparse(self.path)
            query = parse_qs(url.query)
        except (ValueError, UnicodeError):
            _reply(self, 400, "400: a malformed request path")
            return None
        if not host_allowed(self.headers.get("Host"), self.viewer.bound, self.viewer.hosts):
            _reply(self, 421, "421: this server does not answer to that Host; name it with --serve-host NAME")
            return None
        if url.path != "/healthz" and not self.viewer.authorized(self.headers, query):
            _reply(self, 401, "401: give the token (Authorization: Bearer TOKEN or ?token=TOKEN)",
                   extra={"WWW-Authenticate": "Bearer"})  # fmt: skip
            return None
        return url, query

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        found = self._url()
        if found is None:
            return
        url, query = found
        parts = url.path.strip("/").split("/")
        if url.path == "/":
            self._send(200, page(self.viewer.streams()).encode(), "text/html; charset=utf-8")
        elif url.path == "/stats.json":
            self._send(200, _live_stats(self.viewer), "application/json")
        elif url.path == "/events":
            self._events(query)
        elif url.path in ("/healthz", "/readyz", "/metrics", "/streams") and self.viewer.service is not None:
            self._service_get(url.path)
        elif len(parts) == 2 and parts[0] == "streams" and self._stream(parts[1]) is not None:
            index, kind = self._stream(parts[1])
            self._mjpeg(index) if kind == "mjpg" else self._snapshot(index)
        elif len(parts) == 3 and parts[0] == "streams" and parts[2] in DATA and self._stream(parts[1] + ".jpg"):
            self._data(self._stream(parts[1] + ".jpg")[0], parts[2])
        else:
            _reply(self, 404, "404: try / , /stats.json, /events, /metrics, /healthz, /readyz, /streams, "
                   "/streams/N.mjpg or /streams/N/labels.png")  # fmt: skip

    def _service_get(self, path: str) -> None:
        service = self.viewer.service
        if path == "/healthz":
            _reply(self, 200, "ok")
        elif path == "/readyz":
            ready, why = service.readiness()
            _reply(self, 200 if ready else 503, why)
        elif path == "/metrics":
            self._send(200, service.telemetry.exposition(), CONTENT_TYPE)
        else:
            self._send(200, json.dumps({"streams": service.listing()}).encode(), "application/json")

    def _mutating(self):
        """(path, JSON body) of a request that changes the run, or None after answering: it needs the token,
        on loopback too (a web page in the operator's own browser must not add a camera)."""
        found = self._url()
        if found is None:
            return None
        url, query = found
        if self.viewer.service is None:
            _reply(self, 404, "404: nothing here can be changed")
            return None
        if not self.viewer.token_given(self.headers, query):
            why = "give the token" if self.viewer.token else "start dis-run with --serve-token TOKEN to allow changes"
            _reply(self, 403, f"403: changing the run needs the token; {why}")
            return None
        length = self.headers.get("Content-Length", "0")
        if not length.isascii() or not length.isdigit() or int(length) > MAX_BODY:
            _reply(self, 413, f"413: a JSON body of at most {MAX_BODY} bytes")
            return None
        raw = self.rfile.read(int(length)) if int(length) else b"{}"
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            _reply(self, 400, '400: the body must be a JSON object, e.g. {"source": "rtsp://cam/live"}')
            return None
        return url.path, body

    def do_POST(self) -> None:  # noqa: N802
        found = self._mutating()
        if found is None:
            return
        path, body = found
        try:
            if path == "/streams":
                self._add(body)
            elif path == "/model":
                if not isinstance(body.get("path"), str):
                    raise BadInput('POST /model: give {"path": "/models/new.onnx"}')
                self.viewer.service.offer_model(Path(body["path"]))
                _reply(self, 202, f"202: checking {Path(body['path']).name} on the live streams; see /stats.json")
            else:
                _reply(self, 404, "404: POST /streams or /model")
        except BadInput as err:
            _reply(self, 400, f"400: {err}")

    def _add(self, body: dict) -> None:
        uri, tags = body.get("source"), body.get("scene_tags")
        if not isinstance(uri, str) or (tags is not None and not isinstance(tags, (str, list))):
            raise BadInput('POST /streams: give {"source": URI} and optionally "scene_tags": "road,car"')
        stream = self.viewer.service.add(uri, tags)
        answer = json.dumps({"id": stream.id, "source": stream.name}).encode()
        self._send(201, answer, "application/json", extra={"Location": f"/streams/{stream.id}"})

    def do_DELETE(self) -> None:  # noqa: N802
        found = self._mutating()
        if found is None:
            return
        path, _ = found
        parts = path.strip("/").split("/")
        ok = len(parts) == 2 and parts[0] == "streams" and parts[1].isascii() and parts[1].isdigit()
        stream = self.viewer.service.remove(int(parts[1])) if ok and len(parts[1]) < 10 else None
        if stream is None:
            _reply(self, 404, "404: no such stream; GET /streams lists them")
            return
        self.viewer.forget(stream.id)
        _reply(self, 200, f"removed s{stream.id} after {stream.frames} frames; its outputs are finalized")

    def _stream(self, name: str) -> tuple[int, str] | None:
        stem, _, kind = name.partition(".")
        if stem.isascii() and stem.isdigit() and len(stem) < 10 and self.viewer.known(int(stem)) and kind in (
            "mjpg", "jpg"
        ):  # fmt: skip
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

    def _data(self, index: int, name: str) -> None:
        data = self.viewer.labels_png(index) if name == "labels.png" else self.viewer.scores_npy(index)
        if data is False:
            _reply(self, 404, "404: this model outputs no scores (export it with scores, or read labels.png)")
        elif data is None:
            self._send(503, b"no frame yet\n", "text/plain", extra={"Retry-After": "1"})
        else:
            self._send(200, data, DATA[name])

    def _events(self, query: dict) -> None:
        """Server-Sent Events: each record as one `data:` line; `?stream=N` keeps one stream's; a comment every
        few seconds keeps proxies from closing a quiet connection."""
        wanted = query.get("stream", [None])[0]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        client = self.viewer.hub.subscribe()
        try:
            self.wfile.write(b": disseg events\n\n")
            self.wfile.flush()
            while not self.viewer.closed:
                try:
                    line = client.get(timeout=SSE_KEEPALIVE_S)
                except queue.Empty:
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    continue
                if line is None:
                    break
                if wanted is not None and line[0] != wanted:
                    continue
                self.wfile.write(b"data: " + line[1].encode() + b"\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client went away
            pass
        finally:
            self.viewer.hub.unsubscribe(client)
        self.close_connection = True

    def _snapshot(self, index: int) -> None:
        _, data = self.viewer.jpeg(index, timeout=2.0)
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
            while not self.viewer.closed and self.viewer.known(index):
                newest, data = self.viewer.jpeg(index, after=seq)
                if data is None or newest == seq:
                    continue
                seq = newest
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                self.wfile.write(head.encode() + data + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the self.viewer went away
            pass
        self.close_connection = True


def _handler(viewer: Viewer) -> type[_Handler]:
    """The request handler class of one Viewer's server."""
    return type("Handler", (_Handler,), {"viewer": viewer})


def page(streams: list[tuple[int, str]]) -> str:
    """The live page: one tile per stream (id, name), each refreshed with its newest frame as soon as the last one
    loaded (never a backlog), FPS and frame age from /stats.json every second."""
    tiles = "\n".join(
        f'<figure><img id="s{i}" alt="stream {i}"><figcaption><b>s{i}</b> {_escape(name)} '
        f'<span id="f{i}"></span></figcaption></figure>'
        for i, name in streams
    )
    names, ids = [name for _, name in streams], json.dumps([i for i, _ in streams])
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
      const age = (t.frame_age_ms || {{}}).p50, label = document.getElementById("f" + i);
      if (label) label.textContent =
        (t.fps || 0).toFixed(1) + " FPS, frame age " + (age === undefined ? "-" : age.toFixed(0) + " ms");
    }});
  }} catch (e) {{}}
  setTimeout(stats, 1000);
}}
{ids}.forEach(refresh);
stats();
</script></body></html>
"""


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
