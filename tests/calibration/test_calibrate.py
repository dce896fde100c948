import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from disseg.calibration.reader import FrameReader, frames_from_video
from disseg.calibration.scopes import in_feature_extractor
from disseg.runtime import Segmenter, read_model_info
from disseg.runtime.cpu import read_cpu
from disseg.runtime.errors import SourceError
from tests.conftest import run_cmd


def test_reader_protocol_yields_batches_then_none():
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(5)]
    reader = FrameReader(frames, "image", batch=2)
    items = list(reader)
    assert [item["image"].shape for item in items] == [(2, 8, 8, 3), (2, 8, 8, 3)]
    assert reader.get_next() is None
    reader.rewind()
    assert reader.get_next()["image"][1, 0, 0, 0] == 1


def test_video_frames_spread_and_bad_video(tmp_path):
    path = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 24))
    for i in range(20):
        writer.write(np.full((24, 32, 3), i * 10, np.uint8))
    writer.release()
    frames = frames_from_video(path, 16, 16, 4)
    assert len(frames) == 4 and frames[0].shape == (16, 16, 3)
    assert frames[0].mean() < frames[-1].mean()  # first and last of the video, not four neighbours
    # A letterboxed model is calibrated on what its Segmenter feeds it: 24x32 kept in aspect as 12x16, 114 above/below.
    boxed = frames_from_video(path, 16, 16, 4, resize="letterbox")
    assert all(f.shape == (16, 16, 3) for f in boxed)
    assert (boxed[-1][:2] == 114).all() and (boxed[-1][-2:] == 114).all()
    assert np.abs(boxed[-1][2:-2].astype(int) - frames[-1][0, 0].astype(int)).max() <= 4  # the frame, not the pad
    (tmp_path / "bad.mp4").write_bytes(b"nope")
    with pytest.raises(SourceError):
        frames_from_video(tmp_path / "bad.mp4", 16, 16, 4)


