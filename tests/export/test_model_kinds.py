"""Commands that take a model name what they were given when it is the wrong kind, and the command that makes the
right one: one line, exit 2, never a traceback (dis-calibrate used to trace back on an engine)."""

import cv2
import numpy as np
import pytest

from tests.conftest import run_cmd


@pytest.fixture(scope="module")
def files(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    engine = root / "model.engine"
    engine.write_bytes(b"ftrt" + bytes(60))  # a serialized engine's body is opaque; the name says what it is
    cv2.imwrite(str(root / "street.jpg"), np.full((8, 8, 3), 90, np.uint8))
    return {"run folder": tiny_run, "engine": engine, "image": root / "street.jpg", "missing": root / "none.onnx"}


CASES = {
    ("dis-export", "run folder"): "is a folder (it holds {run}/best.pt",
    ("dis-export", "engine"): "is a TensorRT engine, not a checkpoint (RUN/best.pt) or an exported .onnx",
    ("dis-export", "image"): "is not a model file disseg reads; pass a checkpoint (RUN/best.pt) or an exported .onnx",
    ("dis-export", "missing"): "no such model file; pass a checkpoint",
    ("dis-eval", "run folder"): "is a folder (it holds {run}/best.pt",
    ("dis-eval", "image"): "is not a model file disseg reads; pass a checkpoint or an exported model",
    ("dis-calibrate", "engine"): "is a TensorRT engine, not the FP32 .onnx an engine is built from",
    ("dis-calibrate", "image"): "is not a model file disseg reads; pass an exported model",
    ("dis-calibrate", "run folder"): "is a folder (it holds {run}/best.pt",
}


@pytest.mark.parametrize(("command", "given"), list(CASES), ids=[f"{c}-{g}" for c, g in CASES])
def test_wrong_kind_is_named(files, tiny_data, tiny_run, command, given):
    extra = {"dis-export": [], "dis-eval": ["--data", str(tiny_data)], "dis-calibrate": ["--data", str(tiny_data)]}
    proc = run_cmd(command, str(files[given]), *extra[command])
    want = CASES[command, given].format(run=tiny_run)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert want in lines[0], lines[0]
