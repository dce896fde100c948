"""Changed while it runs: a model swapped in under a live stream after its shadow run (POST /model, and SIGHUP when
the model file changed), with frame numbers continuous across the swap, masks from model A before and model B after,
and a damaged model refused while frames keep flowing; a --streams file re-read on SIGHUP."""

from __future__ import annotations

import json
import os
import shutil
import signal

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import wait_for
from tests.runtime.test_streams import _video
from tests.service.test_endpoints import request, serve, stop


def _model_b(model, path):
    """The same network with one class's bias raised: other labels, same contract."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    proto = onnx.load(str(model))
    for init in proto.graph.initializer:
        if init.name == "model.seg.bias":
            bias = numpy_helper.to_array(init).copy()
            bias[3] += 50.0
            init.CopyFrom(numpy_helper.from_array(bias, init.name))
    onnx.save(proto, str(path))
    return path


def _service(port) -> dict:
    return json.loads(request(port, "GET", "/stats.json")[1])["service"]


def _masks(folder):
    return sorted(folder.glob("*.png"))


def _labels_of(model, video, frames):
    from disseg.runtime.segmenter import Segmenter

    cap = cv2.VideoCapture(str(video))
    images = [cap.read()[1] for _ in range(frames)]
    cap.release()
    with Segmenter(model) as seg:
        return [seg(image).labels for image in images]


def test_a_model_is_swapped_under_a_live_stream_and_a_damaged_one_refused(tiny_onnx, tmp_path):
    clip = _video(tmp_path / "a.avi", 20, seed=1)
    model_b = _model_b(tiny_onnx, tmp_path / "b.onnx")
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(model_b.read_bytes()[: len(model_b.read_bytes()) // 2])
    masks = tmp_path / "masks"
    proc, port, lines = serve(tiny_onnx, tmp_path, clip, extra=("--masks", str(masks)))
    try:
        wait_for(lambda: len(_masks(masks)) >= 5, proc=proc, what="frames from model A")
        status, body = request(port, "POST", "/model", {"path": str(model_b)})
        assert status == 202, body
        wait_for(lambda: _service(port)["model_swaps"], proc=proc, what="the swap")
        swap = _service(port)["model_swaps"][0]
        assert swap["result"] == "swapped" and swap["model"] == "b.onnx" and 0 <= swap["agreement"] < 1, swap
        assert _service(port)["model"] == "b.onnx"
        assert request(port, "POST", "/model", {"path": str(tmp_path / "none.onnx")})[0] == 400
        assert request(port, "POST", "/model", {"path": str(damaged)})[0] == 202
        wait_for(lambda: len(_service(port)["model_swaps"]) == 2, proc=proc, what="the damaged model's refusal")
        refused = _service(port)["model_swaps"][1]
        assert refused["result"] == "refused" and "damaged.onnx" in refused["model"] and refused["reason"]
        after = len(_masks(masks))
        wait_for(lambda: len(_masks(masks)) > after + 5, proc=proc, what="frames after the refusal")
        assert _service(port)["model"] == "b.onnx"
        status, text = request(port, "GET", "/metrics")
        assert b'disseg_model_swaps_total{result="swapped"} 1.0' in text and b'result="refused"} 1.0' in text
    finally:
        err = stop(proc, lines)
    assert "damaged.onnx refused" in err and "Traceback" not in err
    names = [p.stem for p in _masks(masks)]
    assert names == [f"{i:06d}" for i in range(len(names))]  # continuous: no frame lost across the swap
    a, b = _labels_of(tiny_onnx, clip, 20), _labels_of(model_b, clip, 20)
    assert all(not np.array_equal(x, y) for x, y in zip(a, b))  # the two models tell their frames apart
    origin = []
    for i, path in enumerate(_masks(masks)):
        got = np.asarray(Image.open(path))
        origin.append("A" if np.array_equal(got, a[i % 20]) else "B" if np.array_equal(got, b[i % 20]) else "?")
    first_b = origin.index("B")
    assert origin == ["A"] * first_b + ["B"] * (len(origin) - first_b), "".join(origin)
    assert first_b == swap["at_frame"] >= 5  # swapped between two batches, at the frame the service says


def test_sighup_swaps_a_changed_model_file_and_rereads_the_streams_file(tiny_onnx, tmp_path):
    model = tmp_path / "live.onnx"
    shutil.copy(tiny_onnx, model)
    a, b = _video(tmp_path / "a.avi", 20, seed=1), _video(tmp_path / "b.avi", 20, seed=2)
    streams = tmp_path / "streams.txt"
    streams.write_text(f"# cameras\n{a}\n")
    proc, port, lines = serve(model, tmp_path, extra=("--streams", str(streams), "--loop", "100000"))
    try:
        wait_for(lambda: json.loads(request(port, "GET", "/streams")[1])["streams"][0]["frames"] > 0, proc=proc,
                 what="the first stream")  # fmt: skip
        streams.write_text(f"{b}\n")  # a replaced by b
        proc.send_signal(signal.SIGHUP)
        listing = lambda: json.loads(request(port, "GET", "/streams")[1])["streams"]  # noqa: E731
        wait_for(lambda: [s["source"] for s in listing()] == [f"video {b}"], proc=proc, what="the file's streams")
        staged = tmp_path / "staged.onnx"
        _model_b(tiny_onnx, staged)
        os.replace(staged, model)  # a new model rolled out under the same name
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _service(port)["model_swaps"], proc=proc, what="the swap on SIGHUP")
        assert _service(port)["model_swaps"][0]["result"] == "swapped"
        streams.write_bytes(b"\xff\xfe not text")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any("the streams run on unchanged" in x for x in list(lines)), proc=proc, what="the refusal")
        assert [s["source"] for s in listing()] == [f"video {b}"] and proc.poll() is None
    finally:
        stop(proc, lines)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [s["source"] for s in summary["streams"]] == [f"video {a}", f"video {b}"]
