"""Credentials in every form cameras and servers take them (a URL's userinfo, a query's password/token/key, a
pipeline's user-pw) never leave dis-run: not in the web page, /stats.json, /streams, /metrics, stderr or the stats
file, for a stream that runs and for a served model's URL. The cases of the one function behind it are
tests/redact_cases.json (both runtimes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.conftest import SECRET, closed_port, one_line, run_cmd, wait_for
from tests.live_servers import LiveServers
from tests.service.test_endpoints import request, serve, stop


@pytest.fixture()
def servers():
    found = LiveServers()
    yield found
    found.close()


def test_query_and_userinfo_credentials_stay_out_of_every_surface(tiny_onnx, tmp_path, servers):
    port_url = servers.url("flow").replace("http://", f"http://admin:{SECRET}@")
    query_url = f"{servers.url('flow')}?user=admin&Password={SECRET}&token={SECRET}"
    proc, port, lines = serve(tiny_onnx, tmp_path, port_url, query_url)
    try:
        wait_for(lambda: request(port, "GET", "/stats.json")[1].count(b'"frames"') and servers.frames_sent, proc=proc,
                 what="frames")  # fmt: skip
        bodies = {path: request(port, "GET", path)[1].decode(errors="replace")
                  for path in ("/", "/stats.json", "/streams", "/metrics")}  # fmt: skip
    finally:
        err = stop(proc, lines)
    for path, body in bodies.items():
        assert SECRET not in body, path
    assert "Password=***" in bodies["/streams"] and "admin:***@127.0.0.1" in bodies["/streams"], bodies["/streams"]
    assert SECRET not in err and SECRET not in (tmp_path / "s.json").read_text()


@pytest.mark.parametrize("scheme", ["triton", "triton+grpc"])
def test_a_served_model_url_with_a_password_is_refused_without_showing_it(tmp_path, scheme):
    url = f"{scheme}://user:{SECRET}@127.0.0.1:{closed_port()}/tiny"
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    proc = run_cmd("dis-run", url, "--images", str(tmp_path), "--stats", str(tmp_path / "s.json"), "--no-display")
    line = one_line(proc, 2, "carries no user or password")
    assert f"{scheme}://user:***@127.0.0.1" in line and SECRET not in proc.stderr + proc.stdout