@pytest.mark.parametrize("target,activation", [("cpu", onnx.TensorProto.UINT8), ("tensorrt", onnx.TensorProto.INT8)])
def test_int8_keeps_refinement_float_and_accuracy(tiny_onnx, tiny_data, tmp_path, target, activation):
    out = tmp_path / f"m.{target}.onnx"
    proc = run_cmd(
        "dis-calibrate",
        str(tiny_onnx),
        "--data",
        str(tiny_data),
        "--target",
        target,
        "--samples",
        "8",
        "--max-drop",
        "100",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(out)
    q_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert q_nodes
    zero_points = {i.name: i.data_type for i in model.graph.initializer}
    assert {zero_points[n.input[2]] for n in q_nodes if len(n.input) > 2 and n.input[2] in zero_points} == {activation}
    # no ConvTranspose (the refinement) reads a dequantized tensor
    produced_by_dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        if node.op_type == "ConvTranspose" or (node.op_type == "Conv" and not in_feature_extractor(node) and node.name):
            assert not set(node.input) & produced_by_dq, node.name
    info = read_model_info(out)
    report = json.loads(out.with_suffix(".quant.json").read_text())
    assert info.precision == "int8" and info.extra["quantization"] == report
    assert report["target"] == target and "miou" in report["fp32"] and "miou" in report["int8"]
    assert report["int8"]["drop"] == pytest.approx(report["fp32"]["miou"] - report["int8"]["miou"], abs=1e-3)
    speed = report["speed_here"]  # measured on this machine, with the instruction set that explains it
    assert speed["fp32_ms"] > 0 and speed["int8_ms"] > 0
    assert speed["speedup"] == pytest.approx(speed["fp32_ms"] / speed["int8_ms"], rel=0.01)
    cpu = read_cpu()
    assert speed["cpu"] == cpu.as_dict()
    said = [line for line in proc.stderr.splitlines() if "FP32" in line and "x FP32's speed" in line]
    assert len(said) == 1, proc.stderr
    if target == "cpu" and speed["speedup"] < 1.05:
        assert said[0].startswith("INT8 is not faster than FP32 on this CPU"), said
    with Segmenter(out, backend="onnxruntime") as seg:
        assert seg(np.zeros((30, 40, 3), np.uint8)).labels.shape == (30, 40)
    _int8_line_follows_the_cpu(out, tmp_path)


def _int8_line_follows_the_cpu(model, tmp_path):
    """dis-run on an INT8 model says once that the CPU lacks int8 dot-product instructions where it does (a real
    /proc/cpuinfo of an AVX2-only EPYC, read through DISSEG_CPUINFO), and nothing where it has them (Jetson Orin)."""
    import os
    import subprocess

    from tests.conftest import BIN

    samples = Path(__file__).resolve().parents[1] / "cpuinfo"
    images = tmp_path / "frames"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((24, 24, 3), 120, np.uint8))
    for sample, expected in (("x86_amd_epyc_zen2_avx2.txt", 1), ("aarch64_jetson_orin_cortex_a78ae.txt", 0)):
        env = {**os.environ, "DISSEG_CPUINFO": str(samples / sample)}
        proc = subprocess.run(
            [str(BIN / "dis-run"), str(model), "--images", str(images), "--stats", str(tmp_path / "s.json"),
             "--no-display"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if "lacks int8 dot-product instructions" in line]
        assert len(lines) == expected, proc.stderr
        if expected:
            assert "(AMD EPYC 7B12)" in lines[0] and "FP32 .onnx it was calibrated from" in lines[0]


def test_search_keeps_groups_in_float_when_over_budget(tiny_onnx, tiny_data, tmp_path):
    out = tmp_path / "m.onnx"
    proc = run_cmd(
        "dis-calibrate", str(tiny_onnx), "--data", str(tiny_data), "--samples", "8", "--max-drop", "0", "-o", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.with_suffix(".quant.json").read_text())
    drops = [t["drop"] for t in report["trials"]]
    if drops[0] > 0:  # over budget: the search ran and never made things worse
        assert len(report["trials"]) > 1 and drops[-1] <= drops[0]
        assert report["keep_float"] == report["trials"][-1]["keep_float"]


@pytest.mark.parametrize(
    "case,message",
    [
        ("no_source", "exactly one"),
        ("already", "already quantized"),
        ("fp16", "fp16"),
        ("few", "need at least"),
        ("video", "cannot open"),
        ("foreign", "not a disseg model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_onnx, tiny_run, tiny_data, tmp_path, case, message):
    model = str(tiny_onnx)
    args = ["--data", str(tiny_data), "--samples", "8", "-o", str(tmp_path / "o.onnx")]
    if case == "no_source":
        args = args[2:]
    elif case == "already":
        run_cmd("dis-calibrate", model, *args, "--max-drop", "100", check=True)
        model, args = str(tmp_path / "o.onnx"), ["--data", str(tiny_data), "-o", str(tmp_path / "o2.onnx")]
    elif case == "fp16":
        run_cmd(
            "dis-export",
            str(tiny_run / "best.pt"),
            "--iters",
            "0",
            "--fp16",
            "--no-parity",
            "-o",
            str(tmp_path / "h.onnx"),
            check=True,
        )
        model = str(tmp_path / "h.onnx")
    elif case == "few":
        (tmp_path / "imgs").mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / "imgs" / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
        args = ["--images", str(tmp_path / "imgs"), "-o", str(tmp_path / "o.onnx")]
    elif case == "video":
        args = ["--video", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.onnx")]
    elif case == "foreign":
        (tmp_path / "f.onnx").write_bytes(b"\x08\x07")
        model = str(tmp_path / "f.onnx")
    proc = run_cmd("dis-calibrate", model, *args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if "pre-processing" not in line]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.gpu
def test_tensorrt_builds_the_qdq_model(tiny_onnx, tiny_data, tmp_path):
    from disseg.runtime.backends import tensorrt_available

    if not tensorrt_available("tensorrt"):
        pytest.skip("needs TensorRT and a CUDA GPU")
    from disseg.runtime.engine_cache import build_engine

    out = tmp_path / "m.int8-trt.onnx"
    run_cmd(
        "dis-calibrate",
        str(tiny_onnx),
        "--data",
        str(tiny_data),
        "--target",
        "tensorrt",
        "--samples",
        "8",
        "--max-drop",
        "100",
        "-o",
        str(out),
        check=True,
    )
    facts = build_engine(out, tmp_path / "m.engine", flavour="tensorrt")
    assert facts.precision == "int8" and (tmp_path / "m.engine").stat().st_size > 0
    frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with (
        Segmenter(tmp_path / "m.engine", backend="tensorrt") as trt_seg,
        Segmenter(out, backend="onnxruntime") as ort_seg,
    ):
        assert (trt_seg(frame).labels == ort_seg(frame).labels).mean() > 0.98


def _activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    """Each quantized activation's scale (the weights' Q nodes are folded away, so these are activations)."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"}


def test_entropy_ranges_are_not_minmax(tiny_onnx, tiny_data, tmp_path):
    """Entropy (KL) calibration searches a fine histogram for the window that loses least, as TensorRT's does: it
    clips long tails, so some ranges are narrower than min/max and none wider. With ONNX Runtime's default histogram
    (128 bins for 128 levels) there is one window only and entropy gave exactly the min/max ranges."""
    from disseg.calibration.quantize import Plan, quantize
    from disseg.calibration.reader import frames_from_data

    model, info = onnx.load(tiny_onnx), read_model_info(tiny_onnx)
    frames = frames_from_data(tiny_data, "train", info.input_height, info.input_width, 8)
    scales = {
        method: _activation_scales(
            quantize(model, frames, Plan("tensorrt", method), input_name=info.input_name, batch=1, workdir=tmp_path)
        )
        for method in ("minmax", "entropy")
    }
    assert scales["minmax"].keys() == scales["entropy"].keys()
    ratios = np.array([scales["entropy"][k] / scales["minmax"][k] for k in scales["minmax"]])
    assert (ratios < 0.95).sum() >= len(ratios) // 4, np.round(ratios, 3)  # tails clipped in many tensors
    assert ratios.max() <= 1.0 + 1e-3, np.round(ratios, 3)
