"""A model of more than 256 classes (the contract and dis-import allow up to 65536) runs end to end: dis-run and
dis_run_cpp write its masks as 16-bit PNGs of class indices (a palette holds 256 colours), equal between the two
runtimes; the overlay video and the stats are written; the C ABI returns its labels through disseg_segment_wide."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from tests.conftest import run_cmd

CLASSES = 300


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("wide")
    net = torch.nn.Conv2d(3, CLASSES, 3, padding=1)
    with torch.no_grad():  # random weights drawn so that many of the 300 classes win somewhere
        torch.manual_seed(0)
        net.weight.normal_(0, 1)
        net.bias.normal_(0, 0.1)
    torch.onnx.export(net.eval(), torch.randn(1, 3, 64, 64), str(folder / "foreign.onnx"), input_names=["input"],
                      output_names=["logits"], dynamo=False)  # fmt: skip
    proc = run_cmd("dis-import", str(folder / "foreign.onnx"), "-o", str(folder / "wide.onnx"), "--classes",
                   str(CLASSES))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    images = folder / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8))
    return folder / "wide.onnx", images


def test_dis_run_writes_16_bit_masks_video_and_stats(wide_model, tmp_path):
    model, images = wide_model
    proc = run_cmd("dis-run", str(model), "--images", str(images), "--masks", str(tmp_path / "m"), "--output",
                   str(tmp_path / "out.mp4"), "--stats", str(tmp_path / "s.json"), "--no-display")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    masks = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((tmp_path / "m").glob("*.png"))]
    assert len(masks) == 6 and all(m.dtype == np.uint16 for m in masks)
    assert max(int(m.max()) for m in masks) > 255 and max(int(m.max()) for m in masks) < CLASSES
    assert cv2.VideoCapture(str(tmp_path / "out.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 6
    assert (tmp_path / "s.json").is_file()


def test_cpp_masks_equal_python_masks(wide_model, cpp_build, tmp_path):
    model, images = wide_model
    assert run_cmd("dis-run", str(model), "--images", str(images), "--masks", str(tmp_path / "py"),
                   "--no-display").returncode == 0  # fmt: skip
    cmd = [str(cpp_build / "dis_run_cpp"), str(model), "--images", str(images), "--masks", str(tmp_path / "cpp"),
           "--no-display"]  # fmt: skip
    cpp = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert cpp.returncode == 0, cpp.stderr
    names = sorted(p.name for p in (tmp_path / "py").glob("*.png"))
    assert names and names == sorted(p.name for p in (tmp_path / "cpp").glob("*.png"))
    for name in names:
        a = cv2.imread(str(tmp_path / "py" / name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "cpp" / name), cv2.IMREAD_UNCHANGED)
        assert b.dtype == np.uint16 and np.array_equal(a, b), name


def test_c_abi_gives_wide_labels(wide_model, cpp_build):
    from disseg.runtime import Segmenter
    from disseg.runtime.cabi import CSegmenter

    model, images = wide_model
    with CSegmenter(cpp_build, model, backend="onnxruntime", threads=1) as c, Segmenter(model) as py:
        for path in sorted(images.glob("*.png")):
            frame = cv2.imread(str(path))
            labels, _ = c.segment(frame)
            assert labels.dtype == np.uint16 and np.array_equal(labels, py(frame).labels)


def test_labels_png_is_16_bit_and_events_name_classes_past_256(wide_model, tmp_path):
    """The web view's labels.png of a 300-class model is a 16-bit PNG equal to the run's mask of the same frame; the
    events name the classes past 256."""
    import json
    import re

    from tests.conftest import BIN, wait_for
    from tests.runtime.test_events import _fetch

    model, images = wide_model
    one = tmp_path / "one"
    one.mkdir()
    cv2.imwrite(str(one / "a.png"), cv2.imread(str(sorted(images.glob("*.png"))[2])))
    cmd = [str(BIN / "dis-run"), str(model), "--images", str(one), "--loop", "100000", "--serve", "127.0.0.1:0"]
    events = tmp_path / "ev.jsonl"
    proc = subprocess.Popen([*cmd, "--masks", str(tmp_path / "m"), "--events", str(events)], stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    seen: list[str] = []
    try:
        wait_for(lambda: seen.append(proc.stderr.readline()) or "serving the live view" in seen[-1], proc=proc,
                 what="the serving line")  # fmt: skip
        url = re.search(r"http://\S+?/", seen[-1]).group(0)
        got: list[bytes] = []
        wait_for(lambda: got.append(_fetch(url + "streams/0/labels.png")) or got[-1] is not None, proc=proc,
                 what="a frame's labels")  # fmt: skip
        png = got[-1]
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    served = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    written = cv2.imread(str(sorted((tmp_path / "m").glob("*.png"))[0]), cv2.IMREAD_UNCHANGED)
    assert served.dtype == np.uint16 and np.array_equal(served, written)  # one still frame: every label map equal
    first = json.loads(events.read_text().splitlines()[0])
    counts = np.bincount(written.reshape(-1), minlength=CLASSES)
    from disseg.runtime.events import rounded

    assert first["areas"] == {f"class_{c}": rounded(counts[c] / written.size) for c in np.flatnonzero(counts)}
    assert any(int(name.split("_")[1]) > 255 for name in first["areas"])
