"""Models that are broken or lie, and commands stopped half-way: dis-import's parity gate cannot be passed by two
constant outputs (NaN/inf weights, one class everywhere); a graph with no nodes is not a segmentation model; SIGTERM
during dis-import or dis-export leaves no temp file and no report without its model. (A labels-only model that
lists fewer classes than it produces: tests/test_faults.py and its C++ twin.)"""

from __future__ import annotations

import signal
import subprocess

import cv2
import numpy as np
import pytest

from tests.conftest import BIN, one_line, run_cmd


def _conv(folder, name: str, fill):
    torch = pytest.importorskip("torch")
    net = torch.nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        fill(net)
    path = folder / f"{name}.onnx"
    torch.onnx.export(net.eval(), torch.randn(1, 3, 32, 32), str(path), input_names=["x"], output_names=["logits"],
                      dynamo=False)  # fmt: skip
    return path


def _nan(net):
    net.weight.fill_(float("nan"))


def _inf(net):
    net.weight.normal_()
    net.bias.copy_(net.bias.new_tensor([float("inf"), 0, 0, float("-inf")]))


def _constant(net):
    net.weight.zero_()
    net.bias.copy_(net.bias.new_tensor([0.0, 3.0, 1.0, 2.0]))


@pytest.mark.parametrize("fill, word", [(_nan, "not finite"), (_inf, "not finite"), (_constant, "gives class 1")])
def test_a_gate_between_constant_outputs_cannot_pass(tmp_path, fill, word):
    foreign = _conv(tmp_path, "f", fill)
    out = tmp_path / "m.onnx"
    proc = run_cmd("dis-import", str(foreign), "-o", str(out), "--classes", "4")
    one_line(proc, 1, "parity check cannot pass", word)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.onnx"]  # no model, no report, no temp file


def test_a_graph_with_no_nodes_is_not_a_segmentation_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([], "empty", [x], [x])
    onnx.save(helper.make_model(graph), str(tmp_path / "empty.onnx"))
    proc = run_cmd("dis-import", str(tmp_path / "empty.onnx"), "-o", str(tmp_path / "m.onnx"))
    one_line(proc, 2)
    assert not (tmp_path / "m.onnx").exists()


def _stopped_mid_way(cmd: list[str], tmp_path, after: str) -> subprocess.CompletedProcess:
    """`cmd` sent SIGTERM once its stderr shows `after` (or it ends first)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if after in line:
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "".join(seen) + err)


def _left(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if ".partial" in p.name or p.name.endswith(".tmp"))


def test_sigterm_during_dis_import_leaves_no_temp_file_or_orphan_report(foreign_models, tmp_path):
    out = tmp_path / "m.onnx"
    cmd = [str(BIN / "dis-import"), str(foreign_models["label_map"]), "-o", str(out), "--classes", "5"]
    proc = _stopped_mid_way(cmd, tmp_path, "parity")
    assert proc.returncode in (0, 143), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and _left(tmp_path) == []
    assert out.with_suffix(".parity.json").exists() == (proc.returncode == 0) == out.exists()


def test_sigterm_during_dis_export_leaves_no_temp_file_or_orphan_report(tiny_run, tmp_path):
    out = tmp_path / "m.onnx"
    cmd = [str(BIN / "dis-export"), str(tiny_run / "best.pt"), "-o", str(out)]
    proc = _stopped_mid_way(cmd, tmp_path, "exporting")
    assert proc.returncode in (0, 143), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and _left(tmp_path) == []
    assert out.with_suffix(".parity.json").exists() == (proc.returncode == 0) == out.exists()


def _renamed(model, tmp_path, names):
    onnx = pytest.importorskip("onnx")
    import json

    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key.endswith(".class_names"):
            prop.value = json.dumps(names)
    out = tmp_path / "renamed.onnx"
    onnx.save(proto, str(out))
    return out


REST = ["c", "d", "e", "f", "g", "h"]
BAD_NAMES = {
    "duplicates": ["a"] * 8,
    "one repeated": ["bg", "x", "y", "z", "w", "v", "u", "x"],
    "NUL": ["bg", "a\u0000b", *REST],
    "newline": ["bg", "a\nb", *REST],
    "empty": ["bg", "", *REST],
}


@pytest.mark.parametrize("case", BAD_NAMES)
def test_class_names_that_are_not_names_are_refused_by_both_readers(tiny_onnx, tmp_path, cpp_build, case):
    model = _renamed(tiny_onnx, tmp_path, BAD_NAMES[case])
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    words = "class names must be unique, non-empty text without control characters"
    one_line(run_cmd("dis-run", str(model), "--images", str(tmp_path), "--no-display", "--stats", str(tmp_path / "s")),
             2, words)  # fmt: skip
    cpp = subprocess.run([str(cpp_build / "dis_run_cpp"), str(model), "--images", str(tmp_path), "--no-display",
                          "--stats", str(tmp_path / "s")], capture_output=True, text=True, timeout=120)  # fmt: skip
    one_line(cpp, 2, words)


def test_import_refuses_repeated_class_names(foreign_models, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("bg\ncar\ncar\nroad\nsky\n")
    proc = run_cmd("dis-import", str(foreign_models["label_map"]), "-o", str(tmp_path / "m.onnx"), "--classes",
                   str(names))  # fmt: skip
    one_line(proc, 2, "unique")
    assert not (tmp_path / "m.onnx").exists()
