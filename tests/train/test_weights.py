"""--pretrained downloads, checks and caches weights; served from 127.0.0.1 (nothing here reaches the internet):
download, cached second run without a request, hash mismatch, truncated transfer, unreachable host, a file, the
wrong model's weights, and that the backbone really holds the served weights."""

from __future__ import annotations

import hashlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
import torchvision

from disseg.runtime.errors import BadInput
from disseg.train import weights
from disseg.train.config import DISConfig
from disseg.train.model import DIS
from tests.conftest import closed_port, run_cmd

CFG = DISConfig(class_names=("background", "a"), stages=2)


class _Weights(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path.startswith("/truncated/") else body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(tmp_path):
    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    body = buffer.getvalue()
    digest = hashlib.sha256(body).hexdigest()
    _Weights.files = {
        f"resnet18-{digest[:10]}.pth": body,
        "resnet18-0123456789.pth": body,
        "plain.pth": body,
        "mobilenet.pth": body,
    }
    _Weights.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Weights)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    hub = tmp_path / "torch-hub"
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    yield {
        "base": f"http://127.0.0.1:{httpd.server_address[1]}",
        "name": f"resnet18-{digest[:10]}.pth",
        "state": net.state_dict(),
        "hub": hub,
    }
    torch.hub.set_dir(old)
    httpd.shutdown()


def _cached(hub):
    folder = hub / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_download_checks_hash_caches_and_loads_the_served_weights(server):
    url = f"{server['base']}/w/{server['name']}"
    model = DIS(CFG, pretrained=url)
    assert torch.equal(model.backbone[0].weight, server["state"]["conv1.weight"])  # conv1, the served tensor
    assert torch.equal(model.backbone[4][0].conv1.weight, server["state"]["layer1.0.conv1.weight"])
    assert _cached(server["hub"]) == [server["name"]] and len(_Weights.requests) == 1
    DIS(CFG, pretrained=url)  # second run: from the cache, no request
    assert len(_Weights.requests) == 1


def test_hash_mismatch_is_refused_and_not_cached(server):
    with pytest.raises(BadInput, match="does not match the hash") as err:
        DIS(CFG, pretrained=f"{server['base']}/w/resnet18-0123456789.pth")
    assert str(server["hub"] / "checkpoints" / "resnet18-0123456789.pth") in str(err.value)
    assert _cached(server["hub"]) == []


def test_truncated_download_leaves_nothing_in_the_cache(server):
    with pytest.raises(BadInput, match="cannot download|not a readable|does not match"):
        DIS(CFG, pretrained=f"{server['base']}/truncated/{server['name']}")
    assert _cached(server["hub"]) == []


def test_unreachable_host_names_the_url_and_the_cache_path(server):
    url = f"http://127.0.0.1:{closed_port()}/w/resnet18-abc.pth"
    with pytest.raises(BadInput, match="cannot download") as err:
        DIS(CFG, pretrained=url)
    assert url in str(err.value) and str(server["hub"] / "checkpoints" / "resnet18-abc.pth") in str(err.value)


def test_a_file_and_the_wrong_models_weights(server, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(server["state"], path)
    assert torch.equal(DIS(CFG, pretrained=str(path)).backbone[0].weight, server["state"]["conv1.weight"])
    with pytest.raises(BadInput, match="not mobilenet_v3_large weights"):
        DIS(CFG.replace(backbone="mobilenet_v3_large", output_stride=16), pretrained=str(path))
    with pytest.raises(BadInput, match="no such file"):
        DIS(CFG, pretrained=str(tmp_path / "absent.pth"))


def test_imagenet_is_torchvisions_url_and_cache():
    url = weights.imagenet_url("resnet18")
    assert url == torchvision.models.ResNet18_Weights.DEFAULT.url
    assert (
        weights.cache_path(url).name == url.rsplit("/", 1)[-1] and weights.cache_path(url).parent.name == "checkpoints"
    )


def test_cli_offline_is_one_line_exit_2(tiny_data, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/resnet18-abc.pth"
    proc = run_cmd(
        "dis-train",
        "--data",
        str(tiny_data),
        "--out",
        str(tmp_path / "o"),
        "--stages",
        "2",
        "--size",
        "64",
        "--epochs",
        "1",
        "--pretrained",
        url,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"cannot download {url}" in proc.stderr.strip().splitlines()[-1]
