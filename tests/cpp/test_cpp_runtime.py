"""The C++ runtime (runtime/cpp) against the Python runtime on the same model and frames: labels equal,
through the C ABI and through dis_run_cpp; its command's errors, loop and Ctrl-C behave as dis-run's."""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image

from disseg.runtime.cabi import CSegmenter
from disseg.runtime.segmenter import Segmenter
from tests.conftest import assert_stats_keys, interrupt_run, run_cmd


def _scene(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = (rng.random((h, w, 3)) * 60 + 40).astype(np.uint8)
    for _ in range(4):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, centre, int(rng.integers(4, max(5, min(h, w) // 2))), colour, -1)
    return image


FRAMES = [  # the model's size, enlarged (bilinear), shrunk (area), odd sizes, gray, BGRA, a padded view
    _scene(64, 64, 0),
    _scene(40, 52, 1),
    _scene(240, 180, 2),
    _scene(37, 301, 3),
    cv2.cvtColor(_scene(90, 70, 4), cv2.COLOR_BGR2GRAY),
    cv2.cvtColor(_scene(64, 96, 5), cv2.COLOR_BGR2BGRA),
    _scene(100, 120, 6)[:, :100],
]


def _run_cpp(build, *args, timeout=300):
    return subprocess.run(
        [str(build / "dis_run_cpp"), *map(str, args)], check=False, capture_output=True, text=True, timeout=timeout
    )


def test_c_abi_labels_equal_python_runtime(cpp_build, tiny_onnx):
    classes_seen = set()
    with (
        Segmenter(tiny_onnx, backend="onnxruntime", threads=1) as py,
        CSegmenter(cpp_build, tiny_onnx, backend="onnxruntime", threads=1) as cpp,
    ):
        assert cpp.class_names == py.class_names and cpp.backend == "onnxruntime"
        for i, frame in enumerate(FRAMES):
            expected = py(frame)
            labels, tags = cpp.segment(frame)
            assert labels.shape == frame.shape[:2]
            assert np.array_equal(labels, expected.labels), (
                f"frame {i}: {np.mean(labels != expected.labels):.4%} of labels differ"
            )
            np.testing.assert_allclose(tags, expected.tags, rtol=1e-5, atol=1e-6)
            classes_seen |= set(np.unique(labels).tolist())
    assert len(classes_seen) >= 2  # the comparison covers more than one class


@pytest.mark.parametrize("kind", ["fp16", "int8-cpu", "batch-3", "dynamic-batch"])
def test_cpp_labels_equal_python_for_every_export_kind(cpp_build, tiny_run, tiny_data, tiny_onnx, tmp_path, kind):
    """Precision and batch are properties of the ONNX file; both runtimes must read them the same way."""
    from disseg.runtime.cabi import load_library

    model = tmp_path / f"{kind}.onnx"
    if kind == "fp16":
        run_cmd(
            "dis-export",
            str(tiny_run / "best.pt"),
            "--iters",
            "3",
            "--fp16",
            "--outputs",
            "labels,tags",
            "-o",
            str(model),
            check=True,
        )
    elif kind == "int8-cpu":
        run_cmd(
            "dis-calibrate",
            str(tiny_onnx),
            "--data",
            str(tiny_data),
            "--target",
            "cpu",
            "--samples",
            "8",
            "--max-drop",
            "100",
            "-o",
            str(model),
            check=True,
        )
    else:
        batch = ["--batch", "3"] if kind == "batch-3" else ["--dynamic-batch"]
        run_cmd("dis-export", str(tiny_run / "best.pt"), "--iters", "2", *batch, "-o", str(model), check=True)
    with (
        Segmenter(model, backend="onnxruntime", threads=1) as py,
        CSegmenter(load_library(cpp_build), model, threads=1) as cpp,
    ):
        batched = py.segment_batch(FRAMES[:4])  # fixed batch 3: padded to 6 and split; dynamic: one call of 4
        for frame, expected in zip(FRAMES[:4], batched):
            labels, _ = cpp.segment(frame)
            assert np.array_equal(labels, expected.labels), kind


def test_dis_run_cpp_images_masks_equal_dis_run(cpp_build, tiny_onnx, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(FRAMES):
        cv2.imwrite(str(folder / f"img{i}.png"), frame)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("not an image")
    proc = _run_cpp(
        cpp_build,
        tiny_onnx,
        "--images",
        folder,
        "--masks",
        tmp_path / "cpp",
        "--stats",
        tmp_path / "cpp.json",
        "--no-display",
        "--threads",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    run_cmd(
        "dis-run",
        str(tiny_onnx),
        "--images",
        str(folder),
        "--masks",
        str(tmp_path / "py"),
        "--no-display",
        "--threads",
        "1",
        "--backend",
        "onnxruntime",
        check=True,
    )
    names = sorted(p.name for p in (tmp_path / "py").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "cpp").glob("*.png")) and len(names) == len(FRAMES)
    for name in names:
        with Image.open(tmp_path / "py" / name) as py, Image.open(tmp_path / "cpp" / name) as cpp:
            assert py.mode == cpp.mode == "P" and py.getpalette() == cpp.getpalette()
            assert np.array_equal(np.array(py), np.array(cpp)), name  # class indices
    stats = json.loads((tmp_path / "cpp.json").read_text())
    assert stats["frames"] == len(FRAMES) and stats["skipped"] == 1 and stats["runtime"] == "c++"
    assert_stats_keys(stats)
    assert 0 <= stats["frame_age_ms"]["p50"] <= stats["wall_s"] * 1000  # waited in the queue, within the run
    assert stats["latency_ms"]["infer_ms"]["p50"] > 0 and sum(stats["class_area"].values()) == pytest.approx(
        1.0, abs=1e-6
    )


def _video(path, frames=12, size=(96, 72)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for i in range(frames):
        frame = _scene(size[1], size[0], 100 + i)
        writer.write(frame)
    writer.release()
    return path


def test_dis_run_cpp_video_loop_output_and_masks(cpp_build, tiny_onnx, tmp_path):
    video = _video(tmp_path / "in.avi")
    proc = _run_cpp(
        cpp_build,
        tiny_onnx,
        "--video",
        video,
        "--loop",
        2,
        "--output",
        tmp_path / "out.mp4",
        "--masks",
        tmp_path / "m",
        "--view",
        "side-by-side",
        "--no-display",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("24 frames")
    out = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(out.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    ok, shown = out.read()
    assert ok and shown.shape == (72, 192, 3)  # frame and mask side by side
    assert sorted(p.stem for p in (tmp_path / "m").glob("*.png")) == [f"{i:06d}" for i in range(24)]
    with Segmenter(tiny_onnx, backend="onnxruntime", threads=1) as py:
        cap = cv2.VideoCapture(str(video))
        for i in range(12):  # the second pass repeats the first
            ok, frame = cap.read()
            expected = py(frame).labels
            for name in (f"{i:06d}", f"{i + 12:06d}"):
                assert np.array_equal(np.array(Image.open(tmp_path / "m" / f"{name}.png")), expected), name
    assert not list(tmp_path.glob(".*partial*"))


def test_dis_run_cpp_max_frames_and_nothing_to_write(cpp_build, tiny_onnx, tmp_path):
    video = _video(tmp_path / "in.avi")
    proc = _run_cpp(
        cpp_build,
        tiny_onnx,
        "--video",
        video,
        "--max-frames",
        5,
        "--masks",
        tmp_path / "m",
        "--stats",
        tmp_path / "s.json",
        "--no-display",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        len(list((tmp_path / "m").glob("*.png"))) == 5 and json.loads((tmp_path / "s.json").read_text())["frames"] == 5
    )
    proc = _run_cpp(cpp_build, tiny_onnx, "--video", video, "--no-display")
    assert proc.returncode == 2 and "nothing to show or write" in proc.stderr
    proc = _run_cpp(cpp_build, tiny_onnx, "--video", video, "--masks", "/proc/no/such/dir", "--no-display")
    assert (
        proc.returncode == 2
        and proc.stderr.strip().splitlines()[-1].startswith("error: ")
        and "writable" in proc.stderr
    )


GST_TEST_STREAM = (
    "videotestsrc is-live=true num-buffers={n} pattern=ball ! video/x-raw,width=96,height=72,framerate=30/1 ! "
    "videoconvert ! video/x-raw,format=BGR ! appsink"
)


def test_dis_run_cpp_live_stream_drops_are_reconnected_and_counted(cpp_build, tiny_onnx, tmp_path):
    """A real GStreamer stream that ends every 15 frames: the live source reconnects, counts, and goes on."""
    proc = _run_cpp(
        cpp_build,
        tiny_onnx,
        "--gst",
        GST_TEST_STREAM.format(n=15),
        "--max-frames",
        40,
        "--stats",
        tmp_path / "s.json",
        "--masks",
        tmp_path / "m",
        "--no-display",
        timeout=120,
    )
    if proc.returncode == 2 and "needs OpenCV built with GStreamer" in proc.stderr:
        pytest.skip("this OpenCV has no GStreamer")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames"] == 40 and stats["reconnects"] >= 2 and "reconnects" in proc.stdout
    assert proc.stderr.count("dropped; reconnecting") == stats["reconnects"]
    assert len(list((tmp_path / "m").glob("*.png"))) == 40


def test_dis_run_cpp_broken_pipeline_exits_2(cpp_build, tiny_onnx, tmp_path):
    proc = _run_cpp(
        cpp_build, tiny_onnx, "--gst", "nosuchelement ! appsink", "--stats", tmp_path / "s.json", "--no-display"
    )
    assert proc.returncode == 2, proc.stderr
    assert "GStreamer pipeline: cannot open it" in proc.stderr or "needs OpenCV built with GStreamer" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--camera", "9"], "camera 9: cannot open it"),
        (["--video", "missing.mp4"], "no such video file"),
        ([], "no source given: --source URI (repeatable)"),
        # two sources: a camera that is down is retried in the background (a service starts without it); the missing
        # file is the one line
        (["--camera", "0", "--video", "x.mp4"], "x.mp4: no such video file"),
        (["--rtsp", "localhost:554"], "expected a URL such as rtsp://"),
        (["--images", "nowhere"], "no such image folder"),
        (["--camera", "0", "--loop", "2"], "--loop applies to video files, image folders and GStreamer pipelines"),
        (["--video", "x.mp4", "--view", "sideways"], "--view"),
    ],
)
def test_dis_run_cpp_bad_input_exits_2_with_one_line(cpp_build, tiny_onnx, tmp_path, args, message):
    proc = _run_cpp(cpp_build, tiny_onnx, *args, "--stats", tmp_path / "s.json", "--no-display")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], proc.stderr
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("kind", ["missing", "foreign", "truncated", "engine-without-sidecar"])
def test_dis_run_cpp_bad_models_exit_2(cpp_build, tiny_onnx, tmp_path, kind):
    model = tmp_path / ("m.engine" if kind.startswith("engine") else "m.onnx")
    if kind == "foreign":
        model.write_bytes(b"\x08\x07")  # an ONNX with no disseg metadata
    elif kind == "truncated":
        model.write_bytes(tiny_onnx.read_bytes()[:-1000])
    elif kind.startswith("engine"):
        model.write_bytes(b"engine bytes")
    video = _video(tmp_path / "in.avi", frames=2)
    proc = _run_cpp(cpp_build, model, "--video", video, "--stats", tmp_path / "s.json", "--no-display")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, (
        proc.stderr
    )


def test_dis_run_cpp_ctrl_c_flushes_video_and_stats(cpp_build, tiny_onnx, tmp_path):
    video = _video(tmp_path / "in.avi", frames=20)
    code, err, summary, written, masks = interrupt_run(
        cpp_build / "dis_run_cpp", tiny_onnx, video, tmp_path / "out.mp4", tmp_path / "s.json"
    )
    assert code == 130, err
    assert summary["interrupted"] is True and summary["frames"] > 0
    assert written == masks == summary["frames"]  # every segmented frame was written before the stop


@pytest.mark.parametrize("given", ["checkpoint", "folder", "image"])
def test_dis_run_cpp_names_the_wrong_kind_of_model(cpp_build, tmp_path, given):
    from tests.runtime.test_run_cli import WANT, _checkpoint_like, _image

    model = {"checkpoint": _checkpoint_like(tmp_path / "last.pt"), "folder": tmp_path, "image": None}[given]
    model = _image(tmp_path / "street.jpg") if given == "image" else model
    proc = _run_cpp(cpp_build, model, "--video", "x.avi", "--stats", tmp_path / "s.json", "--no-display")
    want = (
        WANT[given]
        if given in WANT
        else f"PyTorch checkpoint, not an exported model; export it first: dis-export {model}"
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and want in lines[0], proc.stderr
