"""dis-serve through NVIDIA's Triton (nvidia-pytriton's server binary) on 127.0.0.1, and triton:// models in the
commands. CI runs these in an environment with `disseg[runtime,serve]` (DISSEG_REQUIRE_TRITON=1); elsewhere they skip
where pytriton is missing. Every wait is for a line, a port or a process end; every request loop is bounded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BIN, closed_port, one_line, run_cmd, wait_for

if os.environ.get("DISSEG_REQUIRE_TRITON") == "1":
    import pytriton  # noqa: F401
else:
    pytest.importorskip("pytriton")
    pytest.importorskip("tritonclient")

cv2 = pytest.importorskip("cv2")

from disseg.runtime.segmenter import Segmenter  # noqa: E402
from disseg.runtime.triton_serve import free_ports  # noqa: E402

FRAMES = [np.random.default_rng(i).integers(0, 256, (48 + 8 * i, 64 + 4 * i, 3), dtype=np.uint8) for i in range(4)]


class Server:
    """dis-serve as a user starts it, in its own process group (so a test can also kill it with its children)."""

    def __init__(self, model: Path, folder: Path, *extra: str) -> None:
        self.http, self.grpc, self.metrics = free_ports()
        self.out = folder / f"serve-{self.http}.out"
        self.err = folder / f"serve-{self.http}.err"
        args = [str(BIN / "dis-serve"), str(model), "--http-port", str(self.http), "--grpc-port", str(self.grpc),
                "--metrics-port", str(self.metrics), *extra]  # fmt: skip
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, start_new_session=True)
        wait_for(lambda: "serving" in self.out.read_text(), proc=self.proc, timeout=180, what="dis-serve's line")

    def url(self, grpc: bool = False) -> str:
        return f"triton+grpc://127.0.0.1:{self.grpc}/disseg" if grpc else f"triton://127.0.0.1:{self.http}/disseg"

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=30).read().decode()
        return sum(float(v) for v in re.findall(rf'^{name}{{[^}}]*model="disseg"[^}}]*}} (\S+)$', text, re.M))

    def stop(self, signum=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)


def server_processes(port: int) -> list[int]:
    """Processes whose command line names this port: tritonserver is started with it."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"{port}" in cmdline and ("tritonserver" in cmdline or "dis-serve" in cmdline):
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def server(tiny_onnx, tmp_path_factory):
    s = Server(tiny_onnx, tmp_path_factory.mktemp("serve"), "--max-batch", "8", "--queue-delay-us", "20000")
    yield s
    s.stop()


