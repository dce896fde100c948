"""The serve port against raw, hostile requests: bytes that are not ASCII or UTF-8, NUL, percent-encoded junk, a
very long path, a header flood, a body that lies about its length. Each gets a 4xx (or the connection closed), the
run's stderr never shows a traceback, and the run keeps serving."""

from __future__ import annotations

import socket

import pytest

from tests.runtime.test_streams import _video
from tests.service.test_endpoints import TOKEN, request, serve, stop

RAW = [
    b"GET /streams/\xb2.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /streams/%B2.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /streams/\xc3\xa9\x00.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /%00%ff%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /streams/99999999999999999999.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /streams/\xd9\xa3.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # ARABIC-INDIC DIGIT THREE
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
    b"POST /streams?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \xb2\r\n\r\n",
    b"POST /streams?token=" + TOKEN.encode() + b' HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n{"u',
    b"DELETE /streams/\xb2?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    *(  # a source URI that is not one: NUL, a Unicode digit, 5,000 characters, a number where a string goes
        b"POST /streams?token="
        + TOKEN.encode()
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
        for body in (
            b'{"uri": "a\\u0000b"}',
            '{"uri": "\u00b2"}'.encode(),
            b'{"uri": "' + b"y" * 5000 + b'"}',
            b'{"uri": 7}',
            b"[1, 2]",
        )
    ),
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS ClientHello on the plain port
]


def _send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture(scope="module")
def running(tiny_onnx, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-web")
    proc, port, lines = serve(tiny_onnx, tmp, _video(tmp / "a.avi", 10))
    yield proc, port, lines
    err = stop(proc, lines)
    assert "Traceback" not in err, err


@pytest.mark.parametrize("data", RAW, ids=range(len(RAW)))
def test_hostile_requests_get_a_4xx_and_no_traceback(running, data):
    proc, port, lines = running
    answer = _send_raw(port, data)
    status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/") else b""
    # http.server answers a request line it cannot parse HTTP/0.9-style: the error page alone
    assert answer == b"" or status.startswith(b"4") or b"Error code: 4" in answer, answer[:200]
    assert request(port, "GET", "/healthz", token=None)[0] == 200 and proc.poll() is None
    assert not any("Traceback" in line for line in list(lines)), "\n".join(list(lines))
