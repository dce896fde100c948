"""A backend that fails mid-run (here: a model whose graph only takes a batch of 2, run on two streams until one ends)
stops the run cleanly in both runtimes: the threads are stopped and joined, every video is closed and plays to its
last counted frame, the stats are written, then one line and exit 1 (never std::terminate, never a lost video)."""

from __future__ import annotations

import json
import subprocess

import cv2
import pytest

from tests.conftest import BIN
from tests.runtime.test_streams import _video


def _only_batch_two(model, path):
    """The dynamic-batch model with its labels forced through a Reshape to a batch of exactly 2."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    proto = onnx.load(str(model))
    graph = proto.graph
    producer = next(n for n in graph.node if "labels" in n.output)
    producer.output[list(producer.output).index("labels")] = "labels_any_batch"
    shape = numpy_helper.from_array(__import__("numpy").array([2, 64, 64], "int64"), "batch_of_two")
    graph.initializer.append(shape)
    graph.node.extend([
        helper.make_node("Reshape", ["labels_any_batch", "batch_of_two"], ["labels_two"]),
        helper.make_node("Shape", ["labels_any_batch"], ["labels_shape"]),
        helper.make_node("Reshape", ["labels_two", "labels_shape"], ["labels"]),
    ])  # fmt: skip
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("runtime", ["python", "cpp"])
def test_a_backend_failing_mid_run_closes_every_output_then_one_line(scene_tags_model, tmp_path, runtime, request):
    model = _only_batch_two(scene_tags_model, tmp_path / "batch2.onnx")
    a, b = _video(tmp_path / "a.avi", 10, seed=1), _video(tmp_path / "b.avi", 30, seed=2)
    exe = BIN / "dis-run" if runtime == "python" else request.getfixturevalue("cpp_build") / "dis_run_cpp"
    out, stats = tmp_path / "out.mp4", tmp_path / "s.json"
    cmd = [str(exe), str(model), "--source", str(a), "--source", str(b), "--output", str(out), "--stats", str(stats)]
    proc = subprocess.run([*cmd, "--no-display"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "Traceback" not in proc.stderr and "terminate" not in proc.stderr, proc.stderr
    summary = json.loads(stats.read_text())
    assert [s["frames"] for s in summary["streams"]] == [10, 10]  # ten rounds of two, then a batch of one failed
    for i in range(2):
        cap = cv2.VideoCapture(str(out.with_name(f"out.s{i}.mp4")))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
        cap.set(cv2.CAP_PROP_POS_FRAMES, 9)
        assert cap.read()[0]
        cap.release()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