@pytest.mark.parametrize("grpc", [False, True], ids=["http", "grpc"])
def test_a_served_model_answers_as_the_local_one(server, tiny_onnx, grpc):
    with Segmenter(server.url(grpc)) as remote, Segmenter(tiny_onnx, backend="onnxruntime") as local:
        assert remote.info.class_names == local.info.class_names and remote.info.palette == local.info.palette
        assert (remote.info.input_height, remote.info.input_width) == (local.info.input_height, local.info.input_width)
        assert remote.backend.max_batch == 8
        for mine, theirs in zip(remote.segment_batch(FRAMES), local.segment_batch(FRAMES)):
            assert np.array_equal(mine.labels, theirs.labels)
            np.testing.assert_allclose(mine.tags, theirs.tags, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grpc", [False, True], ids=["http", "grpc"])
def test_a_served_model_takes_scene_tags_per_frame(scene_tags_model, tmp_path, grpc):
    """The scene_tags input travels with each request (both protocols), batched by Triton like the image."""
    s = Server(scene_tags_model, tmp_path, "--max-batch", "4")
    try:
        with Segmenter(s.url(grpc)) as remote, Segmenter(scene_tags_model, backend="onnxruntime") as local:
            assert remote.info.scene_tags == "energy+mask"
            k = local.info.num_classes
            tags = [np.eye(k, dtype=np.float32)[[1, 2]].sum(0), None, np.eye(k, dtype=np.float32)[3], None]
            for mine, theirs in zip(
                remote.segment_batch(FRAMES, scene_tags=tags), local.segment_batch(FRAMES, scene_tags=tags)
            ):
                assert np.array_equal(mine.labels, theirs.labels)
                np.testing.assert_allclose(mine.tags, theirs.tags, rtol=1e-5, atol=1e-6)
            assert set(np.unique(remote(FRAMES[0], scene_tags=tags[2]).labels)) == {3}
            _bad_tags_are_refused_by_the_server(s, remote, k, grpc)
    finally:
        assert s.stop() == 143


def _bad_tags_are_refused_by_the_server(s, remote, k: int, grpc: bool) -> None:
    """A raw client (no Segmenter checks on its side) sending NaN, inf or out-of-range tags gets the local runtime's
    refusal back as the request's error, not labels computed from them."""
    if grpc:
        import tritonclient.grpc as tc
    else:
        import tritonclient.http as tc
    from tritonclient.utils import InferenceServerException

    client = tc.InferenceServerClient(remote.backend.address)
    h, w = remote.info.input_height, remote.info.input_width
    for bad in (np.nan, np.inf, 1.5, -0.1):
        image = tc.InferInput("image", [1, h, w, 3], "UINT8")
        image.set_data_from_numpy(np.zeros((1, h, w, 3), np.uint8))
        tags = tc.InferInput("scene_tags", [1, k], "FP32")
        tags.set_data_from_numpy(np.full((1, k), bad, np.float32))
        with pytest.raises(InferenceServerException, match="scene_tags input"):
            client.infer(remote.backend.model, [image, tags])
    client.close()


def _dataset(root: Path, model: Path) -> Path:
    """A folder-layout data set whose masks are the local model's labels with a block relabelled per image."""
    root.mkdir(parents=True)
    with Segmenter(model, backend="onnxruntime") as seg:
        (root / "classes.txt").write_text("\n".join(seg.class_names) + "\n")
        for split in ("val",):
            (root / split / "images").mkdir(parents=True)
            (root / split / "masks").mkdir(parents=True)
            for i, frame in enumerate(FRAMES):
                mask = seg(frame).labels.copy()
                mask[: mask.shape[0] // 3, : mask.shape[1] // 3] = (i + 1) % seg.info.num_classes
                cv2.imwrite(str(root / split / "images" / f"{i}.png"), frame)
                cv2.imwrite(str(root / split / "masks" / f"{i}.png"), mask)
    return root


def test_dis_eval_and_dis_run_on_a_served_model_equal_the_local_model(server, tiny_onnx, tmp_path):
    data = _dataset(tmp_path / "data", tiny_onnx)
    results = {}
    for name, model in (("local", str(tiny_onnx)), ("remote", server.url())):
        report = tmp_path / f"{name}.json"
        run_cmd("dis-eval", model, "--data", str(data), "--backend", "auto", "--json", str(report), check=True)
        results[name] = json.loads(report.read_text())["results"][0]
        run_cmd("dis-run", model, "--images", str(data / "val" / "images"), "--masks", str(tmp_path / name),
                "--no-display", check=True)  # fmt: skip
    assert 0 < results["remote"]["miou"] < 100 and results["remote"]["miou"] == results["local"]["miou"]
    assert results["remote"]["per_class_iou"] == results["local"]["per_class_iou"]
    from PIL import Image

    for i in range(len(FRAMES)):
        a, b = (np.array(Image.open(tmp_path / side / f"{i}.png")) for side in ("local", "remote"))
        assert np.array_equal(a, b)


def test_concurrent_clients_are_batched_by_triton(server):
    before = (server.metric("nv_inference_request_success"), server.metric("nv_inference_exec_count"))
    errors = []

    def client() -> None:
        try:
            with Segmenter(server.url()) as seg:
                for frame in FRAMES[:3]:
                    seg(frame)
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and not any(t.is_alive() for t in threads)
    requests = server.metric("nv_inference_request_success") - before[0]
    executions = server.metric("nv_inference_exec_count") - before[1]
    assert requests == 48 and executions < requests  # some executions ran batches of more than one request


def test_dis_doctor_checks_a_served_model(server, tiny_onnx):
    from disseg.runtime.contract import read_model_info

    report = json.loads(run_cmd("dis-doctor", server.url(), "--json", check=True).stdout)["check"]
    assert report["backends"]["triton"].startswith("ok") and report["server_max_batch"] == 8
    assert report["classes"] == read_model_info(tiny_onnx).num_classes


def test_a_wrong_or_absent_server_is_one_line(server, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), FRAMES[0])
    args = ["--images", str(images), "--masks", str(tmp_path / "m"), "--no-display"]
    one_line(run_cmd("dis-run", f"triton://127.0.0.1:{closed_port()}/disseg", *args), 2, "no Triton server answers")
    proc = run_cmd("dis-run", f"triton://127.0.0.1:{server.http}/nope", *args)
    one_line(proc, 2, "has no ready model 'nope'", "--model-name")
    one_line(run_cmd("dis-run", f"triton://127.0.0.1:{server.http}", *args), 2, "triton://HOST:PORT/NAME")
    proc = run_cmd("dis-run", server.url(), "--backend", "onnxruntime", *args)
    one_line(proc, 2, "runs on the server's backend")
    one_line(run_cmd("dis-serve", "missing.onnx"), 2, "missing.onnx")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_the_server_and_leaves_nothing(tiny_onnx, tmp_path, signum):
    before = {p.name for p in Path(tempfile.gettempdir()).glob("disseg-triton-*")}
    s = Server(tiny_onnx, tmp_path)
    assert server_processes(s.http)
    status = s.stop(signum)
    assert status == 128 + signum, s.err.read_text()[-2000:]
    assert "stopped disseg" in s.out.read_text()
    wait_for(lambda: not server_processes(s.http), timeout=60, what="tritonserver to exit")
    assert {p.name for p in Path(tempfile.gettempdir()).glob("disseg-triton-*")} == before


def test_a_server_that_dies_mid_run_fails_the_run_and_keeps_what_was_written(tiny_onnx, tmp_path):
    s = Server(tiny_onnx, tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(FRAMES):
        cv2.imwrite(str(images / f"{i}.png"), frame)
    masks = tmp_path / "masks"
    run = subprocess.Popen(
        [str(BIN / "dis-run"), s.url(), "--images", str(images), "--loop", "100000", "--masks", str(masks),
         "--stats", str(tmp_path / "s.json"), "--no-display"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: masks.is_dir() and len(list(masks.glob("*.png"))) >= 2, proc=run, what="masks from the server")
    os.killpg(s.proc.pid, signal.SIGKILL)  # the server and its tritonserver, without warning
    _, err = run.communicate(timeout=300)
    assert run.returncode == 1, err
    assert "stopped answering" in err and "Traceback" not in err
    written = sorted(masks.glob("*.png"))
    assert written and all(cv2.imread(str(p)) is not None for p in written)
    stats = json.loads((tmp_path / "s.json").read_text())  # exit 1 still writes the stats of what was produced
    assert stats["frames"] >= len(written) >= 2
    s.stop()
