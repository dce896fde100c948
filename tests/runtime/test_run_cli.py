import json

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_stats_keys, run_cmd


def _video(path, frames=12, size=(96, 72)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        cv2.circle(frame, (10 + 5 * i, size[1] // 2), 15, (0, 180, 0), -1)
        writer.write(frame)
    writer.release()
    return path


def test_video_to_video_masks_and_stats(tiny_onnx, tmp_path):
    video = _video(tmp_path / "in.mp4")
    proc = run_cmd(
        "dis-run",
        str(tiny_onnx),
        "--video",
        str(video),
        "--output",
        str(tmp_path / "out.mp4"),
        "--no-display",
        "--masks",
        str(tmp_path / "masks"),
        "--stats",
        str(tmp_path / "stats.json"),
    )
    assert proc.returncode == 0, proc.stderr
    out = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(out.get(cv2.CAP_PROP_FRAME_COUNT)) == 12  # nothing dropped from a file
    ok, frame = out.read()
    assert ok and frame.shape == (72, 96, 3)
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert len(masks) == 12
    with Image.open(masks[0]) as m:
        assert m.mode == "P" and m.size == (96, 72)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] == 12 and stats["fps"] > 0 and stats["runtime"] == "python"
    assert_stats_keys(stats)
    assert 0 <= stats["frame_age_ms"]["p50"] <= stats["wall_s"] * 1000  # waited in the queue, within the run
    assert stats["latency_ms"]["infer_ms"]["p50"] > 0 and sum(stats["class_area"].values()) == pytest.approx(
        1.0, abs=1e-3
    )
    assert not list(tmp_path.glob(".*partial*"))  # temp file renamed into place


def test_image_folder_skips_non_images_and_odd_formats(tiny_onnx, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a_gray.png"), np.full((30, 40), 90, np.uint8))
    cv2.imwrite(str(photos / "b_rgba.png"), np.full((20, 25, 4), 200, np.uint8))
    cv2.imwrite(str(photos / "c_16bit.png"), np.full((33, 17, 3), 40000, np.uint16))
    cv2.imwrite(str(photos / "d_tiny.png"), np.full((1, 1, 3), 10, np.uint8))
    (photos / "e_broken.jpg").write_bytes(b"this is not an image")
    proc = run_cmd("dis-run", str(tiny_onnx), "--images", str(photos), "--masks", str(tmp_path / "m"), "--no-display")
    assert proc.returncode == 0, proc.stderr
    assert "1 skipped" in proc.stdout and "e_broken.jpg" in proc.stderr
    sizes = {p.stem: Image.open(p).size for p in (tmp_path / "m").glob("*.png")}
    assert sizes == {"a_gray": (40, 30), "b_rgba": (25, 20), "c_16bit": (17, 33), "d_tiny": (1, 1)}


def test_max_frames_and_loop(tiny_onnx, tmp_path):
    video = _video(tmp_path / "in.mp4", frames=5)
    proc = run_cmd(
        "dis-run",
        str(tiny_onnx),
        "--video",
        str(video),
        "--loop",
        "3",
        "--max-frames",
        "11",
        "--no-display",
        "--stats",
        str(tmp_path / "s.json"),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 11


@pytest.mark.parametrize(
    "args,message",
    [
        (["--video", "{tmp}/missing.mp4"], "no such video"),
        (["--camera", "57"], "camera 57"),
        (["--images", "{tmp}/no_dir"], "no such image folder"),
        (["--rtsp", "not-a-url"], "expected a URL"),
        (["--video", "{tmp}/empty.mp4"], "cannot read any frame"),
        (["--csi", "0"], "GStreamer"),
        ([], "no source given"),
    ],
)
def test_bad_sources_exit_2_with_one_line(tiny_onnx, tmp_path, args, message):
    (tmp_path / "empty.mp4").write_bytes(b"")
    args = [a.format(tmp=tmp_path) for a in args]
    proc = run_cmd("dis-run", str(tiny_onnx), *args, "--no-display", "--stats", str(tmp_path / "s.json"))
    if message == "GStreamer" and proc.returncode == 0:
        pytest.skip("this OpenCV has GStreamer")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("kind", ["missing", "truncated", "foreign"])
def test_bad_models_exit_2(tiny_onnx, tmp_path, kind):
    model = tmp_path / "m.onnx"
    if kind == "truncated":
        model.write_bytes(tiny_onnx.read_bytes()[:3000])
    elif kind == "foreign":
        model.write_bytes(b"\x08\x07\x12\x04test")  # a valid protobuf with no disseg metadata
    proc = run_cmd(
        "dis-run", str(model), "--images", str(tmp_path), "--no-display", "--stats", str(tmp_path / "s.json")
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_bench_reports_percentiles(tiny_onnx, tmp_path):
    proc = run_cmd("dis-bench", str(tiny_onnx), "--runs", "5", "--warmup", "1", "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["iterations_unrolled"] == 3 and row["batch"] == 1


def test_ctrl_c_flushes_video_and_stats(tiny_onnx, tmp_path):
    from tests.conftest import BIN, interrupt_run

    video = _video(tmp_path / "in.mp4", frames=20)
    code, err, summary, written, masks = interrupt_run(
        BIN / "dis-run", tiny_onnx, video, tmp_path / "out.mp4", tmp_path / "s.json"
    )
    assert code == 130, err
    assert summary["interrupted"] is True and summary["frames"] > 0
    assert written == masks == summary["frames"]  # every frame counted was written before the exit


def test_bench_plot_over_several_models(tiny_onnx, tmp_path):
    pytest.importorskip("matplotlib")
    proc = run_cmd(
        "dis-bench", str(tiny_onnx), str(tiny_onnx), "--runs", "3", "--warmup", "0", "--plot", str(tmp_path / "p.png")
    )
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(tmp_path / "p.png")) is not None


def _image(path):
    cv2.imwrite(str(path), np.full((8, 8, 3), 200, np.uint8))
    return path


def _checkpoint_like(path):
    """A zip laid out as torch.save writes one (RUN/last.pt), without torch."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("last/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("last/version", b"3\n")
    return path


EXPORTED = "pass an exported model (MODEL.onnx, or MODEL.engine with its .json sidecar)"
WANT = {"folder": f"is a folder; {EXPORTED}", "image": f"is not a model file disseg reads; {EXPORTED}"}


@pytest.mark.parametrize("given", ["checkpoint", "checkpoint-renamed", "folder", "image"])
def test_the_wrong_kind_of_model_says_what_it_is_and_what_makes_the_right_one(tmp_path, given):
    model = {
        "checkpoint": lambda: _checkpoint_like(tmp_path / "last.pt"),
        "checkpoint-renamed": lambda: _checkpoint_like(tmp_path / "model.bin"),
        "folder": lambda: tmp_path,
        "image": lambda: _image(tmp_path / "street.jpg"),
    }[given]()
    video = _video(tmp_path / "in.mp4", frames=2)  # a source that opens: the model is what is wrong
    for command in ("dis-run", "dis-bench"):
        args = ["--video", str(video), "--stats", str(tmp_path / "s.json")] if command == "dis-run" else []
        proc = run_cmd(command, str(model), *args)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        want = (
            WANT[given]
            if given in WANT
            else f"PyTorch checkpoint, not an exported model; export it first: dis-export {model}"
        )
        assert len(lines) == 1 and want in lines[0], proc.stderr
