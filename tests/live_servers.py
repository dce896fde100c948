"""Live sources on 127.0.0.1 for the service tests, each one real HTTP that OpenCV's FFmpeg reader opens: an MJPEG
camera that flows, one that stalls (connected, then no bytes), one that drops (a few frames, then the connection
closes and it comes back), and a server that accepts and never answers (a source that is forever opening). Bounded:
every connection ends when the server is closed."""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np

BOUNDARY = b"frame"


def jpeg(index: int, size=(80, 64)) -> bytes:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:, : (index * 7) % size[0]] = (40, 180, 90)
    cv2.putText(image, str(index), (4, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return cv2.imencode(".jpg", image)[1].tobytes()


class LiveServers:
    """http://127.0.0.1:PORT/{flow,stall,hold,drop,silent}.mjpg (hold: flows until `stall` is set, then goes quiet);
    `frames_sent[path]` counts what went out."""

    def __init__(self, fps: float = 30.0, drop_after: int = 30, stall_after: int = 15) -> None:
        self.fps, self.drop_after, self.stall_after = fps, drop_after, stall_after
        self.closed = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.frames_sent: dict[str, int] = {}
        self.connections: dict[str, int] = {}
        self.stalled_at: float | None = None  # time.monotonic() when the stalling stream last went quiet
        self.stall = threading.Event()  # set: the "hold" stream goes quiet (connected, no more bytes) from now on
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}.mjpg"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                request = conn.recv(4096).decode(errors="replace")
            except OSError:
                return
            kind = request.split(" ")[1].strip("/").split(".")[0] if request.count(" ") >= 2 else ""
            head_only = request.startswith("HEAD ")
            with self._lock:
                self.connections[kind] = self.connections.get(kind, 0) + 1  # HEAD probes too
            if kind == "silent":  # accepted, never answered
                self.closed.wait()
                return
            limit = {"drop": self.drop_after, "stall": self.stall_after}.get(kind)
            if kind == "hold":  # flows until the test says stall
                limit = -1
            head = b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=" + BOUNDARY + b"\r\n\r\n"
            try:
                conn.sendall(head)
                if head_only:  # asked whether anything answers here
                    return
                self._frames(conn, kind, limit)
            except OSError:
                return
            if kind in ("stall", "hold"):  # connected, no more bytes
                self.stalled_at = time.monotonic()
                self.closed.wait()

    def _frames(self, conn: socket.socket, kind: str, limit: int | None) -> None:
        n = 0
        while not self.closed.is_set() and (limit is None or n < limit or (limit < 0 and not self.stall.is_set())):
            data = jpeg(n)
            part = b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
            conn.sendall(part + data + b"\r\n")
            n += 1
            with self._lock:
                self.frames_sent[kind] = self.frames_sent.get(kind, 0) + 1
            time.sleep(1 / self.fps)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
